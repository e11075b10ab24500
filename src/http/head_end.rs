//! Where a request head ends: the blank line after its fields, found with each byte looked
//! at once however the head is split, and control bytes no head may hold refused on sight.

use super::error::HttpError;

/// Index just past the blank line that ends a head (CRLFCRLF, or LF-only line ends, which
/// httparse also accepts), looking at the bytes from `from` on (less the three that could
/// start the terminator across reads).
///
/// Each byte is looked at once, however the head is split, and control bytes that no head
/// may contain are refused on sight: garbage such as a TLS hello is answered at once, not
/// after the header timeout, and the answer does not depend on how the bytes arrived.
///
/// Only bytes below 0x20 matter here, and a head has few (CR, LF, perhaps a tab per line), so
/// the scan reads eight bytes at a time and looks only at the bytes of a word flagged as
/// below 0x20.
pub(super) fn find_head_end(buf: &[u8], from: usize) -> Result<Option<usize>, HttpError> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut at = from.saturating_sub(3);
    while at < buf.len() {
        if let Some(word) = buf.get(at..at + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            // A high bit set for every byte below 0x20 (and at most a few others: a borrow
            // can flag a 0x20 byte after a flagged one), lowest byte first.
            let mut flags = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
            while flags != 0 {
                let i = at + (flags.trailing_zeros() / 8) as usize;
                if let Some(found) = head_byte(buf, i, from) {
                    return found.map(Some);
                }
                flags &= flags - 1;
            }
            at += 8;
            continue;
        }
        let stop = (at + 8).min(buf.len());
        for i in at..stop {
            if let Some(found) = head_byte(buf, i, from) {
                return found.map(Some);
            }
        }
        at = stop;
    }
    Ok(None)
}

/// What the byte at `i` says about the head: it ends just past this line feed (the index
/// returned), or it is a control byte no head may hold (if at or after `from`), or nothing.
pub(super) fn head_byte(buf: &[u8], i: usize, from: usize) -> Option<Result<usize, HttpError>> {
    match buf[i] {
        b'\n' => match buf.get(i + 1) {
            Some(b'\n') => Some(Ok(i + 2)),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => Some(Ok(i + 3)),
            _ => None,
        },
        0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f if i >= from => Some(Err(HttpError::Malformed)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time scan the word-skipping one must agree with.
    fn find_head_end_bytewise(buf: &[u8], from: usize) -> Result<Option<usize>, HttpError> {
        for i in from.saturating_sub(3)..buf.len() {
            if let Some(found) = head_byte(buf, i, from) {
                return found.map(Some);
            }
        }
        Ok(None)
    }

    proptest::proptest! {
        #[test]
        fn word_skipping_scan_agrees_with_the_bytewise_one(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => 0x20u8..=0x7e,
                    2 => proptest::sample::select(vec![b'\r', b'\n']),
                    1 => proptest::num::u8::ANY,
                ],
                0..64,
            ),
            from in 0usize..64,
        ) {
            let from = from.min(bytes.len());
            proptest::prop_assert_eq!(
                find_head_end(&bytes, from),
                find_head_end_bytewise(&bytes, from)
            );
        }
    }
}
