//! `allot`: the server binary. Everything lives in the library (see `allot_server::cli`)
//! so that tests can run the same entry point.

/// mimalloc instead of the system allocator: requests are allocated on the HTTP
/// threads and freed on the shard and log threads, a pattern glibc's per-thread caches
/// serve poorly (measured in docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    allot_server::cli::run(std::env::args_os())
}
