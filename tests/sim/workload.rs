//! The workload: a catalog set-up, then a long random stream of every command, all
//! drawn from one seed. It peeks at the auditor's model (the acknowledged state) to
//! pick plausible ids and amounts, and mixes in commands that must be refused
//! (unknown codes, bad quantities, overpayments, invalid transitions, conflicting
//! retries).

use std::collections::BTreeMap;

use allot_engine::{
    Command, DealerSpec, LineRequest, OrderAction, OrderId, OrderStatus, PlaceOrder, PromotionSpec,
    SettingsPatch, SkuSpec, Unit, WarehouseSpec,
};

use crate::model::Model;
use crate::rng::Rng;

const REGIONS: [&str; 3] = ["north", "south", "east"];
const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

pub struct Workload {
    rng: Rng,
    next_client_id: u64,
    next_promotion: u64,
    /// Placement requests sent so far, for retries.
    placed: Vec<PlaceOrder>,
}

impl Workload {
    pub fn new(rng: Rng) -> Self {
        Self {
            rng,
            next_client_id: 0,
            next_promotion: 0,
            placed: Vec::new(),
        }
    }

    /// The catalog, dealers, promotions, settings and opening stock.
    pub fn setup(&mut self, now_ms: u64) -> Vec<Command> {
        let r = &mut self.rng;
        let mut out = Vec::new();
        let warehouses = r.range(2, 4);
        for w in 1..=warehouses {
            out.push(Command::PutWarehouse(WarehouseSpec {
                code: format!("W{w}"),
                region: (*r.pick(&REGIONS)).to_owned(),
            }));
        }
        let skus = r.range(3, 10);
        for s in 1..=skus {
            out.push(Command::PutSku(Self::sku_spec(r, &format!("S{s:02}"))));
        }
        for d in 1..=r.range(3, 7) {
            out.push(Command::PutDealer(Self::dealer_spec(r, &format!("D{d}"))));
        }
        out.push(Command::PutSettings(SettingsPatch {
            hold_ttl_s: Some(*r.pick(&[30, 120, 600])),
            max_lines: None,
            backorder_priority: r
                .chance(1, 2)
                .then(|| vec!["gold".to_owned(), "silver".to_owned()]),
            // Sometimes closed orders leave the book a few (simulated) seconds after
            // they close, so pruning meets crashes, snapshots and replays too.
            order_retention_s: r.chance(1, 3).then(|| *r.pick(&[5, 60, 600])),
        }));
        for s in 1..=skus {
            for w in 1..=warehouses {
                if r.chance(2, 3) {
                    out.push(Command::Receive {
                        sku: format!("S{s:02}"),
                        warehouse: format!("W{w}"),
                        qty: r.range(1, 60),
                    });
                }
            }
        }
        for _ in 0..self.rng.below(4) {
            let skus: Vec<String> = (1..=skus).map(|s| format!("S{s:02}")).collect();
            out.push(self.promotion(&skus, now_ms));
        }
        out
    }

    fn sku_spec(r: &mut Rng, code: &str) -> SkuSpec {
        let mut spec = SkuSpec::new(code, r.range(100, 5_000) as i64);
        spec.case_size = *r.pick(&[1, 1, 1, 6, 12]);
        spec.split_case = spec.case_size == 1 || r.chance(2, 3);
        spec.min_qty = if r.chance(1, 4) {
            u64::from(spec.case_size)
        } else {
            1
        };
        if r.chance(1, 3) {
            spec.tier_prices
                .insert("gold".into(), spec.base_price * 80 / 100);
        }
        if r.chance(1, 5) {
            spec.region_prices
                .insert((*r.pick(&REGIONS)).into(), spec.base_price * 90 / 100);
        }
        spec.low_stock_threshold = if r.chance(1, 2) { r.range(5, 30) } else { 0 };
        if r.chance(1, 4) {
            spec.attributes.insert("color".into(), "red".into());
        }
        spec
    }

    fn dealer_spec(r: &mut Rng, code: &str) -> DealerSpec {
        let mut spec = DealerSpec::new(
            code,
            *r.pick(&TIERS),
            *r.pick(&REGIONS),
            *r.pick(&[5_000, 50_000, 500_000, 10_000_000]),
        );
        if r.chance(1, 3) {
            spec.approval_threshold = Some(r.range(20_000, 200_000) as i64);
        }
        if r.chance(1, 2) {
            spec.rebate_rate_bp = r.range(100, 500) as u32;
        }
        spec
    }

    fn promotion(&mut self, skus: &[String], now_ms: u64) -> Command {
        self.next_promotion += 1;
        let r = &mut self.rng;
        Command::PutPromotion(PromotionSpec {
            code: format!("P{}", self.next_promotion),
            sku: r.pick(skus).clone(),
            price: r.range(50, 2_000) as i64,
            starts_at_ms: now_ms.saturating_sub(r.below(60_000)),
            ends_at_ms: now_ms + r.range(1, 1_800_000),
            tiers: if r.chance(1, 3) {
                vec!["gold".into()]
            } else {
                Vec::new()
            },
            quota: r.chance(2, 3).then(|| r.range(5, 60)),
            per_dealer_limit: r.chance(1, 2).then(|| r.range(3, 20)),
        })
    }

    /// The next command and how far the clock moves before it.
    pub fn next(&mut self, model: &Model, now_ms: u64) -> (u64, Command) {
        let mut advance = if self.rng.chance(1, 3) {
            0
        } else {
            self.rng.below(3_000)
        };
        let command = match self.rng.below(100) {
            0..=34 => self.place(model),
            35..=39 => self.retry(),
            40..=61 => self.act(model),
            62..=71 => self.receive(model),
            72..=75 => self.adjust(model),
            76..=80 => self.payment(model),
            81..=86 => {
                // A time jump: long enough to expire some holds.
                let (ttl_s, _, _) = model.settings();
                advance = self.rng.range(ttl_s * 300, ttl_s * 2_000);
                Command::Tick
            }
            87..=89 => Command::Tick,
            90..=92 => self.update_dealer(model),
            93..=95 => self.update_sku(model),
            96..=97 => self.promotion(&model.sku_codes(), now_ms),
            _ => self.settings(),
        };
        (advance, command)
    }

    /// A SKU code with a hot-SKU skew: half the draws go to the first two.
    fn hot_sku(&mut self, skus: &[String]) -> String {
        if self.rng.chance(1, 2) {
            skus[self.rng.below(skus.len().min(2) as u64) as usize].clone()
        } else {
            self.rng.pick(skus).clone()
        }
    }

    fn place(&mut self, model: &Model) -> Command {
        let skus = model.sku_codes();
        let dealers = model.dealer_codes();
        let r = &mut self.rng;
        let dealer = if r.chance(1, 100) {
            "D-unknown".to_owned()
        } else {
            r.pick(&dealers).clone()
        };
        let lines_n = r.range(1, 4) as usize;
        let mut lines: Vec<LineRequest> = Vec::new();
        for _ in 0..lines_n {
            let sku = self.hot_sku(&skus);
            let r = &mut self.rng;
            if lines.iter().any(|l| l.sku == sku) && !r.chance(1, 20) {
                continue;
            }
            let spec = model.sku_spec(&sku).expect("known sku");
            let (qty, unit) = if r.chance(1, 5) {
                (r.range(1, 3), Unit::Case)
            } else if spec.split_case {
                (r.range(1, 25), Unit::Unit)
            } else {
                (u64::from(spec.case_size) * r.range(1, 3), Unit::Unit)
            };
            let qty = if r.chance(1, 100) { 0 } else { qty };
            lines.push(LineRequest { sku, qty, unit });
        }
        let r = &mut self.rng;
        if r.chance(1, 100) {
            lines.push(LineRequest {
                sku: "S-unknown".into(),
                qty: 1,
                unit: Unit::Unit,
            });
        }
        let balance = model.rebate_balance(&dealer);
        let use_rebate = if balance > 0 && r.chance(1, 4) {
            r.range(0, balance as u64) as i64
        } else {
            0
        };
        self.next_client_id += 1;
        let request = PlaceOrder {
            client_order_id: format!("po-{}", self.next_client_id),
            dealer,
            lines,
            backorder: r.chance(1, 3),
            use_rebate,
        };
        self.placed.push(request.clone());
        Command::PlaceOrder(request)
    }

    /// A retry of an earlier placement: the same body (idempotent) or a different
    /// one under the same key (a conflict).
    fn retry(&mut self) -> Command {
        if self.placed.is_empty() {
            return Command::Tick;
        }
        let mut request = self.rng.pick(&self.placed).clone();
        if self.rng.chance(1, 3) {
            match self.rng.below(3) {
                0 => request.backorder = !request.backorder,
                1 => {
                    if let Some(line) = request.lines.first_mut() {
                        line.qty += 1;
                    }
                }
                _ => request.lines.reverse(),
            }
        }
        Command::PlaceOrder(request)
    }

    fn act(&mut self, model: &Model) -> Command {
        let open: Vec<(u64, OrderStatus)> = model
            .orders()
            .iter()
            .filter(|o| o.status.is_open())
            .map(|o| (o.id, o.status))
            .collect();
        let r = &mut self.rng;
        let all = [
            OrderAction::Confirm,
            OrderAction::Approve,
            OrderAction::Reject,
            OrderAction::Ship,
            OrderAction::Cancel,
        ];
        if open.is_empty() || r.chance(1, 4) {
            let id = r.below(model.order_count() + 3);
            return Command::ActOnOrder {
                order: OrderId(id),
                action: *r.pick(&all),
            };
        }
        let (id, status) = *r.pick(&open);
        let action = match status {
            OrderStatus::Held => *r.pick(&[
                OrderAction::Confirm,
                OrderAction::Confirm,
                OrderAction::Cancel,
            ]),
            OrderStatus::PendingApproval => *r.pick(&[
                OrderAction::Approve,
                OrderAction::Reject,
                OrderAction::Cancel,
            ]),
            OrderStatus::Confirmed => {
                *r.pick(&[OrderAction::Ship, OrderAction::Ship, OrderAction::Cancel])
            }
            _ => OrderAction::Cancel,
        };
        Command::ActOnOrder {
            order: OrderId(id),
            action,
        }
    }

    fn receive(&mut self, model: &Model) -> Command {
        let sku = self.hot_sku(&model.sku_codes());
        let r = &mut self.rng;
        let warehouse = if r.chance(1, 50) {
            "W-unknown".to_owned()
        } else {
            r.pick(&model.warehouse_codes()).clone()
        };
        Command::Receive {
            sku,
            warehouse,
            qty: if r.chance(1, 50) { 0 } else { r.range(1, 40) },
        }
    }

    fn adjust(&mut self, model: &Model) -> Command {
        let sku = self.hot_sku(&model.sku_codes());
        let r = &mut self.rng;
        let warehouse = r.pick(&model.warehouse_codes()).clone();
        let reserved = model.reserved(&sku, &warehouse);
        let on_hand = if reserved > 0 && r.chance(1, 4) {
            reserved - 1
        } else {
            reserved + r.below(20)
        };
        Command::Adjust {
            sku,
            warehouse,
            on_hand,
        }
    }

    fn payment(&mut self, model: &Model) -> Command {
        let r = &mut self.rng;
        let dealer = r.pick(&model.dealer_codes()).clone();
        let used = model.credit_used(&dealer);
        let amount = match r.below(10) {
            0 => 0,
            1 => used + 1,
            _ if used > 0 => r.range(1, used as u64) as i64,
            _ => r.range(1, 100) as i64,
        };
        Command::RecordPayment { dealer, amount }
    }

    fn update_dealer(&mut self, model: &Model) -> Command {
        let r = &mut self.rng;
        let code = r.pick(&model.dealer_codes()).clone();
        let mut spec = model.dealer_spec(&code).expect("known dealer").clone();
        match r.below(4) {
            0 => (*r.pick(&TIERS)).clone_into(&mut spec.tier),
            1 => spec.credit_limit = *r.pick(&[5_000, 50_000, 500_000, 10_000_000]),
            2 => spec.approval_threshold = r.chance(1, 2).then(|| r.range(20_000, 200_000) as i64),
            _ => {
                spec.rebate_rate_bp = if r.chance(1, 20) {
                    20_000
                } else {
                    r.range(0, 500) as u32
                }
            }
        }
        Command::PutDealer(spec)
    }

    fn update_sku(&mut self, model: &Model) -> Command {
        let r = &mut self.rng;
        let code = r.pick(&model.sku_codes()).clone();
        let mut spec = model.sku_spec(&code).expect("known sku").clone();
        match r.below(4) {
            0 => spec.low_stock_threshold = if r.chance(1, 3) { 0 } else { r.range(1, 40) },
            1 => {
                spec.tier_prices =
                    BTreeMap::from([((*r.pick(&TIERS)).to_owned(), r.range(50, 900) as i64)]);
            }
            2 => spec.base_price = r.range(100, 5_000) as i64,
            _ => spec.case_size = if r.chance(1, 10) { 0 } else { spec.case_size },
        }
        if r.chance(1, 30) {
            // A brand new SKU joins the catalog.
            spec = Self::sku_spec(r, &format!("S{:02}", model.sku_codes().len() + 1));
        }
        Command::PutSku(spec)
    }

    fn settings(&mut self) -> Command {
        let r = &mut self.rng;
        let mut patch = SettingsPatch::default();
        match r.below(4) {
            0 => patch.hold_ttl_s = Some(*r.pick(&[0, 30, 120, 600])),
            1 => {
                let priority = match r.below(3) {
                    0 => Vec::new(),
                    1 => vec!["silver".to_owned(), "gold".to_owned()],
                    _ => vec!["bronze".to_owned()],
                };
                patch.backorder_priority = Some(priority);
            }
            2 => patch.max_lines = Some(*r.pick(&[2, 3, 200])),
            _ => patch.backorder_priority = Some(vec!["gold".into(), "gold".into()]),
        }
        Command::PutSettings(patch)
    }
}
