//! A sorted set for keys that almost always arrive in order: hold deadlines (each is
//! `now + hold TTL`, and time moves forward) and closed orders by close time.
//!
//! In-order keys append to a sorted deque: O(1) to add, to take the first and to find
//! it, where a B-tree pays a search and node splits for each. A key that would break
//! the order (the TTL was shortened, or the clock stepped back) goes to a small
//! ordered set instead. Removed keys are usually the oldest: the first key is taken
//! off the front at once; any other is found by a search galloping from the front
//! and marked. Marks at the front are dropped at once, and the deque is compacted
//! whenever marks outnumber live keys (once there are more than a few), so it stays
//! within twice the live keys.

use std::collections::{BTreeSet, VecDeque};

/// Removal marks tolerated before the deque is compacted, however few live keys.
const COMPACT_MARKS_MIN: usize = 64;

#[derive(Clone, Debug)]
pub(crate) struct AppendSet<K> {
    /// Keys, sorted, each with whether it is still in the set.
    queue: VecDeque<(K, bool)>,
    /// Entries of `queue` marked removed.
    removed: usize,
    /// Keys that arrived out of order.
    late: BTreeSet<K>,
}

impl<K> Default for AppendSet<K> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            removed: 0,
            late: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy> AppendSet<K> {
    /// Builds the set from keys in any order.
    pub fn from_keys(mut keys: Vec<K>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        Self {
            queue: keys.into_iter().map(|k| (k, true)).collect(),
            removed: 0,
            late: BTreeSet::new(),
        }
    }

    /// Adds `key`; returns whether it was new.
    #[inline]
    pub fn insert(&mut self, key: K) -> bool {
        match self.queue.back() {
            Some(&(last, _)) if key <= last => self.insert_late(key),
            // A late key may be above every queued one once those are gone.
            _ if !self.late.is_empty() => self.insert_late(key),
            _ => {
                self.queue.push_back((key, true));
                true
            }
        }
    }

    /// [`Self::insert`] of a key below the last queued one, or while late keys are
    /// kept.
    #[inline(never)]
    fn insert_late(&mut self, key: K) -> bool {
        match self.queue.back() {
            Some(&(last, _)) if key <= last => {
                if self.find(key).is_some() {
                    return false;
                }
                self.late.insert(key)
            }
            _ => {
                if self.late.contains(&key) {
                    return false;
                }
                self.queue.push_back((key, true));
                true
            }
        }
    }

    /// The position of live `key` in `queue`.
    fn find(&self, key: K) -> Option<usize> {
        let (front, back) = self.queue.as_slices();
        let i = match back.first() {
            Some(&(first, _)) if first <= key => front.len() + gallop_lower_bound(back, key),
            _ => gallop_lower_bound(front, key),
        };
        self.queue
            .get(i)
            .filter(|&&(k, live)| k == key && live)
            .map(|_| i)
    }

    /// Removes `key`; returns whether it was there.
    #[inline]
    pub fn remove(&mut self, key: K) -> bool {
        // The oldest key is the one most often removed (the front is never a removed
        // entry).
        if self.queue.front().is_some_and(|&(first, _)| first == key) {
            self.pop_front();
            return true;
        }
        self.remove_later(key)
    }

    /// [`Self::remove`] of a key that is not the first queued one.
    #[inline(never)]
    fn remove_later(&mut self, key: K) -> bool {
        let Some(i) = self.find(key) else {
            return self.late.remove(&key);
        };
        self.queue[i].1 = false;
        self.removed += 1;
        self.tidy();
        true
    }

    /// Takes the first queued key off (it is live), then tidies any marks.
    fn pop_front(&mut self) {
        self.queue.pop_front();
        if self.removed > 0 {
            self.tidy();
        }
    }

    /// Drops the marks the front now shows, and compacts the rest if they are many.
    fn tidy(&mut self) {
        self.drop_removed_front();
        self.compact_if_sparse();
    }

    /// Drops the removal marks once they outnumber the live keys (and are more than a
    /// few), so the deque stays within twice the live keys.
    fn compact_if_sparse(&mut self) {
        if self.removed > COMPACT_MARKS_MIN && self.removed * 2 > self.queue.len() {
            self.queue.retain(|&(_, live)| live);
            self.removed = 0;
        }
    }

    fn drop_removed_front(&mut self) {
        while self.queue.front().is_some_and(|&(_, live)| !live) {
            self.queue.pop_front();
            self.removed -= 1;
        }
    }

    /// The smallest key.
    pub fn first(&self) -> Option<K> {
        // The front of `queue` is never a removed entry.
        let queued = self.queue.front().map(|&(k, _)| k);
        match (queued, self.late.first().copied()) {
            (Some(q), Some(l)) => Some(q.min(l)),
            (q, l) => q.or(l),
        }
    }

    /// Removes and returns the smallest key.
    pub fn pop_first(&mut self) -> Option<K> {
        let first = self.first()?;
        if self.late.first() == Some(&first) {
            self.late.pop_first();
        } else {
            self.pop_front();
        }
        Some(first)
    }

    /// Every key, in order.
    pub fn iter(&self) -> impl Iterator<Item = K> + '_ {
        let mut queued = self
            .queue
            .iter()
            .filter(|&&(_, live)| live)
            .map(|&(k, _)| k)
            .peekable();
        let mut late = self.late.iter().copied().peekable();
        std::iter::from_fn(move || match (queued.peek(), late.peek()) {
            (Some(q), Some(l)) if l < q => late.next(),
            (Some(_), _) => queued.next(),
            (None, _) => late.next(),
        })
    }
}

/// [`lower_bound`], galloping from the front first: a key removed from these sets is
/// usually among the oldest (a hold confirmed or a dealer's order closed in about the
/// order they came), so this costs O(log distance from the front), and at most about
/// twice a plain binary search.
fn gallop_lower_bound<K: Ord + Copy>(entries: &[(K, bool)], key: K) -> usize {
    let mut end = 1;
    while end < entries.len() && entries[end - 1].0 < key {
        end *= 2;
    }
    // Every entry before `end / 2` is below `key`; the one at `end - 1`, if any, is not.
    let start = end / 2;
    let end = end.min(entries.len());
    start + lower_bound(&entries[start..end], key)
}

/// The first position in sorted `entries` whose key is not below `key`. The loop
/// has no data-dependent branch (the halving is a conditional move), which matters
/// here: the position of a removed key is as good as random.
fn lower_bound<K: Ord + Copy>(entries: &[(K, bool)], key: K) -> usize {
    let mut base = 0;
    let mut size = entries.len();
    while size > 1 {
        let half = size / 2;
        if entries[base + half].0 < key {
            base += half;
        }
        size -= half;
    }
    base + usize::from(entries.get(base).is_some_and(|&(k, _)| k < key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<K: Ord + Copy>(set: &AppendSet<K>) -> Vec<K> {
        set.iter().collect()
    }

    #[test]
    fn lower_bounds_agree_with_partition_point() {
        for len in 0..40_u32 {
            let entries: Vec<(u32, bool)> = (0..len).map(|i| (2 * i + 1, i % 3 != 0)).collect();
            for key in 0..=2 * len + 2 {
                let expected = entries.partition_point(|&(k, _)| k < key);
                assert_eq!(
                    lower_bound(&entries, key),
                    expected,
                    "{len} entries, key {key}"
                );
                assert_eq!(
                    gallop_lower_bound(&entries, key),
                    expected,
                    "galloping: {len} entries, key {key}"
                );
            }
        }
    }

    #[test]
    fn keys_are_found_across_the_deque_wrap() {
        let mut set = AppendSet::default();
        // Pop from the front and push at the back until the ring buffer wraps.
        for key in 0..64_u64 {
            set.insert(key);
        }
        let mut wrapped = false;
        for next in 64..200_u64 {
            assert_eq!(set.pop_first(), Some(next - 64));
            set.insert(next);
            let (front, back) = set.queue.as_slices();
            wrapped |= !back.is_empty();
            for key in next - 63..=next {
                let i = set.find(key).expect("every key in the set is found");
                assert_eq!(
                    set.queue[i].0,
                    key,
                    "{} + {} entries",
                    front.len(),
                    back.len()
                );
            }
            assert_eq!(set.find(next + 1), None);
            assert_eq!(set.find(next - 64), None);
        }
        assert!(wrapped, "the deque wrapped at least once");
    }

    #[test]
    fn keys_stay_ordered_whatever_the_arrival_order() {
        let mut set = AppendSet::default();
        for key in [(10, 1), (20, 2), (20, 3), (5, 4), (30, 5), (20, 6), (25, 7)] {
            assert!(set.insert(key));
        }
        assert!(!set.insert((20, 3)), "already there, in order");
        assert!(!set.insert((5, 4)), "already there, late");
        let expected = vec![(5, 4), (10, 1), (20, 2), (20, 3), (20, 6), (25, 7), (30, 5)];
        assert_eq!(keys(&set), expected);
        assert!(set.remove((20, 3)));
        assert!(set.remove((25, 7)), "a key that arrived late");
        assert!(!set.remove((25, 7)), "already removed");
        assert!(!set.remove((20, 9)), "never there");
        let mut popped = Vec::new();
        while let Some(key) = set.pop_first() {
            popped.push(key);
        }
        assert_eq!(popped, vec![(5, 4), (10, 1), (20, 2), (20, 6), (30, 5)]);
        assert_eq!(set.first(), None);
    }

    #[test]
    fn removed_keys_are_compacted_and_never_returned() {
        let mut set = AppendSet::default();
        for key in 1..=1_000_u64 {
            set.insert(key);
        }
        // Remove all but every tenth, from the back, so no removal is at the front.
        for key in (1..=1_000).rev().filter(|k| k % 10 != 1) {
            assert!(set.remove(key));
        }
        assert!(
            set.queue.len() < 300,
            "marks are compacted: {} entries left",
            set.queue.len()
        );
        assert_eq!(
            keys(&set),
            (1..=1_000).filter(|k| k % 10 == 1).collect::<Vec<_>>()
        );
        assert_eq!(set.first(), Some(1));
        assert!(set.remove(1));
        assert_eq!(
            set.first(),
            Some(11),
            "a removed front key is dropped at once"
        );
        assert!(!set.insert(11));
        assert!(set.insert(1), "a removed key may come back, out of order");
        assert_eq!(keys(&set).first(), Some(&1));
    }

    #[test]
    fn a_set_built_at_once_matches_one_built_key_by_key() {
        let entries = vec![(7, 3), (3, 9), (7, 1), (3, 9)];
        let mut inserted = AppendSet::default();
        for &key in &entries {
            inserted.insert(key);
        }
        let built = AppendSet::from_keys(entries);
        assert_eq!(keys(&inserted), keys(&built));
        assert_eq!(keys(&built), vec![(3, 9), (7, 1), (7, 3)]);
    }

    /// A key that arrived late is still in the set once the keys after it are gone:
    /// inserting it again must not store it a second time, in the deque.
    #[test]
    fn a_late_key_is_not_stored_twice() {
        let mut set = AppendSet::default();
        assert!(set.insert(5));
        assert!(set.insert(3), "late");
        assert!(set.remove(5));
        assert!(!set.insert(3), "3 is in the set");
        assert_eq!(keys(&set), vec![3]);
        assert_eq!(set.pop_first(), Some(3));
        assert_eq!(set.first(), None, "no second copy of 3");
        // And after a compaction has dropped the keys above a late one.
        let mut set = AppendSet::default();
        for key in 100..300 {
            set.insert(key);
        }
        assert!(set.insert(50), "late");
        for key in 100..300 {
            set.remove(key);
        }
        assert!(!set.insert(50));
        assert_eq!(keys(&set), vec![50]);
    }

    /// Marks left by removals behind the front are still compacted when the live keys
    /// before them are then taken off the front.
    #[test]
    fn marks_are_compacted_when_the_front_is_taken() {
        let mut set = AppendSet::default();
        for key in 1..=200 {
            set.insert(key);
        }
        for key in 101..=165 {
            assert!(set.remove(key));
        }
        assert_eq!(
            set.removed, 65,
            "65 marks in 200 entries: not yet compacted"
        );
        for key in 1..=99 {
            assert!(set.remove(key));
            assert!(
                set.removed * 2 <= set.queue.len(),
                "{} marks in a deque of {}",
                set.removed,
                set.queue.len()
            );
        }
        assert_eq!(
            keys(&set),
            [100].into_iter().chain(166..=200).collect::<Vec<_>>()
        );
    }

    /// The set against a `BTreeSet`, through keys that mostly arrive in order (with
    /// late ones among them), removals at the front and anywhere else (enough of them
    /// to compact the marks), and pops; the deque stays within twice the live keys.
    #[test]
    fn a_set_agrees_with_a_btree_set() {
        use proptest::prelude::*;
        // A first run of in-order keys, then operations (operation, step, position):
        // the next key is the last one plus a step that is usually forward; removals
        // pick a key by position among all keys. Inserts are the first `inserts` of
        // ten operations, so some sets grow and some shrink (and pile up marks).
        let ops = proptest::collection::vec((0_u8..10, -3_i64..12, any::<u16>()), 1..1_500);
        proptest!(|(first in 0_i64..400, inserts in 1_u8..8, ops in ops)| {
            let mut set = AppendSet::default();
            let mut model = BTreeSet::new();
            for key in 0..first {
                set.insert(key);
                model.insert(key);
            }
            let mut last = first + 100;
            for (op, step, position) in ops {
                let op = if op < inserts { 0 } else { 1 + op % 4 };
                match op {
                    0 => {
                        last += step;
                        prop_assert_eq!(set.insert(last), model.insert(last));
                    }
                    1 => {
                        // The oldest key, as closing orders in order removes.
                        let key = model.first().copied().unwrap_or(last);
                        prop_assert_eq!(set.remove(key), model.remove(&key));
                    }
                    2 | 3 => {
                        let key = model
                            .iter()
                            .nth(usize::from(position) % (model.len() + 1))
                            .copied()
                            .unwrap_or(last + step);
                        prop_assert_eq!(set.remove(key), model.remove(&key));
                    }
                    _ => prop_assert_eq!(set.pop_first(), model.pop_first()),
                }
                prop_assert_eq!(set.first(), model.first().copied());
                prop_assert!(set.queue.front().is_none_or(|&(_, live)| live));
                prop_assert!(
                    set.removed <= COMPACT_MARKS_MIN || set.removed * 2 <= set.queue.len(),
                    "{} marks in a deque of {}", set.removed, set.queue.len()
                );
            }
            prop_assert_eq!(keys(&set), model.into_iter().collect::<Vec<_>>());
        });
    }
}
