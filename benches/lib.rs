//! Benchmarks for allot live in this package's bench targets:
//! - `engine.rs`: `engine/place_3_lines`, `engine/place_3_lines_hot`,
//!   `engine/place_3_lines_retained`, `engine/tick_expire`;
//! - `wal.rs`: `wal/group_commit`, `wal/replay`;
//! - `examples/ledger_memory.rs`: resident memory of a ledger with 1,000,000 open
//!   orders (or, with `history`, 1,000,000 orders closed in the steady mix);
//! - `examples/engine_mix.rs`: the `place_3_lines` mix with placements and lifecycle
//!   commands timed apart;
//! - `examples/mix_loop.rs`: the steady mix as one loop, to count its instructions
//!   with callgrind;
//! - `examples/warm_memory.rs`: touches fresh memory before a benchmark (see
//!   docs/PERFORMANCE.md: on a VM, memory the host does not back yet costs several
//!   times more to touch);
//! - `examples/criterion_medians.rs`: each benchmark's median from its last run
//!   (criterion prints a slope, which a growing book's last samples pull up).
//!
//! Run them with `cargo bench -p allot-benches` and
//! `cargo run --release -p allot-benches --example ledger_memory`.
//! This library holds the book and workload they share.

use std::mem::ManuallyDrop;

use allot_engine::{
    Command, DealerSpec, Effect, Event, Ledger, OrderAction, OrderId, Outcome, PlaceOrder,
    SettingsPatch, SkuSpec, WarehouseSpec,
};

/// Sizes of the benchmark book.
pub const SKUS: usize = 10_000;
pub const WAREHOUSES: usize = 8;
pub const DEALERS: usize = 1_000;
/// Units per stock cell: enough that a steady mix never drains a SKU.
pub const STOCK_PER_CELL: u64 = 1_000_000_000;
/// Hot SKUs of the skewed workload.
pub const HOT_SKUS: usize = 10;

/// A small, fast, seeded generator (xorshift64*), so workloads are repeatable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn sku_code(i: usize) -> String {
    format!("SKU-{i:05}")
}

pub fn dealer_code(i: usize) -> String {
    format!("D-{i:04}")
}

/// A book of `SKUS` × `WAREHOUSES` stocked cells and `DEALERS` dealers with ample
/// credit, in 4 regions and 3 tiers, with tier and region prices on some SKUs.
pub fn build_book(hold_ttl_s: u64) -> Ledger {
    let mut ledger = Ledger::default();
    let mut events = Vec::new();
    let mut run = |ledger: &mut Ledger, command: Command| {
        let outcome = ledger.apply(0, &command, &mut events);
        assert!(
            outcome.result.is_ok(),
            "set-up command refused: {outcome:?}"
        );
        events.clear();
    };
    run(
        &mut ledger,
        Command::PutSettings(SettingsPatch {
            hold_ttl_s: Some(hold_ttl_s),
            ..SettingsPatch::default()
        }),
    );
    for w in 0..WAREHOUSES {
        let spec = WarehouseSpec {
            code: format!("WH-{w}"),
            region: format!("R{}", w % 4),
        };
        run(&mut ledger, Command::PutWarehouse(spec));
    }
    for s in 0..SKUS {
        let price = i64::try_from(s).expect("SKU counts are small");
        let mut spec = SkuSpec::new(sku_code(s), 1_000 + price);
        if s % 3 == 0 {
            spec.tier_prices.insert("gold".into(), 900 + price);
        }
        if s % 5 == 0 {
            spec.region_prices.insert("R1".into(), 950 + price);
        }
        spec.low_stock_threshold = 100;
        run(&mut ledger, Command::PutSku(spec));
        for w in 0..WAREHOUSES {
            let receive = Command::Receive {
                sku: sku_code(s),
                warehouse: format!("WH-{w}"),
                qty: STOCK_PER_CELL,
            };
            run(&mut ledger, receive);
        }
    }
    for d in 0..DEALERS {
        let tier = ["gold", "silver", "bronze"][d % 3];
        let spec = DealerSpec::new(
            dealer_code(d),
            tier,
            format!("R{}", d % 4),
            allot_engine::limits::MONEY_MAX,
        );
        run(&mut ledger, Command::PutDealer(spec));
    }
    ledger
}

/// Generates 3-line orders over distinct SKUs; with `hot`, each line is on one of
/// `HOT_SKUS` hot SKUs with probability 1/2.
#[derive(Clone, Debug)]
pub struct Orders {
    rng: Rng,
    hot: bool,
    next: u64,
}

impl Orders {
    pub fn new(seed: u64, hot: bool) -> Self {
        Self {
            rng: Rng::new(seed),
            hot,
            next: 0,
        }
    }

    pub fn next_order(&mut self) -> Command {
        self.next += 1;
        let mut skus = [usize::MAX; 3];
        for i in 0..3 {
            loop {
                let s = if self.hot && self.rng.below(2) == 0 {
                    self.rng.below(HOT_SKUS)
                } else {
                    HOT_SKUS + self.rng.below(SKUS - HOT_SKUS)
                };
                if !skus[..i].contains(&s) {
                    skus[i] = s;
                    break;
                }
            }
        }
        let lines: Vec<(String, u64)> = skus
            .iter()
            .map(|&s| (sku_code(s), 1 + self.rng.below(10) as u64))
            .collect();
        let refs: Vec<(&str, u64)> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let dealer = dealer_code(self.rng.below(DEALERS));
        Command::PlaceOrder(PlaceOrder::new(format!("PO-{}", self.next), dealer, &refs))
    }
}

/// A pool of generated orders reused round-robin, each given a fresh idempotency key
/// in place (no allocation) before it is applied: the command is warm in cache, as a
/// request the server has just parsed would be.
#[derive(Clone, Debug)]
pub struct OrderPool {
    commands: Vec<Command>,
    /// The last order given out (orders count from 1), and its command's index.
    next: u64,
    slot: usize,
    /// The last order given its key, and that key, `PO-<keyed>`.
    keyed: u64,
    key: String,
}

impl OrderPool {
    /// A pool of `size` orders, at least two (the next order and the upcoming one are
    /// different commands).
    pub fn new(seed: u64, hot: bool, size: usize) -> Self {
        let mut orders = Orders::new(seed, hot);
        Self {
            commands: (0..size.max(2)).map(|_| orders.next_order()).collect(),
            next: 0,
            slot: 0,
            keyed: 0,
            key: String::from("PO-0"),
        }
    }

    /// The next order, with a key never used before.
    pub fn next_order(&mut self) -> &Command {
        self.advance();
        &self.commands[self.slot]
    }

    /// The next order, as [`Self::next_order`], and the one after it (its key already
    /// given), for a caller that hints one order ahead (`Ledger::apply_hinting`).
    pub fn next_and_upcoming(&mut self) -> (&Command, &Command) {
        self.advance();
        let upcoming = self.following(self.slot);
        self.give_key(upcoming);
        (&self.commands[self.slot], &self.commands[upcoming])
    }

    /// The command after `slot`, round-robin.
    fn following(&self, slot: usize) -> usize {
        if slot + 1 == self.commands.len() {
            0
        } else {
            slot + 1
        }
    }

    fn advance(&mut self) {
        self.next += 1;
        self.slot = self.following(self.slot);
        if self.keyed < self.next {
            self.give_key(self.slot);
        }
    }

    /// Gives the command at `slot` the key of the order after the last one keyed,
    /// `PO-<n>`. The number is counted up in decimal in place, as a key the server
    /// parses arrives already written: formatting it anew for every order cost the
    /// loop about 40 instructions that a server never spends.
    fn give_key(&mut self, slot: usize) {
        self.keyed += 1;
        increment_decimal(&mut self.key, "PO-".len());
        debug_assert_eq!(self.key, format!("PO-{}", self.keyed));
        if let Command::PlaceOrder(request) = &mut self.commands[slot] {
            request.client_order_id.clear();
            request.client_order_id.push_str(&self.key);
        }
    }
}

/// Adds one to the decimal number that `text` holds from byte `from` on (its digits
/// only), changing only the digits that change.
fn increment_decimal(text: &mut String, from: usize) {
    let mut nines = 0;
    loop {
        if text.len() <= from {
            text.push('1');
            break;
        }
        match text.pop() {
            Some('9') => nines += 1,
            Some(digit @ '0'..='8') => {
                text.push(char::from(digit as u8 + 1));
                break;
            }
            other => panic!("not a decimal digit: {other:?}"),
        }
    }
    text.extend(std::iter::repeat_n('0', nines));
}

/// The book of the steady placement mix (`engine/place_3_lines*`, the `engine_mix`
/// example): `build_book` with 15-minute holds and, unless 0, an order retention.
pub fn steady_book(retention_s: u64) -> Ledger {
    let mut ledger = build_book(900);
    if retention_s > 0 {
        let patch = SettingsPatch {
            order_retention_s: Some(retention_s),
            ..SettingsPatch::default()
        };
        apply_ok(
            &mut ledger,
            0,
            &Command::PutSettings(patch),
            &mut Vec::new(),
        );
    }
    ledger
}

/// The orders of the steady placement mix.
pub fn steady_orders(hot: bool) -> OrderPool {
    OrderPool::new(7, hot, 4_096)
}

/// The steady mix around each placement: the order placed `WINDOW` orders ago is
/// confirmed and shipped, or cancelled (alternately), so open orders and stock stay
/// level.
pub const WINDOW: u64 = 1_000;

/// The lifecycle actions that close the order `placed - WINDOW`, if there is one:
/// apply `Command::ActOnOrder { order, action }` for each action, in order.
fn close_actions(placed: OrderId) -> (OrderId, &'static [OrderAction]) {
    let old = placed.0.saturating_sub(WINDOW);
    let actions: &[OrderAction] = if old == 0 {
        &[]
    } else if old % 2 == 0 {
        &[OrderAction::Confirm, OrderAction::Ship]
    } else {
        &[OrderAction::Cancel]
    };
    (OrderId(old), actions)
}

/// Apply the commands of [`close_actions`] for the order `placed`, insisting on
/// success.
pub fn close_window(ledger: &mut Ledger, now_ms: u64, placed: OrderId, events: &mut Vec<Event>) {
    let (order, actions) = close_actions(placed);
    for &action in actions {
        // A lifecycle command owns nothing, so it need not be dropped: dropping it
        // called the enum's drop code (25 instructions) on every command.
        let command = ManuallyDrop::new(Command::ActOnOrder { order, action });
        apply_ok(ledger, now_ms, &command, events);
    }
}

/// Apply and insist on success (benchmarks measure the accepting path).
pub fn apply_ok(ledger: &mut Ledger, now_ms: u64, command: &Command, events: &mut Vec<Event>) {
    accepted(ledger.apply(now_ms, command, events));
}

/// The effect of an accepted command; panics on a refused one. It takes the result
/// apart instead of dropping it: dropping an `Outcome` runs the drop code of every
/// rejection it could hold (27 instructions), where an accepted one owns nothing.
pub fn accepted(outcome: Outcome) -> Effect {
    match outcome.result {
        Ok(effect) => effect,
        Err(rejection) => panic!("benchmark command refused: {rejection:?}"),
    }
}

/// The id of the order an accepted placement placed; panics otherwise.
pub fn placed(outcome: Outcome) -> OrderId {
    match accepted(outcome) {
        Effect::OrderPlaced(id) => id,
        other => panic!("placement did not place an order: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_count_up_in_decimal() {
        let mut key = String::from("PO-0");
        for n in 1..=200_000_u64 {
            increment_decimal(&mut key, 3);
            assert_eq!(key, format!("PO-{n}"));
        }
    }

    #[test]
    fn the_pool_gives_each_order_a_new_key() {
        let mut pool = OrderPool::new(1, false, 3);
        let key = |command: &Command| match command {
            Command::PlaceOrder(request) => request.client_order_id.clone(),
            other => panic!("not a placement: {other:?}"),
        };
        assert_eq!(key(pool.next_order()), "PO-1");
        let (next, upcoming) = pool.next_and_upcoming();
        assert_eq!((key(next), key(upcoming)), ("PO-2".into(), "PO-3".into()));
        let (next, upcoming) = pool.next_and_upcoming();
        assert_eq!((key(next), key(upcoming)), ("PO-3".into(), "PO-4".into()));
        assert_eq!(key(pool.next_order()), "PO-4");
        assert_eq!(key(pool.next_order()), "PO-5");
    }
}
