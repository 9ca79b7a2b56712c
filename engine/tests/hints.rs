//! A hint changes nothing: a ledger applying each command with the next one as its
//! hint (`apply_hinting`) gives the outcomes, events and book of one applying them
//! plainly, whatever the hinted command is (a placement, a refused one, a lifecycle
//! command, a tick). The stream is long enough for the idempotency index to outgrow
//! the caches, where hints start prefetching.
#![allow(clippy::unwrap_used)]

use allot_engine::{
    Command, DealerSpec, Event, Ledger, OrderAction, OrderId, PlaceOrder, SkuSpec, WarehouseSpec,
};

/// A small seeded generator (xorshift64*), so the stream is the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const SKUS: u64 = 50;
const DEALERS: u64 = 20;

fn set_up() -> Vec<Command> {
    let mut commands = Vec::new();
    for (code, region) in [("WA", "north"), ("WB", "north"), ("WC", "south")] {
        commands.push(Command::PutWarehouse(WarehouseSpec {
            code: code.into(),
            region: region.into(),
        }));
    }
    for s in 0..SKUS {
        commands.push(Command::PutSku(SkuSpec::new(
            format!("S{s}"),
            100 + i64::try_from(s).unwrap(),
        )));
        for warehouse in ["WA", "WB", "WC"] {
            commands.push(Command::Receive {
                sku: format!("S{s}"),
                warehouse: warehouse.into(),
                qty: 10_000_000,
            });
        }
    }
    for d in 0..DEALERS {
        let region = if d % 2 == 0 { "north" } else { "south" };
        commands.push(Command::PutDealer(DealerSpec::new(
            format!("D{d}"),
            "gold",
            region,
            1_000_000_000_000,
        )));
    }
    commands
}

/// A command of the mix: mostly new placements, with replays, conflicting replays,
/// unknown dealers and SKUs, invalid keys, lifecycle actions on recent (and unknown)
/// orders, and ticks.
fn next_command(rng: &mut Rng, n: u64) -> Command {
    let place = |key: String, dealer: String, sku: String| {
        Command::PlaceOrder(PlaceOrder::new(key, dealer, &[(sku.as_str(), 1)]))
    };
    let dealer = format!("D{}", rng.below(DEALERS));
    let sku = format!("S{}", rng.below(SKUS));
    match rng.below(100) {
        0..=69 => place(format!("PO-{n}"), dealer, sku),
        70..=74 => place(format!("PO-{}", rng.below(n + 1)), dealer, sku),
        75 => place(format!("PO-{n}"), "NOPE".into(), sku),
        76 => place(format!("PO-{n}"), dealer, "NOPE".into()),
        77 => place(String::new(), dealer, sku),
        78 => Command::Tick,
        _ => {
            let action = [OrderAction::Confirm, OrderAction::Ship, OrderAction::Cancel]
                [usize::try_from(rng.below(3)).unwrap()];
            let order = OrderId(n.saturating_sub(rng.below(2_000)));
            Command::ActOnOrder { order, action }
        }
    }
}

#[test]
fn hinted_and_plain_ledgers_agree() {
    const STEPS: u64 = 40_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut commands = set_up();
    commands.extend((0..STEPS).map(|n| next_command(&mut rng, n)));
    let (mut plain, mut hinted) = (Ledger::default(), Ledger::default());
    let (mut plain_events, mut hinted_events): (Vec<Event>, Vec<Event>) = (vec![], vec![]);
    for (i, command) in commands.iter().enumerate() {
        // 50 ms per command, so that holds (15 minutes) expire along the way.
        let now_ms = 1_000 + i as u64 * 50;
        plain_events.clear();
        hinted_events.clear();
        let expected = plain.apply(now_ms, command, &mut plain_events);
        let upcoming = commands.get(i + 1);
        let got = hinted.apply_hinting(now_ms, command, upcoming, &mut hinted_events);
        assert_eq!(got, expected, "step {i}: {command:?}");
        assert_eq!(hinted_events, plain_events, "step {i}: {command:?}");
        if i % 5_000 == 0 {
            assert_eq!(hinted.digest(), plain.digest(), "step {i}");
        }
    }
    assert_eq!(hinted.digest(), plain.digest());
    // The stream did reach the book size where hints prefetch, and placed orders.
    assert!(plain.order_count() > 20_000, "{}", plain.order_count());
}
