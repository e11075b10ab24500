//! The request-target (RFC 9112 section 3.2): its four forms, the bytes it may hold, and the
//! authority of a Host field or an absolute-form target.

use super::error::HttpError;
use super::fields::alphanumeric_and;
use super::head::{Method, Span};

/// Splits a request-target into path and query, checking it on the way (RFC 9112 section
/// 3.2): origin-form (`/path?query`), absolute-form (`http://authority/path?query`, `https`
/// too), or asterisk-form (`*`, OPTIONS only). Authority-form is CONNECT's, which percore
/// refuses before this. Every byte must be allowed by [`TARGET_BYTES`].
pub(super) fn split_target(
    head: &[u8],
    target: &str,
    method: Method,
) -> Result<(Span, Option<Span>, bool), HttpError> {
    let bytes = target.as_bytes();
    let path_and_query = if bytes.first() == Some(&b'/') {
        bytes
    } else if bytes == b"*" {
        if method != Method::Options {
            return Err(HttpError::InvalidTarget);
        }
        return Ok((Span::of(head, &bytes[..0]), None, true));
    } else {
        absolute_form_path(bytes)?
    };
    let (path, query) = match find_query(head, path_and_query)? {
        Some(q) => (&path_and_query[..q], Some(&path_and_query[q + 1..])),
        None => (path_and_query, None),
    };
    Ok((
        Span::of(head, path),
        query.map(|q| Span::of(head, q)),
        false,
    ))
}

/// The path and query of an absolute-form target (`scheme "://" authority [path-abempty]
/// ["?" query]`), its authority checked. Rare at an origin server, so kept out of the way
/// of the origin-form path every request takes.
#[cold]
fn absolute_form_path(bytes: &[u8]) -> Result<&[u8], HttpError> {
    let rest = strip_prefix_ignore_case(bytes, b"http://")
        .or_else(|| strip_prefix_ignore_case(bytes, b"https://"))
        .ok_or(HttpError::InvalidTarget)?;
    let authority_end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    // RFC 9110 section 4.2.1: an http(s) URI with an empty host is invalid.
    if !is_valid_authority(&rest[..authority_end]) {
        return Err(HttpError::InvalidTarget);
    }
    Ok(&rest[authority_end..])
}

/// Index in `part` (a slice of `head`) of its first `?`, having checked that every byte of
/// it is one [`TARGET_BYTES`] allows (`?` is allowed in a query, so what follows the first
/// needs no other check).
///
/// Every request's target passes through here, so it goes sixteen bytes at a time:
/// [`target_mask`] marks exactly the bytes that are refused or `?`, and only those (usually
/// the one `?`) are looked at. Chunks are read from `head`, which goes on past the target
/// (the version and a line end at least follow it), and the bits past `part` are masked
/// off. A byte loop here cost about a fifth of a whole `parse_head`.
fn find_query(head: &[u8], part: &[u8]) -> Result<Option<usize>, HttpError> {
    let start = part.as_ptr() as usize - head.as_ptr() as usize;
    let mut query = None;
    let mut at = 0;
    while at < part.len() {
        let Some(chunk) = head.get(start + at..start + at + 16) else {
            // Fewer than sixteen bytes left in the head (a short target at the very end of
            // a head without fields): the rest a byte at a time, to the same answer.
            for (i, &b) in part.iter().enumerate().skip(at) {
                if !TARGET_BYTES[usize::from(b)] {
                    return Err(HttpError::InvalidTarget);
                }
                if b == b'?' && query.is_none() {
                    query = Some(i);
                }
            }
            return Ok(query);
        };
        let mut mask = target_mask(chunk.try_into().expect("sixteen bytes"));
        let left = part.len() - at;
        if left < 16 {
            mask &= (1 << left) - 1;
        }
        while mask != 0 {
            let i = at + mask.trailing_zeros() as usize;
            if part[i] != b'?' {
                return Err(HttpError::InvalidTarget);
            }
            query = query.or(Some(i));
            mask &= mask - 1;
        }
        at += 16;
    }
    Ok(query)
}

/// Bit `i` set for each byte `i` of `chunk` that is `?` or a byte [`TARGET_BYTES`] refuses
/// (below 0x21, 0x7f and up, `"`, `#`, `<`, `>`), and for no other: SSE2, which every
/// x86_64 processor has, compares all sixteen at once.
#[cfg(target_arch = "x86_64")]
fn target_mask(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is enabled on every x86_64 target (it is part of the architecture's
    // baseline), and the load reads the sixteen bytes of `chunk` (unaligned is allowed).
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        // Signed bytes: below 0x21, and 0x80 and up (negative), in one comparison.
        let outside = _mm_cmplt_epi8(v, _mm_set1_epi8(0x21));
        let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
        // `"` and `#` differ only in the lowest bit, as do `>` and `?`.
        let odd = _mm_or_si128(v, _mm_set1_epi8(1));
        let quote_or_hash = _mm_cmpeq_epi8(odd, _mm_set1_epi8(b'#' as i8));
        let angle_or_question = _mm_or_si128(
            _mm_cmpeq_epi8(odd, _mm_set1_epi8(b'?' as i8)),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b'<' as i8)),
        );
        let flagged = _mm_or_si128(
            _mm_or_si128(outside, del),
            _mm_or_si128(quote_or_hash, angle_or_question),
        );
        _mm_movemask_epi8(flagged) as u32
    }
}

/// [`target_mask`] where there is no SSE2: the same marks, eight bytes at a time in a
/// `u64` ([`target_flags`]), packed into one bit per byte.
#[cfg(not(target_arch = "x86_64"))]
fn target_mask(chunk: &[u8; 16]) -> u32 {
    target_mask_portable(chunk)
}

#[cfg(any(test, not(target_arch = "x86_64")))]
fn target_mask_portable(chunk: &[u8; 16]) -> u32 {
    // Moves the high bit of byte i to bit 56 + i, so the top byte holds one bit per byte.
    const PACK: u64 = 0x0102_0408_1020_4080;
    let pack = |word: &[u8]| {
        let flags = target_flags(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        ((flags >> 7).wrapping_mul(PACK) >> 56) as u32
    };
    pack(&chunk[..8]) | pack(&chunk[8..]) << 8
}

/// The high bit of each byte of `word` (little-endian) that is `?` or a byte [`TARGET_BYTES`]
/// refuses, and of no other. Each test works on the low seven bits of a byte, so no carry
/// crosses into the next byte and no byte is flagged by mistake.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn target_flags(word: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = ONES * 0x80;
    const LOW7: u64 = ONES * 0x7f;
    // High bit set exactly where a byte is zero.
    let zero = |t: u64| !(((t & LOW7) + LOW7) | t) & HIGH;
    let low7 = word & LOW7;
    // 0x7f (its low seven bits overflow into the high bit) and 0x80 and up.
    let del_or_high = (word | (low7 + ONES)) & HIGH;
    // Below 0x21: adding 0x5f leaves the high bit clear.
    let ctl_or_space = !(word | (low7 + ONES * 0x5f)) & HIGH;
    // `"` and `#` differ only in the lowest bit, as do `>` and `?`.
    let quote_or_hash = zero((word | ONES) ^ (ONES * u64::from(b'#')));
    let angle_or_question =
        zero((word | ONES) ^ (ONES * u64::from(b'?'))) | zero(word ^ (ONES * u64::from(b'<')));
    del_or_high | ctl_or_space | quote_or_hash | angle_or_question
}

fn strip_prefix_ignore_case<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &bytes[prefix.len()..])
}

/// Which bytes a request-target may hold, as a table because every target is checked byte
/// by byte.
///
/// Refused (400): controls, space, DEL and bytes from 0x80 (the target is ASCII; anything
/// else must arrive percent-encoded), `#` (a fragment is never sent, RFC 9112 section 3.2),
/// and `"`, `<`, `>`. That is exactly what the WHATWG URL standard percent-encodes in every
/// path and query, so no browser or conforming client sends them raw.
///
/// Allowed although RFC 3986 has no place for them: `[`, `]` outside an IP literal, and
/// `\`, `^`, `` ` ``, `{`, `|`, `}`. Browsers send these raw in query strings (a GraphQL
/// query in a GET, `a[]=1` form arrays), and `|`, `[` and `]` in paths too; refusing them
/// would close connections of real clients for bytes that mean nothing to the framing, and
/// routes see them as they came.
///
/// Percent escapes are not checked here: `%zz` is not a parse error. It leaves the framing
/// in no doubt, and what an escape means is up to whoever decodes the path or query (the
/// echo and static routes answer a bad one with 400 on a connection that stays open, the
/// App hands it to handlers undecoded); a parse error would close the connection instead.
pub(super) const TARGET_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = true;
        b += 1;
    }
    let refused = b"\"#<>";
    let mut i = 0;
    while i < refused.len() {
        table[refused[i] as usize] = false;
        i += 1;
    }
    table
};

/// Whether a Host value or a target's authority is `uri-host [ ":" port ]` (RFC 3986
/// section 3.2.2, 3.2.3) with a host that is not empty. RFC 3986 lets a reg-name be empty,
/// but the target URI of an origin-form or asterisk-form request is rebuilt from Host
/// (RFC 9112 section 3.3), and an http URI with an empty host must be rejected as invalid
/// (RFC 9110 section 4.2.1); an absolute-form target's own authority must not be empty
/// either. Userinfo (`@`) is refused (RFC 9110 section 4.2.4). Percent escapes in a
/// reg-name are let through undecoded, as in the target.
#[inline]
pub(super) fn is_valid_authority(value: &[u8]) -> bool {
    let host_end = if value.first() == Some(&b'[') {
        // IP-literal: "[" IPv6address / IPvFuture "]"
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b == b':' || REG_NAME[usize::from(b)])
        {
            return false;
        }
        close + 1
    } else {
        let host = value
            .iter()
            .take_while(|&&b| REG_NAME[usize::from(b)])
            .count();
        if host == 0 {
            return false;
        }
        host
    };
    match &value[host_end..] {
        [] => true,
        [b':', port @ ..] => port.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// Which bytes a reg-name (or IPv4 address) may hold: RFC 3986 unreserved, sub-delims and
/// `%`, as a table because every request's Host is checked byte by byte.
const REG_NAME: [bool; 256] = alphanumeric_and(b"-._~!$&'()*+,;=%");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits, RequestHead};
    use crate::http::status::Status;

    proptest::proptest! {
        #[test]
        fn target_masks_mark_exactly_the_refused_bytes_and_the_question_mark(
            chunk in proptest::array::uniform16(proptest::num::u8::ANY),
        ) {
            let expected = chunk.iter().enumerate().fold(0u32, |mask, (i, &b)| {
                let flagged = !TARGET_BYTES[usize::from(b)] || b == b'?';
                mask | u32::from(flagged) << i
            });
            proptest::prop_assert_eq!(target_mask(&chunk), expected, "{:?}", chunk);
            proptest::prop_assert_eq!(target_mask_portable(&chunk), expected, "{:?}", chunk);
        }

        #[test]
        fn query_search_agrees_with_the_table(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    6 => 0x21u8..=0x7e,
                    1 => proptest::sample::select(b"?#\"<> ".to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                0..40,
            ),
            start in 0usize..40,
            len in 0usize..40,
        ) {
            let start = start.min(bytes.len());
            let part = &bytes[start..(start + len).min(bytes.len())];
            let expected = match part.iter().position(|&b| !TARGET_BYTES[usize::from(b)]) {
                Some(_) => Err(HttpError::InvalidTarget),
                None => Ok(part.iter().position(|&b| b == b'?')),
            };
            proptest::prop_assert_eq!(find_query(&bytes, part), expected);
        }
    }

    fn parse(text: &str) -> Result<Option<RequestHead>, HttpError> {
        parse_head(text.as_bytes(), &mut 0, &Limits::default())
    }

    #[test]
    fn targets_with_refused_bytes_are_400() {
        let mut refused: Vec<u8> = (0x00..0x20).chain(0x7f..=0xff).collect();
        refused.extend_from_slice(b"\"#<>");
        for b in refused {
            for target in [
                [b"/a".as_slice(), &[b], b"b"].concat(),
                [b"/a?x=".as_slice(), &[b], b"y"].concat(),
                [b"http://h/a".as_slice(), &[b]].concat(),
                [b"http://h".as_slice(), &[b], b"/"].concat(),
            ] {
                let text = [b"GET ".as_slice(), &target, b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
                let result = parse_head(&text, &mut 0, &Limits::default());
                assert!(
                    matches!(result, Err(HttpError::InvalidTarget | HttpError::Malformed)),
                    "{:?}: {result:?}",
                    String::from_utf8_lossy(&text)
                );
                assert_eq!(result.unwrap_err().status(), Status::BAD_REQUEST);
            }
        }
        // The two classes in the issue, with their exact error.
        assert_eq!(
            parse("GET /path#frag HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(HttpError::InvalidTarget)
        );
        assert_eq!(
            parse("GET /caf\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(HttpError::InvalidTarget)
        );
    }

    #[test]
    fn tolerated_bytes_and_bad_escapes_reach_the_route_as_sent() {
        for target in [
            "/a{b}|c^d`e\\f[g]",
            "/graphql?query={user{id}}",
            "/list?a[]=1&a[]=2|3",
            "/echo?name=%zz",
            "/%",
            "/a?b?c",
            "/?",
            "/!$&'()*+,;=:@-._~%41",
        ] {
            let text = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let head = parse(&text).unwrap().unwrap();
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            assert_eq!(head.path.get(text.as_bytes()), path.as_bytes());
            assert_eq!(
                head.query.map(|q| q.get(text.as_bytes())),
                query.map(str::as_bytes)
            );
        }
    }

    #[test]
    fn hosts_must_name_a_host() {
        for host in [
            "",
            ":80",
            ":",
            "a b",
            "a@b",
            "u@a:80",
            "a:b",
            "a:80:81",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:x",
            "a/b",
            "a?b",
            "a#b",
            "caf\u{e9}",
            "a\"b",
        ] {
            let text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(parse(&text), Err(HttpError::InvalidHost), "{host:?}");
        }
        for host in [
            "a",
            "a:80",
            "a:",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "[v1.x]",
            "ex-ample.com",
            "%41",
        ] {
            let text = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(parse(&text).unwrap().is_some(), "{host:?}");
        }
        // Asterisk-form rebuilds its target URI from Host too; HTTP/1.0 need not send one,
        // but one it sends must be valid.
        assert_eq!(
            parse("OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n"),
            Err(HttpError::InvalidHost)
        );
        assert_eq!(
            parse("GET / HTTP/1.0\r\nHost:\r\n\r\n"),
            Err(HttpError::InvalidHost)
        );
    }

    #[test]
    fn absolute_form_needs_a_host() {
        for target in [
            "http:///a",
            "http://:80/a",
            "http://",
            "http://?q",
            "http://u@h/a",
            "http://h:x/a",
            "https://[::1/a",
            "ftp://h/a",
        ] {
            let text = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(parse(&text), Err(HttpError::InvalidTarget), "{target:?}");
        }
        let text = "GET HTTPS://[::1]:8443?q=1 HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = parse(text).unwrap().unwrap();
        assert_eq!(head.path.get(text.as_bytes()), b"");
        assert_eq!(head.query.unwrap().get(text.as_bytes()), b"q=1");
    }
}
