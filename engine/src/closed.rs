//! Closed orders, kept compactly. A shipped, cancelled, expired or rejected order never
//! changes again, and a book keeps it as history (until its retention, if one is set),
//! so it is stored as a short byte record instead of an [`Order`] (296 bytes); the
//! order id is implied by where the record is kept. A 3-line order's record is 61
//! to 80 bytes. Every byte a book keeps per order is memory the process must fault in,
//! so the smaller history is also a faster placement once the book is large.
//!
//! A record starts with a fixed header, what the hot paths read without decoding the
//! rest: an idempotent replay compares the dealer and key, pruning removes them from
//! the key index, and retention orders closed orders by close time.
//!
//! ```text
//! status u8 · flags u8 · dealer u32 · key length u8 · key · updated_at_ms u64
//! ```
//!
//! Then the body, in one of three forms. Most orders fit the narrow form, fixed-width
//! fields written and read without loops (its conditions are at [`write_narrow`]):
//!
//! ```text
//! updated_at_ms − created_at_ms u32 · total u32 · rebate_used u32 · line count u8 ·
//! per line: sku u32 · qty u32 · unit_price u32 · the one warehouse it came from u16
//! ```
//!
//! and most of those its small variant, for an order that used no rebate and whose
//! SKU ids and quantities fit 16 bits and warehouse ids 8 (a 3-line order's record
//! takes 61 bytes instead of 80; every byte kept is memory a growing book faults in):
//!
//! ```text
//! updated_at_ms − created_at_ms u32 · total u32 · line count u8 ·
//! per line: sku u16 · qty u16 · unit_price u32 · the one warehouse it came from u8
//! ```
//!
//! Every other order takes the wide form, LEB128 varints (signed ones zigzagged):
//!
//! ```text
//! updated_at_ms − created_at_ms (wrapping) · total · rebate_used · line count ·
//! per line: sku · line flags u8 · requested_qty · [qty] · unit_price · backordered ·
//! [promotion] · allocation count · per allocation: line · warehouse · qty
//! ```
//!
//! Integers are little-endian. Decoding checks every length and value, so a record
//! from a forged snapshot is refused, never a panic.

use crate::command::Unit;
use crate::ids::{DealerId, OrderId, PromotionId, SkuId, WarehouseId};
use crate::order::{Allocation, Allocations, Order, OrderLine, OrderLines, OrderStatus};

/// Order flags: placed with `backorder: true`; some line has a promotion; the body is
/// in the narrow form; (with `NARROW`) in its small variant.
const BACKORDER: u8 = 1;
const PROMOTIONS: u8 = 2;
const NARROW: u8 = 4;
const SMALL: u8 = 8;
const FLAGS: u8 = BACKORDER | PROMOTIONS | NARROW | SMALL;
/// Line flags (wide form): requested in cases; priced at a promotion; `qty` differs
/// from `requested_qty` (so it is stored).
const CASE: u8 = 1;
const PROMOTION: u8 = 2;
const QTY_DIFFERS: u8 = 4;
const LINE_FLAGS: u8 = CASE | PROMOTION | QTY_DIFFERS;

/// Bytes of the header before the key, and after it.
const HEAD: usize = 7;
const UPDATED: usize = 8;
/// Bytes of a narrow body before its lines, and of each line; in the small variant.
const NARROW_HEAD: usize = 13;
const NARROW_LINE: usize = 14;
const SMALL_HEAD: usize = 9;
const SMALL_LINE: usize = 9;

/// The lengths of a narrow body's head and of each of its lines.
const fn narrow_sizes(small: bool) -> (usize, usize) {
    if small {
        (SMALL_HEAD, SMALL_LINE)
    } else {
        (NARROW_HEAD, NARROW_LINE)
    }
}

/// Appends the record of `order`, which is closed (and so has no hold deadline), and
/// whose key is a valid one (at most `CLIENT_ORDER_ID_LEN_MAX` bytes).
pub(crate) fn encode(order: &Order, out: &mut Vec<u8>) {
    debug_assert!(!order.status.is_open() && order.hold_expires_at_ms.is_none());
    let start = out.len();
    if !write_narrow(order, out) {
        out.truncate(start);
        let promotions = order.lines.iter().any(|l| l.promotion.is_some());
        out.extend_from_slice(&head(order, if promotions { PROMOTIONS } else { 0 }));
        out.extend_from_slice(order.client_order_id.as_bytes());
        out.extend_from_slice(&order.updated_at_ms.to_le_bytes());
        write_wide(order, out);
    }
}

/// The header's fixed part, before the key, with `flags` (`BACKORDER` is added here).
#[inline]
fn head(order: &Order, mut flags: u8) -> [u8; HEAD] {
    if order.backorder {
        flags |= BACKORDER;
    }
    let mut head = [0; HEAD];
    head[0] = order.status as u8;
    head[1] = flags;
    head[2..6].copy_from_slice(&order.dealer.0.to_le_bytes());
    let key_len = order.client_order_id.len();
    head[6] = u8::try_from(key_len).expect("keys are at most 128 bytes");
    head
}

/// Appends the narrow record of `order` if it fits the form: `updated_at_ms −
/// created_at_ms` and the total in 32 bits (the rebate used is at most the total), at
/// most 255 lines, each in units (not cases), with no promotion, nothing backordered,
/// a quantity and a non-negative price in 32 bits, and reserved whole in one
/// warehouse whose id fits 16 bits, recorded as the line's own allocation in line
/// order. Returns whether it did; if not, it may have appended part of one. Checked
/// as it is written, in one pass over the lines, the small variant first: an order
/// that turns out not to fit it is written again in 32-bit fields. That abandoned
/// attempt (its header, key and lines up to the first that does not fit) is what a
/// book of more than 65,536 SKUs or 256 warehouses, or of large quantities, pays on
/// most closes; checking every line before writing instead cost every order of the
/// benchmark mix 45–60 instructions more (callgrind).
#[inline]
fn write_narrow(order: &Order, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if order.rebate_used == 0 && write_fixed::<true>(order, out) {
        return true;
    }
    out.truncate(start);
    write_fixed::<false>(order, out)
}

/// [`write_narrow`] in the small variant or not, as `SMALL_FORM` says; returns whether
/// the order fits it.
#[inline]
fn write_fixed<const SMALL_FORM: bool>(order: &Order, out: &mut Vec<u8>) -> bool {
    let (body_len, line_len) = narrow_sizes(SMALL_FORM);
    let (lines, allocations) = (&order.lines[..], &order.allocations[..]);
    let delta = order.updated_at_ms.wrapping_sub(order.created_at_ms);
    let (Ok(delta), Ok(total), Ok(rebate), Ok(count)) = (
        u32::try_from(delta),
        u32::try_from(order.total),
        u32::try_from(order.rebate_used),
        u8::try_from(lines.len()),
    ) else {
        return false;
    };
    if allocations.len() != lines.len() || rebate > total {
        return false;
    }
    let key = order.client_order_id.as_bytes();
    let start = out.len();
    out.resize(
        start + HEAD + key.len() + UPDATED + body_len + line_len * lines.len(),
        0,
    );
    let flags = if SMALL_FORM { NARROW | SMALL } else { NARROW };
    let (head_bytes, rest) = out[start..].split_at_mut(HEAD);
    head_bytes.copy_from_slice(&head(order, flags));
    let (key_bytes, rest) = rest.split_at_mut(key.len());
    key_bytes.copy_from_slice(key);
    let (updated, rest) = rest.split_at_mut(UPDATED);
    updated.copy_from_slice(&order.updated_at_ms.to_le_bytes());
    let (body_head, line_bytes) = rest.split_at_mut(body_len);
    body_head[0..4].copy_from_slice(&delta.to_le_bytes());
    body_head[4..8].copy_from_slice(&total.to_le_bytes());
    if SMALL_FORM {
        body_head[8] = count;
    } else {
        body_head[8..12].copy_from_slice(&rebate.to_le_bytes());
        body_head[12] = count;
    }
    let pairs = lines.iter().zip(allocations).enumerate();
    for (bytes, (i, (line, allocation))) in line_bytes.chunks_exact_mut(line_len).zip(pairs) {
        let plain = line.unit == Unit::Unit
            && line.qty == line.requested_qty
            && line.promotion.is_none()
            && line.backordered == 0
            && allocation.line as usize == i
            && allocation.qty == line.qty;
        let (true, Ok(qty), Ok(price), Ok(warehouse)) = (
            plain,
            u32::try_from(line.qty),
            u32::try_from(line.unit_price),
            u16::try_from(allocation.warehouse.0),
        ) else {
            return false;
        };
        if SMALL_FORM {
            let (Ok(sku), Ok(qty), Ok(warehouse)) = (
                u16::try_from(line.sku.0),
                u16::try_from(qty),
                u8::try_from(warehouse),
            ) else {
                return false;
            };
            bytes[0..2].copy_from_slice(&sku.to_le_bytes());
            bytes[2..4].copy_from_slice(&qty.to_le_bytes());
            bytes[4..8].copy_from_slice(&price.to_le_bytes());
            bytes[8] = warehouse;
        } else {
            bytes[0..4].copy_from_slice(&line.sku.0.to_le_bytes());
            bytes[4..8].copy_from_slice(&qty.to_le_bytes());
            bytes[8..12].copy_from_slice(&price.to_le_bytes());
            bytes[12..14].copy_from_slice(&warehouse.to_le_bytes());
        }
    }
    true
}

fn write_wide(order: &Order, out: &mut Vec<u8>) {
    let mut w = Writer { out };
    w.varint(order.updated_at_ms.wrapping_sub(order.created_at_ms));
    w.signed(order.total);
    w.signed(order.rebate_used);
    w.varint(order.lines.len() as u64);
    for line in &order.lines {
        let mut flags = 0;
        if line.unit == Unit::Case {
            flags |= CASE;
        }
        if line.promotion.is_some() {
            flags |= PROMOTION;
        }
        if line.qty != line.requested_qty {
            flags |= QTY_DIFFERS;
        }
        w.varint(u64::from(line.sku.0));
        w.out.push(flags);
        w.varint(line.requested_qty);
        if line.qty != line.requested_qty {
            w.varint(line.qty);
        }
        w.signed(line.unit_price);
        w.varint(line.backordered);
        if let Some(promotion) = line.promotion {
            w.varint(u64::from(promotion.0));
        }
    }
    w.varint(order.allocations.len() as u64);
    for allocation in &order.allocations {
        w.varint(u64::from(allocation.line));
        w.varint(u64::from(allocation.warehouse.0));
        w.varint(allocation.qty);
    }
}

/// Writes the wide form's varints.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    /// LEB128: seven bits a byte, low first, the top bit set on every byte but the
    /// last.
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.out.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    /// Zigzag (0, −1, 1, −2, … as 0, 1, 2, 3, …), so that small negatives stay short.
    fn signed(&mut self, value: i64) {
        self.varint(u64::from_ne_bytes(
            ((value << 1) ^ (value >> 63)).to_ne_bytes(),
        ));
    }
}

/// What a record's header says (see the module docs), and where the rest begins.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header<'a> {
    pub status: OrderStatus,
    flags: u8,
    pub dealer: DealerId,
    /// The idempotency key's bytes (checked as text when the record is decoded).
    pub key: &'a [u8],
    pub updated_at_ms: u64,
    /// The body.
    body: &'a [u8],
}

/// The header of the record at the start of `bytes`; `None` if it does not decode.
#[inline]
pub(crate) fn header(bytes: &[u8]) -> Option<Header<'_>> {
    let head: &[u8; HEAD] = bytes.get(..HEAD)?.try_into().ok()?;
    let status = *OrderStatus::ALL.get(usize::from(head[0]))?;
    let flags = head[1];
    if flags & !FLAGS != 0 || flags & (NARROW | SMALL) == SMALL {
        return None;
    }
    let dealer = DealerId(u32::from_le_bytes([head[2], head[3], head[4], head[5]]));
    let key_end = HEAD + usize::from(head[6]);
    let key = bytes.get(HEAD..key_end)?;
    let updated: [u8; UPDATED] = bytes.get(key_end..key_end + UPDATED)?.try_into().ok()?;
    Some(Header {
        status,
        flags,
        dealer,
        key,
        updated_at_ms: u64::from_le_bytes(updated),
        body: &bytes[key_end + UPDATED..],
    })
}

impl Header<'_> {
    /// Whether the body is in the narrow form's small variant.
    #[cfg(test)]
    pub(crate) fn is_small(&self) -> bool {
        self.flags & (NARROW | SMALL) == NARROW | SMALL
    }

    /// Whether some line has a promotion.
    pub(crate) fn promotions(&self) -> bool {
        self.flags & PROMOTIONS != 0
    }

    /// The whole order (its id is where the record is kept), and the record's length;
    /// `None` if the record does not decode.
    pub(crate) fn decode(&self, id: OrderId) -> Option<(Order, usize)> {
        let client_order_id = std::str::from_utf8(self.key).ok()?;
        let (body, body_len) = if self.flags & SMALL != 0 {
            read_narrow::<true>(self.body)?
        } else if self.flags & NARROW != 0 {
            read_narrow::<false>(self.body)?
        } else {
            read_wide(self.body)?
        };
        let order = Order {
            id,
            client_order_id: client_order_id.into(),
            dealer: self.dealer,
            status: self.status,
            lines: body.lines,
            allocations: body.allocations,
            total: body.total,
            rebate_used: body.rebate_used,
            backorder: self.flags & BACKORDER != 0,
            created_at_ms: self.updated_at_ms.wrapping_sub(body.created_delta),
            updated_at_ms: self.updated_at_ms,
            hold_expires_at_ms: None,
        };
        let promotions = order.lines.iter().any(|l| l.promotion.is_some());
        let header_len = HEAD + self.key.len() + UPDATED;
        (promotions == self.promotions()).then_some((order, header_len + body_len))
    }

    /// Each line's promotion and quantity, for the lines that have one; `None` if the
    /// record does not decode.
    pub(crate) fn promotion_lines(&self) -> Option<smallvec::SmallVec<[(PromotionId, u64); 4]>> {
        if !self.promotions() {
            return Some(smallvec::SmallVec::new());
        }
        // Promotions are only in the wide form, and seldom on a closed order.
        let (body, _) = read_wide(self.body)?;
        Some(
            body.lines
                .iter()
                .filter_map(|l| Some((l.promotion?, l.qty)))
                .collect(),
        )
    }
}

/// A decoded body.
struct Body {
    created_delta: u64,
    total: i64,
    rebate_used: i64,
    lines: OrderLines,
    allocations: Allocations,
}

/// The narrow body (in the variant `SMALL_FORM` says) at the start of `bytes`, and
/// its length.
fn read_narrow<const SMALL_FORM: bool>(bytes: &[u8]) -> Option<(Body, usize)> {
    let (head_len, line_len) = narrow_sizes(SMALL_FORM);
    let head = bytes.get(..head_len)?;
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (created_delta, total) = (word(0), word(4));
    let (rebate_used, count) = if SMALL_FORM {
        (0, usize::from(head[8]))
    } else {
        (word(8), usize::from(head[12]))
    };
    let len = head_len + line_len * count;
    let lines_bytes = bytes.get(head_len..len)?;
    let mut lines = OrderLines::with_capacity(count);
    let mut allocations = Allocations::with_capacity(count);
    for (i, line) in lines_bytes.chunks_exact(line_len).enumerate() {
        let half = |at: usize| u32::from(u16::from_le_bytes([line[at], line[at + 1]]));
        let word =
            |at: usize| u32::from_le_bytes([line[at], line[at + 1], line[at + 2], line[at + 3]]);
        let (sku, qty, unit_price, warehouse) = if SMALL_FORM {
            (half(0), half(2), word(4), u32::from(line[8]))
        } else {
            (word(0), word(4), word(8), half(12))
        };
        let qty = u64::from(qty);
        lines.push(OrderLine {
            sku: SkuId(sku),
            requested_qty: qty,
            unit: Unit::Unit,
            qty,
            unit_price: i64::from(unit_price),
            backordered: 0,
            promotion: None,
        });
        allocations.push(Allocation {
            line: i as u32,
            warehouse: WarehouseId(warehouse),
            qty,
        });
    }
    let body = Body {
        created_delta: u64::from(created_delta),
        total: i64::from(total),
        rebate_used: i64::from(rebate_used),
        lines,
        allocations,
    };
    (rebate_used <= total).then_some((body, len))
}

/// The wide body at the start of `bytes`, and its length.
fn read_wide(bytes: &[u8]) -> Option<(Body, usize)> {
    let mut r = Reader { bytes, at: 0 };
    let created_delta = r.varint()?;
    let total = r.signed()?;
    let rebate_used = r.signed()?;
    // A line takes at least 5 bytes (sku, flags, quantity, price, backordered), an
    // allocation 3.
    let line_count = r.count(5)?;
    let mut lines = OrderLines::with_capacity(line_count);
    for _ in 0..line_count {
        let sku = SkuId(r.u32()?);
        let flags = r.byte()?;
        if flags & !LINE_FLAGS != 0 {
            return None;
        }
        let requested_qty = r.varint()?;
        let qty = if flags & QTY_DIFFERS != 0 {
            Some(r.varint()?).filter(|&q| q != requested_qty)?
        } else {
            requested_qty
        };
        let unit_price = r.signed()?;
        let backordered = r.varint()?;
        let promotion = if flags & PROMOTION != 0 {
            Some(PromotionId(r.u32()?))
        } else {
            None
        };
        lines.push(OrderLine {
            sku,
            requested_qty,
            unit: if flags & CASE != 0 {
                Unit::Case
            } else {
                Unit::Unit
            },
            qty,
            unit_price,
            backordered,
            promotion,
        });
    }
    let allocation_count = r.count(3)?;
    let mut allocations = Allocations::with_capacity(allocation_count);
    for _ in 0..allocation_count {
        allocations.push(Allocation {
            line: r.u32()?,
            warehouse: WarehouseId(r.u32()?),
            qty: r.varint()?,
        });
    }
    let body = Body {
        created_delta,
        total,
        rebate_used,
        lines,
        allocations,
    };
    Some((body, r.at))
}

/// Reads the wide form; every read is `None` past the end or on a malformed number.
#[derive(Clone, Copy, Debug)]
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// A varint of at most 10 bytes whose value fits 64 bits, in its shortest form
    /// (so that each value has one encoding, and equal books equal bytes).
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // A last byte of 0 after others would be a longer form of a shorter one.
                return (byte != 0 || shift == 0).then_some(value);
            }
        }
        None
    }

    fn signed(&mut self) -> Option<i64> {
        let raw = self.varint()?;
        Some(i64::from_ne_bytes((raw >> 1).to_ne_bytes()) ^ -i64::from(raw & 1 == 1))
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }

    /// A count of items that each take at least `item_bytes`: never more than the
    /// bytes left hold, so a forged count cannot make a decoder reserve more memory
    /// than its bytes warrant.
    fn count(&mut self, item_bytes: usize) -> Option<usize> {
        let count = usize::try_from(self.varint()?).ok()?;
        (count <= (self.bytes.len() - self.at) / item_bytes).then_some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = OrderStatus> {
        prop_oneof![
            Just(OrderStatus::Shipped),
            Just(OrderStatus::Cancelled),
            Just(OrderStatus::Expired),
            Just(OrderStatus::Rejected),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(b' '..=b'~', 1..=128)
            .prop_map(|k| String::from_utf8(k).expect("ASCII"))
    }

    /// Any closed order (most take the wide form).
    fn closed_order() -> impl Strategy<Value = Order> {
        let line = (
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            proptest::option::of(any::<u64>()),
            any::<i64>(),
            any::<u64>(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(
                |(sku, requested_qty, case, qty, unit_price, backordered, promotion)| OrderLine {
                    sku: SkuId(sku),
                    requested_qty,
                    unit: if case { Unit::Case } else { Unit::Unit },
                    qty: qty.unwrap_or(requested_qty),
                    unit_price,
                    backordered,
                    promotion: promotion.map(PromotionId),
                },
            );
        let allocation =
            (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(l, w, qty)| Allocation {
                line: l,
                warehouse: WarehouseId(w),
                qty,
            });
        (
            (any::<u32>(), key(), status()),
            proptest::collection::vec(line, 0..8),
            proptest::collection::vec(allocation, 0..8),
            (
                any::<i64>(),
                any::<i64>(),
                any::<bool>(),
                any::<u64>(),
                any::<u64>(),
            ),
        )
            .prop_map(
                |(
                    (dealer, key, status),
                    lines,
                    allocations,
                    (total, rebate_used, backorder, created_at_ms, updated_at_ms),
                )| Order {
                    id: OrderId(0),
                    client_order_id: key.as_str().into(),
                    dealer: DealerId(dealer),
                    status,
                    lines: lines.into_iter().collect(),
                    allocations: allocations.into_iter().collect(),
                    total,
                    rebate_used,
                    backorder,
                    created_at_ms,
                    updated_at_ms,
                    hold_expires_at_ms: None,
                },
            )
    }

    /// A closed order as most are: lines in units, each reserved whole in one
    /// warehouse, values near the narrow form's limits.
    fn plain_order() -> impl Strategy<Value = Order> {
        let line = (
            any::<u32>(),
            0..=u64::from(u32::MAX),
            0..=i64::from(u32::MAX),
            0..=u32::from(u16::MAX),
        );
        (
            (any::<u32>(), key(), status(), any::<bool>()),
            proptest::collection::vec(line, 0..6),
            (0..=u32::MAX, any::<u64>(), 0..=u64::from(u32::MAX)),
        )
            .prop_map(
                |((dealer, key, status, backorder), lines, (total, created, delta))| {
                    let total = i64::from(total);
                    Order {
                        id: OrderId(0),
                        client_order_id: key.as_str().into(),
                        dealer: DealerId(dealer),
                        status,
                        allocations: lines
                            .iter()
                            .enumerate()
                            .map(|(i, &(_, qty, _, warehouse))| Allocation {
                                line: i as u32,
                                warehouse: WarehouseId(warehouse),
                                qty,
                            })
                            .collect(),
                        lines: lines
                            .iter()
                            .map(|&(sku, qty, unit_price, _)| OrderLine {
                                sku: SkuId(sku),
                                requested_qty: qty,
                                unit: Unit::Unit,
                                qty,
                                unit_price,
                                backordered: 0,
                                promotion: None,
                            })
                            .collect(),
                        total,
                        rebate_used: total / 3,
                        backorder,
                        created_at_ms: created,
                        updated_at_ms: created.wrapping_add(delta),
                        hold_expires_at_ms: None,
                    }
                },
            )
    }

    /// A closed order as most are in a book of fewer than 65,536 SKUs and 256
    /// warehouses, with small quantities: ids, quantities and the rebate at and on
    /// either side of the small variant's limits.
    fn small_order() -> impl Strategy<Value = Order> {
        let near = |limit: u32| prop_oneof![0..=limit, Just(limit), Just(limit + 1)];
        // Mostly prices that keep a total of large quantities within 32 bits.
        let price = prop_oneof![3 => 0..=10_000_i64, 1 => 0..=i64::from(u32::MAX)];
        let line = (
            near(u32::from(u16::MAX)),
            near(u32::from(u16::MAX)),
            price,
            near(u32::from(u8::MAX)),
        );
        (
            plain_order(),
            proptest::collection::vec(line, 0..6),
            prop_oneof![3 => Just(0), 1 => 1..=10_i64],
        )
            .prop_map(|(mut order, lines, rebate)| {
                order.lines = lines
                    .iter()
                    .map(|&(sku, qty, unit_price, _)| OrderLine {
                        sku: SkuId(sku),
                        requested_qty: u64::from(qty),
                        unit: Unit::Unit,
                        qty: u64::from(qty),
                        unit_price,
                        backordered: 0,
                        promotion: None,
                    })
                    .collect();
                order.allocations = lines
                    .iter()
                    .enumerate()
                    .map(|(i, &(_, qty, _, warehouse))| Allocation {
                        line: i as u32,
                        warehouse: WarehouseId(warehouse),
                        qty: u64::from(qty),
                    })
                    .collect();
                order.total = order.total.max(rebate);
                order.rebate_used = rebate;
                order
            })
    }

    /// Whether `order`, in the narrow form, fits its small variant.
    fn fits_small(order: &Order) -> bool {
        order.rebate_used == 0
            && order
                .lines
                .iter()
                .zip(&order.allocations[..])
                .all(|(l, a)| {
                    u16::try_from(l.sku.0).is_ok()
                        && u16::try_from(l.qty).is_ok()
                        && u8::try_from(a.warehouse.0).is_ok()
                })
    }

    /// `order` (which fits the narrow form) with one field changed by `value`.
    fn off_narrow(mut order: Order, field: usize, value: u32) -> Order {
        let big = u64::from(u32::MAX) + 1 + u64::from(value);
        let Some(line) = order.lines.first_mut() else {
            order.total = -1 - i64::from(value);
            return order;
        };
        match field {
            0 => line.unit = Unit::Case,
            1 => line.requested_qty = line.qty.wrapping_add(1),
            2 => line.backordered = u64::from(value),
            3 => line.promotion = Some(PromotionId(value)),
            4 => line.qty = big,
            5 => line.unit_price = -1 - i64::from(value),
            6 => order.allocations[0].qty ^= 1,
            7 => {
                let wide = u32::from(u16::MAX) + 1 + value % 1000;
                order.allocations[0].warehouse = WarehouseId(wide);
            }
            _ => order.allocations.swap(0, order.lines.len() - 1),
        }
        order
    }

    /// Encodes, checks that the record decodes to `order` and to its own length
    /// (with a byte after it), and returns the record.
    fn round_trip(order: &Order, tail: u8) -> Result<Vec<u8>, TestCaseError> {
        let mut bytes = vec![tail];
        encode(order, &mut bytes);
        let record = bytes.split_off(1);
        let mut followed = record.clone();
        followed.push(tail);
        let header = header(&followed).expect("a header");
        prop_assert_eq!(header.status, order.status);
        prop_assert_eq!(header.dealer, order.dealer);
        prop_assert_eq!(header.key, order.client_order_id.as_bytes());
        prop_assert_eq!(header.updated_at_ms, order.updated_at_ms);
        let id = OrderId(7);
        let (decoded, used) = header.decode(id).expect("decodes");
        prop_assert_eq!(
            &decoded,
            &Order {
                id,
                ..order.clone()
            }
        );
        prop_assert_eq!(used, record.len());
        let promotions: Vec<_> = order
            .lines
            .iter()
            .filter_map(|l| l.promotion.map(|p| (p, l.qty)))
            .collect();
        prop_assert_eq!(
            header.promotion_lines().expect("lines").to_vec(),
            promotions
        );
        Ok(record)
    }

    proptest! {
        /// Every closed order comes back whole from its record, the record's header
        /// says what the order does, and the record decodes to its own length.
        #[test]
        fn records_decode_to_the_order_they_encode(order in closed_order(), tail in any::<u8>()) {
            round_trip(&order, tail)?;
        }

        /// The same, for orders that fit the narrow form, and they take it: its small
        /// variant exactly when they fit that too.
        #[test]
        fn plain_orders_take_the_narrow_form(
            order in prop_oneof![plain_order(), small_order()],
            tail in any::<u8>(),
        ) {
            let record = round_trip(&order, tail)?;
            let small = fits_small(&order);
            let form = if small { NARROW | SMALL } else { NARROW };
            prop_assert_eq!(record[1] & (NARROW | SMALL), form);
            let (body_head, line) = narrow_sizes(small);
            let narrow_len =
                HEAD + order.client_order_id.len() + UPDATED + body_head + line * order.lines.len();
            prop_assert_eq!(record.len(), narrow_len);
        }

        /// An order that fits the narrow form but for one field round-trips too
        /// (through the wide form, or the narrow one if the change still fits it).
        #[test]
        fn orders_one_field_off_the_narrow_form_round_trip(
            (order, tail) in (prop_oneof![plain_order(), small_order()], 0..9usize, any::<u32>(), any::<u8>())
                .prop_map(|(order, field, value, tail)| (off_narrow(order, field, value), tail))
        ) {
            round_trip(&order, tail)?;
        }

        /// A record cut short never decodes, and a valid header followed by bytes of
        /// any kind (in either form), or noise alone, never panics.
        #[test]
        fn cut_or_arbitrary_records_are_refused_without_panic(
            order in prop_oneof![closed_order(), plain_order(), small_order()],
            cut in any::<prop::sample::Index>(),
            form in prop_oneof![Just(0), Just(NARROW), Just(NARROW | SMALL)],
            noise in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let mut bytes = Vec::new();
            encode(&order, &mut bytes);
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(header(short).and_then(|h| h.decode(order.id)).is_none());
            let head_len = HEAD + order.client_order_id.len() + UPDATED;
            let mut forged = bytes[..head_len].to_vec();
            forged[1] = form;
            forged.extend_from_slice(&noise);
            for bytes in [&forged, &noise] {
                if let Some(h) = header(bytes) {
                    let _ = h.decode(OrderId(1));
                    let _ = h.promotion_lines();
                }
            }
            prop_assert!(header(&forged).is_some());
        }
    }

    #[test]
    fn a_three_line_order_takes_few_bytes() {
        let line = |sku: u32| OrderLine {
            sku: SkuId(sku),
            requested_qty: 7,
            unit: Unit::Unit,
            qty: 7,
            unit_price: 4_250,
            backordered: 0,
            promotion: None,
        };
        let order = Order {
            id: OrderId(1_234_567),
            client_order_id: "PO-1234567".into(),
            dealer: DealerId(917),
            status: OrderStatus::Shipped,
            lines: [line(9_001), line(17), line(5_555)].into_iter().collect(),
            allocations: (0..3)
                .map(|l| Allocation {
                    line: l,
                    warehouse: WarehouseId(l + 2),
                    qty: 7,
                })
                .collect(),
            total: 89_250,
            rebate_used: 0,
            backorder: false,
            created_at_ms: 1_795_000_000_000,
            updated_at_ms: 1_795_000_042_000,
            hold_expires_at_ms: None,
        };
        let mut bytes = Vec::new();
        encode(&order, &mut bytes);
        assert_eq!(bytes.len(), 61, "{bytes:?}");
        assert_eq!(bytes[1], NARROW | SMALL);
        // Any rebate used, or a SKU id past 16 bits, takes the narrow form's 32-bit
        // fields.
        let mut with_rebate = order.clone();
        with_rebate.rebate_used = 1;
        let mut big_sku = order.clone();
        big_sku.lines[2].sku = SkuId(65_536);
        for other in [with_rebate, big_sku] {
            let mut bytes = Vec::new();
            encode(&other, &mut bytes);
            assert_eq!((bytes.len(), bytes[1]), (80, NARROW), "{other:?}");
        }
        // The small flag alone names no form.
        let mut forged = Vec::new();
        encode(&order, &mut forged);
        forged[1] = SMALL;
        assert!(header(&forged).is_none());
        // One line in cases takes the wide form, still far below an `Order`'s size.
        let mut in_cases = order.clone();
        in_cases.lines[1].unit = Unit::Case;
        in_cases.lines[1].requested_qty = 1;
        let mut bytes = Vec::new();
        encode(&in_cases, &mut bytes);
        assert_eq!(bytes[1], 0);
        assert_eq!(bytes.len(), 64, "{bytes:?}");
    }

    /// A wide record that claims more lines or allocations than its bytes can hold is
    /// refused before anything is reserved for them.
    #[test]
    fn counts_beyond_the_bytes_are_refused() {
        let body = |values: &[u64]| {
            let mut body = Vec::new();
            let mut w = Writer { out: &mut body };
            for &value in values {
                w.varint(value);
            }
            body
        };
        // created delta, total, rebate, then the line count.
        assert!(
            read_wide(&body(&[0, 0, 0, 1 << 40])).is_none(),
            "2^40 lines"
        );
        // One line (sku, flags, quantity, price, backordered), then allocations.
        let line = [0, 0, 0, 1, 5, 0, 1, 2, 0];
        let with = |allocations: u64| body(&[&line[..], &[allocations]].concat());
        assert!(read_wide(&with(2)).is_none(), "2 allocations in no bytes");
        assert!(read_wide(&with(0)).is_some(), "one line, no allocation");
    }

    #[test]
    fn varints_have_one_form() {
        let read = |bytes: &[u8]| Reader { bytes, at: 0 }.varint();
        let put = |value: u64| {
            let mut out = Vec::new();
            Writer { out: &mut out }.varint(value);
            out
        };
        assert_eq!(read(&[0]), Some(0));
        assert_eq!(read(&[0x80, 0]), None, "a longer form of 0");
        assert_eq!(read(&[0xff, 0x7f]), Some(0x3fff));
        assert_eq!(put(0x3fff), [0xff, 0x7f]);
        let max = put(u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(read(&max), Some(u64::MAX));
        let mut over = max.clone();
        over[9] = 2;
        assert_eq!(read(&over), None, "past 64 bits");
        assert_eq!(read(&[0x80; 11]), None);
    }
}
