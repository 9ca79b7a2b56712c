//! Seeded request streams: the synthetic catalog (`/admin/import` NDJSON) and, for each
//! order index `n`, the order it places and what happens to it next.
//!
//! Every decision about order `n` comes from a generator seeded with `(seed, n)` alone,
//! so the same seed gives the same request stream however the orders are spread over
//! connections, and the audit can regenerate an order's lines from its index instead of
//! keeping them.

use std::fmt::Write as _;
use std::io::Write as _;

/// Tiers and regions of the synthetic book.
pub const TIERS: [&str; 3] = ["gold", "silver", "bronze"];
pub const REGIONS: [&str; 4] = ["north", "south", "east", "west"];
/// Units per order line are drawn uniformly from 1..=LINE_QTY_MAX.
pub const LINE_QTY_MAX: u64 = 4;
/// Dealers with a tight credit limit in `promo-peak` (one in this many).
const TIGHT_CREDIT_EVERY: usize = 50;
const CREDIT_LIMIT_AMPLE: i64 = 1_000_000_000_000;
const CREDIT_LIMIT_TIGHT: i64 = 20_000;

/// SplitMix64: tiny, fast and good enough to draw a load test's choices.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for load generation, and branch free.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    #[allow(clippy::cast_precision_loss)]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential variate with the given mean: Poisson inter-arrival times.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Uniform SKUs, orders placed only.
    Steady,
    /// A hot set takes a share of all lines; its stock runs out mid-run.
    FlashSale,
    /// Promotions with quota and per-dealer limits, abandoned holds, restocks.
    PromoPeak,
    /// Place, then confirm and ship or cancel.
    Lifecycle,
}

impl ScenarioKind {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Steady => "steady",
            ScenarioKind::FlashSale => "flash-sale",
            ScenarioKind::PromoPeak => "promo-peak",
            ScenarioKind::Lifecycle => "lifecycle",
        }
    }
}

/// What the tool does with an order after placing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Leave it as placed (held orders then expire once their TTL passes).
    None,
    Cancel,
    Confirm,
    ConfirmShip,
    ConfirmCancel,
}

/// The knobs of a scenario, from the command line.
#[derive(Debug, Clone)]
pub struct Params {
    pub kind: ScenarioKind,
    pub seed: u64,
    pub skus: usize,
    pub warehouses: usize,
    pub dealers: usize,
    pub lines_per_order: usize,
    pub backorder_share: f64,
    pub cancel_share: f64,
    pub confirm_share: f64,
    pub ship_share: f64,
    pub hot_skus: usize,
    pub hot_share: f64,
    /// Orders the run is expected to place: sizes stock so most orders succeed (and so
    /// that the hot or promoted SKUs run out about halfway).
    pub expected_orders: u64,
    /// Prefix of every client_order_id, so that runs against one book never collide.
    pub run_tag: String,
}

/// One line of a planned order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub sku: u32,
    pub qty: u64,
}

/// Order `n` of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub dealer: u32,
    pub lines: Vec<Line>,
    pub backorder: bool,
    pub follow_up: FollowUp,
}

/// The scenario: codes, sizes and the deterministic stream of plans.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub params: Params,
}

pub fn sku_code(i: u32) -> String {
    format!("S{i:06}")
}
pub fn warehouse_code(i: u32) -> String {
    format!("W{i:03}")
}
pub fn dealer_code(i: u32) -> String {
    format!("D{i:05}")
}
/// Parses a synthetic SKU code back into its index.
pub fn sku_index(code: &str) -> Option<u32> {
    code.strip_prefix('S')?.parse().ok()
}
pub fn dealer_index(code: &str) -> Option<u32> {
    code.strip_prefix('D')?.parse().ok()
}

impl Scenario {
    pub fn new(params: Params) -> Self {
        assert!(
            params.skus > params.lines_per_order,
            "need more SKUs than lines"
        );
        assert!(params.warehouses > 0 && params.dealers > 0);
        Scenario { params }
    }

    /// The hot set (flash-sale) or promoted SKUs (promo-peak): the first `hot_skus`.
    pub fn hot_count(&self) -> usize {
        match self.params.kind {
            ScenarioKind::FlashSale | ScenarioKind::PromoPeak => {
                self.params.hot_skus.min(self.params.skus / 2).max(1)
            }
            _ => 0,
        }
    }

    pub fn is_hot(&self, sku: u32) -> bool {
        (sku as usize) < self.hot_count()
    }

    /// The order with index `n`: a function of `(seed, n)` only.
    pub fn plan(&self, n: u64) -> Plan {
        let p = &self.params;
        let mut rng = Rng::new(p.seed, n);
        let dealer = rng.below(p.dealers as u64) as u32;
        let hot = self.hot_count() as u64;
        let mut lines: Vec<Line> = Vec::with_capacity(p.lines_per_order);
        while lines.len() < p.lines_per_order {
            let sku = if hot > 0 && rng.unit() < p.hot_share {
                rng.below(hot) as u32
            } else {
                (hot + rng.below(p.skus as u64 - hot)) as u32
            };
            if lines.iter().any(|l| l.sku == sku) {
                continue;
            }
            let qty = 1 + rng.below(LINE_QTY_MAX);
            lines.push(Line { sku, qty });
        }
        let backorder = p.backorder_share > 0.0 && rng.unit() < p.backorder_share;
        let follow_up = self.follow_up(&mut rng, backorder);
        Plan {
            dealer,
            lines,
            backorder,
            follow_up,
        }
    }

    fn follow_up(&self, rng: &mut Rng, backorder: bool) -> FollowUp {
        let p = &self.params;
        let u = rng.unit();
        let v = rng.unit();
        match p.kind {
            ScenarioKind::Steady | ScenarioKind::FlashSale => {
                if u < p.cancel_share {
                    FollowUp::Cancel
                } else {
                    FollowUp::None
                }
            }
            // Backordered orders wait for restocks; of the rest, `confirm_share` are
            // confirmed and the others abandoned (their holds expire), a few cancelled.
            ScenarioKind::PromoPeak => {
                if backorder {
                    FollowUp::None
                } else if u < p.cancel_share {
                    FollowUp::Cancel
                } else if u < p.cancel_share + p.confirm_share {
                    FollowUp::Confirm
                } else {
                    FollowUp::None
                }
            }
            ScenarioKind::Lifecycle => {
                if u < p.cancel_share {
                    FollowUp::Cancel
                } else if u < p.cancel_share + p.confirm_share {
                    if v < p.ship_share {
                        FollowUp::ConfirmShip
                    } else if v < p.ship_share + p.cancel_share {
                        FollowUp::ConfirmCancel
                    } else {
                        FollowUp::Confirm
                    }
                } else {
                    FollowUp::None
                }
            }
        }
    }

    /// Renders order `n`'s body into `out` (cleared first): no allocation once `out`
    /// has grown to size.
    pub fn render_order(&self, n: u64, plan: &Plan, out: &mut Vec<u8>) {
        out.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"client_order_id":"{}-{n}","dealer":"D{:05}","lines":["#,
            self.params.run_tag, plan.dealer
        );
        for (i, line) in plan.lines.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, r#"{{"sku":"S{:06}","qty":{}}}"#, line.sku, line.qty);
        }
        out.extend_from_slice(b"]");
        if plan.backorder {
            out.extend_from_slice(br#","backorder":true"#);
        }
        out.push(b'}');
    }

    /// The client_order_id of order `n`.
    pub fn client_order_id(&self, n: u64) -> String {
        format!("{}-{n}", self.params.run_tag)
    }

    /// Order index from one of this run's client_order_ids.
    pub fn order_index(&self, client_order_id: &str) -> Option<u64> {
        client_order_id
            .strip_prefix(self.params.run_tag.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// Units per stock cell for a SKU: ample for ordinary SKUs; for the hot or promoted
    /// ones about half of the expected demand, so they run out mid-run.
    pub fn cell_stock(&self, sku: u32) -> u64 {
        let p = &self.params;
        #[allow(clippy::cast_precision_loss)]
        let mean_qty = (LINE_QTY_MAX + 1) as f64 / 2.0;
        #[allow(clippy::cast_precision_loss)]
        let line_units = p.expected_orders as f64 * p.lines_per_order as f64 * mean_qty;
        let hot = self.hot_count();
        #[allow(clippy::cast_precision_loss)]
        let per_cell = if self.is_hot(sku) {
            line_units * p.hot_share / hot as f64 / p.warehouses as f64 / 2.0
        } else {
            let cold = (p.skus - hot) as f64;
            let cold_share = if hot > 0 { 1.0 - p.hot_share } else { 1.0 };
            line_units * cold_share / cold / p.warehouses as f64 * 10.0 + 1000.0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let units = per_cell.ceil() as u64;
        units.max(1)
    }

    pub fn base_price(sku: u32) -> i64 {
        100 + i64::from(sku % 97) * 25
    }

    pub fn credit_limit(&self, dealer: u32) -> i64 {
        if self.params.kind == ScenarioKind::PromoPeak
            && dealer as usize % TIGHT_CREDIT_EVERY == TIGHT_CREDIT_EVERY - 1
        {
            CREDIT_LIMIT_TIGHT
        } else {
            CREDIT_LIMIT_AMPLE
        }
    }

    /// Per-dealer limit of each promotion (units).
    pub fn promo_per_dealer_limit(&self) -> u64 {
        20
    }

    /// The synthetic book as `/admin/import` NDJSON: warehouses, SKUs, dealers, stock
    /// and (promo-peak) promotions.
    pub fn catalog_ndjson(&self, now_unix_s: u64) -> String {
        let p = &self.params;
        let mut out = String::with_capacity(p.skus * p.warehouses * 64 + p.dealers * 128);
        for w in 0..p.warehouses as u32 {
            let region = REGIONS[w as usize % REGIONS.len()];
            let _ = writeln!(
                out,
                r#"{{"type":"warehouse","code":"{}","region":"{region}"}}"#,
                warehouse_code(w)
            );
        }
        for s in 0..p.skus as u32 {
            let price = Self::base_price(s);
            let _ = writeln!(
                out,
                r#"{{"type":"sku","code":"{}","base_price":{price},"tier_prices":{{"gold":{}}},"low_stock_threshold":{}}}"#,
                sku_code(s),
                price * 9 / 10,
                if self.is_hot(s) { 10 } else { 0 }
            );
        }
        for d in 0..p.dealers as u32 {
            let _ = writeln!(
                out,
                r#"{{"type":"dealer","code":"{}","tier":"{}","region":"{}","credit_limit":{}}}"#,
                dealer_code(d),
                TIERS[d as usize % TIERS.len()],
                REGIONS[(d as usize / TIERS.len()) % REGIONS.len()],
                self.credit_limit(d)
            );
        }
        for s in 0..p.skus as u32 {
            let units = self.cell_stock(s);
            for w in 0..p.warehouses as u32 {
                let _ = writeln!(
                    out,
                    r#"{{"type":"stock","sku":"{}","warehouse":"{}","on_hand":{units}}}"#,
                    sku_code(s),
                    warehouse_code(w)
                );
            }
        }
        if p.kind == ScenarioKind::PromoPeak {
            let starts = crate::report::rfc3339(now_unix_s.saturating_sub(3600));
            let ends = crate::report::rfc3339(now_unix_s + 86_400);
            for s in 0..self.hot_count() as u32 {
                let quota = self.cell_stock(s) * p.warehouses as u64 / 2;
                let _ = writeln!(
                    out,
                    r#"{{"type":"promotion","code":"PROMO{s}","sku":"{}","price":{},"starts_at":"{starts}","ends_at":"{ends}","quota":{},"per_dealer_limit":{}}}"#,
                    sku_code(s),
                    Self::base_price(s) / 2,
                    quota.max(1),
                    self.promo_per_dealer_limit()
                );
            }
        }
        out
    }

    /// Restock `i` of promo-peak: (sku, warehouse, qty), seeded like the orders.
    pub fn restock(&self, i: u64) -> (u32, u32, u64) {
        let mut rng = Rng::new(self.params.seed ^ 0x005E_ED0F_5EED, i);
        let sku = rng.below(self.hot_count().max(1) as u64) as u32;
        let warehouse = rng.below(self.params.warehouses as u64) as u32;
        let qty = 10 + rng.below(40);
        (sku, warehouse, qty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kind: ScenarioKind, seed: u64) -> Params {
        Params {
            kind,
            seed,
            skus: 100,
            warehouses: 4,
            dealers: 20,
            lines_per_order: 3,
            backorder_share: 0.2,
            cancel_share: 0.1,
            confirm_share: 0.6,
            ship_share: 0.7,
            hot_skus: 10,
            hot_share: 0.5,
            expected_orders: 10_000,
            run_tag: "t".into(),
        }
    }

    #[test]
    fn same_seed_gives_the_same_request_stream() {
        let first = Scenario::new(params(ScenarioKind::Lifecycle, 7));
        let again = Scenario::new(params(ScenarioKind::Lifecycle, 7));
        let other = Scenario::new(params(ScenarioKind::Lifecycle, 8));
        let (mut body1, mut body2, mut body3) = (Vec::new(), Vec::new(), Vec::new());
        let mut differs = false;
        for n in 0..500 {
            first.render_order(n, &first.plan(n), &mut body1);
            again.render_order(n, &again.plan(n), &mut body2);
            other.render_order(n, &other.plan(n), &mut body3);
            assert_eq!(body1, body2);
            assert_eq!(first.plan(n), again.plan(n));
            differs |= body1 != body3;
        }
        assert!(differs, "another seed gives another stream");
    }

    #[test]
    fn rendered_orders_are_valid_json_without_repeated_skus() {
        let s = Scenario::new(params(ScenarioKind::PromoPeak, 1));
        let mut body = Vec::new();
        for n in 0..200 {
            let plan = s.plan(n);
            s.render_order(n, &plan, &mut body);
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["lines"].as_array().map(Vec::len), Some(3));
            assert_eq!(
                s.order_index(v["client_order_id"].as_str().expect("id")),
                Some(n)
            );
            let mut skus: Vec<u32> = plan.lines.iter().map(|l| l.sku).collect();
            skus.sort_unstable();
            skus.dedup();
            assert_eq!(skus.len(), 3);
        }
    }

    #[test]
    fn the_hot_set_takes_its_share_of_lines() {
        let s = Scenario::new(params(ScenarioKind::FlashSale, 3));
        let (mut hot, mut all) = (0u32, 0u32);
        for n in 0..2000 {
            for l in s.plan(n).lines {
                all += 1;
                hot += u32::from(s.is_hot(l.sku));
            }
        }
        let share = f64::from(hot) / f64::from(all);
        assert!((0.4..0.6).contains(&share), "hot share {share}");
    }

    #[test]
    fn catalog_lines_are_json() {
        let s = Scenario::new(params(ScenarioKind::PromoPeak, 1));
        let text = s.catalog_ndjson(1_700_000_000);
        for line in text.lines() {
            let _: serde_json::Value = serde_json::from_str(line).expect("json line");
        }
        assert!(text.contains(r#""type":"promotion""#));
    }
}
