//! Every bound the engine enforces, as a named constant. Inputs beyond these are
//! refused with a validation error; they also keep all arithmetic far from overflow
//! (checked arithmetic stays as the second line of defence).

/// Longest code (SKU, warehouse, dealer, promotion, tenant, tier, region).
pub const CODE_LEN_MAX: usize = 64;
/// Longest client order id (idempotency key).
pub const CLIENT_ORDER_ID_LEN_MAX: usize = 128;
/// Longest display name of a SKU or dealer, in bytes.
pub const NAME_LEN_MAX: usize = 256;
/// Most attributes on one SKU, and the longest attribute key or value in bytes.
pub const ATTRIBUTES_MAX: usize = 64;
pub const ATTRIBUTE_LEN_MAX: usize = 256;
/// Most tier or region prices on one SKU, and most eligible tiers on a promotion.
pub const PRICE_ENTRIES_MAX: usize = 256;
/// Most tiers named in the backorder priority.
pub const PRIORITY_TIERS_MAX: usize = 64;

/// Default and largest allowed `max_lines` setting.
pub const ORDER_LINES_MAX_DEFAULT: u32 = 200;
pub const ORDER_LINES_MAX_CAP: u32 = 1_000;
/// Default and bounds of the hold TTL setting.
pub const HOLD_TTL_S_DEFAULT: u64 = 900;
pub const HOLD_TTL_S_MIN: u64 = 1;
pub const HOLD_TTL_S_MAX: u64 = 30 * 24 * 3600;

/// Longest order retention (100 years; 0 means forever).
pub const ORDER_RETENTION_S_MAX: u64 = 100 * 365 * 24 * 3600;
/// Most closed orders pruned by one command, so that turning retention on for a big
/// history spreads the work over the following commands and ticks.
pub const PRUNE_PER_APPLY_MAX: u32 = 1_024;

/// Largest quantity in any one field (order line, receipt, stock level, quota).
pub const QTY_MAX: u64 = 1_000_000_000_000;
/// Largest case size.
pub const CASE_SIZE_MAX: u32 = 1_000_000;
/// Largest money amount in any one field, in minor units (10^15 cents = 10^13 units).
pub const MONEY_MAX: i64 = 1_000_000_000_000_000;
/// Largest rebate rate in basis points (100 %).
pub const REBATE_RATE_BP_MAX: u32 = 10_000;

/// Default and largest page size of list queries.
pub const PAGE_LIMIT_DEFAULT: usize = 100;
pub const PAGE_LIMIT_MAX: usize = 1_000;
