//! The command line of `allot`: `serve`, `verify` and `import`. It lives in the library
//! (and `main.rs` only calls [`run`]) so that tests can host the very same entry point.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs, DATA_DIR_DEFAULT};

#[derive(Debug, Parser)]
#[command(
    name = "allot",
    version,
    about = "allot: the order engine for B2B dealer ordering"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Check every shard's log and snapshots in a data dir (read-only).
    Verify {
        #[arg(long, env = "ALLOT_DATA_DIR", default_value = DATA_DIR_DEFAULT)]
        data_dir: PathBuf,
    },
    /// Load an NDJSON file into a STOPPED server's data dir (the format of
    /// POST /admin/import). To load into a running server, POST the file instead.
    Import {
        file: PathBuf,
        /// The tenant to load into.
        #[arg(long, env = "ALLOT_TENANT", default_value = crate::auth::DEFAULT_TENANT)]
        tenant: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

/// Parses `args` and runs the command; the process exit code.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    let result = match cli.command {
        Cmd::Serve(args) => serve(&args),
        Cmd::Verify { data_dir } => {
            crate::verify::verify_data_dir(&data_dir, &mut std::io::stdout())
        }
        Cmd::Import {
            file,
            tenant,
            serve,
        } => import(&file, &tenant, &serve),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("allot: {why}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALLOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let config = Config::resolve(args).map_err(|e| e.to_string())?;
    allow_huge_pages(config.huge_pages);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.http_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(crate::server::serve(config, shutdown_signal()))
}

/// Allows or forbids transparent huge pages for this process (and the processes it
/// starts); call it before memory grows. With them, the first write to each fresh
/// 2 MiB page makes the kernel zero (and, in a VM, the host back) the whole page
/// inside one page fault: a sequencer that touches it stalls for milliseconds, and
/// every reply in its batch waits (docs/PERFORMANCE.md). Small pages spread the same
/// work evenly. A no-op off Linux.
pub fn allow_huge_pages(allowed: bool) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(!allowed) {
        tracing::warn!(error = %e, allowed, "could not set the transparent huge pages flag");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = allowed;
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

fn import(file: &std::path::Path, tenant: &str, args: &ServeArgs) -> Result<(), String> {
    if !allot_engine::ids::is_valid_code(tenant) {
        return Err(format!("tenant `{tenant}` is not a valid code"));
    }
    let mut config = Config::resolve(args).map_err(|e| e.to_string())?;
    if args.shards.is_none() {
        if let Ok(n) = crate::shard::data_dir_shards(&config.data_dir) {
            config.shards = n;
        }
    }
    let report = crate::import::import_file(config, tenant, file)?;
    println!(
        "applied {} line(s), refused {}",
        report.applied,
        report.errors.len()
    );
    for (line, code, message) in &report.errors {
        println!("line {line}: {code}: {message}");
    }
    Ok(())
}
