//! Cross-crate and black-box tests for allot; each test target in this package says
//! what it checks and how to reproduce a failure.
