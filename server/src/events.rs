//! The event hub: a bounded ring of recent events per tenant, filled by the shards
//! once the records that caused them are durable, and read by `/v1/events` long polls.
//!
//! The ring keeps the engine's events as they are (ids, not codes) and renders them to
//! JSON only when read, so the shard thread never spends time on events nobody asks
//! for. Ids resolve through a per-tenant table of codes that the shard extends when it
//! creates a SKU, warehouse or dealer (codes are never renamed or reused).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use allot_engine::{DealerId, Event, Ledger, SkuId, WarehouseId};

use crate::dto::{CodeNames, RawJson};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// One tenant's recent events.
#[derive(Debug)]
pub struct TenantEvents {
    ring: Mutex<Ring>,
    codes: RwLock<Codes>,
    /// Woken whenever events are appended.
    pub notify: Notify,
}

/// The codes of a tenant's SKUs, warehouses and dealers, by id.
#[derive(Debug, Default)]
struct Codes {
    skus: Vec<String>,
    warehouses: Vec<String>,
    dealers: Vec<String>,
}

impl CodeNames for Codes {
    fn sku_code(&self, id: SkuId) -> &str {
        self.skus.get(id.index()).map_or("", String::as_str)
    }

    fn warehouse_code(&self, id: WarehouseId) -> &str {
        self.warehouses.get(id.index()).map_or("", String::as_str)
    }

    fn dealer_code(&self, id: DealerId) -> &str {
        self.dealers.get(id.index()).map_or("", String::as_str)
    }
}

#[derive(Debug)]
struct Ring {
    items: VecDeque<Event>,
    /// The highest sequence number published (or known from a snapshot).
    last_seq: u64,
    capacity: usize,
}

/// What a read of the ring found.
#[derive(Debug)]
pub enum Read {
    /// Events after the cursor (possibly none yet), with their sequence numbers.
    Events(Vec<(u64, RawJson)>),
    /// The cursor is older than the window; the oldest sequence number still kept.
    Gone { oldest: u64 },
}

impl TenantEvents {
    fn new(capacity: usize) -> Self {
        Self {
            ring: Mutex::new(Ring {
                items: VecDeque::new(),
                last_seq: 0,
                capacity,
            }),
            codes: RwLock::new(Codes::default()),
            notify: Notify::new(),
        }
    }

    /// Events with `seq > after`, at most `limit`, rendered.
    pub fn read(&self, after: u64, limit: usize) -> Read {
        let found: Vec<Event> = {
            let ring = self.ring.lock();
            let oldest = ring
                .items
                .front()
                .map_or(ring.last_seq + 1, |event| event.seq);
            if after + 1 < oldest && after < ring.last_seq {
                return Read::Gone { oldest };
            }
            let start = ring.items.partition_point(|event| event.seq <= after);
            ring.items.range(start..).take(limit).cloned().collect()
        };
        let codes = self.codes.read();
        Read::Events(
            found
                .iter()
                .map(|event| (event.seq, crate::dto::event_json(&*codes, event)))
                .collect(),
        )
    }

    /// Learns the codes of SKUs, warehouses and dealers the ledger created since the
    /// last call (cheap when there are none).
    pub fn learn_codes(&self, ledger: &Ledger) {
        let state = ledger.state();
        let fresh = |known: usize, now: usize| known < now;
        {
            let codes = self.codes.read();
            if !fresh(codes.skus.len(), state.skus.len())
                && !fresh(codes.warehouses.len(), state.warehouses.len())
                && !fresh(codes.dealers.len(), state.dealers.len())
            {
                return;
            }
        }
        let mut codes = self.codes.write();
        let skus = codes.skus.len()..state.skus.len();
        codes
            .skus
            .extend(state.skus[skus].iter().map(|s| s.code.clone()));
        let warehouses = codes.warehouses.len()..state.warehouses.len();
        codes
            .warehouses
            .extend(state.warehouses[warehouses].iter().map(|w| w.code.clone()));
        let dealers = codes.dealers.len()..state.dealers.len();
        codes
            .dealers
            .extend(state.dealers[dealers].iter().map(|d| d.code.clone()));
    }

    /// The highest sequence number published.
    pub fn last_seq(&self) -> u64 {
        self.ring.lock().last_seq
    }
}

/// Every tenant's ring.
#[derive(Debug)]
pub struct EventHub {
    tenants: RwLock<HashMap<String, Arc<TenantEvents>>>,
    capacity: usize,
}

impl EventHub {
    pub fn new(capacity: usize) -> Self {
        Self {
            tenants: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The tenant's ring, created empty on first use.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantEvents> {
        if let Some(events) = self.tenants.read().get(tenant) {
            return Arc::clone(events);
        }
        let mut tenants = self.tenants.write();
        Arc::clone(
            tenants
                .entry(tenant.to_owned())
                .or_insert_with(|| Arc::new(TenantEvents::new(self.capacity))),
        )
    }

    /// After a snapshot restore: events up to `seq` happened but are not kept.
    pub fn set_floor(&self, tenant: &str, seq: u64) {
        let events = self.tenant(tenant);
        let mut ring = events.ring.lock();
        ring.last_seq = ring.last_seq.max(seq);
    }

    /// Appends durable events and wakes readers.
    pub fn publish(&self, tenant: &str, batch: Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let events = self.tenant(tenant);
        {
            let mut ring = events.ring.lock();
            for event in batch {
                ring.last_seq = ring.last_seq.max(event.seq);
                ring.items.push_back(event);
                if ring.items.len() > ring.capacity {
                    ring.items.pop_front();
                }
            }
        }
        events.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> Event {
        Event {
            seq,
            at_ms: 0,
            kind: allot_engine::EventKind::HoldExpired {
                order: allot_engine::OrderId(seq),
                dealer: DealerId(0),
            },
        }
    }

    fn seqs(read: Read) -> Vec<u64> {
        match read {
            Read::Events(found) => found.into_iter().map(|(seq, _)| seq).collect(),
            Read::Gone { oldest } => panic!("gone, oldest {oldest}"),
        }
    }

    #[test]
    fn reads_after_a_cursor_and_reports_a_cursor_older_than_the_window() {
        let hub = EventHub::new(3);
        hub.publish("t", (1..=5).map(event).collect());
        let t = hub.tenant("t");
        assert!(matches!(t.read(0, 10), Read::Gone { oldest: 3 }));
        assert_eq!(seqs(t.read(2, 10)), [3, 4, 5]);
        assert_eq!(seqs(t.read(4, 1)), [5]);
        assert_eq!(seqs(t.read(5, 10)), Vec::<u64>::new());
    }

    #[test]
    fn events_render_with_the_codes_learned_from_the_ledger() {
        let hub = EventHub::new(10);
        let mut ledger = Ledger::default();
        let dealer = allot_engine::DealerSpec::new("D7", "gold", "north", 100);
        let outcome = ledger.apply(
            0,
            &allot_engine::Command::PutDealer(dealer),
            &mut Vec::new(),
        );
        assert!(outcome.result.is_ok());
        hub.tenant("t").learn_codes(&ledger);
        hub.publish("t", vec![event(1)]);
        let Read::Events(found) = hub.tenant("t").read(0, 10) else {
            panic!("events expected");
        };
        let json: serde_json::Value = serde_json::from_str(found[0].1.get()).expect("json");
        assert_eq!(json["type"], "hold_expired");
        assert_eq!(json["dealer"], "D7");
        assert_eq!(json["at"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_floor_from_a_snapshot_makes_older_cursors_gone() {
        let hub = EventHub::new(3);
        hub.set_floor("t", 7);
        assert!(matches!(
            hub.tenant("t").read(3, 10),
            Read::Gone { oldest: 8 }
        ));
        assert_eq!(seqs(hub.tenant("t").read(7, 10)), Vec::<u64>::new());
    }
}
