//! One run, start to end: wait for the server, load the synthetic book, read the book
//! before, drive the load with a live progress line, let the server settle, read the
//! book after, audit, and assemble the report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::audit::{self, Book, Check};
use crate::client::{self, Load, Op, Outcome, Recorder, RunCtx, Tally};
use crate::http::{send_json, Conn, Target};
use crate::report::{self, AuditReport, Percentiles, Report};
use crate::scenario::{Scenario, ScenarioKind};

/// Holds at most this long are waited out before the audit (see [`settle`]).
const HOLD_WAIT_MAX_S: u64 = 120;
/// Connections that read the book for the audit.
const AUDIT_CONNECTIONS: usize = 4;

pub struct Options {
    pub scenario: Scenario,
    pub setup: bool,
    pub load: Load,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub hold_ttl_s: Option<u64>,
    pub restock_every: Duration,
    pub quiet: bool,
    pub tamper_tally: bool,
    pub settings: serde_json::Value,
}

/// Polls `/readyz` until it answers 200.
pub async fn wait_ready(target: &Target, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut conn = Conn::new(target);
    loop {
        match conn.request("GET", "/readyz", b"").await {
            Ok(r) if r.status == 200 => return Ok(()),
            _ if Instant::now() > deadline => {
                anyhow::bail!("{} is not ready after {within:?}", target.addr)
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Loads the synthetic book through `/admin/import`.
async fn setup(conn: &mut Conn, scenario: &Scenario) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let body = scenario.catalog_ndjson(now);
    let (status, value) = send_json(conn, "POST", "/admin/import", body.as_bytes()).await?;
    anyhow::ensure!(status == 200, "POST /admin/import: {status} {value}");
    let errors = value["errors"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        errors == 0,
        "POST /admin/import refused {errors} line(s): {}",
        value["errors"]
    );
    Ok(())
}

/// Changes the hold TTL (or nothing) and answers the TTL in force.
async fn hold_ttl(conn: &mut Conn, set: Option<u64>) -> anyhow::Result<u64> {
    let body = set.map_or_else(|| "{}".to_owned(), |s| format!(r#"{{"hold_ttl_s":{s}}}"#));
    let (status, value) = send_json(conn, "PUT", "/admin/settings", body.as_bytes()).await?;
    anyhow::ensure!(status == 200, "PUT /admin/settings: {status} {value}");
    value["hold_ttl_s"]
        .as_u64()
        .context("the settings carry no hold_ttl_s")
}

/// Reads the book at a quiet moment: the stock view before and after the dealers and
/// orders must be at the same sequence number, else it is read again.
async fn read_book(
    target: &Target,
    scenario: &Scenario,
    with_orders: bool,
) -> anyhow::Result<Book> {
    let mut conn = Conn::new(target);
    let tag = with_orders.then_some(scenario.params.run_tag.as_str());
    for _ in 0..5 {
        // The server rebuilds large stock views at most every 250 ms.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (seq, skus) = audit::read_stock(&mut conn).await?;
        let (dealers, orders) =
            audit::read_dealers(target, scenario.params.dealers, tag, AUDIT_CONNECTIONS).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (seq_again, _) = audit::read_stock(&mut conn).await?;
        if seq == seq_again {
            return Ok(Book {
                as_of_seq: seq,
                skus,
                dealers,
                orders,
            });
        }
    }
    anyhow::bail!("the book kept changing while it was read: is other traffic running?")
}

/// After the load: if holds can expire, stop new holds from expiring soon and wait
/// for the existing ones, so no expiry (and no backorder fill it causes) races the
/// reads. Answers whether any hold could have expired, and the TTL to restore.
async fn settle(
    conn: &mut Conn,
    ttl_s: u64,
    run_s: u64,
    quiet: bool,
) -> anyhow::Result<(bool, Option<u64>)> {
    let possible = ttl_s <= run_s + HOLD_WAIT_MAX_S;
    if !possible {
        return Ok((false, None));
    }
    if ttl_s > HOLD_WAIT_MAX_S {
        // Too long to wait out; a hold that expires during the reads may then fail
        // the audit, which says so.
        return Ok((true, None));
    }
    hold_ttl(conn, Some(86_400)).await?;
    if !quiet {
        eprintln!("allot-load: waiting {}s for holds to expire", ttl_s + 1);
    }
    tokio::time::sleep(Duration::from_secs(ttl_s + 1)).await;
    Ok((true, Some(ttl_s)))
}

/// Runs the scenario against `target`; the report (whose audit may have failed).
pub async fn run(opts: Options, target: Target) -> anyhow::Result<Report> {
    wait_ready(&target, Duration::from_secs(60)).await?;
    let mut admin = Conn::new(&target);
    if opts.setup {
        setup(&mut admin, &opts.scenario).await?;
    }
    let ttl_s = hold_ttl(&mut admin, opts.hold_ttl_s).await?;
    let before = read_book(&target, &opts.scenario, false).await?;
    let started_at = report::rfc3339(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let recorder = Arc::new(Mutex::new(Recorder::new()));
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + opts.warmup;
    let end = measure_from + opts.duration;
    let ctx = Arc::new(RunCtx {
        scenario: opts.scenario.clone(),
        target: target.clone(),
        load: opts.load,
        connections: opts.connections,
        start,
        end,
        recorder: Arc::clone(&recorder),
        arrivals: match opts.load {
            client::Load::Open(rate) => Some(tokio::sync::Mutex::new(client::pace_arrivals(
                rate,
                opts.scenario.params.seed,
                start,
                end,
            ))),
            client::Load::Closed => None,
        },
    });
    let mut tasks = Vec::new();
    for k in 0..opts.connections {
        tasks.push(tokio::spawn(client::connection_task(Arc::clone(&ctx), k)));
    }
    if opts.scenario.params.kind == ScenarioKind::PromoPeak {
        tasks.push(tokio::spawn(client::restock_task(
            Arc::clone(&ctx),
            opts.restock_every,
        )));
    }
    let timeline = progress(&opts, &recorder, start, measure_from, end).await;
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.context("a connection task failed")?);
    }
    let run_s = start.elapsed().as_secs();
    let (expiry_possible, restore_ttl) = settle(&mut admin, ttl_s, run_s, opts.quiet).await?;
    let after = read_book(&target, &opts.scenario, true).await?;
    if let Some(ttl) = restore_ttl {
        hold_ttl(&mut admin, Some(ttl)).await?;
    }
    if opts.tamper_tally {
        tally.tamper();
    }
    let mut checks = audit::audit(&opts.scenario, &before, &after, &tally, expiry_possible);
    let rec = recorder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    checks.extend(outcome_checks(opts.scenario.params.kind, &rec));
    Ok(assemble(&opts, &rec, timeline, checks, started_at))
}

/// The live progress line; also closes one time point per second. Answers the
/// timeline of the measured part of the run.
async fn progress(
    opts: &Options,
    recorder: &Mutex<Recorder>,
    start: Instant,
    measure_from: Instant,
    end: Instant,
) -> Vec<client::TimePoint> {
    let total_s = (end - start).as_secs().saturating_add(1);
    let bar = if opts.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total_s)
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("warm-up");
    let mut timeline = Vec::new();
    tokio::time::sleep_until(measure_from.into()).await;
    lock(recorder).measuring = true;
    let mut last = Instant::now();
    bar.set_position((last - start).as_secs());
    while last < end {
        let next = (last + Duration::from_secs(1)).min(end);
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        let seconds = (now - last).as_secs_f64();
        let point = lock(recorder).take_interval((now - measure_from).as_secs_f64(), seconds);
        bar.set_position((now - start).as_secs());
        #[allow(clippy::cast_precision_loss)]
        bar.set_message(format!(
            "{:>7.0} orders/s  p99 {:>6.2} ms  errors {}",
            point.orders_per_s,
            point.p99_us as f64 / 1000.0,
            point.errors
        ));
        timeline.push(point);
        last = now;
    }
    bar.finish_and_clear();
    let mut rec = lock(recorder);
    rec.measuring = false;
    timeline
}

fn lock(recorder: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    recorder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Checks on what the answers themselves said.
fn outcome_checks(kind: ScenarioKind, rec: &Recorder) -> Vec<Check> {
    let count = |o: Outcome| rec.outcomes[o as usize];
    let mut checks = Vec::new();
    let failures = rec.failures_all;
    let problems: Vec<String> = rec.error_samples.iter().take(5).cloned().collect();
    let mut c = Check::new(
        "no_errors_or_timeouts",
        &problems,
        "every answer was an accepted order, a clean rejection or a 503".to_owned(),
    );
    if failures > 0 {
        c.ok = false;
        c.detail = format!("{failures} failed answer(s): {}", problems.join("; "));
    }
    checks.push(c);
    if kind == ScenarioKind::FlashSale {
        let short = count(Outcome::InsufficientStock);
        let mut problems = Vec::new();
        if short == 0 {
            problems.push("the hot SKUs never ran out (no insufficient_stock)".to_owned());
        }
        let other = count(Outcome::CreditExceeded) + count(Outcome::OtherRejection);
        if other > 0 {
            problems.push(format!("{other} rejections other than insufficient_stock"));
        }
        checks.push(Check::new(
            "hot_stock_ran_out_cleanly",
            &problems,
            format!("{short} placements rejected as insufficient_stock, no other rejection"),
        ));
    }
    checks
}

fn assemble(
    opts: &Options,
    rec: &Recorder,
    timeline: Vec<client::TimePoint>,
    checks: Vec<Check>,
    started_at: String,
) -> Report {
    let duration_s = opts.duration.as_secs_f64();
    let place = &rec.latency[Op::Place as usize];
    #[allow(clippy::cast_precision_loss)]
    let per_s = |n: u64| n as f64 / duration_s.max(1e-9);
    Report {
        scenario: opts.scenario.params.kind.name().to_owned(),
        load: match opts.load {
            Load::Open(_) => "open".to_owned(),
            Load::Closed => "closed".to_owned(),
        },
        duration_s,
        warmup_s: opts.warmup.as_secs_f64(),
        offered_rate: match opts.load {
            Load::Open(r) => Some(r),
            Load::Closed => None,
        },
        achieved_rate: per_s(rec.placements),
        orders_ok: rec.placements_ok,
        orders_ok_rate: per_s(rec.placements_ok),
        placements: rec.placements,
        latency_us: Percentiles::of(place),
        service_latency_us: Percentiles::of(&rec.service),
        latency_by_op_us: Op::ALL
            .iter()
            .map(|op| {
                (
                    op.name().to_owned(),
                    Percentiles::of(&rec.latency[*op as usize]),
                )
            })
            .collect(),
        outcomes: Outcome::ALL
            .iter()
            .map(|o| (o.name().to_owned(), rec.outcomes[*o as usize]))
            .collect(),
        audit: AuditReport {
            ok: checks.iter().all(|c| c.ok),
            checks,
        },
        timeline,
        latency_distribution: report::spectrum(place),
        settings: opts.settings.clone(),
        error_samples: rec.error_samples.clone(),
        started_at,
    }
}
