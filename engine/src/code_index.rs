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
    fn new(code: &str) -> Option<Self> {
        let bytes = code.as_bytes();
        if bytes.len() > INLINE_LEN {
            return None;
        }
        let mut words = [0_u64; 3];
        let whole = bytes.chunks_exact(8);
        let rest = whole.remainder();
        let mut i = 0;
        for chunk in whole {
            words[i] = u64::from_le_bytes(chunk.try_into().expect("chunks of 8 bytes"));
            i += 1;
        }
        for (j, &byte) in rest.iter().enumerate() {
            words[i] |= u64::from(byte) << (8 * j);
        }
        words[2] |= (bytes.len() as u64) << 56;
        Some(Self(words))
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
                .find(key.hash(), |&(k, _)| k == key)
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
        match self.inline.find_mut(hash, |&(k, _)| k == key) {
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
