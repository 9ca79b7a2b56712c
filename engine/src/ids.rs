//! Dense identifiers. Codes (SKU, warehouse, dealer, promotion, tier, region) are
//! interned to indices into the ledger's vectors when first seen; order ids count up
//! from 1 per ledger. Indices are never reused, so an id is stable for the ledger's life.

use crate::limits::CODE_LEN_MAX;

macro_rules! dense_id {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The position of this entity in the ledger's vector.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

dense_id!(
    /// A SKU's interned index.
    SkuId, u32
);
dense_id!(
    /// A warehouse's interned index.
    WarehouseId, u32
);
dense_id!(
    /// A dealer's interned index.
    DealerId, u32
);
dense_id!(
    /// A promotion's interned index.
    PromotionId, u32
);
dense_id!(
    /// A dealer tier's interned index (tiers are free-form names such as `gold`).
    TierId, u32
);
dense_id!(
    /// A region's interned index.
    RegionId, u32
);

/// An order's id: per ledger (per tenant), starting at 1, dense.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[serde(transparent)]
pub struct OrderId(pub u64);

impl OrderId {
    /// The order's position in the ledger's order vector, if the id can name one.
    pub fn slot(self) -> Option<usize> {
        usize::try_from(self.0.checked_sub(1)?).ok()
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether `code` is a valid code: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= CODE_LEN_MAX
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `id` is a valid client order id: 1–128 printable ASCII characters, space
/// included.
pub fn is_valid_client_order_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= crate::limits::CLIENT_ORDER_ID_LEN_MAX
        && all_printable(id.as_bytes())
}

/// Whether every byte of `text` is printable ASCII (0x20–0x7e), checked eight bytes at
/// a time: every placement checks its key, and byte by byte a 9-byte key took about
/// 60 instructions.
fn all_printable(text: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytewise, `w - 0x20` and `w + 1` keep every high bit clear when all bytes are
    // printable (then nothing borrows or carries). Otherwise the lowest byte that is
    // not, which nothing below it borrows from or carries into, sets one: below 0x20
    // in `w - 0x20`; from 0x7f to 0xfe in `w + 1`; 0xff in `w - 0x20`.
    let printable_word = |w: u64| (w.wrapping_sub(0x20 * ONES) | w.wrapping_add(ONES)) & HIGH == 0;
    let mut words = text.chunks_exact(8);
    let all_words = words.by_ref().all(|chunk| {
        printable_word(u64::from_le_bytes(
            chunk.try_into().expect("chunks of eight bytes"),
        ))
    });
    all_words && words.remainder().iter().all(|b| (0x20..=0x7e).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_accept_the_documented_alphabet_only() {
        assert!(is_valid_code("SKU-1.a_B"));
        assert!(is_valid_code(&"x".repeat(64)));
        assert!(!is_valid_code(""));
        assert!(!is_valid_code(&"x".repeat(65)));
        assert!(!is_valid_code("a b"));
        assert!(!is_valid_code("é"));
        assert!(!is_valid_code("a/b"));
    }

    #[test]
    fn printable_words_agree_with_bytes() {
        // Every byte value in every position of a word and of the tail after it,
        // among neighbours at either end of the range; then every pair of adjacent
        // bytes, so that a borrow or carry from one byte into the next is covered.
        let printable = |b: u8| (0x20..=0x7e).contains(&b);
        for fill in [b' ', b'~', b'a'] {
            for at in 0..12 {
                for b in 0..=255u8 {
                    let mut bytes = [fill; 12];
                    bytes[at] = b;
                    assert_eq!(all_printable(&bytes), printable(b), "byte {b:#x} at {at}");
                }
            }
        }
        for lo in 0..=255u8 {
            for hi in 0..=255u8 {
                let mut bytes = [b'x'; 16];
                bytes[3] = lo;
                bytes[4] = hi;
                assert_eq!(
                    all_printable(&bytes),
                    printable(lo) && printable(hi),
                    "bytes {lo:#x} {hi:#x}"
                );
            }
        }
    }

    #[test]
    fn client_order_ids_take_printable_ascii_with_space() {
        assert!(is_valid_client_order_id("PO 2026/11 #7"));
        assert!(is_valid_client_order_id(&"~".repeat(128)));
        assert!(!is_valid_client_order_id(""));
        assert!(!is_valid_client_order_id(&"a".repeat(129)));
        assert!(!is_valid_client_order_id("tab\there"));
        assert!(!is_valid_client_order_id("ü"));
    }

    #[test]
    fn order_id_zero_names_no_slot() {
        assert_eq!(OrderId(0).slot(), None);
        assert_eq!(OrderId(1).slot(), Some(0));
    }
}
