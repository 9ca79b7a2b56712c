//! `allot`: the server binary. Everything lives in the library (see `allot_server::cli`)
//! so that tests can run the same entry point.

fn main() -> std::process::ExitCode {
    allot_server::cli::run(std::env::args_os())
}
