//! Wire shapes: request bodies (strict: unknown fields refused) turned into engine
//! commands, and engine views turned into JSON with codes and RFC 3339 times.

use std::collections::BTreeMap;

use allot_engine::query::{SkuStock, StockRow};
use allot_engine::{
    Command, DealerId, DealerSpec, Event, EventKind, Ledger, LineRequest, Order, PlaceOrder,
    PromotionSpec, SettingsPatch, SkuId, SkuSpec, Unit, WarehouseId, WarehouseSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::rfc3339::{self, Rfc3339};

/// `POST /v1/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    pub client_order_id: String,
    pub dealer: String,
    pub lines: Vec<LineBody>,
    #[serde(default)]
    pub backorder: bool,
    #[serde(default)]
    pub use_rebate: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    pub sku: String,
    pub qty: u64,
    #[serde(default)]
    pub unit: Unit,
}

impl OrderBody {
    pub fn into_command(self) -> Result<PlaceOrder, ApiError> {
        if !allot_engine::ids::is_valid_client_order_id(&self.client_order_id) {
            return Err(ApiError::invalid(
                "client_order_id",
                "client_order_id must be 1-128 printable ASCII characters",
            ));
        }
        Ok(PlaceOrder {
            client_order_id: self.client_order_id,
            dealer: self.dealer,
            lines: self
                .lines
                .into_iter()
                .map(|l| LineRequest {
                    sku: l.sku,
                    qty: l.qty,
                    unit: l.unit,
                })
                .collect(),
            backorder: self.backorder,
            use_rebate: self.use_rebate,
        })
    }
}

/// `PUT /admin/warehouses/{code}`; `code` is optional in the body (import needs it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseBody {
    pub code: Option<String>,
    pub region: String,
}

/// `PUT /admin/skus/{code}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuBody {
    pub code: Option<String>,
    pub name: Option<String>,
    pub case_size: Option<u32>,
    pub split_case: Option<bool>,
    pub min_qty: Option<u64>,
    pub base_price: i64,
    #[serde(default)]
    pub tier_prices: BTreeMap<String, i64>,
    #[serde(default)]
    pub region_prices: BTreeMap<String, i64>,
    #[serde(default)]
    pub low_stock_threshold: u64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `PUT /admin/dealers/{code}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealerBody {
    pub code: Option<String>,
    pub name: Option<String>,
    pub tier: String,
    pub region: String,
    pub credit_limit: i64,
    pub approval_threshold: Option<i64>,
    #[serde(default)]
    pub rebate_rate_bp: u32,
}

/// `PUT /admin/promotions/{code}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionBody {
    pub code: Option<String>,
    pub sku: String,
    pub price: i64,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub tiers: Vec<String>,
    pub quota: Option<u64>,
    pub per_dealer_limit: Option<u64>,
}

/// `PUT /admin/settings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    pub hold_ttl_s: Option<u64>,
    pub max_lines: Option<u32>,
    pub backorder_priority: Option<Vec<String>>,
    pub order_retention_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    pub qty: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    pub on_hand: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    pub amount: i64,
}

/// An import `stock` line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockLine {
    pub sku: String,
    pub warehouse: String,
    pub on_hand: u64,
}

/// The code of an entity: the path's, which a body may repeat but not contradict.
fn code_of(path: Option<&str>, body: Option<String>) -> Result<String, ApiError> {
    match (path, body) {
        (Some(p), Some(b)) if p != b => Err(ApiError::invalid(
            "code",
            format!("body code `{b}` differs from the path's `{p}`"),
        )),
        (Some(p), _) => Ok(p.to_owned()),
        (None, Some(b)) => Ok(b),
        (None, None) => Err(ApiError::invalid("code", "missing field `code`")),
    }
}

impl WarehouseBody {
    pub fn into_command(self, path: Option<&str>) -> Result<Command, ApiError> {
        let code = code_of(path, self.code)?;
        Ok(Command::PutWarehouse(WarehouseSpec {
            code,
            region: self.region,
        }))
    }
}

impl SkuBody {
    pub fn into_command(self, path: Option<&str>) -> Result<Command, ApiError> {
        let code = code_of(path, self.code)?;
        let mut spec = SkuSpec::new(code, self.base_price);
        if let Some(name) = self.name {
            spec.name = name;
        }
        spec.case_size = self.case_size.unwrap_or(spec.case_size);
        spec.split_case = self.split_case.unwrap_or(spec.split_case);
        spec.min_qty = self.min_qty.unwrap_or(spec.min_qty);
        spec.tier_prices = self.tier_prices;
        spec.region_prices = self.region_prices;
        spec.low_stock_threshold = self.low_stock_threshold;
        spec.attributes = self.attributes;
        Ok(Command::PutSku(spec))
    }
}

impl DealerBody {
    pub fn into_command(self, path: Option<&str>) -> Result<Command, ApiError> {
        let code = code_of(path, self.code)?;
        let mut spec = DealerSpec::new(code, self.tier, self.region, self.credit_limit);
        if let Some(name) = self.name {
            spec.name = name;
        }
        spec.approval_threshold = self.approval_threshold;
        spec.rebate_rate_bp = self.rebate_rate_bp;
        Ok(Command::PutDealer(spec))
    }
}

impl PromotionBody {
    pub fn into_command(self, path: Option<&str>) -> Result<Command, ApiError> {
        let code = code_of(path, self.code)?;
        let time = |field: &str, text: &str| {
            rfc3339::parse(text)
                .ok_or_else(|| ApiError::invalid(field, format!("{field}: not an RFC 3339 time")))
        };
        Ok(Command::PutPromotion(PromotionSpec {
            code,
            sku: self.sku,
            price: self.price,
            starts_at_ms: time("starts_at", &self.starts_at)?,
            ends_at_ms: time("ends_at", &self.ends_at)?,
            tiers: self.tiers,
            quota: self.quota,
            per_dealer_limit: self.per_dealer_limit,
        }))
    }
}

impl SettingsBody {
    pub fn into_command(self) -> Command {
        Command::PutSettings(SettingsPatch {
            hold_ttl_s: self.hold_ttl_s,
            max_lines: self.max_lines,
            backorder_priority: self.backorder_priority,
            order_retention_s: self.order_retention_s,
        })
    }
}

/// Parses a JSON body: 400 if it is not UTF-8 or not JSON, 422 naming the field if it
/// is JSON of the wrong shape.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| ApiError::malformed("the body is not UTF-8"))?;
    // One plain pass straight into `T` (trailing characters refused). Only when that
    // fails is the body read again: as plain JSON, to tell "not JSON" (400) from
    // "JSON of the wrong shape" (422), and with path tracking, to name the field.
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    if let Err(syntax) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(ApiError::malformed(format!(
            "the body is not JSON: {syntax}"
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => Err(shape_error(&error)),
        // Unreachable: the same text just failed to parse as `T`.
        Ok(_) => Err(ApiError::malformed("the body does not parse")),
    }
}

/// The 422 for JSON of the wrong shape, naming the field.
fn shape_error(error: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let message = error.inner().to_string();
    let mut field = error.path().to_string();
    // An unknown or missing field is named in the message, not in the path.
    if let Some(name) = backticked(&message) {
        if field == "." {
            field = name;
        } else if message.starts_with("missing field") {
            field = format!("{field}.{name}");
        }
    }
    ApiError::invalid(&field, format!("{field}: {message}"))
}

/// A JSON value into `T`, 422 naming the field on a mismatch.
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| shape_error(&e))
}

fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

/// A JSON text rendered once (on the shard, from borrowed data) and sent as is.
pub type RawJson = Box<RawValue>;

/// A JSON text answered as it is (`content-type: application/json`).
#[derive(Debug)]
pub struct JsonText(pub String);

impl From<RawJson> for JsonText {
    fn from(raw: RawJson) -> Self {
        Self(Box::<str>::from(raw).into_string())
    }
}

impl axum::response::IntoResponse for JsonText {
    fn into_response(self) -> axum::response::Response {
        let json = axum::http::HeaderValue::from_static("application/json");
        ([(axum::http::header::CONTENT_TYPE, json)], self.0).into_response()
    }
}

/// Renders a value as JSON text.
pub fn raw<T: Serialize + ?Sized>(value: &T) -> RawJson {
    // Only maps with non-string keys or failing custom `Serialize` impls can fail to
    // render; the wire structs have neither.
    serde_json::value::to_raw_value(value).expect("wire structs always render")
}

/// An order on the wire, as JSON text written straight from the ledger's borrowed
/// data: the reply to every placement and status change, so it is rendered by hand
/// (no intermediate structs, no allocation but the text itself).
pub fn order_text(ledger: &Ledger, order: &Order) -> String {
    let mut out = String::with_capacity(320 + 200 * order.lines.len());
    out.push_str("{\"id\":");
    push_int(&mut out, order.id.0);
    out.push_str(",\"client_order_id\":");
    push_json_str(&mut out, &order.client_order_id);
    out.push_str(",\"dealer\":");
    push_json_str(&mut out, ledger.dealer_code(order.dealer));
    out.push_str(",\"status\":\"");
    out.push_str(order.status.name());
    out.push_str("\",\"lines\":[");
    for (i, line) in order.lines.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"sku\":");
        push_json_str(&mut out, ledger.sku_code(line.sku));
        out.push_str(",\"qty\":");
        push_int(&mut out, line.qty);
        out.push_str(",\"requested_qty\":");
        push_int(&mut out, line.requested_qty);
        out.push_str(match line.unit {
            Unit::Unit => ",\"unit\":\"unit\",\"unit_price\":",
            Unit::Case => ",\"unit\":\"case\",\"unit_price\":",
        });
        push_int(&mut out, line.unit_price);
        out.push_str(",\"allocations\":[");
        let allocations = order.allocations.iter().filter(|a| a.line as usize == i);
        for (j, allocation) in allocations.enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"warehouse\":");
            push_json_str(&mut out, ledger.warehouse_code(allocation.warehouse));
            out.push_str(",\"qty\":");
            push_int(&mut out, allocation.qty);
            out.push('}');
        }
        out.push_str("],\"backordered\":");
        push_int(&mut out, line.backordered);
        out.push('}');
    }
    out.push_str("],\"total\":");
    push_int(&mut out, order.total);
    out.push_str(",\"rebate_used\":");
    push_int(&mut out, order.rebate_used);
    out.push_str(if order.backorder {
        ",\"backorder\":true,\"hold_expires_at\":"
    } else {
        ",\"backorder\":false,\"hold_expires_at\":"
    });
    match order.hold_expires_at_ms {
        Some(ms) => push_json_time(&mut out, ms),
        None => out.push_str("null"),
    }
    out.push_str(",\"created_at\":");
    push_json_time(&mut out, order.created_at_ms);
    out.push_str(",\"updated_at\":");
    push_json_time(&mut out, order.updated_at_ms);
    out.push('}');
    out
}

/// An order as a JSON value to embed in a larger answer (lists).
pub fn order_json(ledger: &Ledger, order: &Order) -> RawJson {
    RawValue::from_string(order_text(ledger, order))
        .expect("order_text writes valid JSON (tested below)")
}

/// Appends `text` as a JSON string: quotes, backslashes and control characters
/// escaped, everything else (UTF-8 included) as is.
fn push_json_str(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        out.push_str(&text[plain..at]);
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            control => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(control >> 4)]));
                out.push(char::from(HEX[usize::from(control & 0xf)]));
            }
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

fn push_json_time(out: &mut String, ms: u64) {
    out.push('"');
    rfc3339::push(out, ms);
    out.push('"');
}

/// A stock row of one warehouse.
pub fn row_json(sku: &str, row: &StockRow) -> Value {
    json!({
        "sku": sku,
        "warehouse": row.warehouse,
        "on_hand": row.on_hand,
        "reserved": row.reserved,
        "available": row.available,
    })
}

/// A SKU's enterprise totals with its warehouse rows.
pub fn sku_stock_json(stock: &SkuStock) -> Value {
    json!({
        "sku": stock.sku,
        "on_hand": stock.on_hand,
        "reserved": stock.reserved,
        "available": stock.available,
        "backordered": stock.backordered,
        "low_stock_threshold": stock.low_stock_threshold,
        "warehouses": stock.warehouses.iter().map(|r| row_json(&stock.sku, r)).collect::<Vec<_>>(),
    })
}

/// An event on the wire: `{"seq", "type", "at", ...}` with codes for ids.
/// An event on the wire: `seq`, `type`, `at`, then the fields of its kind.
#[derive(Default, Serialize)]
struct EventWire<'a> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    at: Rfc3339,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dealer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warehouse: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qty: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_hand: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credit_used: Option<i64>,
}

/// Turns the ids in events back into codes: the ledger itself, or the event hub's
/// copy of its code tables.
pub trait CodeNames {
    fn sku_code(&self, id: SkuId) -> &str;
    fn warehouse_code(&self, id: WarehouseId) -> &str;
    fn dealer_code(&self, id: DealerId) -> &str;
}

impl CodeNames for Ledger {
    fn sku_code(&self, id: SkuId) -> &str {
        Ledger::sku_code(self, id)
    }

    fn warehouse_code(&self, id: WarehouseId) -> &str {
        Ledger::warehouse_code(self, id)
    }

    fn dealer_code(&self, id: DealerId) -> &str {
        Ledger::dealer_code(self, id)
    }
}

/// An event on the wire, with codes for ids and an RFC 3339 time.
pub fn event_json(codes: &impl CodeNames, event: &Event) -> RawJson {
    let mut wire = EventWire {
        seq: event.seq,
        kind: event.kind.name(),
        at: Rfc3339(event.at_ms),
        ..EventWire::default()
    };
    let sku = |id| Some(codes.sku_code(id));
    let warehouse = |id| Some(codes.warehouse_code(id));
    let dealer = |id| Some(codes.dealer_code(id));
    match event.kind {
        EventKind::OrderPlaced {
            order,
            dealer: d,
            status,
            total,
        } => {
            (wire.order, wire.dealer) = (Some(order.0), dealer(d));
            (wire.status, wire.total) = (Some(status.name()), Some(total));
        }
        EventKind::StockReserved {
            order,
            sku: s,
            warehouse: w,
            qty,
        }
        | EventKind::StockReleased {
            order,
            sku: s,
            warehouse: w,
            qty,
        } => {
            (wire.order, wire.sku, wire.warehouse, wire.qty) =
                (Some(order.0), sku(s), warehouse(w), Some(qty));
        }
        EventKind::BackorderQueued { order, sku: s, qty } => {
            (wire.order, wire.sku, wire.qty) = (Some(order.0), sku(s), Some(qty));
        }
        EventKind::BackorderFilled {
            order,
            sku: s,
            warehouse: w,
            qty,
            remaining,
        } => {
            (wire.order, wire.sku, wire.warehouse) = (Some(order.0), sku(s), warehouse(w));
            (wire.qty, wire.remaining) = (Some(qty), Some(remaining));
        }
        EventKind::OrderStatusChanged {
            order,
            dealer: d,
            from,
            to,
        } => {
            (wire.order, wire.dealer) = (Some(order.0), dealer(d));
            (wire.from, wire.to) = (Some(from.name()), Some(to.name()));
        }
        EventKind::HoldExpired { order, dealer: d } => {
            (wire.order, wire.dealer) = (Some(order.0), dealer(d));
        }
        EventKind::StockReceived {
            sku: s,
            warehouse: w,
            qty,
            on_hand,
        } => {
            (wire.sku, wire.warehouse) = (sku(s), warehouse(w));
            (wire.qty, wire.on_hand) = (Some(qty), Some(on_hand));
        }
        EventKind::StockAdjusted {
            sku: s,
            warehouse: w,
            on_hand,
        } => {
            (wire.sku, wire.warehouse, wire.on_hand) = (sku(s), warehouse(w), Some(on_hand));
        }
        EventKind::LowStock {
            sku: s,
            available,
            threshold,
        } => {
            (wire.sku, wire.available, wire.threshold) = (sku(s), Some(available), Some(threshold));
        }
        EventKind::PaymentRecorded {
            dealer: d,
            amount,
            credit_used,
        } => {
            (wire.dealer, wire.amount, wire.credit_used) =
                (dealer(d), Some(amount), Some(credit_used));
        }
        EventKind::RebateAccrued {
            dealer: d,
            order,
            amount,
        } => {
            (wire.dealer, wire.order, wire.amount) = (dealer(d), Some(order.0), Some(amount));
        }
    }
    raw(&wire)
}

/// The tenant's settings on the wire.
pub fn settings_json(ledger: &Ledger) -> Value {
    let settings = ledger.settings();
    let tiers: Vec<&str> = settings
        .backorder_priority
        .iter()
        .map(|t| ledger.state().tiers[t.index()].as_str())
        .collect();
    json!({
        "hold_ttl_s": settings.hold_ttl_s,
        "max_lines": settings.max_lines,
        "backorder_priority": tiers,
        "order_retention_s": settings.order_retention_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn wrong_types_and_unknown_fields_are_422_naming_the_field() {
        let e = parse_json::<OrderBody>(
            br#"{"client_order_id":"a","dealer":"d","lines":[{"sku":"s","qty":"x"}]}"#,
        )
        .expect_err("wrong type");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.details["field"], "lines[0].qty");
        let e = parse_json::<OrderBody>(
            br#"{"client_order_id":"a","dealer":"d","lines":[],"bogus":1}"#,
        )
        .expect_err("unknown field");
        assert_eq!(e.details["field"], "bogus");
        let e = parse_json::<OrderBody>(br#"{"dealer":"d","lines":[]}"#).expect_err("missing");
        assert_eq!(e.details["field"], "client_order_id");
    }

    /// A book with one placed order whose first line is split: the dealer's region
    /// (W1) first, then the other warehouse.
    fn book_with_an_order(client_order_id: &str) -> (Ledger, allot_engine::OrderId) {
        let mut ledger = Ledger::default();
        let mut events = Vec::new();
        let mut run = |ledger: &mut Ledger, command: Command| {
            let outcome = ledger.apply(1_700_000_000_123, &command, &mut events);
            outcome.result.expect("set-up command applies")
        };
        for (code, region) in [("W1", "north"), ("W2", "south")] {
            let spec = WarehouseSpec {
                code: code.into(),
                region: region.into(),
            };
            run(&mut ledger, Command::PutWarehouse(spec));
        }
        let mut case_sku = SkuSpec::new("CASE-6", 250);
        case_sku.case_size = 6;
        run(&mut ledger, Command::PutSku(SkuSpec::new("S-1", 1_000)));
        run(&mut ledger, Command::PutSku(case_sku));
        for (sku, warehouse, qty) in [("S-1", "W1", 3), ("S-1", "W2", 10), ("CASE-6", "W1", 60)] {
            let receive = Command::Receive {
                sku: sku.into(),
                warehouse: warehouse.into(),
                qty,
            };
            run(&mut ledger, receive);
        }
        let dealer = DealerSpec::new("D-7", "gold", "north", 1_000_000);
        run(&mut ledger, Command::PutDealer(dealer));
        let mut request = PlaceOrder::new(client_order_id, "D-7", &[("S-1", 11)]);
        request.lines.push(LineRequest {
            sku: "CASE-6".into(),
            qty: 2,
            unit: Unit::Case,
        });
        let allot_engine::Effect::OrderPlaced(id) = run(&mut ledger, Command::PlaceOrder(request))
        else {
            panic!("the order is placed");
        };
        (ledger, id)
    }

    #[test]
    fn order_text_is_the_documented_order_json_with_strings_escaped() {
        let key = r#"po "7" \ {x}/y"#;
        let (ledger, id) = book_with_an_order(key);
        let order = ledger.order(id).expect("placed");
        let text = order_text(&ledger, &order);
        let parsed: Value = serde_json::from_str(&text).expect("valid JSON");
        let expected = json!({
            "id": 1,
            "client_order_id": key,
            "dealer": "D-7",
            "status": "held",
            "lines": [
                {"sku": "S-1", "qty": 11, "requested_qty": 11, "unit": "unit",
                 "unit_price": 1000, "backordered": 0,
                 "allocations": [{"warehouse": "W1", "qty": 3}, {"warehouse": "W2", "qty": 8}]},
                {"sku": "CASE-6", "qty": 12, "requested_qty": 2, "unit": "case",
                 "unit_price": 250, "backordered": 0,
                 "allocations": [{"warehouse": "W1", "qty": 12}]},
            ],
            "total": 14_000,
            "rebate_used": 0,
            "backorder": false,
            "hold_expires_at": "2023-11-14T22:28:20.123Z",
            "created_at": "2023-11-14T22:13:20.123Z",
            "updated_at": "2023-11-14T22:13:20.123Z",
        });
        assert_eq!(parsed, expected, "{text}");
        let embedded = order_json(&ledger, &order);
        assert_eq!(embedded.get(), text);
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        for text in [
            "",
            "plain",
            "q\"b\\",
            "tab\t nl\n cr\r bell\u{7} del\u{7f}",
            "é ✓ 🙂\u{1f}",
        ] {
            let mut out = String::new();
            push_json_str(&mut out, text);
            let back: String = serde_json::from_str(&out).expect("valid JSON string");
            assert_eq!(back, text, "{out}");
        }
    }

    #[test]
    fn non_json_and_non_utf8_are_400() {
        assert_eq!(
            parse_json::<OrderBody>(b"{nope").expect_err("x").status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_json::<OrderBody>(b"\xff\xfe").expect_err("x").status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn huge_numbers_are_422() {
        let e = parse_json::<ReceiveBody>(br#"{"qty": 1e400}"#).err();
        let e2 = parse_json::<ReceiveBody>(br#"{"qty": 99999999999999999999999}"#).expect_err("x");
        assert_eq!(e2.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.is_some());
    }
}
