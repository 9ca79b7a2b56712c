//! The event hub: a bounded ring of recent events per tenant, filled by the shards
//! once the records that caused them are durable, and read by `/v1/events` long polls.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::dto::RawJson;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

/// One tenant's recent events.
#[derive(Debug)]
pub struct TenantEvents {
    ring: Mutex<Ring>,
    /// Woken whenever events are appended.
    pub notify: Notify,
}

#[derive(Debug)]
struct Ring {
    items: VecDeque<(u64, RawJson)>,
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
            notify: Notify::new(),
        }
    }

    /// Events with `seq > after`, at most `limit`.
    pub fn read(&self, after: u64, limit: usize) -> Read {
        let ring = self.ring.lock();
        let oldest = ring
            .items
            .front()
            .map_or(ring.last_seq + 1, |(seq, _)| *seq);
        if after + 1 < oldest && after < ring.last_seq {
            return Read::Gone { oldest };
        }
        let start = ring.items.partition_point(|(seq, _)| *seq <= after);
        Read::Events(ring.items.range(start..).take(limit).cloned().collect())
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

    /// Appends durable events (each a JSON object with a `seq`) and wakes readers.
    pub fn publish(&self, tenant: &str, batch: Vec<(u64, RawJson)>) {
        if batch.is_empty() {
            return;
        }
        let events = self.tenant(tenant);
        {
            let mut ring = events.ring.lock();
            for (seq, value) in batch {
                ring.last_seq = ring.last_seq.max(seq);
                ring.items.push_back((seq, value));
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
    use serde_json::json;

    fn event(seq: u64) -> (u64, RawJson) {
        (seq, crate::dto::raw(&json!({ "seq": seq })))
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
