//! Codes (SKU, dealer, warehouse, promotion) to dense ids, for the lookups every order
//! makes: its dealer and each line's SKU.
//!
//! A code of up to `INLINE_LEN` bytes (every code in practice) is kept inline in its
//! table entry as three words, with its length in the last byte, so a lookup hashes and
//! compares three words and reads no heap string: a map keyed by `String` follows a
//! pointer to compare each candidate key, one more cache miss per lookup once the
//! book's order traffic has pushed the keys out of cache. Longer codes go to an
//! ordinary map beside the table.

use rustc_hash::FxHashMap;

/// Bytes of a code kept inline; the 24th byte of the key holds the length.
const INLINE_LEN: usize = 23;

/// A code of at most `INLINE_LEN` bytes, little-endian in three words, zero-padded,
/// with its length in the top byte of the last word (so codes that differ only by
/// trailing zero bytes still differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InlineKey([u64; 3]);

impl InlineKey {
    /// The key of `code`, if it fits inline. Built from whole-word loads (overlapping
    /// ones for a partial last word) so that the key stays in registers: a key
    /// assembled byte by byte goes through the stack, and reading it back as wider
    /// words cannot be forwarded from those narrow stores, which stalls the lookup
    /// until every earlier store has reached the cache.
    #[inline]
    fn new(code: &str) -> Option<Self> {
        let bytes = code.as_bytes();
        let len = bytes.len();
        if len > INLINE_LEN {
            return None;
        }
        let load8 =
            |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
        // Bytes `from..len` (fewer than 8, len ≥ 8) as the low bytes of a word.
        let tail = |from: usize| load8(len - 8) >> (8 * (8 - (len - from)));
        let first = if len >= 8 {
            load8(0)
        } else if len >= 4 {
            let load4 = |at: usize| {
                u64::from(u32::from_le_bytes(
                    bytes[at..at + 4].try_into().expect("four bytes"),
                ))
            };
            load4(0) | load4(len - 4) << (8 * (len - 4))
        } else if len > 0 {
            let byte = |at: usize| u64::from(bytes[at]) << (8 * at);
            byte(0) | byte(len / 2) | byte(len - 1)
        } else {
            0
        };
        let second = if len >= 16 {
            load8(8)
        } else if len > 8 {
            tail(8)
        } else {
            0
        };
        let third = if len > 16 { tail(16) } else { 0 };
        Some(Self([first, second, third | (len as u64) << 56]))
    }

    /// Word by word: compared as one wide value, a key in registers would be written
    /// to the stack in words and read back wide (see `new`).
    #[inline]
    fn matches(&self, other: &Self) -> bool {
        self.0[0] == other.0[0] && self.0[1] == other.0[1] && self.0[2] == other.0[2]
    }

    /// Folded multiplies (the high and low halves of a 128-bit product, xored), which
    /// carry every input bit into the low bits the table indexes by: a plain multiply
    /// would leave the low bits blind to the high bytes, where codes such as
    /// `SKU-00017` and `SKU-00018` differ.
    fn hash(self) -> u64 {
        fn fold(x: u64, y: u64) -> u64 {
            let product = u128::from(x) * u128::from(y);
            (product as u64) ^ ((product >> 64) as u64)
        }
        let [a, b, c] = self.0;
        // The seeds have bytes of 0x80 and above, which no word of an ASCII code
        // equals, so neither factor of the first fold is ever 0.
        let mixed = fold(a ^ 0x243f_6a88_85a3_08d3, b ^ 0x1319_8a2e_0370_7344);
        fold(mixed ^ c, 0x9e37_79b9_7f4a_7c15)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CodeIndex<V> {
    inline: hashbrown::HashTable<(InlineKey, V)>,
    long: FxHashMap<String, V>,
}

impl<V> Default for CodeIndex<V> {
    fn default() -> Self {
        Self {
            inline: hashbrown::HashTable::new(),
            long: FxHashMap::default(),
        }
    }
}

impl<V: Copy> CodeIndex<V> {
    pub fn get(&self, code: &str) -> Option<&V> {
        match InlineKey::new(code) {
            Some(key) => self
                .inline
                .find(key.hash(), |(k, _)| k.matches(&key))
                .map(|(_, value)| value),
            None => self.long.get(code),
        }
    }

    /// Maps `code` to `value`, replacing any value it had.
    pub fn insert(&mut self, code: &str, value: V) {
        let Some(key) = InlineKey::new(code) else {
            self.long.insert(code.to_owned(), value);
            return;
        };
        let hash = key.hash();
        match self.inline.find_mut(hash, |(k, _)| k.matches(&key)) {
            Some(entry) => entry.1 = value,
            None => {
                self.inline
                    .insert_unique(hash, (key, value), |&(k, _)| k.hash());
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inline.len() + self.long.len()
    }
}

impl<'a, V: Copy> FromIterator<(&'a str, V)> for CodeIndex<V> {
    fn from_iter<I: IntoIterator<Item = (&'a str, V)>>(codes: I) -> Self {
        let mut index = Self::default();
        for (code, value) in codes {
            index.insert(code, value);
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_every_length_are_told_apart() {
        // "a" * n and "a" * (n - 1) + "b" for n in 0..=70: inline and long codes, and
        // codes that differ only in their last byte.
        let mut codes: Vec<String> = Vec::new();
        for len in 0..=70 {
            codes.push("a".repeat(len));
            if len > 0 {
                codes.push("a".repeat(len - 1) + "b");
            }
        }
        let mut index = CodeIndex::default();
        for (i, code) in codes.iter().enumerate() {
            index.insert(code, i);
        }
        assert_eq!(index.len(), codes.len());
        for (i, code) in codes.iter().enumerate() {
            assert_eq!(index.get(code), Some(&i), "{code:?}");
        }
        assert_eq!(
            index.get("a\0"),
            None,
            "a trailing zero byte is part of the code"
        );
        assert_eq!(index.get("\0"), None);
        assert_eq!(index.get("c"), None);
        assert_eq!(index.get(&"a".repeat(71)), None);
        index.insert("a", 1_000);
        index.insert(&"b".repeat(40), 1_001);
        assert_eq!(index.get("a"), Some(&1_000), "insert replaces");
        assert_eq!(index.get(&"b".repeat(40)), Some(&1_001));
        assert_eq!(index.len(), codes.len() + 1);
    }

    /// The key as specified: bytes little-endian in three words, zero-padded, the
    /// length in the top byte.
    fn key_byte_by_byte(code: &str) -> [u64; 3] {
        let mut words = [0_u64; 3];
        for (i, &byte) in code.as_bytes().iter().enumerate() {
            words[i / 8] |= u64::from(byte) << (8 * (i % 8));
        }
        words[2] |= (code.len() as u64) << 56;
        words
    }

    #[test]
    fn keys_built_from_word_loads_match_the_byte_layout() {
        // Distinct bytes at every position, so a byte loaded into the wrong place or
        // twice shows, for every inline length.
        let alphabet: Vec<u8> = (b'!'..=b'~').collect();
        for len in 0..=INLINE_LEN {
            for offset in 0..3 {
                let code: String = (0..len)
                    .map(|i| char::from(alphabet[(i * 7 + offset * 13) % alphabet.len()]))
                    .collect();
                let key = InlineKey::new(&code).expect("inline length");
                assert_eq!(key.0, key_byte_by_byte(&code), "{code:?}");
                assert!(key.matches(&InlineKey(key_byte_by_byte(&code))));
            }
        }
        assert_eq!(InlineKey::new(&"x".repeat(INLINE_LEN + 1)), None);
        let one = InlineKey::new("ab").expect("short");
        let other = InlineKey::new("ac").expect("short");
        assert!(!one.matches(&other));
    }

    #[test]
    fn similar_codes_spread_over_the_table() {
        let codes: Vec<String> = (0..10_000).map(|i| format!("SKU-{i:05}")).collect();
        let index: CodeIndex<usize> = codes
            .iter()
            .enumerate()
            .map(|(i, code)| (code.as_str(), i))
            .collect();
        for (i, code) in codes.iter().enumerate() {
            assert_eq!(index.get(code), Some(&i));
        }
        assert_eq!(index.get("SKU-10000"), None);
        assert_eq!(index.get("SKU-0000"), None);
        // The low 14 bits (a table of 16,384 buckets) of 10,000 such codes: a good
        // hash leaves about 16,384 * e^(-10,000/16,384) = 8,900 buckets empty and no
        // bucket with more than a handful of codes.
        let mut buckets = vec![0_u32; 1 << 14];
        for code in &codes {
            let hash = InlineKey::new(code).expect("short").hash();
            buckets[(hash & ((1 << 14) - 1)) as usize] += 1;
        }
        let empty = buckets.iter().filter(|&&n| n == 0).count();
        let fullest = buckets.iter().copied().max().unwrap_or(0);
        assert!((8_400..9_400).contains(&empty), "{empty} empty buckets");
        assert!(fullest <= 8, "a bucket of {fullest} codes");
    }
}
