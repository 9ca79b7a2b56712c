//! One test per rule of DESIGN.md's domain and precise rules, with the edge cases that
//! portals and admins depend on. Deterministic: no seeds; a failure names its rule.
#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    clippy::many_single_char_names,
    clippy::needless_pass_by_value
)]

use allot_engine::{
    Command, DealerSpec, Effect, Event, EventKind, Ledger, LineRequest, OrderAction, OrderId,
    OrderStatus, PlaceOrder, PromotionSpec, Rejection, SettingsPatch, ShortLine, SkuSpec, Unit,
    WarehouseSpec,
};

/// A ledger plus the events of the last command, with terse helpers.
struct Book {
    ledger: Ledger,
    events: Vec<Event>,
    now_ms: u64,
}

impl Book {
    /// Warehouses WA (region north), WB (north), WC (south); dealer D1 (gold, north,
    /// limit 1,000,000); SKU S1 price 100, S2 price 50.
    fn new() -> Self {
        let mut book = Self {
            ledger: Ledger::default(),
            events: Vec::new(),
            now_ms: 1_000,
        };
        for (code, region) in [("WA", "north"), ("WB", "north"), ("WC", "south")] {
            book.ok(Command::PutWarehouse(WarehouseSpec {
                code: code.into(),
                region: region.into(),
            }));
        }
        book.ok(Command::PutSku(SkuSpec::new("S1", 100)));
        book.ok(Command::PutSku(SkuSpec::new("S2", 50)));
        book.ok(Command::PutDealer(DealerSpec::new(
            "D1", "gold", "north", 1_000_000,
        )));
        book
    }

    fn run(&mut self, command: Command) -> Result<Effect, Rejection> {
        self.events.clear();
        let outcome = self.ledger.apply(self.now_ms, &command, &mut self.events);
        self.ledger.check_invariants().unwrap();
        outcome.result
    }

    fn ok(&mut self, command: Command) -> Effect {
        let result = self.run(command.clone());
        result.unwrap_or_else(|e| panic!("{command:?} refused: {e:?}"))
    }

    fn receive(&mut self, sku: &str, warehouse: &str, qty: u64) {
        self.ok(Command::Receive {
            sku: sku.into(),
            warehouse: warehouse.into(),
            qty,
        });
    }

    fn place(&mut self, id: &str, lines: &[(&str, u64)]) -> Result<OrderId, Rejection> {
        self.place_with(PlaceOrder::new(id, "D1", lines))
    }

    fn place_with(&mut self, request: PlaceOrder) -> Result<OrderId, Rejection> {
        match self.run(Command::PlaceOrder(request))? {
            Effect::OrderPlaced(id) | Effect::OrderReplayed(id) => Ok(id),
            other => panic!("unexpected effect {other:?}"),
        }
    }

    fn act(&mut self, order: OrderId, action: OrderAction) -> Result<Effect, Rejection> {
        self.run(Command::ActOnOrder { order, action })
    }

    fn status(&self, id: OrderId) -> OrderStatus {
        self.ledger.order(id).unwrap().status
    }

    fn cell(&self, sku: &str, warehouse: &str) -> (u64, u64) {
        let sku = &self.ledger.state().skus[self.ledger.sku_id(sku).unwrap().index()];
        let cell = sku
            .cell(self.ledger.warehouse_id(warehouse).unwrap())
            .unwrap();
        (cell.on_hand, cell.reserved)
    }

    fn allocations(&self, id: OrderId) -> Vec<(u32, String, u64)> {
        let order = self.ledger.order(id).unwrap();
        order
            .allocations
            .iter()
            .map(|a| {
                (
                    a.line,
                    self.ledger.warehouse_code(a.warehouse).to_owned(),
                    a.qty,
                )
            })
            .collect()
    }

    fn dealer(&self) -> allot_engine::query::DealerView {
        self.ledger.dealer("D1").unwrap()
    }

    fn put_dealer(&mut self, f: impl FnOnce(&mut DealerSpec)) {
        let mut spec = DealerSpec::new("D1", "gold", "north", 1_000_000);
        f(&mut spec);
        self.ok(Command::PutDealer(spec));
    }

    fn put_sku(&mut self, code: &str, price: i64, f: impl FnOnce(&mut SkuSpec)) {
        let mut spec = SkuSpec::new(code, price);
        f(&mut spec);
        self.ok(Command::PutSku(spec));
    }

    fn event_names(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.kind.name()).collect()
    }
}

#[test]
fn placement_reserves_and_holds_with_deadline() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    let id = book.place("po-1", &[("S1", 4)]).unwrap();
    assert_eq!(id, OrderId(1));
    let order = book.ledger.order(id).unwrap();
    assert_eq!(order.status, OrderStatus::Held);
    assert_eq!(order.total, 400);
    assert_eq!(order.hold_expires_at_ms, Some(1_000 + 900_000));
    assert_eq!(book.cell("S1", "WA"), (10, 4));
    assert_eq!(book.dealer().credit_held, 400);
    assert_eq!(book.event_names(), ["order_placed", "stock_reserved"]);
}

#[test]
fn short_line_rejects_whole_order_and_changes_nothing() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    book.receive("S2", "WA", 2);
    let before = book.ledger.digest();
    let err = book.place("po-1", &[("S1", 5), ("S2", 3)]).unwrap_err();
    assert_eq!(
        err,
        Rejection::InsufficientStock {
            lines: vec![ShortLine {
                sku: "S2".into(),
                requested: 3,
                available: 2
            }]
        }
    );
    assert_eq!(err.code(), "insufficient_stock");
    assert_eq!(book.ledger.digest(), before);
    // A rejected attempt does not claim the key.
    book.receive("S2", "WA", 1);
    assert!(book.place("po-1", &[("S1", 5), ("S2", 3)]).is_ok());
}

#[test]
fn exact_credit_order_passes_and_one_more_cent_fails() {
    let mut book = Book::new();
    book.put_dealer(|d| d.credit_limit = 1_000);
    book.receive("S1", "WA", 100);
    book.place("po-1", &[("S1", 6)]).unwrap();
    assert_eq!(book.dealer().available_credit, 400);
    let err = book.place("po-2", &[("S1", 5)]).unwrap_err();
    assert_eq!(
        err,
        Rejection::CreditExceeded {
            needed: 500,
            available: 400
        }
    );
    book.place("po-3", &[("S1", 4)]).unwrap();
    assert_eq!(book.dealer().available_credit, 0);
}

#[test]
fn credit_is_checked_before_stock() {
    let mut book = Book::new();
    book.put_dealer(|d| d.credit_limit = 50);
    let err = book.place("po-1", &[("S1", 1)]).unwrap_err();
    assert_eq!(err.code(), "credit_exceeded");
}

#[test]
fn lowering_a_limit_below_held_credit_fails_later_orders() {
    let mut book = Book::new();
    book.receive("S1", "WA", 100);
    book.place("po-1", &[("S1", 10)]).unwrap();
    book.put_dealer(|d| d.credit_limit = 500);
    assert_eq!(book.dealer().credit_held, 1_000);
    assert_eq!(book.dealer().available_credit, -500);
    assert_eq!(
        book.place("po-2", &[("S1", 1)]).unwrap_err().code(),
        "credit_exceeded"
    );
}

#[test]
fn price_falls_back_from_tier_to_region_to_base() {
    let mut book = Book::new();
    book.receive("S1", "WA", 100);
    book.put_sku("S1", 100, |s| {
        s.tier_prices.insert("gold".into(), 80);
        s.region_prices.insert("north".into(), 90);
    });
    let id = book.place("a", &[("S1", 1)]).unwrap();
    assert_eq!(book.ledger.order(id).unwrap().lines[0].unit_price, 80);
    book.put_dealer(|d| d.tier = "silver".into());
    let id = book.place("b", &[("S1", 1)]).unwrap();
    assert_eq!(book.ledger.order(id).unwrap().lines[0].unit_price, 90);
    book.put_dealer(|d| {
        d.tier = "silver".into();
        d.region = "south".into();
    });
    let id = book.place("c", &[("S1", 1)]).unwrap();
    assert_eq!(book.ledger.order(id).unwrap().lines[0].unit_price, 100);
}

fn promotion(code: &str, price: i64) -> PromotionSpec {
    PromotionSpec {
        code: code.into(),
        sku: "S1".into(),
        price,
        starts_at_ms: 1_000,
        ends_at_ms: 2_000,
        tiers: Vec::new(),
        quota: None,
        per_dealer_limit: None,
    }
}

#[test]
fn promotion_is_active_on_half_open_window() {
    let mut book = Book::new();
    book.receive("S1", "WA", 100);
    book.ok(Command::PutPromotion(promotion("P", 60)));
    book.now_ms = 999;
    let early = book.place("a", &[("S1", 1)]).unwrap();
    book.now_ms = 1_000;
    let start = book.place("b", &[("S1", 1)]).unwrap();
    book.now_ms = 1_999;
    let last = book.place("c", &[("S1", 1)]).unwrap();
    book.now_ms = 2_000;
    let end = book.place("d", &[("S1", 1)]).unwrap();
    let price = |book: &Book, id| book.ledger.order(id).unwrap().lines[0].unit_price;
    assert_eq!(
        [
            price(&book, early),
            price(&book, start),
            price(&book, last),
            price(&book, end)
        ],
        [100, 60, 60, 100]
    );
}

#[test]
fn promotion_quota_boundary_prices_whole_line_or_none() {
    let mut book = Book::new();
    book.receive("S1", "WA", 100);
    book.ok(Command::PutPromotion(PromotionSpec {
        quota: Some(10),
        ..promotion("P", 60)
    }));
    let a = book.place("a", &[("S1", 6)]).unwrap();
    // 4 left: a line of 5 is not covered, so it pays the regular price.
    let b = book.place("b", &[("S1", 5)]).unwrap();
    // Exactly the remaining 4 is covered.
    let c = book.place("c", &[("S1", 4)]).unwrap();
    let d = book.place("d", &[("S1", 1)]).unwrap();
    let price = |id| book.ledger.order(id).unwrap().lines[0].unit_price;
    assert_eq!([price(a), price(b), price(c), price(d)], [60, 100, 60, 100]);
    assert_eq!(book.ledger.state().promotions[0].used, 10);
    // Cancelling gives the quota back.
    book.act(a, OrderAction::Cancel).unwrap();
    assert_eq!(book.ledger.state().promotions[0].used, 4);
    let e = book.place("e", &[("S1", 6)]).unwrap();
    assert_eq!(book.ledger.order(e).unwrap().lines[0].unit_price, 60);
}

#[test]
fn per_dealer_promo_limit_stops_one_dealer_not_others() {
    let mut book = Book::new();
    book.receive("S1", "WA", 100);
    book.ok(Command::PutDealer(DealerSpec::new(
        "D2", "gold", "north", 1_000_000,
    )));
    book.ok(Command::PutPromotion(PromotionSpec {
        quota: Some(100),
        per_dealer_limit: Some(5),
        ..promotion("P", 60)
    }));
    let a = book.place("a", &[("S1", 5)]).unwrap();
    let b = book.place("b", &[("S1", 1)]).unwrap();
    let c = book
        .place_with(PlaceOrder::new("c", "D2", &[("S1", 5)]))
        .unwrap();
    let price = |id| book.ledger.order(id).unwrap().lines[0].unit_price;
    assert_eq!([price(a), price(b), price(c)], [60, 100, 60]);
}

#[test]
fn lowest_eligible_promotion_wins_ties_by_code() {
    let mut book = Book::new();
    book.receive("S1", "WA", 100);
    book.ok(Command::PutPromotion(PromotionSpec {
        tiers: vec!["silver".into()],
        ..promotion("A", 10)
    }));
    book.ok(Command::PutPromotion(promotion("C", 50)));
    book.ok(Command::PutPromotion(promotion("B", 50)));
    let id = book.place("a", &[("S1", 1)]).unwrap();
    let line = &book.ledger.order(id).unwrap().lines[0];
    assert_eq!(line.unit_price, 50);
    assert_eq!(
        book.ledger.state().promotions[line.promotion.unwrap().index()].code,
        "B"
    );
    let view = book.ledger.sku_view("S1", Some("D1"), book.now_ms).unwrap();
    assert_eq!(
        (view.unit_price, view.promotion.as_deref()),
        (50, Some("B"))
    );
}

#[test]
fn case_units_multiply_and_split_case_rules_hold() {
    let mut book = Book::new();
    book.receive("S1", "WA", 1_000);
    book.put_sku("S1", 100, |s| {
        s.case_size = 12;
        s.split_case = false;
        s.min_qty = 24;
    });
    let mut request = PlaceOrder::new("a", "D1", &[("S1", 2)]);
    request.lines[0].unit = Unit::Case;
    let id = book.place_with(request).unwrap();
    assert_eq!(book.ledger.order(id).unwrap().lines[0].qty, 24);
    // Loose units that are a multiple of the case size are fine.
    book.place("b", &[("S1", 36)]).unwrap();
    let err = book.place("c", &[("S1", 30)]).unwrap_err();
    assert_eq!(err.code(), "invalid_field");
    // Below min_qty.
    let mut request = PlaceOrder::new("d", "D1", &[("S1", 1)]);
    request.lines[0].unit = Unit::Case;
    assert!(
        matches!(book.place_with(request).unwrap_err(), Rejection::Invalid { field, .. } if field == "lines[0].qty")
    );
    // Split case allows loose units.
    book.put_sku("S1", 100, |s| {
        s.case_size = 12;
        s.split_case = true;
    });
    book.place("e", &[("S1", 5)]).unwrap();
}

#[test]
fn allocation_prefers_region_then_most_available_then_code() {
    let mut book = Book::new();
    book.receive("S1", "WA", 5);
    book.receive("S1", "WB", 5);
    book.receive("S1", "WC", 50);
    // North dealer: WA and WB tie on 5 → WA first by code; south's WC only after.
    let id = book.place("a", &[("S1", 12)]).unwrap();
    assert_eq!(
        book.allocations(id),
        vec![
            (0, "WA".into(), 5),
            (0, "WB".into(), 5),
            (0, "WC".into(), 2)
        ]
    );
    book.receive("S1", "WB", 3);
    book.receive("S1", "WA", 1);
    // Now WB has 3 and WA 1 available: most available first.
    let id = book.place("b", &[("S1", 4)]).unwrap();
    assert_eq!(
        book.allocations(id),
        vec![(0, "WB".into(), 3), (0, "WA".into(), 1)]
    );
}

#[test]
fn allocation_order_holds_in_a_region_of_many_warehouses_and_in_none() {
    // Six more warehouses in the north (more than allocation looks up one by one),
    // created out of code order, and S1 stocked in them out of code order too.
    let mut book = Book::new();
    for code in ["WN6", "WN2", "WN5", "WN1", "WN4", "WN3"] {
        book.ok(Command::PutWarehouse(WarehouseSpec {
            code: code.into(),
            region: "north".into(),
        }));
    }
    for (code, qty) in [("WN5", 7), ("WN3", 9), ("WC", 50), ("WN1", 9), ("WN4", 2)] {
        book.receive("S1", code, qty);
    }
    // WN1 and WN3 tie on 9: WN1 first by code; then WN3, then WN5.
    let id = book.place("a", &[("S1", 20)]).unwrap();
    assert_eq!(
        book.allocations(id),
        vec![
            (0, "WN1".into(), 9),
            (0, "WN3".into(), 9),
            (0, "WN5".into(), 2)
        ]
    );
    let id = book.place("b", &[("S1", 3)]).unwrap();
    assert_eq!(book.allocations(id), vec![(0, "WN5".into(), 3)]);
    // A dealer in a region with no warehouse takes from the others, most available
    // first.
    book.put_dealer(|d| d.region = "east".into());
    let id = book.place("c", &[("S1", 4)]).unwrap();
    assert_eq!(book.allocations(id), vec![(0, "WC".into(), 4)]);
}

#[test]
fn stock_moves_in_the_right_cell_when_cells_are_not_in_warehouse_order() {
    // S2's cells are created WC, WB, WA: the reverse of the warehouses' ids, so no
    // cell sits at its warehouse's id but WB's.
    let mut book = Book::new();
    book.receive("S2", "WC", 10);
    book.receive("S2", "WB", 20);
    book.receive("S2", "WA", 30);
    let id = book.place("a", &[("S2", 25)]).unwrap();
    assert_eq!(book.allocations(id), vec![(0, "WA".into(), 25)]);
    assert_eq!(book.cell("S2", "WA"), (30, 25));
    assert_eq!(book.cell("S2", "WC"), (10, 0));
    book.act(id, OrderAction::Confirm).unwrap();
    book.act(id, OrderAction::Ship).unwrap();
    assert_eq!(book.cell("S2", "WA"), (5, 0));
    assert_eq!(book.cell("S2", "WB"), (20, 0));
    assert_eq!(book.cell("S2", "WC"), (10, 0));
    // Split over WB and WA, then cancelled: each cell gets its own units back.
    let id = book.place("b", &[("S2", 22)]).unwrap();
    assert_eq!(
        book.allocations(id),
        vec![(0, "WB".into(), 20), (0, "WA".into(), 2)]
    );
    book.act(id, OrderAction::Cancel).unwrap();
    assert_eq!(book.cell("S2", "WA"), (5, 0));
    assert_eq!(book.cell("S2", "WB"), (20, 0));
    assert_eq!(book.cell("S2", "WC"), (10, 0));
}

#[test]
fn a_sku_on_two_lines_is_refused_by_name() {
    let mut book = Book::new();
    for i in 3..=12 {
        book.put_sku(&format!("S{i}"), 10, |_| {});
        book.receive(&format!("S{i}"), "WA", 100);
    }
    book.receive("S1", "WA", 100);
    book.receive("S2", "WA", 100);
    let reason = |result: Result<OrderId, Rejection>| match result {
        Err(Rejection::Invalid { field, reason }) if field == "lines" => reason,
        other => panic!("expected an invalid lines field, got {other:?}"),
    };
    // A few lines, and more than a few: both name the SKU (the first in id order
    // when several repeat).
    let few = book.place("a", &[("S2", 1), ("S1", 1), ("S2", 1), ("S1", 1)]);
    assert_eq!(reason(few), "SKU `S1` appears twice");
    let codes: Vec<String> = (3..=12).map(|i| format!("S{i}")).collect();
    let mut lines: Vec<(&str, u64)> = codes.iter().map(|c| (c.as_str(), 1)).collect();
    lines.push(("S7", 2));
    assert_eq!(reason(book.place("b", &lines)), "SKU `S7` appears twice");
    lines.pop();
    assert!(book.place("c", &lines).is_ok(), "ten distinct SKUs");
}

#[test]
fn an_order_of_many_lines_keeps_them_in_room_made_once() {
    let mut book = Book::new();
    let codes: Vec<String> = (3..=12).map(|i| format!("S{i}")).collect();
    for code in &codes {
        book.put_sku(code, 10, |_| {});
        book.receive(code, "WA", 100);
    }
    let lines: Vec<(&str, u64)> = codes.iter().map(|c| (c.as_str(), 1)).collect();
    let id = book
        .place("many", &lines)
        .expect("ten distinct SKUs in stock");
    let order = book.ledger.order(id).expect("the order exists");
    assert_eq!(order.lines.len(), 10);
    // Room for exactly its lines and allocations, not the next power of two.
    assert_eq!(order.lines.capacity(), 10);
    assert_eq!(order.allocations.capacity(), 10);
}

#[test]
fn allocation_follows_a_warehouse_that_moves_region() {
    let mut book = Book::new();
    book.receive("S1", "WA", 5);
    book.receive("S1", "WC", 50);
    let id = book.place("a", &[("S1", 2)]).unwrap();
    assert_eq!(book.allocations(id), vec![(0, "WA".into(), 2)]);
    // WC joins the dealer's region and WA leaves it: WC is now the only one in region.
    for (code, region) in [("WC", "north"), ("WA", "east")] {
        book.ok(Command::PutWarehouse(WarehouseSpec {
            code: code.into(),
            region: region.into(),
        }));
    }
    let id = book.place("b", &[("S1", 2)]).unwrap();
    assert_eq!(book.allocations(id), vec![(0, "WC".into(), 2)]);
    // And a restored book allocates the same way.
    book.ledger = Ledger::restore(&book.ledger.snapshot()).unwrap();
    let id = book.place("c", &[("S1", 49)]).unwrap();
    assert_eq!(
        book.allocations(id),
        vec![(0, "WC".into(), 48), (0, "WA".into(), 1)]
    );
}

#[test]
fn backorder_filled_across_two_receives_then_held() {
    let mut book = Book::new();
    book.ok(Command::PutSettings(SettingsPatch {
        hold_ttl_s: Some(60),
        ..SettingsPatch::default()
    }));
    book.receive("S1", "WA", 2);
    let mut request = PlaceOrder::new("a", "D1", &[("S1", 10)]);
    request.backorder = true;
    let id = book.place_with(request).unwrap();
    let order = book.ledger.order(id).unwrap();
    assert_eq!(
        (
            order.status,
            order.lines[0].backordered,
            order.hold_expires_at_ms
        ),
        (OrderStatus::Backordered, 8, None)
    );
    assert_eq!(book.dealer().credit_held, 1_000);
    book.now_ms = 5_000;
    book.receive("S1", "WC", 5);
    assert_eq!(book.ledger.order(id).unwrap().lines[0].backordered, 3);
    assert_eq!(book.status(id), OrderStatus::Backordered);
    book.now_ms = 7_000;
    book.receive("S1", "WA", 4);
    let order = book.ledger.order(id).unwrap();
    assert_eq!(order.status, OrderStatus::Held);
    assert_eq!(
        order.hold_expires_at_ms,
        Some(7_000 + 60_000),
        "the hold clock starts at the fill"
    );
    assert_eq!(
        book.allocations(id),
        vec![(0, "WA".into(), 5), (0, "WC".into(), 5)]
    );
    assert_eq!(book.cell("S1", "WA"), (6, 5));
    assert!(book.event_names().contains(&"backorder_filled"));
    assert!(book.event_names().contains(&"order_status_changed"));
}

#[test]
fn new_orders_cannot_jump_the_backorder_queue() {
    let mut book = Book::new();
    let mut request = PlaceOrder::new("a", "D1", &[("S1", 3)]);
    request.backorder = true;
    let first = book.place_with(request).unwrap();
    book.receive("S1", "WA", 2);
    assert_eq!(book.ledger.order(first).unwrap().lines[0].backordered, 1);
    assert_eq!(book.ledger.sku_view("S1", None, 0).unwrap().available, 0);
    // A non-backorder order sees nothing available.
    assert_eq!(
        book.place("b", &[("S1", 1)]).unwrap_err().code(),
        "insufficient_stock"
    );
    book.receive("S1", "WA", 2);
    assert_eq!(book.status(first), OrderStatus::Held);
    book.place("b", &[("S1", 1)]).unwrap();
}

#[test]
fn tier_priority_orders_the_queue_fifo_within_a_tier() {
    let mut book = Book::new();
    book.ok(Command::PutDealer(DealerSpec::new(
        "D2", "platinum", "north", 1_000_000,
    )));
    book.ok(Command::PutDealer(DealerSpec::new(
        "D3", "platinum", "north", 1_000_000,
    )));
    book.ok(Command::PutSettings(SettingsPatch {
        backorder_priority: Some(vec!["platinum".into()]),
        ..SettingsPatch::default()
    }));
    let mut ids = Vec::new();
    for (key, dealer) in [("a", "D1"), ("b", "D2"), ("c", "D3")] {
        let mut request = PlaceOrder::new(key, dealer, &[("S1", 1)]);
        request.backorder = true;
        ids.push(book.place_with(request).unwrap());
    }
    book.receive("S1", "WA", 1);
    assert_eq!(book.status(ids[1]), OrderStatus::Held, "platinum first");
    book.receive("S1", "WA", 1);
    assert_eq!(
        book.status(ids[2]),
        OrderStatus::Held,
        "then FIFO within platinum"
    );
    assert_eq!(book.status(ids[0]), OrderStatus::Backordered);
    book.receive("S1", "WA", 1);
    assert_eq!(book.status(ids[0]), OrderStatus::Held);
}

#[test]
fn cancel_of_partially_filled_backorder_releases_and_refills() {
    let mut book = Book::new();
    book.ok(Command::PutDealer(DealerSpec::new(
        "D2", "gold", "north", 1_000_000,
    )));
    let mut request = PlaceOrder::new("a", "D1", &[("S1", 5), ("S2", 1)]);
    request.backorder = true;
    let first = book.place_with(request).unwrap();
    let mut request = PlaceOrder::new("b", "D2", &[("S1", 2)]);
    request.backorder = true;
    let second = book.place_with(request).unwrap();
    book.receive("S1", "WA", 3);
    assert_eq!(book.ledger.order(first).unwrap().lines[0].backordered, 2);
    book.act(first, OrderAction::Cancel).unwrap();
    // The 3 units released go to the next in the queue: the second order takes 2.
    assert_eq!(book.status(first), OrderStatus::Cancelled);
    assert_eq!(book.status(second), OrderStatus::Held);
    assert_eq!(book.cell("S1", "WA"), (3, 2));
    assert_eq!(book.dealer().credit_held, 0);
    let sku = &book.ledger.state().skus[0];
    assert_eq!((sku.backordered, sku.available()), (0, 1));
    // The cancelled order keeps its allocations as history.
    assert_eq!(book.allocations(first), vec![(0, "WA".into(), 3)]);
}

#[test]
fn expiry_happens_exactly_at_the_deadline() {
    let mut book = Book::new();
    book.ok(Command::PutSettings(SettingsPatch {
        hold_ttl_s: Some(10),
        ..SettingsPatch::default()
    }));
    book.receive("S1", "WA", 5);
    let id = book.place("a", &[("S1", 5)]).unwrap();
    let deadline = book.ledger.order(id).unwrap().hold_expires_at_ms.unwrap();
    book.now_ms = deadline - 1;
    assert_eq!(book.ok(Command::Tick), Effect::Ticked { expired: 0 });
    assert_eq!(book.status(id), OrderStatus::Held);
    book.now_ms = deadline;
    assert_eq!(book.ok(Command::Tick), Effect::Ticked { expired: 1 });
    assert_eq!(book.status(id), OrderStatus::Expired);
    assert_eq!(book.cell("S1", "WA"), (5, 0));
    assert_eq!(book.dealer().credit_held, 0);
    assert!(book.event_names().contains(&"hold_expired"));
}

#[test]
fn idle_tick_changes_nothing_and_needs_no_log_record() {
    let mut book = Book::new();
    let mut events = Vec::new();
    let outcome = book.ledger.apply(book.now_ms, &Command::Tick, &mut events);
    assert_eq!(outcome.result, Ok(Effect::Ticked { expired: 0 }));
    assert!(!outcome.changed);
    book.receive("S1", "WA", 1);
    book.place("a", &[("S1", 1)]).unwrap();
    let deadline = book
        .ledger
        .order(OrderId(1))
        .unwrap()
        .hold_expires_at_ms
        .unwrap();
    let outcome = book.ledger.apply(deadline, &Command::Tick, &mut events);
    assert!(outcome.changed);
}

#[test]
fn confirm_at_the_deadline_finds_the_order_expired() {
    let mut book = Book::new();
    book.receive("S1", "WA", 5);
    let id = book.place("a", &[("S1", 1)]).unwrap();
    book.now_ms = book.ledger.order(id).unwrap().hold_expires_at_ms.unwrap();
    let mut events = Vec::new();
    let outcome = book.ledger.apply(
        book.now_ms,
        &Command::ActOnOrder {
            order: id,
            action: OrderAction::Confirm,
        },
        &mut events,
    );
    assert_eq!(
        outcome.result.unwrap_err(),
        Rejection::InvalidTransition {
            order: id,
            from: OrderStatus::Expired,
            action: OrderAction::Confirm
        }
    );
    assert!(
        outcome.changed,
        "the expiry must be logged even though the confirm failed"
    );
}

#[test]
fn idempotent_replay_returns_the_order_and_conflicting_replay_is_refused() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    let id = book.place("po 1", &[("S1", 2)]).unwrap();
    let before = book.ledger.digest();
    let mut events = Vec::new();
    let outcome = book.ledger.apply(
        book.now_ms,
        &Command::PlaceOrder(PlaceOrder::new("po 1", "D1", &[("S1", 2)])),
        &mut events,
    );
    assert_eq!(outcome.result, Ok(Effect::OrderReplayed(id)));
    assert!(!outcome.changed);
    assert!(events.is_empty());
    assert_eq!(book.ledger.digest(), before);
    let err = book.place("po 1", &[("S1", 3)]).unwrap_err();
    assert_eq!(err, Rejection::IdempotencyConflict { order: id });
    // Same quantity in cases is a different body.
    let mut request = PlaceOrder::new("po 1", "D1", &[("S1", 2)]);
    request.lines[0].unit = Unit::Case;
    assert_eq!(
        book.place_with(request).unwrap_err().code(),
        "idempotency_conflict"
    );
    // Keys are per dealer.
    book.ok(Command::PutDealer(DealerSpec::new(
        "D2", "gold", "north", 1_000_000,
    )));
    assert_ne!(
        book.place_with(PlaceOrder::new("po 1", "D2", &[("S1", 2)]))
            .unwrap(),
        id
    );
}

#[test]
fn adjust_below_reserved_is_refused() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    book.place("a", &[("S1", 6)]).unwrap();
    let err = book
        .run(Command::Adjust {
            sku: "S1".into(),
            warehouse: "WA".into(),
            on_hand: 5,
        })
        .unwrap_err();
    assert_eq!(
        err,
        Rejection::BelowReserved {
            on_hand: 5,
            reserved: 6
        }
    );
    book.ok(Command::Adjust {
        sku: "S1".into(),
        warehouse: "WA".into(),
        on_hand: 6,
    });
    assert_eq!(book.cell("S1", "WA"), (6, 6));
}

#[test]
fn confirm_ship_moves_credit_and_stock_and_accrues_rebate() {
    let mut book = Book::new();
    book.put_dealer(|d| d.rebate_rate_bp = 250);
    book.receive("S1", "WA", 10);
    let id = book.place("a", &[("S1", 4)]).unwrap();
    book.act(id, OrderAction::Confirm).unwrap();
    assert_eq!(
        (book.dealer().credit_held, book.dealer().credit_used),
        (0, 400)
    );
    assert_eq!(book.ledger.order(id).unwrap().hold_expires_at_ms, None);
    book.act(id, OrderAction::Ship).unwrap();
    assert_eq!(book.cell("S1", "WA"), (6, 0));
    assert_eq!(book.dealer().rebate_balance, 10);
    assert_eq!(
        book.act(id, OrderAction::Cancel).unwrap_err().code(),
        "invalid_transition"
    );
}

#[test]
fn rebate_spends_balance_and_is_bounded() {
    let mut book = Book::new();
    book.put_dealer(|d| d.rebate_rate_bp = 10_000);
    book.receive("S1", "WA", 10);
    let id = book.place("a", &[("S1", 1)]).unwrap();
    book.act(id, OrderAction::Confirm).unwrap();
    book.act(id, OrderAction::Ship).unwrap();
    assert_eq!(book.dealer().rebate_balance, 100);
    let mut request = PlaceOrder::new("b", "D1", &[("S1", 1)]);
    request.use_rebate = 101;
    assert_eq!(
        book.place_with(request).unwrap_err(),
        Rejection::RebateExceeded {
            requested: 101,
            allowed: 100
        }
    );
    let mut request = PlaceOrder::new("c", "D1", &[("S2", 1)]);
    request.use_rebate = 60;
    assert_eq!(
        book.place_with(request).unwrap_err().code(),
        "rebate_exceeded",
        "above total"
    );
    let mut request = PlaceOrder::new("d", "D1", &[("S1", 1)]);
    request.use_rebate = 30;
    let id = book.place_with(request).unwrap();
    assert_eq!(book.dealer().rebate_balance, 70);
    assert_eq!(book.dealer().credit_held, 70);
    book.act(id, OrderAction::Cancel).unwrap();
    assert_eq!(book.dealer().rebate_balance, 100);
    assert_eq!(book.dealer().credit_held, 0);
}

#[test]
fn approval_threshold_compares_total_before_rebate() {
    let mut book = Book::new();
    book.put_dealer(|d| d.approval_threshold = Some(500));
    book.receive("S1", "WA", 10);
    book.receive("S2", "WA", 1);
    let small = book.place("a", &[("S1", 5)]).unwrap();
    let big = book.place("b", &[("S1", 5), ("S2", 1)]).unwrap();
    assert_eq!(book.status(small), OrderStatus::Held);
    assert_eq!(book.status(big), OrderStatus::PendingApproval);
    assert_eq!(book.ledger.order(big).unwrap().hold_expires_at_ms, None);
    assert_eq!(
        book.act(big, OrderAction::Confirm).unwrap_err().code(),
        "invalid_transition"
    );
    book.act(big, OrderAction::Approve).unwrap();
    assert_eq!(book.status(big), OrderStatus::Confirmed);
    assert_eq!(book.dealer().credit_used, 550);
    let other = book.place("c", &[("S1", 5), ("S2", 1)]);
    assert_eq!(other.unwrap_err().code(), "insufficient_stock");
}

#[test]
fn reject_releases_everything() {
    let mut book = Book::new();
    book.put_dealer(|d| d.approval_threshold = Some(0));
    book.receive("S1", "WA", 10);
    let id = book.place("a", &[("S1", 5)]).unwrap();
    book.act(id, OrderAction::Reject).unwrap();
    assert_eq!(book.status(id), OrderStatus::Rejected);
    assert_eq!(book.cell("S1", "WA"), (10, 0));
    assert_eq!(book.dealer().credit_held, 0);
}

#[test]
fn cancelling_confirmed_order_lowers_credit_used_not_below_zero() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    let id = book.place("a", &[("S1", 5)]).unwrap();
    book.act(id, OrderAction::Confirm).unwrap();
    book.ok(Command::RecordPayment {
        dealer: "D1".into(),
        amount: 300,
    });
    assert_eq!(book.dealer().credit_used, 200);
    book.act(id, OrderAction::Cancel).unwrap();
    assert_eq!(book.dealer().credit_used, 0);
    assert_eq!(book.cell("S1", "WA"), (10, 0));
}

#[test]
fn payment_above_credit_used_is_overpayment() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    let id = book.place("a", &[("S1", 1)]).unwrap();
    book.act(id, OrderAction::Confirm).unwrap();
    let err = book
        .run(Command::RecordPayment {
            dealer: "D1".into(),
            amount: 101,
        })
        .unwrap_err();
    assert_eq!(
        err,
        Rejection::Overpayment {
            amount: 101,
            credit_used: 100
        }
    );
    book.ok(Command::RecordPayment {
        dealer: "D1".into(),
        amount: 100,
    });
    assert_eq!(book.dealer().credit_used, 0);
}

#[test]
fn low_stock_fires_once_per_crossing_and_on_threshold_change() {
    let mut book = Book::new();
    book.put_sku("S1", 100, |s| s.low_stock_threshold = 5);
    book.receive("S1", "WA", 10);
    assert!(!book.event_names().contains(&"low_stock"));
    book.place("a", &[("S1", 5)]).unwrap();
    assert!(
        !book.event_names().contains(&"low_stock"),
        "5 is not below 5"
    );
    book.place("b", &[("S1", 1)]).unwrap();
    assert!(book.event_names().contains(&"low_stock"));
    book.place("c", &[("S1", 1)]).unwrap();
    assert!(
        !book.event_names().contains(&"low_stock"),
        "once per crossing"
    );
    assert_eq!(book.ledger.low_stock().len(), 1);
    book.receive("S1", "WA", 10);
    assert!(book.ledger.low_stock().is_empty());
    // Raising the threshold above what is available is a crossing too.
    book.put_sku("S1", 100, |s| s.low_stock_threshold = 50);
    let low = book
        .events
        .iter()
        .find(|e| matches!(e.kind, EventKind::LowStock { .. }));
    assert!(matches!(
        low.unwrap().kind,
        EventKind::LowStock {
            available: 13,
            threshold: 50,
            ..
        }
    ));
    // Threshold 0 disables the watch.
    book.put_sku("S1", 100, |s| s.low_stock_threshold = 0);
    assert!(book.ledger.low_stock().is_empty());
}

#[test]
fn order_validation_names_the_field() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    let invalid_field = |e: Rejection| match e {
        Rejection::Invalid { field, .. } => field,
        other => panic!("expected a validation error, got {other:?}"),
    };
    assert_eq!(invalid_field(book.place("a", &[]).unwrap_err()), "lines");
    assert_eq!(
        invalid_field(book.place("a", &[("S1", 0)]).unwrap_err()),
        "lines[0].qty"
    );
    assert_eq!(
        invalid_field(book.place("a", &[("S1", 1), ("S1", 2)]).unwrap_err()),
        "lines"
    );
    assert_eq!(
        invalid_field(book.place("", &[("S1", 1)]).unwrap_err()),
        "client_order_id"
    );
    assert_eq!(
        invalid_field(book.place(&"x".repeat(129), &[("S1", 1)]).unwrap_err()),
        "client_order_id"
    );
    assert_eq!(
        book.place("a", &[("NOPE", 1)]).unwrap_err(),
        Rejection::UnknownSku { sku: "NOPE".into() }
    );
    let err = book
        .place_with(PlaceOrder::new("a", "NOPE", &[("S1", 1)]))
        .unwrap_err();
    assert_eq!(err.code(), "unknown_dealer");
    book.ok(Command::PutSettings(SettingsPatch {
        max_lines: Some(1),
        ..SettingsPatch::default()
    }));
    assert_eq!(
        invalid_field(book.place("a", &[("S1", 1), ("S2", 1)]).unwrap_err()),
        "lines"
    );
}

#[test]
fn huge_quantities_and_prices_are_refused_not_overflowed() {
    let mut book = Book::new();
    book.put_sku("S1", allot_engine::limits::MONEY_MAX, |s| {
        s.case_size = 1_000_000;
    });
    let mut request = PlaceOrder::new("a", "D1", &[("S1", u64::MAX)]);
    assert_eq!(
        book.place_with(request.clone()).unwrap_err().code(),
        "invalid_field"
    );
    request.lines[0] = LineRequest {
        sku: "S1".into(),
        qty: 10_000_000,
        unit: Unit::Case,
    };
    assert_eq!(book.place_with(request).unwrap_err().code(), "overflow");
    assert_eq!(
        book.place("b", &[("S1", 1_000_000)]).unwrap_err().code(),
        "overflow"
    );
    let err = book.run(Command::Receive {
        sku: "S1".into(),
        warehouse: "WA".into(),
        qty: u64::MAX,
    });
    assert_eq!(err.unwrap_err().code(), "invalid_field");
}

#[test]
fn master_data_updates_keep_balances_and_stock() {
    let mut book = Book::new();
    book.receive("S1", "WA", 10);
    let id = book.place("a", &[("S1", 2)]).unwrap();
    book.act(id, OrderAction::Confirm).unwrap();
    book.put_dealer(|d| d.name = "Renamed".into());
    book.put_sku("S1", 999, |s| s.name = "Renamed".into());
    assert_eq!(book.dealer().credit_used, 200);
    assert_eq!(book.cell("S1", "WA"), (10, 2));
    assert_eq!(book.ledger.sku_view("S1", None, 0).unwrap().base_price, 999);
}

#[test]
fn dealer_stock_view_splits_reserved_confirmed_backordered() {
    let mut book = Book::new();
    book.receive("S1", "WA", 5);
    let a = book.place("a", &[("S1", 2)]).unwrap();
    book.place("b", &[("S1", 1)]).unwrap();
    book.act(a, OrderAction::Confirm).unwrap();
    let mut request = PlaceOrder::new("c", "D1", &[("S1", 4)]);
    request.backorder = true;
    book.place_with(request).unwrap();
    let view = book.ledger.dealer_stock("D1").unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!(
        (view[0].reserved, view[0].confirmed, view[0].backordered),
        (3, 2, 2)
    );
}

#[test]
fn stock_page_pages_by_sku_code_with_filters() {
    let mut book = Book::new();
    for i in 0..5 {
        book.put_sku(&format!("K{i}"), 10, |s| s.low_stock_threshold = 3);
        book.receive(
            &format!("K{i}"),
            if i % 2 == 0 { "WA" } else { "WC" },
            1 + i,
        );
    }
    let query = |cursor: Option<String>| allot_engine::query::StockQuery {
        cursor,
        limit: 2,
        ..Default::default()
    };
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = book.ledger.stock_page(&query(cursor)).unwrap();
        pages.push(page.skus.iter().map(|s| s.sku.clone()).collect::<Vec<_>>());
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(
        pages,
        [["K0", "K1"], ["K2", "K3"], ["K4", "S1"], ["S2", ""]].map(|p| {
            p.iter()
                .filter(|c| !c.is_empty())
                .map(|c| (*c).to_owned())
                .collect::<Vec<_>>()
        })
    );
    let mut filtered = query(None);
    filtered.warehouse = Some("WC".into());
    filtered.limit = 100;
    let page = book.ledger.stock_page(&filtered).unwrap();
    assert_eq!(
        page.skus.iter().map(|s| s.sku.as_str()).collect::<Vec<_>>(),
        ["K1", "K3"]
    );
    let mut below = query(None);
    below.below_threshold = true;
    below.limit = 100;
    let page = book.ledger.stock_page(&below).unwrap();
    assert_eq!(
        page.skus.iter().map(|s| s.sku.as_str()).collect::<Vec<_>>(),
        ["K0", "K1"]
    );
    let mut unknown = query(None);
    unknown.sku = Some("NOPE".into());
    assert_eq!(
        book.ledger.stock_page(&unknown).unwrap_err().code(),
        "unknown_sku"
    );
}

#[test]
fn dealer_orders_list_newest_first_with_cursor() {
    let mut book = Book::new();
    book.receive("S1", "WA", 100);
    for i in 0..5 {
        book.place(&format!("po-{i}"), &[("S1", 1)]).unwrap();
    }
    book.act(OrderId(2), OrderAction::Cancel).unwrap();
    let (page, next) = book.ledger.dealer_orders("D1", None, None, 2).unwrap();
    assert_eq!(page.iter().map(|o| o.id.0).collect::<Vec<_>>(), [5, 4]);
    let (page, next) = book.ledger.dealer_orders("D1", None, next, 2).unwrap();
    assert_eq!(page.iter().map(|o| o.id.0).collect::<Vec<_>>(), [3, 2]);
    let (page, next) = book.ledger.dealer_orders("D1", None, next, 2).unwrap();
    assert_eq!(page.iter().map(|o| o.id.0).collect::<Vec<_>>(), [1]);
    assert_eq!(next, None);
    let (page, _) = book
        .ledger
        .dealer_orders("D1", Some(OrderStatus::Cancelled), None, 10)
        .unwrap();
    assert_eq!(page.iter().map(|o| o.id.0).collect::<Vec<_>>(), [2]);
}

#[test]
fn holds_expiring_lists_soonest_first_within_window() {
    let mut book = Book::new();
    book.ok(Command::PutSettings(SettingsPatch {
        hold_ttl_s: Some(100),
        ..SettingsPatch::default()
    }));
    book.receive("S1", "WA", 100);
    book.place("a", &[("S1", 1)]).unwrap();
    book.now_ms += 50_000;
    book.place("b", &[("S1", 1)]).unwrap();
    let soon = book.ledger.holds_expiring(book.now_ms, 60_000, 100);
    assert_eq!(soon.iter().map(|o| o.id.0).collect::<Vec<_>>(), [1]);
    let all = book.ledger.holds_expiring(book.now_ms, 1_000_000, 100);
    assert_eq!(all.iter().map(|o| o.id.0).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn snapshot_restore_gives_an_identical_ledger() {
    let mut book = Book::new();
    book.receive("S1", "WA", 3);
    book.ok(Command::PutPromotion(PromotionSpec {
        quota: Some(5),
        ..promotion("P", 60)
    }));
    book.place("a", &[("S1", 2)]).unwrap();
    let mut request = PlaceOrder::new("b", "D1", &[("S1", 4)]);
    request.backorder = true;
    book.place_with(request).unwrap();
    let restored = Ledger::restore(&book.ledger.snapshot()).unwrap();
    assert_eq!(restored, book.ledger);
    assert_eq!(restored.digest(), book.ledger.digest());
    // The restored ledger behaves the same: its queue and holds were rebuilt.
    let mut original = book.ledger.clone();
    let mut copy = restored;
    let (mut e1, mut e2) = (Vec::new(), Vec::new());
    let receive = Command::Receive {
        sku: "S1".into(),
        warehouse: "WA".into(),
        qty: 10,
    };
    original.apply(2_000_000, &receive, &mut e1);
    copy.apply(2_000_000, &receive, &mut e2);
    assert_eq!(e1, e2);
    assert_eq!(original.digest(), copy.digest());
}

#[test]
fn garbage_snapshots_and_commands_are_errors_not_panics() {
    assert!(Ledger::restore(b"not a snapshot").is_err());
    assert!(Ledger::restore(&[]).is_err());
    assert!(allot_engine::decode_command(&[0xff; 7]).is_err());
    let command = Command::PlaceOrder(PlaceOrder::new("a", "D1", &[("S1", 1)]));
    let bytes = allot_engine::encode_command(&command);
    assert_eq!(allot_engine::decode_command(&bytes).unwrap(), command);
    for cut in 0..bytes.len() {
        let _ = allot_engine::decode_command(&bytes[..cut]);
    }
}

#[test]
fn commands_and_events_round_trip_through_serde() {
    let mut book = Book::new();
    book.receive("S1", "WA", 3);
    let command = Command::PlaceOrder(PlaceOrder::new("a", "D1", &[("S1", 2)]));
    let json = serde_json::to_string(&command).unwrap();
    assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command);
    book.ok(command);
    for event in &book.events {
        let json = serde_json::to_string(event).unwrap();
        assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), event);
    }
    let state = serde_json::to_string(book.ledger.state()).unwrap();
    assert_eq!(
        &serde_json::from_str::<allot_engine::State>(&state).unwrap(),
        book.ledger.state()
    );
}

#[test]
fn event_sequence_numbers_count_from_one_without_gaps() {
    let mut book = Book::new();
    let mut all = Vec::new();
    book.receive("S1", "WA", 3);
    all.extend(book.events.clone());
    book.place("a", &[("S1", 2)]).unwrap();
    all.extend(book.events.clone());
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(book.ledger.last_event_seq(), seqs.len() as u64);
}

#[test]
fn closed_orders_leave_the_book_after_the_retention_period() {
    let mut book = Book::new();
    book.ok(Command::PutSettings(SettingsPatch {
        order_retention_s: Some(60),
        ..SettingsPatch::default()
    }));
    book.ok(Command::PutPromotion(PromotionSpec {
        starts_at_ms: 0,
        ends_at_ms: u64::MAX,
        ..promotion("P", 60)
    }));
    book.receive("S1", "WA", 100);
    let shipped = book.place("a", &[("S1", 2)]).unwrap();
    book.act(shipped, OrderAction::Confirm).unwrap();
    book.act(shipped, OrderAction::Ship).unwrap();
    let cancelled = book.place("b", &[("S1", 1)]).unwrap();
    book.act(cancelled, OrderAction::Cancel).unwrap();
    let open = book.place("c", &[("S1", 3)]).unwrap();
    let closed_at = book.now_ms;
    book.now_ms = closed_at + 59_999;
    assert_eq!(book.ok(Command::Tick), Effect::Ticked { expired: 0 });
    assert!(
        book.ledger.order(shipped).is_some(),
        "kept until the period ends"
    );
    book.now_ms = closed_at + 60_000;
    let mut events = Vec::new();
    let outcome = book.ledger.apply(book.now_ms, &Command::Tick, &mut events);
    assert!(
        outcome.changed,
        "pruning changes the book and must be logged"
    );
    book.ledger.check_invariants().unwrap();
    assert!(book.ledger.order(shipped).is_none());
    assert!(book.ledger.order(cancelled).is_none());
    assert_eq!(
        book.status(open),
        OrderStatus::Held,
        "open orders are never pruned"
    );
    assert_eq!(
        book.act(shipped, OrderAction::Cancel).unwrap_err(),
        Rejection::UnknownOrder { order: shipped }
    );
    let (page, _) = book.ledger.dealer_orders("D1", None, None, 10).unwrap();
    assert_eq!(page.iter().map(|o| o.id).collect::<Vec<_>>(), [open]);
    // Units sold at the promotion price stay sold; the stock shipped stays shipped.
    assert_eq!(book.ledger.state().promotions[0].used, 2 + 3);
    assert_eq!(book.cell("S1", "WA"), (98, 3));
    // The key of a pruned order is free again.
    let again = book.place("b", &[("S1", 1)]).unwrap();
    assert_eq!(again, OrderId(4));
    // A snapshot restores to the same book, and replaying the same commands (the
    // pruning tick included) gives the same digest.
    let restored = Ledger::restore(&book.ledger.snapshot()).unwrap();
    assert_eq!(restored.digest(), book.ledger.digest());
    assert!(restored.order(shipped).is_none());
}

#[test]
fn turning_retention_on_prunes_old_history_in_bounded_steps() {
    let mut book = Book::new();
    book.receive("S1", "WA", 5_000);
    for i in 0..1_500 {
        let id = book.place(&format!("po-{i}"), &[("S1", 1)]).unwrap();
        book.act(id, OrderAction::Cancel).unwrap();
    }
    book.now_ms += 10_000;
    book.ok(Command::PutSettings(SettingsPatch {
        order_retention_s: Some(1),
        ..SettingsPatch::default()
    }));
    let live = |book: &Book| book.ledger.state().orders.iter().count();
    assert_eq!(
        live(&book),
        1_500,
        "a settings change prunes nothing by itself"
    );
    book.ok(Command::Tick);
    assert_eq!(
        live(&book),
        1_500 - allot_engine::limits::PRUNE_PER_APPLY_MAX as usize
    );
    book.ok(Command::Tick);
    assert_eq!(live(&book), 0);
    book.ok(Command::PutSettings(SettingsPatch {
        order_retention_s: Some(0),
        ..SettingsPatch::default()
    }));
    let id = book.place("kept", &[("S1", 1)]).unwrap();
    book.act(id, OrderAction::Cancel).unwrap();
    book.now_ms += 1_000_000;
    book.ok(Command::Tick);
    assert!(
        book.ledger.order(id).is_some(),
        "retention 0 keeps closed orders"
    );
}
