//! Fingerprints of exact names: 128 bits of SHA-256, in lower-case base32 (26 characters).
//!
//! Every name the connector derives from a user's names (a work table, an export directory,
//! a warehouse table or column) carries the fingerprint of the exact names it stands for, so
//! no two of them can share one: not names that differ only past a length, in case, or in where
//! a dot falls between schema and table, nor names built to collide with a short hash. Base32
//! keeps it short enough for PostgreSQL's 63-byte identifiers and free of characters that need
//! quoting anywhere.

use sha2::Digest as _;

/// Characters in a fingerprint.
pub const LEN: usize = 26;

/// The fingerprint of `parts` (joined by NUL, which no name holds, so `["a.b", "c"]` and
/// `["a", "b.c"]` differ).
pub fn of(parts: &[&str]) -> String {
    let digest = sha2::Sha256::digest(parts.join("\0").as_bytes());
    base32(u128::from_be_bytes(
        digest[..16].try_into().expect("16 bytes"),
    ))
}

/// Whether `text` has a fingerprint's form.
pub fn is_fingerprint(text: &str) -> bool {
    text.len() == LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// RFC 4648 base32, lower case, unpadded: 26 groups of 5 bits cover 130; the last group
/// holds the low 3 bits, shifted up.
fn base32(bits: u128) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..LEN)
        .map(|i| {
            let shift = 128i32 - 5 * (i as i32 + 1);
            let group = if shift >= 0 {
                (bits >> shift) & 31
            } else {
                (bits << -shift) & 31
            };
            char::from(ALPHABET[group as usize])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_shows_and_parts_keep_their_bounds() {
        assert_eq!(base32(0), "a".repeat(26));
        assert_eq!(base32(u128::MAX), format!("{}4", "7".repeat(25)));
        let mut seen = std::collections::BTreeSet::new();
        for bit in 0..128 {
            assert!(seen.insert(base32(1 << bit)), "bit {bit}");
        }
        assert_ne!(of(&["a.b", "c"]), of(&["a", "b.c"]));
        assert_ne!(of(&["s", "Orders"]), of(&["s", "orders"]));
        assert!(is_fingerprint(&of(&["s", "t"])));
        assert!(!is_fingerprint("abcdefghijklmnopqrstuvwxy1"));
    }
}
