//! The load itself: `C` keep-alive connections, each a task that places orders (and
//! carries out their follow-ups) either as fast as answers come back (closed loop) or
//! on a Poisson schedule (open loop, rate `R / C` per connection, so the merged
//! arrivals are Poisson at `R`).
//!
//! Open-loop latency is measured from the *intended* send time, not the actual one: a
//! slow answer delays the connection's next send, and that delay counts against the
//! server (no coordinated omission). The service time from the actual send is kept
//! beside it.
//!
//! Every acknowledged order goes into the connection's [`Tally`], which the audit
//! compares with the server's ledger afterwards.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::http::{json_i64, json_str, Conn, HttpError, Target};
use crate::scenario::{FollowUp, Rng, Scenario};

/// Highest latency the histograms track, in microseconds (a minute).
pub const LATENCY_US_MAX: u64 = 60_000_000;

/// The operations the tool times separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Place,
    Confirm,
    Ship,
    Cancel,
    Receive,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Place, Op::Confirm, Op::Ship, Op::Cancel, Op::Receive];
    pub fn name(self) -> &'static str {
        match self {
            Op::Place => "place",
            Op::Confirm => "confirm",
            Op::Ship => "ship",
            Op::Cancel => "cancel",
            Op::Receive => "receive",
        }
    }
}

/// What an answer meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Held,
    Backordered,
    PendingApproval,
    Replayed,
    InsufficientStock,
    CreditExceeded,
    Confirmed,
    Shipped,
    Cancelled,
    InvalidTransition,
    Received,
    Overloaded503,
    /// Any other 4xx: a client or scenario bug.
    OtherRejection,
    /// 5xx other than 503, protocol and connection errors.
    Errors,
    Timeouts,
}

impl Outcome {
    pub const ALL: [Outcome; 15] = [
        Outcome::Held,
        Outcome::Backordered,
        Outcome::PendingApproval,
        Outcome::Replayed,
        Outcome::InsufficientStock,
        Outcome::CreditExceeded,
        Outcome::Confirmed,
        Outcome::Shipped,
        Outcome::Cancelled,
        Outcome::InvalidTransition,
        Outcome::Received,
        Outcome::Overloaded503,
        Outcome::OtherRejection,
        Outcome::Errors,
        Outcome::Timeouts,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Held => "held",
            Outcome::Backordered => "backordered",
            Outcome::PendingApproval => "pending_approval",
            Outcome::Replayed => "replayed",
            Outcome::InsufficientStock => "insufficient_stock",
            Outcome::CreditExceeded => "credit_exceeded",
            Outcome::Confirmed => "confirmed",
            Outcome::Shipped => "shipped",
            Outcome::Cancelled => "cancelled",
            Outcome::InvalidTransition => "invalid_transition",
            Outcome::Received => "received",
            Outcome::Overloaded503 => "503",
            Outcome::OtherRejection => "other_rejections",
            Outcome::Errors => "errors",
            Outcome::Timeouts => "timeouts",
        }
    }
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::OtherRejection | Outcome::Errors | Outcome::Timeouts
        )
    }
}

/// An order status as the tool last saw it acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Held,
    Backordered,
    PendingApproval,
    Confirmed,
    Shipped,
    Cancelled,
    Expired,
    Rejected,
}

impl Status {
    pub fn parse(text: &[u8]) -> Option<Status> {
        Some(match text {
            b"held" => Status::Held,
            b"backordered" => Status::Backordered,
            b"pending_approval" => Status::PendingApproval,
            b"confirmed" => Status::Confirmed,
            b"shipped" => Status::Shipped,
            b"cancelled" => Status::Cancelled,
            b"expired" => Status::Expired,
            b"rejected" => Status::Rejected,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Status::Held => "held",
            Status::Backordered => "backordered",
            Status::PendingApproval => "pending_approval",
            Status::Confirmed => "confirmed",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
            Status::Expired => "expired",
            Status::Rejected => "rejected",
        }
    }
    /// Whether an order in this status still holds stock (or a backorder) and credit.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            Status::Held | Status::Backordered | Status::PendingApproval | Status::Confirmed
        )
    }
}

/// One acknowledged order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Its index in the scenario's stream (which regenerates its lines).
    pub n: u64,
    pub id: u64,
    pub status: Status,
    pub total: i64,
    /// A status the order may have reached without the tool hearing back (an action
    /// that timed out or lost its connection).
    pub maybe: Option<Status>,
}

/// What the tool knows it did to the server.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub orders: Vec<Acked>,
    /// Placements that got no answer: they may or may not exist.
    pub unanswered: Vec<u64>,
    /// Units received per SKU index (promo-peak restocks).
    pub received: std::collections::BTreeMap<u32, u64>,
    /// Units of receives that got no answer, per SKU index.
    pub received_maybe: std::collections::BTreeMap<u32, u64>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.orders.extend(other.orders);
        self.unanswered.extend(other.unanswered);
        for (k, v) in other.received {
            *self.received.entry(k).or_default() += v;
        }
        for (k, v) in other.received_maybe {
            *self.received_maybe.entry(k).or_default() += v;
        }
    }

    /// Perturbs the tally the way a lost or invented acknowledgement would: the
    /// audit must then fail. Used by `--tamper-tally` to prove the audit has teeth.
    pub fn tamper(&mut self) {
        if let Some(order) = self.orders.first_mut() {
            order.total += 1;
            order.status = if order.status == Status::Cancelled {
                Status::Held
            } else {
                Status::Cancelled
            };
        }
        *self.received.entry(0).or_default() += 1;
    }
}

/// One second of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimePoint {
    pub t_s: f64,
    pub orders_per_s: f64,
    pub orders_ok_per_s: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub errors: u64,
}

/// Shared counters and histograms; locked once per answer (cheap and uncontended with
/// one client thread).
pub struct Recorder {
    pub measuring: bool,
    pub latency: Vec<Histogram<u64>>,
    pub service: Histogram<u64>,
    pub outcomes: [u64; Outcome::ALL.len()],
    pub placements: u64,
    pub placements_ok: u64,
    interval: Histogram<u64>,
    interval_orders: u64,
    interval_ok: u64,
    interval_errors: u64,
    pub error_samples: Vec<String>,
    /// Failed answers, warm-up included.
    pub failures_all: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("constant bounds are valid")
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            measuring: false,
            latency: Op::ALL.iter().map(|_| histogram()).collect(),
            service: histogram(),
            outcomes: [0; Outcome::ALL.len()],
            placements: 0,
            placements_ok: 0,
            interval: histogram(),
            interval_orders: 0,
            interval_ok: 0,
            interval_errors: 0,
            error_samples: Vec::new(),
            failures_all: 0,
        }
    }

    fn record(&mut self, op: Op, latency: Duration, service: Duration, outcome: Outcome) {
        // Failures count even during the warm-up: the audit fails on any.
        self.failures_all += u64::from(outcome.is_failure());
        if !self.measuring {
            return;
        }
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.latency[op as usize].saturating_record(us);
        self.outcomes[outcome as usize] += 1;
        let failed = outcome.is_failure();
        self.interval_errors += u64::from(failed);
        if op == Op::Place {
            let ok = matches!(
                outcome,
                Outcome::Held | Outcome::Backordered | Outcome::PendingApproval
            );
            self.placements += 1;
            self.placements_ok += u64::from(ok);
            self.interval_orders += 1;
            self.interval_ok += u64::from(ok);
            self.interval.saturating_record(us);
            self.service
                .saturating_record((service.as_micros() as u64).clamp(1, LATENCY_US_MAX));
        }
    }

    fn sample_error(&mut self, text: String) {
        if self.error_samples.len() < 20 {
            self.error_samples.push(text);
        }
    }

    /// Closes the current interval of `seconds` length into a time point.
    #[allow(clippy::cast_precision_loss)]
    pub fn take_interval(&mut self, t_s: f64, seconds: f64) -> TimePoint {
        let h = &self.interval;
        let point = TimePoint {
            t_s,
            orders_per_s: self.interval_orders as f64 / seconds,
            orders_ok_per_s: self.interval_ok as f64 / seconds,
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            errors: self.interval_errors,
        };
        self.interval.reset();
        self.interval_orders = 0;
        self.interval_ok = 0;
        self.interval_errors = 0;
        point
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// How arrivals are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Poisson arrivals at this many orders per second.
    Open(f64),
    /// Each connection sends its next order when the previous one is done.
    Closed,
}

/// What every connection task shares.
pub struct RunCtx {
    pub scenario: Scenario,
    pub target: Target,
    pub load: Load,
    pub connections: usize,
    pub start: Instant,
    pub end: Instant,
    pub recorder: Arc<Mutex<Recorder>>,
    /// Open loop: the arrivals `(order number, intended send time)`, paced by
    /// [`pace_arrivals`]; whichever connection is free takes the next one.
    pub arrivals: Option<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>>>,
}

/// One Poisson process of `rate` orders per second for the whole run, on a thread of
/// its own: it releases each arrival at its intended time with the precision of
/// `nanosleep` (tens of microseconds), where an async timer would round every wait up
/// to the next millisecond and add that to every measured latency. The same seed gives
/// the same arrival times.
pub fn pace_arrivals(
    rate: f64,
    seed: u64,
    start: Instant,
    end: Instant,
) -> tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut gaps = Rng::new(seed ^ 0xA7_7A_11, 0);
    let spawned = std::thread::Builder::new()
        .name("allot-load-pacer".into())
        .spawn(move || {
            let mut intended = start;
            for n in 0u64.. {
                intended += Duration::from_secs_f64(gaps.exponential(1.0 / rate));
                if intended >= end {
                    break;
                }
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                if tx.send((n, intended)).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        // Without a pacer the run sends nothing; the report will show it.
        eprintln!("allot-load: cannot start the pacer thread: {e}");
    }
    rx
}

fn lock(recorder: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    // A panicked connection task poisons nothing we cannot still count.
    recorder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Classifies a placement's answer.
fn place_outcome(conn: &Conn, result: &Result<crate::http::Response, HttpError>) -> Outcome {
    match result {
        Err(HttpError::Timeout) => Outcome::Timeouts,
        Err(_) => Outcome::Errors,
        Ok(r) => {
            let body = conn.body(r);
            match r.status {
                201 => match json_str(body, "status") {
                    Some(b"held") => Outcome::Held,
                    Some(b"backordered") => Outcome::Backordered,
                    Some(b"pending_approval") => Outcome::PendingApproval,
                    _ => Outcome::Errors,
                },
                200 => Outcome::Replayed,
                409 => match json_str(body, "code") {
                    Some(b"insufficient_stock") => Outcome::InsufficientStock,
                    Some(b"credit_exceeded") => Outcome::CreditExceeded,
                    _ => Outcome::OtherRejection,
                },
                503 => Outcome::Overloaded503,
                400..=499 => Outcome::OtherRejection,
                _ => Outcome::Errors,
            }
        }
    }
}

fn describe(conn: &Conn, what: &str, result: &Result<crate::http::Response, HttpError>) -> String {
    match result {
        Err(e) => format!("{what}: {e}"),
        Ok(r) => {
            let body = conn.body(r);
            format!(
                "{what}: {} {}",
                r.status,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        }
    }
}

/// The steps of a follow-up, in order.
fn steps(follow_up: FollowUp) -> &'static [Op] {
    match follow_up {
        FollowUp::None => &[],
        FollowUp::Cancel => &[Op::Cancel],
        FollowUp::Confirm => &[Op::Confirm],
        FollowUp::ConfirmShip => &[Op::Confirm, Op::Ship],
        FollowUp::ConfirmCancel => &[Op::Confirm, Op::Cancel],
    }
}

/// Connection `k`: orders `k, k + C, k + 2C, …` until the run ends.
pub async fn connection_task(ctx: Arc<RunCtx>, k: usize) -> Tally {
    let mut conn = Conn::new(&ctx.target);
    let mut tally = Tally::default();
    let mut body = Vec::with_capacity(512);
    let mut path = String::with_capacity(64);
    for i in 0u64.. {
        let (n, intended) = if let Some(arrivals) = &ctx.arrivals {
            // Whichever connection is free takes the next arrival; an arrival waits
            // only when every connection is busy, and that wait is measured.
            let next = arrivals.lock().await.recv().await;
            match next {
                Some(arrival) => arrival,
                None => break,
            }
        } else {
            let now = Instant::now();
            if now >= ctx.end {
                break;
            }
            (i * ctx.connections as u64 + k as u64, now)
        };
        let plan = ctx.scenario.plan(n);
        ctx.scenario.render_order(n, &plan, &mut body);
        let sent = Instant::now();
        let result = conn.request("POST", "/v1/orders", &body).await;
        let done = Instant::now();
        let outcome = place_outcome(&conn, &result);
        {
            let mut rec = lock(&ctx.recorder);
            rec.record(Op::Place, done - intended, done - sent, outcome);
            if outcome.is_failure() || outcome == Outcome::Replayed {
                rec.sample_error(describe(&conn, "place", &result));
            }
        }
        let acked = match (&result, outcome) {
            (Ok(r), Outcome::Held | Outcome::Backordered | Outcome::PendingApproval) => {
                let b = conn.body(r);
                let status = json_str(b, "status").and_then(Status::parse);
                let id = json_i64(b, "id").and_then(|id| u64::try_from(id).ok());
                if let (Some(id), Some(total), Some(status)) = (id, json_i64(b, "total"), status) {
                    Acked {
                        n,
                        id,
                        status,
                        total,
                        maybe: None,
                    }
                } else {
                    let text = describe(&conn, "place (unparsed)", &result);
                    lock(&ctx.recorder).sample_error(text);
                    tally.unanswered.push(n);
                    continue;
                }
            }
            (_, Outcome::Timeouts | Outcome::Errors | Outcome::Replayed) => {
                tally.unanswered.push(n);
                continue;
            }
            _ => continue,
        };
        let mut acked = acked;
        if acked.status == Status::Held {
            follow_up(
                &ctx,
                &mut conn,
                &mut path,
                &mut acked,
                steps(plan.follow_up),
            )
            .await;
        }
        tally.orders.push(acked);
    }
    tally
}

/// Carries out an order's follow-up steps, stopping at the first that fails.
async fn follow_up(
    ctx: &RunCtx,
    conn: &mut Conn,
    path: &mut String,
    acked: &mut Acked,
    ops: &[Op],
) {
    for &op in ops {
        if Instant::now() >= ctx.end {
            return;
        }
        path.clear();
        let (prefix, action, next) = match op {
            Op::Confirm => ("/v1/orders", "confirm", Status::Confirmed),
            Op::Cancel => ("/v1/orders", "cancel", Status::Cancelled),
            Op::Ship => ("/admin/orders", "ship", Status::Shipped),
            Op::Place | Op::Receive => return,
        };
        let _ = write!(path, "{prefix}/{}/{action}", acked.id);
        let sent = Instant::now();
        let result = conn.request("POST", path, b"").await;
        let done = Instant::now();
        let outcome = match &result {
            Err(HttpError::Timeout) => Outcome::Timeouts,
            Err(_) => Outcome::Errors,
            Ok(r) => match r.status {
                200 => match json_str(conn.body(r), "status").and_then(Status::parse) {
                    Some(s) if s == next => match next {
                        Status::Confirmed => Outcome::Confirmed,
                        Status::Shipped => Outcome::Shipped,
                        _ => Outcome::Cancelled,
                    },
                    _ => Outcome::Errors,
                },
                409 if json_str(conn.body(r), "code") == Some(b"invalid_transition") => {
                    Outcome::InvalidTransition
                }
                503 => Outcome::Overloaded503,
                400..=499 => Outcome::OtherRejection,
                _ => Outcome::Errors,
            },
        };
        {
            let mut rec = lock(&ctx.recorder);
            rec.record(op, done - sent, done - sent, outcome);
            if outcome.is_failure() {
                rec.sample_error(describe(conn, op.name(), &result));
            }
        }
        match outcome {
            Outcome::Confirmed | Outcome::Shipped | Outcome::Cancelled => acked.status = next,
            Outcome::Timeouts | Outcome::Errors => {
                acked.maybe = Some(next);
                return;
            }
            _ => return,
        }
    }
}

/// promo-peak: receives stock on the promoted SKUs every `every` until the run ends,
/// filling backorders.
pub async fn restock_task(ctx: Arc<RunCtx>, every: Duration) -> Tally {
    let mut conn = Conn::new(&ctx.target);
    let mut tally = Tally::default();
    let mut path = String::new();
    let mut body = String::new();
    let mut next = ctx.start;
    for i in 0u64.. {
        next += every;
        if next >= ctx.end {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let (sku, warehouse, qty) = ctx.scenario.restock(i);
        path.clear();
        body.clear();
        let _ = write!(
            path,
            "/admin/stock/{}/{}/receive",
            crate::scenario::sku_code(sku),
            crate::scenario::warehouse_code(warehouse)
        );
        let _ = write!(body, r#"{{"qty":{qty}}}"#);
        let sent = Instant::now();
        let result = conn.request("POST", &path, body.as_bytes()).await;
        let done = Instant::now();
        let outcome = match &result {
            Ok(r) if r.status == 200 => Outcome::Received,
            Ok(r) if r.status == 503 => Outcome::Overloaded503,
            Err(HttpError::Timeout) => Outcome::Timeouts,
            Ok(_) | Err(_) => Outcome::Errors,
        };
        match outcome {
            Outcome::Received => *tally.received.entry(sku).or_default() += qty,
            Outcome::Errors | Outcome::Timeouts => {
                *tally.received_maybe.entry(sku).or_default() += qty;
            }
            _ => {}
        }
        let mut rec = lock(&ctx.recorder);
        rec.record(Op::Receive, done - sent, done - sent, outcome);
        if outcome.is_failure() {
            rec.sample_error(describe(&conn, "receive", &result));
        }
    }
    tally
}
