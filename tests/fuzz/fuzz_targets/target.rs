//! Request-targets through the head parser, and percent-decoding as the router and the
//! handlers see it.
//!
//! Input: a control byte, then the target. The control byte picks the method (GET or
//! OPTIONS), a prefix put before the target (none, `/`, `http://`, `HTTPS://a`) so that the
//! forms are reached quickly, and the limits (a small target limit, a small head limit). The
//! request is `METHOD <target> HTTP/1.1\r\nHost: h\r\n\r\n`.
//!
//! Checks:
//! - no panic;
//! - a parsed path holds no `?`, and path and query only bytes the target may hold (see
//!   TARGET_BYTES in src/http/target.rs: not controls, space, DEL, 0x80 and up, `#`, `"`,
//!   `<`, `>`), and both lie within the target;
//! - when the target holds no whitespace or control byte (so that it is the whole second
//!   field of the request line) and the head fits the limit, the outcome is the one a model
//!   written here from the documentation gives: origin-form split at the first `?`,
//!   asterisk-form for OPTIONS only, absolute-form with a valid authority reduced to its
//!   path and query, a refused byte refused (400: InvalidTarget, or Malformed where httparse
//!   finds it first), a long target TargetTooLong;
//! - the head parsed byte by byte (`scanned` carried) gives the same result as whole;
//! - percent-decoding of the target, the path and the query: `percent_decode` (strict)
//!   succeeds exactly when every `%` starts an escape of two hex digits, gives what a
//!   reference decoder gives, and on failure has appended a prefix of the lenient decoding;
//!   `decode_text` (lenient) keeps malformed escapes, agrees with the strict decoding
//!   whenever that succeeds, and with `plus` reads `+` as a space exactly as if each `+` had
//!   been a space.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::internals::{decode_text, parse_head, HttpError, Limits, RequestHead};

/// The bytes a target may hold, from the documentation of TARGET_BYTES.
fn allowed(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"#\"<>".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding by the letter: `strict` fails on a `%` not followed by two hex digits,
/// otherwise such a `%` is kept.
fn reference_decode(input: &[u8], plus: bool, strict: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
            if strict {
                return None;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    Some(out)
}

fn check_decoding(input: &[u8]) {
    let lenient = reference_decode(input, false, false).unwrap();
    let strict = reference_decode(input, false, true);
    let mut out = b"x".to_vec();
    let result = percore::percent_decode(input, &mut out);
    assert_eq!(out[0], b'x', "percent_decode appends");
    let out = &out[1..];
    match &strict {
        Some(decoded) => {
            assert!(result.is_ok(), "{input:?}");
            assert_eq!(out, decoded.as_slice(), "{input:?}");
        }
        None => {
            assert!(result.is_err(), "{input:?}");
            assert!(lenient.starts_with(out), "{input:?}: {out:?}");
        }
    }
    let text = decode_text(input, false);
    assert_eq!(text, String::from_utf8_lossy(&lenient), "{input:?}");
    if let Some(decoded) = &strict {
        assert_eq!(text, String::from_utf8_lossy(decoded), "{input:?}");
    }
    let plus = decode_text(input, true);
    let lenient_plus = reference_decode(input, true, false).unwrap();
    assert_eq!(plus, String::from_utf8_lossy(&lenient_plus), "{input:?}");
    let spaced: Vec<u8> = input
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    assert_eq!(plus, decode_text(&spaced, false), "{input:?}");
}

/// RFC 3986 reg-name bytes and `%` (escapes are let through undecoded).
fn reg_name(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b)
}

/// `host [ ":" port ]` with a host that is not empty.
fn valid_authority(value: &[u8]) -> bool {
    let host_end = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &value[1..close];
        if literal.is_empty() || !literal.iter().all(|&b| b == b':' || reg_name(b)) {
            return false;
        }
        close + 1
    } else {
        let host = value.iter().take_while(|&&b| reg_name(b)).count();
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

#[derive(Debug)]
enum Expected {
    /// Path, query, asterisk.
    Parsed(Vec<u8>, Option<Vec<u8>>, bool),
    /// One of these errors.
    Refused(&'static [HttpError]),
}

/// What the target (a whole field of the request line) must give.
fn model(target: &[u8], options: bool, max_target: usize) -> Expected {
    use HttpError::*;
    if target.is_empty() {
        return Expected::Refused(&[Malformed]);
    }
    if target.iter().any(|&b| !allowed(b)) {
        return Expected::Refused(if target.len() > max_target {
            &[TargetTooLong, Malformed]
        } else {
            &[InvalidTarget, Malformed]
        });
    }
    if target.len() > max_target {
        return Expected::Refused(&[TargetTooLong]);
    }
    let split = |pq: &[u8]| match pq.iter().position(|&b| b == b'?') {
        Some(q) => Expected::Parsed(pq[..q].to_vec(), Some(pq[q + 1..].to_vec()), false),
        None => Expected::Parsed(pq.to_vec(), None, false),
    };
    if target[0] == b'/' {
        return split(target);
    }
    if target == b"*" {
        return match options {
            true => Expected::Parsed(Vec::new(), None, true),
            false => Expected::Refused(&[InvalidTarget]),
        };
    }
    let lower = target.to_ascii_lowercase();
    let rest = if lower.starts_with(b"http://") {
        &target[7..]
    } else if lower.starts_with(b"https://") {
        &target[8..]
    } else {
        return Expected::Refused(&[InvalidTarget]);
    };
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    if !valid_authority(&rest[..end]) {
        return Expected::Refused(&[InvalidTarget]);
    }
    split(&rest[end..])
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let options = control & 1 != 0;
    let prefix: &[u8] = match (control >> 1) & 3 {
        0 => b"",
        1 => b"/",
        2 => b"http://",
        _ => b"HTTPS://a",
    };
    let limits = Limits {
        max_head_bytes: if control & 0x08 != 0 { 64 } else { 16 * 1024 },
        max_headers: 16,
        max_target_bytes: if control & 0x10 != 0 { 24 } else { 8 * 1024 },
        max_body_bytes: 1 << 20,
        max_requests: 0,
    };
    let target: Vec<u8> = [prefix, rest].concat();
    let method: &[u8] = if options { b"OPTIONS" } else { b"GET" };
    let start = method.len() + 1;
    let buf = [method, b" ", &target, b" HTTP/1.1\r\nHost: h\r\n\r\n"].concat();

    let whole = parse_head(&buf, &mut 0, &limits);

    // Byte by byte, `scanned` carried: the first answer that is not "more" is the whole's.
    let mut scanned = 0;
    let mut split: Result<Option<RequestHead>, HttpError> = Ok(None);
    for k in 0..=buf.len() {
        split = parse_head(&buf[..k], &mut scanned, &limits);
        if !matches!(split, Ok(None)) {
            break;
        }
    }
    assert_eq!(split, whole, "byte by byte: {:?}", String::from_utf8_lossy(&buf));

    if let Ok(Some(head)) = &whole {
        let path = head.path.get(&buf);
        let query = head.query.map(|q| q.get(&buf));
        assert!(!path.contains(&b'?'), "{path:?}");
        for part in std::iter::once(path).chain(query) {
            assert!(part.iter().all(|&b| allowed(b)), "{part:?}");
            if !part.is_empty() {
                let at = part.as_ptr() as usize - buf.as_ptr() as usize;
                assert!(at >= start && at + part.len() <= start + target.len());
            }
            check_decoding(part);
        }
    }

    let plain = target.iter().all(|&b| b > b' ' && b != 0x7f);
    if plain && buf.len() <= limits.max_head_bytes {
        let parsed = whole.map(|head| {
            let head = head.expect("a whole head");
            (
                head.path.get(&buf).to_vec(),
                head.query.map(|q| q.get(&buf).to_vec()),
                head.asterisk,
            )
        });
        match (model(&target, options, limits.max_target_bytes), &parsed) {
            (Expected::Parsed(path, query, asterisk), Ok(got)) => {
                assert_eq!(got, &(path, query, asterisk), "{:?}", String::from_utf8_lossy(&buf))
            }
            (Expected::Refused(errors), Err(e)) => {
                assert!(errors.contains(e), "{e:?}, not {errors:?}: {:?}", String::from_utf8_lossy(&buf))
            }
            (expected, got) => {
                panic!("expected {expected:?}, got {got:?}: {:?}", String::from_utf8_lossy(&buf))
            }
        }
    }

    check_decoding(rest);
});
