//! allot's engine: one tenant's book as a pure, deterministic state machine.
//!
//! Commands go in through [`Ledger::apply`] with the time the sequencer stamped on
//! them; an [`Outcome`] and [`Event`]s come out. There is no IO, clock, randomness or
//! thread here, and nothing iterates a hash map into an outcome, so replaying the same
//! commands at the same times gives byte-identical state ([`Ledger::digest`]).
//!
//! Modules, in the order a command meets them:
//! - [`command`]: the commands (plain data; logged by the WAL with rkyv, see [`codec`]);
//! - [`ledger`]: the book ([`State`]), derived indexes, `apply`'s dispatch;
//!   `code_index`: codes to ids, keys inline;
//! - `catalog`: warehouses, SKUs, dealers, promotions, settings (upserts);
//! - `placement`: placing an order (idempotency, validation, credit, all-or-nothing);
//! - `pricing`: promotion, tier, region and base prices;
//! - `allocation`: which warehouses serve a line;
//! - `backorder`: per-SKU queues filled whenever stock becomes available;
//! - [`order`]: the lifecycle (confirm, approve, reject, ship, cancel) and release,
//!   and the order store (open orders in a pool, closed ones as `closed` records);
//! - `expiry`: holds by deadline; `retention`: closed orders leave the book after a
//!   set time; `stock`: receipts, counts, low-stock watch;
//! - `credit`: payments; [`query`]: read-only views; [`event`]: what happened;
//! - [`error`]: [`Rejection`], why a command changed nothing; [`limits`]: every bound.
//!
//! Invariants (checked in full by [`Ledger::check_invariants`]): `0 ≤ reserved ≤
//! on_hand` per cell; reserved per cell = the open orders' allocations there; a SKU
//! with waiting backorders has nothing available; a placement never takes
//! `credit_held + credit_used` past the limit; promotion quotas and per-dealer limits
//! are never exceeded; every order is in exactly one status.

mod allocation;
mod append_set;
mod backorder;
mod catalog;
mod client_orders;
mod closed;
mod code_index;
pub mod codec;
pub mod command;
mod credit;
mod dealer_orders;
pub mod error;
pub mod event;
mod expiry;
pub mod ids;
mod invariants;
pub mod ledger;
pub mod limits;
pub mod order;
mod placement;
mod pricing;
pub mod query;
mod retention;
mod stock;

pub use catalog::{
    Dealer, Promotion, RegionPrice, RegionPrices, Sku, TierPrice, TierPrices, Warehouse,
};
pub use codec::{decode_command, encode_command, CodecError};
pub use command::{
    Command, DealerSpec, LineRequest, PlaceOrder, PromotionSpec, SettingsPatch, SkuSpec, Unit,
    WarehouseSpec,
};
pub use error::{Rejection, RejectionClass, ShortLine};
pub use event::{Event, EventKind};
pub use ids::{DealerId, OrderId, PromotionId, RegionId, SkuId, TierId, WarehouseId};
pub use ledger::{Effect, Ledger, Outcome, Settings, State};
pub use order::{
    Allocation, Allocations, Order, OrderAction, OrderLine, OrderLines, OrderRef, OrderStatus,
    Orders,
};
pub use stock::{StockCell, StockCells};
