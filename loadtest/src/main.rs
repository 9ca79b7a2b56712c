//! `allot-load`: the command line and its wiring. The work lives in the library
//! (`allot_loadtest`): `scenario` (seeded request streams), `client` (connections, open
//! and closed loop), `audit`, `report`, `server` (`--spawn`) and `run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use allot_loadtest::client::Load;
use allot_loadtest::http::Target;
use allot_loadtest::run::{self, Options};
use allot_loadtest::scenario::{Params, Scenario, ScenarioKind};
use allot_loadtest::{report, server};

/// The same allocator as the `allot` binary, so that a server hosted by `--spawn`
/// runs as `allot serve` would.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "allot-load",
    version,
    about = "Peak simulation for allot: open- or closed-loop load, latency percentiles, \
             and an audit of the server's ledger against what it acknowledged"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Load the synthetic book, drive a scenario, audit, report.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)]
struct RunArgs {
    /// The server, e.g. http://127.0.0.1:7878.
    #[arg(long, required_unless_present = "spawn", conflicts_with = "spawn")]
    target: Option<String>,
    /// Start a fresh `allot serve` on a free loopback port with a temporary data dir,
    /// and stop it after the run.
    #[arg(long)]
    spawn: bool,
    /// With --spawn: run this `allot` binary instead of the server built into this one.
    #[arg(long, requires = "spawn")]
    server_bin: Option<PathBuf>,
    /// With --spawn: the server's durability.
    #[arg(long, default_value = "fsync", value_parser = ["fsync", "async", "none"])]
    durability: String,
    /// With --spawn: the server's shard count (default: the server's, the core count).
    #[arg(long)]
    server_shards: Option<u32>,
    /// With --spawn: one more argument for `allot serve` (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Bearer key (an admin key: the run loads the book and ships orders).
    #[arg(long, env = "ALLOT_LOAD_KEY")]
    key: Option<String>,

    #[arg(long, value_enum, default_value = "steady")]
    scenario: ScenarioKind,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10_000)]
    skus: usize,
    #[arg(long, default_value_t = 8)]
    warehouses: usize,
    #[arg(long, default_value_t = 1_000)]
    dealers: usize,
    /// Use the book already on the server (loaded by an earlier run with the same
    /// sizes and scenario) instead of importing one.
    #[arg(long)]
    no_setup: bool,
    /// Lines per order.
    #[arg(long, default_value_t = 3)]
    lines: usize,
    /// Share of orders placed with `backorder: true` (default: 0.3 in promo-peak, else 0).
    #[arg(long)]
    backorder_share: Option<f64>,
    /// Share of orders cancelled (default: 0.1 in lifecycle and promo-peak, else 0).
    #[arg(long)]
    cancel_share: Option<f64>,
    /// Share of orders confirmed (default: 0.8 in lifecycle, 0.4 in promo-peak).
    #[arg(long)]
    confirm_share: Option<f64>,
    /// Share of confirmed orders shipped (lifecycle; default 0.75).
    #[arg(long, default_value_t = 0.75)]
    ship_share: f64,
    /// Hot SKUs (flash-sale) or promoted SKUs (promo-peak).
    #[arg(long, default_value_t = 10)]
    hot_skus: usize,
    /// Share of order lines on the hot or promoted SKUs.
    #[arg(long, default_value_t = 0.5)]
    hot_share: f64,
    /// Orders per second assumed when sizing stock for a closed loop: the hot or
    /// promoted SKUs hold about half of what this rate would order.
    #[arg(long, default_value_t = 20_000.0)]
    expected_rate: f64,
    /// Hold TTL to set before the run (default: 2 s in promo-peak, else the server's).
    #[arg(long)]
    hold_ttl_s: Option<u64>,
    /// promo-peak: time between restocks of the promoted SKUs.
    #[arg(long, default_value_t = 100)]
    restock_interval_ms: u64,
    /// Prefix of client_order_ids (default: `s<seed>`, plus the start time with
    /// --no-setup so that runs against one book never collide).
    #[arg(long)]
    run_tag: Option<String>,

    /// Orders per second with Poisson arrivals (open loop), or `max` (closed loop).
    #[arg(long, default_value = "max")]
    rate: String,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Worker threads of the client (1: a current-thread runtime, leaving the other
    /// cores to the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Per-request timeout.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,

    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress bar and no summary.
    #[arg(long)]
    quiet: bool,
    /// Perturb the tally before the audit (proves the audit fails when it should).
    #[arg(long, hide = true)]
    tamper_tally: bool,
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `allot-load __serve serve …` hosts the `allot` server itself (see `server.rs`).
    if args.get(1).is_some_and(|a| a == "__serve") {
        args.drain(..2);
        return allot_server::cli::run(std::iter::once("allot".into()).chain(args));
    }
    let cli = Cli::parse();
    // Latencies are measured on this process's threads: a huge-page fault stalling
    // one of them for milliseconds would be charged to the server.
    allot_server::cli::allow_huge_pages(false);
    let result = match cli.command {
        Cmd::Run(run_args) => run_command(&run_args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("allot-load: the audit FAILED");
            ExitCode::FAILURE
        }
        Err(why) => {
            eprintln!("allot-load: {why:#}");
            ExitCode::from(2)
        }
    }
}

fn share(value: Option<f64>, default: f64, name: &str) -> anyhow::Result<f64> {
    let v = value.unwrap_or(default);
    anyhow::ensure!((0.0..=1.0).contains(&v), "--{name} must be within 0..=1");
    Ok(v)
}

fn options(a: &RunArgs) -> anyhow::Result<Options> {
    let kind = a.scenario;
    let load = if a.rate == "max" {
        Load::Closed
    } else {
        let rate: f64 = a.rate.parse().context("--rate: a number or `max`")?;
        anyhow::ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
        Load::Open(rate)
    };
    anyhow::ensure!(a.connections > 0, "--connections must be positive");
    anyhow::ensure!(
        a.duration > 0.0 && a.warmup >= 0.0,
        "bad --duration or --warmup"
    );
    anyhow::ensure!(
        a.lines >= 1 && a.lines < a.skus,
        "--lines must be in 1..skus"
    );
    let promo = kind == ScenarioKind::PromoPeak;
    let lifecycle = kind == ScenarioKind::Lifecycle;
    let rate = match load {
        Load::Open(r) => r,
        Load::Closed => a.expected_rate,
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let expected_orders = (rate * (a.duration + a.warmup)).ceil().max(1.0) as u64;
    let run_tag = match &a.run_tag {
        Some(t) => t.clone(),
        None if a.no_setup => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("s{}t{now}", a.seed)
        }
        None => format!("s{}", a.seed),
    };
    let params = Params {
        kind,
        seed: a.seed,
        skus: a.skus,
        warehouses: a.warehouses,
        dealers: a.dealers,
        lines_per_order: a.lines,
        backorder_share: share(
            a.backorder_share,
            if promo { 0.3 } else { 0.0 },
            "backorder-share",
        )?,
        cancel_share: share(
            a.cancel_share,
            if promo || lifecycle { 0.1 } else { 0.0 },
            "cancel-share",
        )?,
        confirm_share: share(
            a.confirm_share,
            if lifecycle { 0.8 } else { 0.4 },
            "confirm-share",
        )?,
        ship_share: share(Some(a.ship_share), 0.0, "ship-share")?,
        hot_skus: a.hot_skus,
        hot_share: share(Some(a.hot_share), 0.0, "hot-share")?,
        expected_orders,
        run_tag,
    };
    let settings = serde_json::json!({
        "seed": a.seed, "skus": a.skus, "warehouses": a.warehouses, "dealers": a.dealers,
        "lines_per_order": a.lines, "backorder_share": params.backorder_share,
        "cancel_share": params.cancel_share, "confirm_share": params.confirm_share,
        "ship_share": params.ship_share, "hot_skus": a.hot_skus, "hot_share": a.hot_share,
        "rate": a.rate, "connections": a.connections, "client_threads": a.client_threads,
        "warmup_s": a.warmup, "spawn": a.spawn, "durability": a.spawn.then_some(&a.durability),
        "server_shards": a.server_shards, "setup": !a.no_setup, "run_tag": params.run_tag,
        "expected_orders": expected_orders,
    });
    Ok(Options {
        scenario: Scenario::new(params),
        setup: !a.no_setup,
        load,
        connections: a.connections,
        duration: Duration::from_secs_f64(a.duration),
        warmup: Duration::from_secs_f64(a.warmup),
        hold_ttl_s: a.hold_ttl_s.or(promo.then_some(2)),
        restock_every: Duration::from_millis(a.restock_interval_ms.max(1)),
        quiet: a.quiet,
        tamper_tally: a.tamper_tally,
        settings,
    })
}

/// One run; whether its audit passed.
fn run_command(a: &RunArgs) -> anyhow::Result<bool> {
    let opts = options(a)?;
    let mut spawned = None;
    let url = if a.spawn {
        let mut server_args = vec!["--durability".to_owned(), a.durability.clone()];
        if let Some(n) = a.server_shards {
            server_args.extend(["--shards".to_owned(), n.to_string()]);
        }
        server_args.extend(a.server_arg.iter().cloned());
        let s = server::spawn(a.server_bin.as_deref(), &server_args)?;
        if !a.quiet {
            eprintln!(
                "allot-load: spawned a server on {} (log {})",
                s.addr,
                s.log.display()
            );
        }
        let url = format!("http://{}", s.addr);
        spawned = Some(s);
        url
    } else {
        a.target.clone().context("--target or --spawn")?
    };
    let target = Target::parse(
        &url,
        &a.tenant,
        a.key.clone(),
        Duration::from_millis(a.timeout_ms),
    )
    .with_context(|| format!("--target `{url}`: expected http://host:port"))?;
    let runtime = if a.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.client_threads)
            .enable_all()
            .build()
    }
    .context("tokio runtime")?;
    let result = runtime.block_on(run::run(opts, target));
    if let Some(s) = &mut spawned {
        if result.is_err() {
            eprintln!("allot-load: server log (tail):\n{}", s.log_tail(20));
        }
        s.stop();
    }
    let report = result?;
    if !a.quiet {
        print!("{}", report::terminal(&report));
    }
    if let Some(path) = &a.report {
        let text = serde_json::to_string_pretty(&report).context("report")?;
        std::fs::write(path, text).with_context(|| format!("{}", path.display()))?;
    }
    if let Some(path) = &a.html {
        std::fs::write(path, report::html(&report))
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(report.audit.ok)
}
