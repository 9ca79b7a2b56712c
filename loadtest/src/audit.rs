//! The end-of-run audit: read the server's book (stock view, dealer credit, every order
//! of this run) and compare it with what the tool's own tally of acknowledged answers
//! implies. The comparison ([`audit`]) is a pure function, so it is tested on tampered
//! tallies without a server.
//!
//! What must hold:
//! - every stock cell has `0 <= reserved <= on_hand` and `available = on_hand - reserved`;
//! - per SKU, `reserved + backordered` moved by exactly the units of this run's open
//!   orders, and `on_hand` by exactly the units received less the units shipped;
//! - per dealer, `credit_held` moved by the totals of open unconfirmed orders and
//!   `credit_used` by the totals of confirmed and shipped ones;
//! - every acknowledged order exists with its total and its last acknowledged status
//!   (or one the server may have reached alone: a hold expiring, a backorder filled);
//! - the server has no order of this run that the tool was never told about.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::client::{Status, Tally};
use crate::http::{get_json, Conn, Target};
use crate::scenario::{dealer_code, dealer_index, sku_index, Scenario};

/// Units as a signed number, to compare differences; the tool's quantities are small.
fn signed(units: u64) -> i64 {
    i64::try_from(units).expect("unit counts of a load test fit in i64")
}

/// One check's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, problems: &[String], summary: String) -> Self {
        let ok = problems.is_empty();
        let detail = if ok {
            summary
        } else {
            let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
            format!("{} problem(s): {}", problems.len(), shown.join("; "))
        };
        Check {
            name: name.to_owned(),
            ok,
            detail,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CellRow {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SkuRow {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    #[serde(default)]
    pub backordered: i64,
    #[serde(default)]
    pub warehouses: Vec<CellRow>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DealerRow {
    pub credit_held: i64,
    pub credit_used: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerOrder {
    pub id: u64,
    pub client_order_id: String,
    pub dealer: String,
    pub status: String,
    pub total: i64,
}

/// The server's book as read at one quiet moment.
#[derive(Debug, Clone, Default)]
pub struct Book {
    pub as_of_seq: u64,
    pub skus: BTreeMap<String, SkuRow>,
    pub dealers: BTreeMap<String, DealerRow>,
    /// This run's orders (by client_order_id prefix), by id.
    pub orders: BTreeMap<u64, ServerOrder>,
}

#[derive(Deserialize)]
struct StockPage {
    as_of_seq: u64,
    skus: Vec<SkuRow>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct OrderPage {
    orders: Vec<ServerOrder>,
    next_cursor: Option<u64>,
}

/// Reads the whole stock view, page by page; the `as_of_seq` of the last page.
pub async fn read_stock(conn: &mut Conn) -> anyhow::Result<(u64, BTreeMap<String, SkuRow>)> {
    let mut skus = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/stock?limit=1000&cursor={c}"),
            None => "/admin/stock?limit=1000".to_owned(),
        };
        let (status, value) = get_json(conn, &path).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {value}");
        let page: StockPage = serde_json::from_value(value)?;
        let seq = page.as_of_seq;
        for row in page.skus {
            skus.insert(row.sku.clone(), row);
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((seq, skus)),
        }
    }
}

/// Reads every dealer's credit and (with `run_tag`) this run's orders, over `parallel`
/// connections.
pub async fn read_dealers(
    target: &Target,
    dealers: usize,
    run_tag: Option<&str>,
    parallel: usize,
) -> anyhow::Result<(BTreeMap<String, DealerRow>, BTreeMap<u64, ServerOrder>)> {
    let mut tasks = Vec::new();
    for k in 0..parallel.max(1) {
        let target = target.clone();
        let tag = run_tag.map(|t| format!("{t}-"));
        let step = parallel.max(1);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(&target);
            let mut dealers_out = Vec::new();
            let mut orders_out = Vec::new();
            for d in (k..dealers).step_by(step) {
                let code = dealer_code(d as u32);
                let (status, value) = get_json(&mut conn, &format!("/v1/dealers/{code}")).await?;
                anyhow::ensure!(status == 200, "GET /v1/dealers/{code}: {status} {value}");
                dealers_out.push((code.clone(), serde_json::from_value::<DealerRow>(value)?));
                if let Some(tag) = &tag {
                    read_orders(&mut conn, &code, tag, &mut orders_out).await?;
                }
            }
            Ok::<_, anyhow::Error>((dealers_out, orders_out))
        }));
    }
    let mut dealers_map = BTreeMap::new();
    let mut orders = BTreeMap::new();
    for task in tasks {
        let (d, o) = task.await??;
        dealers_map.extend(d);
        orders.extend(o.into_iter().map(|o| (o.id, o)));
    }
    Ok((dealers_map, orders))
}

async fn read_orders(
    conn: &mut Conn,
    dealer: &str,
    tag: &str,
    out: &mut Vec<ServerOrder>,
) -> anyhow::Result<()> {
    let mut cursor = None;
    loop {
        let path = match cursor {
            Some(c) => format!("/v1/orders?dealer={dealer}&limit=1000&cursor={c}"),
            None => format!("/v1/orders?dealer={dealer}&limit=1000"),
        };
        let (status, value) = get_json(conn, &path).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {value}");
        let page: OrderPage = serde_json::from_value(value)?;
        out.extend(
            page.orders
                .into_iter()
                .filter(|o| o.client_order_id.starts_with(tag)),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(()),
        }
    }
}

/// Whether the server may show `server` for an order the tool last saw as `tally`
/// (with `maybe` an action whose answer was lost).
fn compatible(tally: Status, maybe: Option<Status>, server: Status, expiry_possible: bool) -> bool {
    if server == tally || Some(server) == maybe {
        return true;
    }
    let expired = expiry_possible && server == Status::Expired;
    match tally {
        Status::Held => expired,
        // A restock or a release filled it; then its hold may have expired.
        Status::Backordered => matches!(server, Status::Held | Status::PendingApproval) || expired,
        _ => false,
    }
}

/// What the tally implies, per SKU index and per dealer index.
#[derive(Debug, Default)]
struct Implied {
    /// reserved + backordered units of open orders.
    open_units: BTreeMap<u32, i64>,
    shipped_units: BTreeMap<u32, i64>,
    credit_held: BTreeMap<u32, i64>,
    credit_used: BTreeMap<u32, i64>,
}

impl Implied {
    fn add(&mut self, scenario: &Scenario, n: u64, status: Status, total: i64) {
        let plan = scenario.plan(n);
        for line in &plan.lines {
            let qty = signed(line.qty);
            if status.is_open() {
                *self.open_units.entry(line.sku).or_default() += qty;
            } else if status == Status::Shipped {
                *self.shipped_units.entry(line.sku).or_default() += qty;
            }
        }
        match status {
            Status::Held | Status::Backordered | Status::PendingApproval => {
                *self.credit_held.entry(plan.dealer).or_default() += total;
            }
            Status::Confirmed | Status::Shipped => {
                *self.credit_used.entry(plan.dealer).or_default() += total;
            }
            _ => {}
        }
    }
}

/// Compares the book after the run with the book before it and the tally.
pub fn audit(
    scenario: &Scenario,
    before: &Book,
    after: &Book,
    tally: &Tally,
    expiry_possible: bool,
) -> Vec<Check> {
    let mut checks = vec![cells_check(after)];
    let mut implied = Implied::default();
    checks.extend(orders_checks(
        scenario,
        after,
        tally,
        expiry_possible,
        &mut implied,
    ));
    checks.push(stock_check(before, after, tally, &implied));
    checks.push(credit_check(before, after, &implied));
    checks
}

fn cells_check(after: &Book) -> Check {
    let mut problems = Vec::new();
    let mut cells = 0;
    for sku in after.skus.values() {
        let (mut on_hand, mut reserved) = (0, 0);
        for c in &sku.warehouses {
            cells += 1;
            on_hand += c.on_hand;
            reserved += c.reserved;
            if c.reserved < 0 || c.reserved > c.on_hand || c.available < 0 {
                problems.push(format!(
                    "{}@{}: on_hand {} reserved {} available {}",
                    c.sku, c.warehouse, c.on_hand, c.reserved, c.available
                ));
            } else if c.available != c.on_hand - c.reserved {
                problems.push(format!(
                    "{}@{}: available != on_hand - reserved",
                    c.sku, c.warehouse
                ));
            }
        }
        if on_hand != sku.on_hand || reserved != sku.reserved {
            problems.push(format!(
                "{}: totals differ from the sum of its cells",
                sku.sku
            ));
        }
    }
    Check::new(
        "stock_cells_within_bounds",
        &problems,
        format!("{cells} cells: 0 <= reserved <= on_hand, available = on_hand - reserved"),
    )
}

fn orders_checks(
    scenario: &Scenario,
    after: &Book,
    tally: &Tally,
    expiry_possible: bool,
    implied: &mut Implied,
) -> Vec<Check> {
    let mut problems = Vec::new();
    let mut drifted = 0u64;
    let mut known = std::collections::BTreeSet::new();
    for acked in &tally.orders {
        known.insert(acked.id);
        let Some(order) = after.orders.get(&acked.id) else {
            problems.push(format!("order {} (#{}) is missing", acked.id, acked.n));
            implied.add(scenario, acked.n, acked.status, acked.total);
            continue;
        };
        let server = Status::parse(order.status.as_bytes());
        let mut effective = acked.status;
        if scenario.order_index(&order.client_order_id) != Some(acked.n) {
            problems.push(format!(
                "order {} is `{}`, acknowledged as #{}",
                acked.id, order.client_order_id, acked.n
            ));
        } else if order.total != acked.total {
            problems.push(format!(
                "order {}: total {} != acknowledged {}",
                acked.id, order.total, acked.total
            ));
        }
        match server {
            Some(s) if compatible(acked.status, acked.maybe, s, expiry_possible) => {
                drifted += u64::from(s != acked.status);
                effective = s;
            }
            _ => problems.push(format!(
                "order {}: status `{}`, last acknowledged `{}`",
                acked.id,
                order.status,
                acked.status.name()
            )),
        }
        implied.add(scenario, acked.n, effective, acked.total);
    }
    let exist = Check::new(
        "acknowledged_orders_exist_with_status",
        &problems,
        format!(
            "{} acknowledged orders found with their totals and statuses ({drifted} moved on \
             by expiry or backorder fill)",
            tally.orders.len()
        ),
    );
    let unanswered: std::collections::BTreeSet<u64> = tally.unanswered.iter().copied().collect();
    let mut strangers = Vec::new();
    let mut adopted = 0;
    for order in after.orders.values().filter(|o| !known.contains(&o.id)) {
        match scenario.order_index(&order.client_order_id) {
            Some(n) if unanswered.contains(&n) => {
                adopted += 1;
                if let Some(s) = Status::parse(order.status.as_bytes()) {
                    implied.add(scenario, n, s, order.total);
                }
            }
            _ => strangers.push(format!(
                "order {} `{}` ({}) was never acknowledged",
                order.id, order.client_order_id, order.dealer
            )),
        }
    }
    let none_unknown = Check::new(
        "no_unacknowledged_orders",
        &strangers,
        format!(
            "{} orders of this run on the server, {adopted} of them from the {} placements \
             that got no answer",
            after.orders.len(),
            tally.unanswered.len()
        ),
    );
    vec![exist, none_unknown]
}

fn stock_check(before: &Book, after: &Book, tally: &Tally, implied: &Implied) -> Check {
    let mut problems = Vec::new();
    for (code, row) in &after.skus {
        let base = before.skus.get(code).cloned().unwrap_or_default();
        let Some(i) = sku_index(code) else { continue };
        let open = implied.open_units.get(&i).copied().unwrap_or(0);
        let moved = (row.reserved + row.backordered) - (base.reserved + base.backordered);
        if moved != open {
            problems.push(format!(
                "{code}: reserved+backordered moved by {moved}, the tally's open orders hold {open}"
            ));
        }
        let received = signed(tally.received.get(&i).copied().unwrap_or(0));
        let maybe = signed(tally.received_maybe.get(&i).copied().unwrap_or(0));
        let shipped = implied.shipped_units.get(&i).copied().unwrap_or(0);
        let expected = base.on_hand + received - shipped;
        if row.on_hand < expected || row.on_hand > expected + maybe {
            problems.push(format!(
                "{code}: on_hand {} != {} + received {received} - shipped {shipped}",
                row.on_hand, base.on_hand
            ));
        }
    }
    for (i, units) in &implied.open_units {
        if *units != 0 && !after.skus.contains_key(&crate::scenario::sku_code(*i)) {
            problems.push(format!("SKU #{i} holds {units} units but has no stock row"));
        }
    }
    Check::new(
        "stock_matches_tally",
        &problems,
        format!(
            "{} SKUs: reserved+backordered and on_hand moved exactly as acknowledged",
            after.skus.len()
        ),
    )
}

fn credit_check(before: &Book, after: &Book, implied: &Implied) -> Check {
    let mut problems = Vec::new();
    for (code, row) in &after.dealers {
        let base = before.dealers.get(code).cloned().unwrap_or_default();
        let Some(i) = dealer_index(code) else {
            continue;
        };
        let held = implied.credit_held.get(&i).copied().unwrap_or(0);
        let used = implied.credit_used.get(&i).copied().unwrap_or(0);
        if row.credit_held - base.credit_held != held {
            problems.push(format!(
                "{code}: credit_held moved by {}, the tally says {held}",
                row.credit_held - base.credit_held
            ));
        }
        if row.credit_used - base.credit_used != used {
            problems.push(format!(
                "{code}: credit_used moved by {}, the tally says {used}",
                row.credit_used - base.credit_used
            ));
        }
    }
    Check::new(
        "credit_matches_tally",
        &problems,
        format!(
            "{} dealers: credit_held and credit_used moved exactly as acknowledged",
            after.dealers.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Acked;
    use crate::scenario::{Params, ScenarioKind};

    fn scenario() -> Scenario {
        Scenario::new(Params {
            kind: ScenarioKind::Lifecycle,
            seed: 5,
            skus: 20,
            warehouses: 1,
            dealers: 3,
            lines_per_order: 2,
            backorder_share: 0.0,
            cancel_share: 0.0,
            confirm_share: 0.0,
            ship_share: 0.0,
            hot_skus: 0,
            hot_share: 0.0,
            expected_orders: 10,
            run_tag: "t".into(),
        })
    }

    /// A book with 100 units of every SKU, and the book after orders 0..4 were placed
    /// and held, order 1 then confirmed.
    fn books(s: &Scenario) -> (Book, Book, Tally) {
        let mut before = Book::default();
        for i in 0..20 {
            let code = crate::scenario::sku_code(i);
            let cell = CellRow {
                sku: code.clone(),
                warehouse: "W000".into(),
                on_hand: 100,
                reserved: 0,
                available: 100,
            };
            before.skus.insert(
                code.clone(),
                SkuRow {
                    sku: code,
                    on_hand: 100,
                    reserved: 0,
                    backordered: 0,
                    warehouses: vec![cell],
                },
            );
        }
        for d in 0..3 {
            before.dealers.insert(dealer_code(d), DealerRow::default());
        }
        let mut after = before.clone();
        let mut tally = Tally::default();
        for n in 0..4u64 {
            let plan = s.plan(n);
            let total = 10 * (signed(n) + 1);
            let status = if n == 1 {
                Status::Confirmed
            } else {
                Status::Held
            };
            for line in &plan.lines {
                let row = after
                    .skus
                    .get_mut(&crate::scenario::sku_code(line.sku))
                    .expect("sku");
                row.reserved += signed(line.qty);
                row.warehouses[0].reserved += signed(line.qty);
                row.warehouses[0].available -= signed(line.qty);
            }
            let dealer = after
                .dealers
                .get_mut(&dealer_code(plan.dealer))
                .expect("dealer");
            if status == Status::Held {
                dealer.credit_held += total;
            } else {
                dealer.credit_used += total;
            }
            after.orders.insert(
                n + 1,
                ServerOrder {
                    id: n + 1,
                    client_order_id: s.client_order_id(n),
                    dealer: dealer_code(plan.dealer),
                    status: status.name().into(),
                    total,
                },
            );
            tally.orders.push(Acked {
                n,
                id: n + 1,
                status,
                total,
                maybe: None,
            });
        }
        (before, after, tally)
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_faithful_tally_passes() {
        let s = scenario();
        let (before, after, tally) = books(&s);
        let checks = audit(&s, &before, &after, &tally, false);
        assert!(failed(&checks).is_empty(), "{checks:?}");
    }

    #[test]
    fn a_tampered_tally_fails() {
        let s = scenario();
        let (before, after, mut tally) = books(&s);
        tally.tamper();
        let checks = audit(&s, &before, &after, &tally, false);
        let failed = failed(&checks);
        assert!(
            failed.contains(&"acknowledged_orders_exist_with_status"),
            "{failed:?}"
        );
        assert!(failed.contains(&"stock_matches_tally"), "{failed:?}");
        assert!(failed.contains(&"credit_matches_tally"), "{failed:?}");
    }

    #[test]
    fn oversold_cells_and_lost_orders_fail() {
        let s = scenario();
        let (before, mut after, tally) = books(&s);
        let row = after.skus.get_mut("S000000").expect("sku");
        row.warehouses[0].reserved = 101;
        row.warehouses[0].available = -1;
        after.orders.remove(&1);
        let failed_names = failed(&audit(&s, &before, &after, &tally, false))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        assert!(failed_names.contains(&"stock_cells_within_bounds".to_owned()));
        assert!(failed_names.contains(&"acknowledged_orders_exist_with_status".to_owned()));
    }

    #[test]
    fn expiry_is_accepted_only_when_possible() {
        assert!(compatible(Status::Held, None, Status::Expired, true));
        assert!(!compatible(Status::Held, None, Status::Expired, false));
        assert!(compatible(Status::Backordered, None, Status::Held, false));
        assert!(!compatible(Status::Confirmed, None, Status::Held, true));
        assert!(compatible(
            Status::Held,
            Some(Status::Confirmed),
            Status::Confirmed,
            false
        ));
    }
}
