//! Percent-decoding (RFC 3986 section 2.1), the one implementation every layer uses: the
//! echo route, static-file paths and the library's path and query parameters.
//!
//! Two policies over one loop: *strict* refuses a `%` not followed by two hex digits (a path
//! that cannot be decoded must not name a file), *lenient* keeps such a `%` as it is (a
//! handler's parameter is decoded as well as it can be). Query values of HTML forms also
//! decode `+` to a space. The `percent-encoding` crate decodes leniently only, hence this.

use std::borrow::Cow;

/// How `+` is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plus {
    /// A plus sign (paths, and queries that are not forms).
    Keep,
    /// A space (`application/x-www-form-urlencoded` names and values).
    Space,
}

/// A `%` not followed by two hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Malformed;

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a % not followed by two hex digits")
    }
}

impl std::error::Error for Malformed {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `input` decoded to `out`. Strict: a malformed escape is an error (what was
/// appended before it stays); lenient: it is copied as it stands.
fn decode(input: &[u8], plus: Plus, strict: bool, out: &mut Vec<u8>) -> Result<(), Malformed> {
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let escaped = input.get(i + 1).and_then(|&b| hex(b)).and_then(|hi| {
                    input
                        .get(i + 2)
                        .and_then(|&b| hex(b))
                        .map(|lo| hi << 4 | lo)
                });
                match escaped {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None if strict => return Err(Malformed),
                    None => out.push(b'%'),
                }
            }
            b'+' if plus == Plus::Space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Ok(())
}

/// Appends `input` decoded to `out`, refusing a malformed escape (what was appended before
/// it stays). `+` is kept as it is.
///
/// ```
/// let mut name = Vec::new();
/// percore::percent_decode(b"J%C3%BCrgen+Co", &mut name).unwrap();
/// assert_eq!(name, "Jürgen+Co".as_bytes());
/// assert!(percore::percent_decode(b"100%", &mut Vec::new()).is_err());
/// ```
pub fn percent_decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
    decode(input, Plus::Keep, true, out)
}

/// Appends `input` decoded to `out`, refusing a malformed escape.
pub(crate) fn decode_strict(input: &[u8], plus: Plus, out: &mut Vec<u8>) -> Result<(), Malformed> {
    decode(input, plus, true, out)
}

/// `input` decoded as text, borrowed when there is nothing to decode; malformed escapes are
/// kept as they are and bytes that are not UTF-8 become U+FFFD.
pub(crate) fn decode_text(input: &[u8], plus: Plus) -> Cow<'_, str> {
    let plain = !input.contains(&b'%') && (plus == Plus::Keep || !input.contains(&b'+'));
    if plain {
        return String::from_utf8_lossy(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let _ = decode(input, plus, false, &mut out);
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding_keeps_plus_and_refuses_broken_escapes() {
        let mut out = Vec::new();
        assert_eq!(
            decode_strict(b"A%62c+d%C3%A9", Plus::Keep, &mut out),
            Ok(())
        );
        assert_eq!(out, "Abc+dé".as_bytes());
        for bad in [&b"%"[..], b"%4", b"%zz", b"a%g1"] {
            assert_eq!(
                decode_strict(bad, Plus::Keep, &mut Vec::new()),
                Err(Malformed)
            );
        }
    }

    #[test]
    fn text_decoding_borrows_when_it_can_and_keeps_what_it_cannot_decode() {
        assert!(matches!(
            decode_text(b"plain", Plus::Keep),
            Cow::Borrowed("plain")
        ));
        assert!(matches!(
            decode_text(b"a+b", Plus::Keep),
            Cow::Borrowed("a+b")
        ));
        assert_eq!(decode_text(b"a%20b+c%zz%e2%82%ac", Plus::Keep), "a b+c%zz€");
        assert_eq!(decode_text(b"a+b%2Bc", Plus::Space), "a b+c");
        assert_eq!(decode_text(b"%ff", Plus::Keep), "\u{fffd}");
    }
}
