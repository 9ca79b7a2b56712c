//! The idempotency index: (dealer, client_order_id) → order.
//!
//! Keys are stored once, in the orders; the index holds, per key, one 64-bit word:
//! `TAG_BITS` bits of the key's hash and the order's id. A lookup compares tags, then
//! checks each order whose tag matches against the full key, so it is always exact;
//! for a new key a tag rarely matches, and no order is read. (How rarely depends on
//! the parts' size: a key's home slot is drawn from its tag, so in a part of 2^k slots
//! a stored tag tells a new key apart by only 24 − k bits. The index has 256 parts:
//! in a simulation of the table with 64, one new key in 100 read an order at 10
//! million keys and one in 7 at 150 million, about what this engine holds in 24 GiB;
//! with 256, one in 400 and one in 28.)
//!
//! Every placement looks up a key that is almost always new, in an index that grows
//! by a key per order for as long as orders are kept: with millions of keys the one
//! cache line a lookup reads is in memory, not in a cache, and that wait was the
//! largest single cost of a placement in a growing book. So the index is a plain
//! open-addressing table of words with linear probing, where a key's slot is known
//! from its hash alone: a placement locates its key first and prefetches that slot
//! (see [`ClientOrders::prefetch`]), then checks the order's SKUs while the line
//! arrives; a caller holding the next command can start that load one command
//! earlier still (`Ledger::apply_hinting`, `Ledger::prefetch`). A key's home slot is
//! the top bits of its tag's hash, so slots keep their keys in home order and growing
//! a part rewrites it front to back instead of scattering every word over a cold new
//! table. (The tag has 24 bits, so a part of more than 2^24 slots, in a book of some
//! 2 billion keys, would start to cluster: lookups would stay exact, only slower.)

use std::collections::BTreeMap;

use crate::ids::{DealerId, OrderId};
use crate::order::Orders;

/// Where a key lives in [`ClientOrders`]: its part and hash tag.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyLocation {
    part: usize,
    tag: u64,
}

/// `ClientOrders` parts (a power of two). Smaller parts keep more of a tag's bits for
/// telling keys apart (see the module documentation) and regrow in shorter steps: as
/// a growing book passed 8.4 million keys, its slowest placement took 2.0–2.8 ms in 64
/// parts (a doubling rewrote 4 MiB), 0.7–0.8 ms in 256 (1 MiB), 0.2–0.6 ms in 1,024.
/// But each part has a 32-byte header that a lookup reads: 1,024 of them (32 KiB) were
/// seldom in the L1 cache, and the growing mix ran 15–25 ns per order slower, where
/// 256 ran as fast as 64.
const CLIENT_ORDER_PARTS: usize = 256;
/// Bits of an order id in an index word, and of the hash tag beside it.
const ID_BITS: u32 = 40;
const TAG_BITS: u32 = 64 - ID_BITS;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// The idempotency index (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct ClientOrders {
    /// The index, split by the hash's top bits so that growing it rewrites one part at
    /// a time: a single table of millions of keys would stall the shard for tens of
    /// milliseconds each time it doubled.
    parts: Vec<Part>,
    /// Keys of orders whose id does not fit `ID_BITS` (about 10^12 orders into a book).
    overflow: BTreeMap<(DealerId, String), OrderId>,
    /// The tag bits kept (all `TAG_BITS` but in tests of tag collisions).
    tag_mask: u64,
    /// Slots in all parts (parts only grow).
    slots: usize,
}

/// Slots of an index small enough to stay in the caches (256 KiB of words), whose
/// lookups gain nothing from a prefetch.
const CACHED_SLOTS_MAX: usize = 32 * 1024;

impl Default for ClientOrders {
    fn default() -> Self {
        Self::with_tag_mask((1 << TAG_BITS) - 1)
    }
}

impl ClientOrders {
    pub(crate) fn with_tag_mask(tag_mask: u64) -> Self {
        Self {
            parts: vec![Part::default(); CLIENT_ORDER_PARTS],
            overflow: BTreeMap::new(),
            tag_mask,
            slots: 0,
        }
    }

    /// The part and the tag of a key: independent bits of its hash. A placement
    /// locates its key once, for the prefetch, the lookup and then the insert.
    pub fn locate(&self, dealer: DealerId, key: &str) -> KeyLocation {
        self.locate_bytes(dealer, key.as_bytes())
    }

    /// [`Self::locate`] of a key's bytes.
    fn locate_bytes(&self, dealer: DealerId, key: &[u8]) -> KeyLocation {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut hasher = rustc_hash::FxBuildHasher.build_hasher();
        dealer.hash(&mut hasher);
        // The hasher's `write` takes the length into account.
        hasher.write(key);
        let hash = hasher.finish();
        let part_bits = CLIENT_ORDER_PARTS.trailing_zeros();
        let part = (hash >> (64 - part_bits)) as usize;
        let tag = (hash >> (64 - part_bits - TAG_BITS)) & self.tag_mask;
        KeyLocation { part, tag }
    }

    /// Whether the index is large enough that a lookup is likely to wait on memory:
    /// a small one stays in the caches, and prefetching it is wasted work.
    #[inline]
    pub fn worth_prefetching(&self) -> bool {
        self.slots > CACHED_SLOTS_MAX
    }

    /// Starts loading the slots where a lookup of the key at `at` begins (if the index
    /// is large), so that the lookup, made after the order's SKU lookups (or in the
    /// next command, for a hint from `Ledger::apply_hinting` or `Ledger::prefetch`),
    /// finds them in the cache.
    #[inline]
    pub fn prefetch(&self, at: KeyLocation) {
        if self.worth_prefetching() {
            self.parts[at.part].prefetch(at.tag);
        }
    }

    pub fn get(&self, orders: &Orders, dealer: DealerId, key: &str) -> Option<OrderId> {
        self.get_at(self.locate(dealer, key), orders, dealer, key)
    }

    /// [`Self::get`] of a key located already.
    pub fn get_at(
        &self,
        at: KeyLocation,
        orders: &Orders,
        dealer: DealerId,
        key: &str,
    ) -> Option<OrderId> {
        let KeyLocation { part, tag } = at;
        let found = self.parts[part].find(tag, |word| {
            OrderId(word & ID_MASK)
                .slot()
                .and_then(|slot| orders.get(slot))
                .is_some_and(|order| order.dealer() == dealer && order.key() == key.as_bytes())
        });
        if let Some(word) = found {
            return Some(OrderId(word & ID_MASK));
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&(dealer, key.to_owned())).copied()
    }

    /// Adds the key of a new order (the key is not in the index).
    pub fn insert(&mut self, dealer: DealerId, key: &str, id: OrderId) {
        self.insert_at(self.locate(dealer, key), dealer, key, id);
    }

    /// [`Self::insert`] of a key located already.
    pub fn insert_at(&mut self, at: KeyLocation, dealer: DealerId, key: &str, id: OrderId) {
        if id.0 > ID_MASK {
            self.overflow.insert((dealer, key.to_owned()), id);
            return;
        }
        let KeyLocation { part, tag } = at;
        let part = &mut self.parts[part];
        let before = part.slots.len();
        part.insert((tag << ID_BITS) | id.0);
        self.slots += part.slots.len() - before;
    }

    /// Forgets the key (its bytes) of order `id` (when the order is pruned).
    pub fn remove(&mut self, dealer: DealerId, key: &[u8], id: OrderId) {
        if id.0 > ID_MASK {
            if let Ok(key) = std::str::from_utf8(key) {
                self.overflow.remove(&(dealer, key.to_owned()));
            }
            return;
        }
        let KeyLocation { part, tag } = self.locate_bytes(dealer, key);
        self.parts[part].remove((tag << ID_BITS) | id.0);
    }

    /// Keys held (in tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len).sum::<usize>() + self.overflow.len()
    }
}

/// One part of the index: words in a power-of-two table, 0 for an empty slot (an order
/// id is never 0), linear probing from a key's home slot. Most lookups are of new keys
/// and end at the first empty slot, so the table stays at most half full: a new key
/// then reads two or three slots on average, seldom past the next cache line. (At
/// three quarters full, runs grew long enough to cost a placement about 100 ns more
/// in a book of millions of orders.)
#[derive(Clone, Default)]
struct Part {
    slots: Vec<u64>,
    len: usize,
}

/// The fewest slots in a part that holds any key.
const PART_SLOTS_MIN: usize = 16;

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("len", &self.len)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl Part {
    /// The slot where probing for `tag` starts: the top bits of a multiplicative hash
    /// of the tag (all a stored word keeps of its key), so that doubling the table
    /// sends a key from slot `i` to slot `2i` or `2i + 1`.
    fn home(&self, tag: u64) -> usize {
        // An empty table has no slot to start from (and `0.trailing_zeros()` is 64).
        if self.slots.is_empty() {
            return 0;
        }
        // At least `PART_SLOTS_MIN` slots, a power of two: 4 ≤ `bits` < 64.
        let bits = self.slots.len().trailing_zeros();
        (tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    #[inline]
    fn prefetch(&self, tag: u64) {
        if self.slots.is_empty() {
            return;
        }
        let home = self.home(tag);
        // The home slot's line and the next: a probe reads a few slots on from home,
        // and the next line is one of them about as often as not. (An address past
        // the end, when home is near it, is harmless: a prefetch reads nothing into
        // the program.)
        prefetch_index::prefetch_index(&self.slots, home);
        prefetch_index::prefetch_index(&self.slots, home + 8);
    }

    /// The word with `tag` for which `is_key` holds, if any.
    fn find(&self, tag: u64, is_key: impl Fn(u64) -> bool) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(tag);
        loop {
            let word = self.slots[i];
            if word == 0 {
                return None;
            }
            if word >> ID_BITS == tag && is_key(word) {
                return Some(word);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `word` (not in the table), growing the table first if it would pass half
    /// full.
    fn insert(&mut self, word: u64) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.put(word);
        self.len += 1;
    }

    /// Writes `word` into the first empty slot from its home (there is one).
    fn put(&mut self, word: u64) {
        let mask = self.mask();
        let mut i = self.home(word >> ID_BITS);
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = word;
    }

    /// Doubles the table. Old slots are read in order, and as keys sit in home order
    /// (but for a run wrapped past the end) the new table is written front to back.
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(PART_SLOTS_MIN);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        for word in old.into_iter().filter(|&w| w != 0) {
            self.put(word);
        }
    }

    /// Removes `word` if present, shifting back the words after it in its run that
    /// may move closer to home, so that no lookup stops early at the hole.
    fn remove(&mut self, word: u64) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.mask();
        let mut i = self.home(word >> ID_BITS);
        loop {
            match self.slots[i] {
                0 => return,
                w if w == word => break,
                _ => i = (i + 1) & mask,
            }
        }
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let w = self.slots[j];
            if w == 0 {
                break;
            }
            // `w` may fill the hole if the hole is no further from `j` than `w`'s
            // home slot is: then the hole lies within `w`'s probe path.
            let start = self.home(w >> ID_BITS);
            if j.wrapping_sub(start) & mask >= j.wrapping_sub(hole) & mask {
                self.slots[hole] = w;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = 0;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Order;

    /// Keys enough for about 40 in each part.
    fn keys() -> Vec<(DealerId, String)> {
        (0..10_240_u32)
            .map(|i| (DealerId(i % 3), format!("PO-{i}")))
            .collect()
    }

    fn book(keys: &[(DealerId, String)]) -> Orders {
        let mut orders = Orders::default();
        for (i, (dealer, key)) in keys.iter().enumerate() {
            orders.push(Order::held_for_test(OrderId(i as u64 + 1), *dealer, key));
        }
        orders
    }

    #[test]
    fn client_orders_are_exact_when_tags_collide() {
        let keys = keys();
        let orders = book(&keys);
        // Two tag bits: in its part (about 40 keys), every key shares its tag with
        // some ten others, and every key sits in one of four runs.
        let mut index = ClientOrders::with_tag_mask(0b11);
        for (i, (dealer, key)) in keys.iter().enumerate() {
            index.insert(*dealer, key, OrderId(i as u64 + 1));
        }
        for (i, (dealer, key)) in keys.iter().enumerate() {
            assert_eq!(
                index.get(&orders, *dealer, key),
                Some(OrderId(i as u64 + 1))
            );
        }
        assert_eq!(
            index.get(&orders, DealerId(0), "PO-1"),
            None,
            "another dealer's key"
        );
        assert_eq!(index.get(&orders, DealerId(0), "PO-x"), None);
        for (i, (dealer, key)) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
            index.remove(*dealer, key.as_bytes(), OrderId(i as u64 + 1));
        }
        for (i, (dealer, key)) in keys.iter().enumerate() {
            let expected = (i % 2 == 0).then_some(OrderId(i as u64 + 1));
            assert_eq!(index.get(&orders, *dealer, key), expected);
        }
        assert_eq!(index.len(), 5_120);
    }

    #[test]
    fn client_orders_beyond_the_id_bits_are_kept_apart() {
        let orders = Orders::default();
        let mut index = ClientOrders::default();
        let far = OrderId(ID_MASK + 1);
        index.insert(DealerId(1), "PO-far", far);
        assert_eq!(index.get(&orders, DealerId(1), "PO-far"), Some(far));
        assert_eq!(index.get(&orders, DealerId(2), "PO-far"), None);
        index.remove(DealerId(1), b"PO-far", far);
        assert_eq!(index.get(&orders, DealerId(1), "PO-far"), None);
    }

    /// The prefetch is skipped while the index fits the caches, issued once it does
    /// not, and changes nothing either way.
    #[test]
    fn prefetching_starts_with_a_large_index_and_changes_nothing() {
        let keys: Vec<(DealerId, String)> = (0..40_000_u32)
            .map(|i| (DealerId(i % 7), format!("K{i}")))
            .collect();
        let orders = book(&keys);
        let mut index = ClientOrders::default();
        let mut started = None;
        for (i, (dealer, key)) in keys.iter().enumerate() {
            let at = index.locate(*dealer, key);
            index.prefetch(at);
            assert_eq!(index.get_at(at, &orders, *dealer, key), None);
            index.insert_at(at, *dealer, key, OrderId(i as u64 + 1));
            if started.is_none() && index.worth_prefetching() {
                started = Some(i + 1);
            }
        }
        let slots: usize = index.parts.iter().map(|p| p.slots.len()).sum();
        assert_eq!(index.slots, slots);
        let started = started.expect("40,000 keys are not a small index");
        // 256 parts of 128 slots are `CACHED_SLOTS_MAX`: the index passes it once the
        // parts that doubled to 256 slots (past 64 keys) outweigh those still at 64
        // (at most 32 keys), at about 50 keys a part, and before 256 × 64 = 16,384
        // keys.
        assert!(
            (8_000..16_385).contains(&started),
            "started at {started} keys"
        );
        for (i, (dealer, key)) in keys.iter().enumerate().step_by(97) {
            index.prefetch(index.locate(*dealer, key));
            assert_eq!(
                index.get(&orders, *dealer, key),
                Some(OrderId(i as u64 + 1))
            );
        }
    }

    /// A new key's tag tells it apart from almost every stored key, also in a large
    /// book: a key's home slot is drawn from its tag, so the parts must stay small
    /// enough for a tag to keep bits beside its home. With 16-bit tags, 500,000 keys
    /// fill the parts as 24-bit tags do at 128 million keys: one new key in 33 is
    /// compared with an order (one in 8 in 64 parts).
    #[test]
    fn new_keys_are_seldom_compared_with_an_order() {
        let mut index = ClientOrders::with_tag_mask((1 << 16) - 1);
        let key = |i: u32| (DealerId(i % 1_000), format!("PO-{i}"));
        for i in 0..500_000 {
            let (dealer, key) = key(i);
            index.insert(dealer, &key, OrderId(u64::from(i) + 1));
        }
        let compared = std::cell::Cell::new(0_u32);
        for i in 500_000..600_000 {
            let (dealer, key) = key(i);
            let KeyLocation { part, tag } = index.locate(dealer, &key);
            let found = index.parts[part].find(tag, |_| {
                compared.set(compared.get() + 1);
                false
            });
            assert_eq!(found, None);
        }
        assert!(
            compared.get() < 5_000,
            "{} of 100,000 new keys compared with an order",
            compared.get()
        );
    }

    /// A part against a plain set, through growth, removals anywhere in a run, and
    /// runs that wrap past the table's end (few tags, so runs are long).
    #[test]
    fn a_part_agrees_with_a_set() {
        use proptest::prelude::*;
        let ops = proptest::collection::vec((any::<bool>(), 0_u64..6, 1_u64..400), 1..600);
        proptest!(|(ops in ops)| {
            let mut part = Part::default();
            let mut model = std::collections::BTreeSet::new();
            let mut named = std::collections::BTreeSet::new();
            for (n, (add, tag, id)) in ops.into_iter().enumerate() {
                let word = (tag << ID_BITS) | id;
                named.insert(word);
                if add && !model.contains(&word) {
                    part.insert(word);
                    model.insert(word);
                } else if !add {
                    part.remove(word);
                    model.remove(&word);
                }
                prop_assert_eq!(part.len, model.len());
                prop_assert!(part.len * 2 <= part.slots.len());
                let found = part.find(tag, |x| x == word);
                prop_assert_eq!(found.is_some(), model.contains(&word));
                if n % 8 == 0 {
                    for &w in &named {
                        let found = part.find(w >> ID_BITS, |x| x == w);
                        prop_assert_eq!(found.is_some(), model.contains(&w));
                    }
                }
            }
            for &w in &named {
                let found = part.find(w >> ID_BITS, |x| x == w);
                prop_assert_eq!(found.is_some(), model.contains(&w));
            }
            let mut held: Vec<u64> = part.slots.iter().copied().filter(|&w| w != 0).collect();
            held.sort_unstable();
            prop_assert_eq!(held, model.into_iter().collect::<Vec<_>>());
        });
    }

    /// Every home is a slot of the table: slot 0 of an empty one (where nothing
    /// probes today, but a home past the end would be an index out of bounds).
    #[test]
    fn homes_are_slots_of_the_table() {
        let mut part = Part::default();
        for tag in [0, 1, 12_345, (1 << TAG_BITS) - 1] {
            assert_eq!(part.home(tag), 0, "empty table");
        }
        for _ in 0..6 {
            part.grow();
            for tag in (0..1 << TAG_BITS).step_by(9_973) {
                assert!(part.home(tag) < part.slots.len());
            }
        }
    }

    /// Removing from a run that wraps past the end moves the wrapped words back
    /// across it: a hole left at the end would hide them from lookups.
    #[test]
    fn removal_shifts_a_run_back_across_the_end() {
        let mut part = Part::default();
        part.grow();
        let size = part.slots.len();
        // Tags whose home is the last slot: their run wraps to the start.
        let tag = (0..1_u64 << TAG_BITS)
            .find(|&t| part.home(t) == size - 1)
            .expect("some tag is at home in the last slot");
        let words: Vec<u64> = (1..=4).map(|id| (tag << ID_BITS) | id).collect();
        for &w in &words {
            part.insert(w);
        }
        assert_eq!(part.slots[size - 1], words[0]);
        assert_eq!(&part.slots[..3], &words[1..]);
        part.remove(words[0]);
        for &w in &words[1..] {
            assert_eq!(part.find(tag, |x| x == w), Some(w));
        }
        assert_eq!(part.slots[size - 1], words[1]);
        assert_eq!(part.slots[2], 0);
        assert_eq!(part.find(tag, |x| x == words[0]), None);
    }
}
