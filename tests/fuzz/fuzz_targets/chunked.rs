//! The chunked body decoder on arbitrary bytes, fed whole and split at arbitrary points.
//!
//! Input: one byte for the body limit, one for the trailer limit, one whose low four bits
//! count the split points (two bytes each) and whose high bits pick a sink or none, then the
//! stream. Half the inputs get a valid first chunk-size line put before them, so that data,
//! trailers and the end of the body are reached quickly.
//!
//! Checks:
//! - no panic, and `feed` never reports more bytes than it was offered;
//! - `feed` consumes everything it is given until the body is done (the session relies on
//!   it: only bytes after the body are left for the next request);
//! - split-independence: fed split at the points given, unconsumed bytes carried over as the
//!   session carries them, the decoder gives the same data bytes, the same total consumed and
//!   the same outcome (done, still waiting, or the same error) as fed the stream whole;
//! - with no sink, the same consumed count and outcome as with one;
//! - a reference decoder written here by the grammar of RFC 9112 section 7.1 (with the
//!   decoder's own limits: 15 hex digits, 4096 bytes of line after them, the body and trailer
//!   limits) agrees on where a whole body ends and on its data, and on which inputs are
//!   refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::internals::{ChunkedDecoder, HttpError};

const MAX_CHUNK_LINE_BYTES: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Body complete after this many bytes.
    Done(usize),
    /// Every byte consumed, more are needed.
    Waiting,
    Error(HttpError),
}

/// Feeds `chunks` as the session does: each read appended to what was left over, the
/// decoder given all of it, what it consumed dropped.
fn decode(limits: (u64, usize), chunks: &[&[u8]], sink: bool) -> (Outcome, Vec<u8>) {
    let mut decoder = ChunkedDecoder::new(limits.0, limits.1);
    let mut data = Vec::new();
    let mut pending = Vec::new();
    let mut total = 0;
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let result = decoder.feed(&pending, sink.then_some(&mut data));
        match result {
            Ok(used) => {
                assert!(used <= pending.len(), "consumed {used} of {}", pending.len());
                if !decoder.is_done() {
                    assert_eq!(used, pending.len(), "bytes left over before the body's end");
                }
                total += used;
                pending.drain(..used);
                if decoder.is_done() {
                    return (Outcome::Done(total), data);
                }
            }
            Err(e) => return (Outcome::Error(e), data),
        }
    }
    assert!(!decoder.is_done());
    (Outcome::Waiting, data)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// qdtext or the byte after a backslash in a quoted string (RFC 9110 section 5.6.4).
fn is_quoted_text(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0xff).contains(&b) && b != 0x7f
}

/// `[ chunk-ext ]` exactly: `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`.
fn is_valid_extensions(ext: &[u8]) -> bool {
    let mut at = 0;
    let bws = |at: &mut usize| {
        while matches!(ext.get(*at), Some(b' ' | b'\t')) {
            *at += 1;
        }
    };
    let token = |at: &mut usize| {
        let start = *at;
        while ext.get(*at).is_some_and(|&b| is_tchar(b)) {
            *at += 1;
        }
        *at > start
    };
    while at < ext.len() {
        bws(&mut at);
        if ext.get(at) != Some(&b';') {
            return false;
        }
        at += 1;
        bws(&mut at);
        if !token(&mut at) {
            return false;
        }
        let mut probe = at;
        bws(&mut probe);
        if ext.get(probe) != Some(&b'=') {
            continue;
        }
        at = probe + 1;
        bws(&mut at);
        if ext.get(at) == Some(&b'"') {
            at += 1;
            loop {
                match ext.get(at) {
                    Some(b'"') => break,
                    Some(b'\\') if ext.get(at + 1).is_some_and(|&b| is_quoted_text(b)) => at += 2,
                    Some(&b) if is_quoted_text(b) && b != b'\\' => at += 1,
                    _ => return false,
                }
            }
            at += 1;
        } else if !token(&mut at) {
            return false;
        }
    }
    true
}

/// What the reference makes of a whole input.
#[derive(Debug)]
enum Reference {
    Done(usize, Vec<u8>),
    /// Everything so far is valid, more is needed.
    Waiting,
    Refused,
    /// The input ends inside a line the reference does not judge until it is whole: the
    /// decoder may be waiting or may already have refused it.
    Open,
}

/// The index of the first CR at or after `from`.
fn line_end(input: &[u8], from: usize) -> Option<usize> {
    input[from..].iter().position(|&b| b == b'\r').map(|i| from + i)
}

fn reference(input: &[u8], max_body: u64, max_trailer: usize) -> Reference {
    let mut at = 0;
    let mut data = Vec::new();
    let mut body: u64 = 0;
    // Chunks.
    loop {
        let digits = input[at..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits > 15 {
            return Reference::Refused;
        }
        if digits == 0 {
            return match at == input.len() {
                true => Reference::Waiting,
                false => Reference::Refused,
            };
        }
        let Some(cr) = line_end(input, at) else {
            return Reference::Open;
        };
        let ext = &input[at + digits..cr];
        // The bytes after the digits, CR included.
        if ext.len() + 1 > MAX_CHUNK_LINE_BYTES || !is_valid_extensions(ext) {
            return Reference::Refused;
        }
        let size = u64::from_str_radix(std::str::from_utf8(&input[at..at + digits]).unwrap(), 16)
            .unwrap();
        match input.get(cr + 1) {
            None => return Reference::Waiting,
            Some(b'\n') => {}
            Some(_) => return Reference::Refused,
        }
        at = cr + 2;
        if size == 0 {
            break;
        }
        body += size;
        if body > max_body {
            return Reference::Refused;
        }
        let available = (input.len() - at) as u64;
        if available < size {
            return Reference::Waiting;
        }
        data.extend_from_slice(&input[at..at + size as usize]);
        at += size as usize;
        for expected in [b'\r', b'\n'] {
            match input.get(at) {
                None => return Reference::Waiting,
                Some(&b) if b == expected => at += 1,
                Some(_) => return Reference::Refused,
            }
        }
    }
    // Trailer section.
    let mut trailer = 0;
    loop {
        match input.get(at) {
            None => return Reference::Waiting,
            Some(b'\r') => {
                return match input.get(at + 1) {
                    None => Reference::Waiting,
                    Some(b'\n') => Reference::Done(at + 2, data),
                    Some(_) => Reference::Refused,
                };
            }
            Some(_) => {}
        }
        let Some(cr) = line_end(input, at) else {
            return Reference::Open;
        };
        let line = &input[at..cr];
        trailer += line.len() + 1;
        let name = line.iter().take_while(|&&b| is_tchar(b)).count();
        let valid = name > 0
            && line.get(name) == Some(&b':')
            && line[name + 1..].iter().all(|&b| is_quoted_text(b));
        if !valid || trailer > max_trailer {
            return Reference::Refused;
        }
        match input.get(cr + 1) {
            None => return Reference::Waiting,
            Some(b'\n') => at = cr + 2,
            Some(_) => return Reference::Refused,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [body_limit, trailer_limit, control, rest @ ..] = data else {
        return;
    };
    let limits = (u64::from(*body_limit) * 4, usize::from(*trailer_limit));
    let count = usize::from(control & 0xf);
    let sink = control & 0x10 == 0;
    if rest.len() < count * 2 {
        return;
    }
    let (points, stream) = rest.split_at(count * 2);
    let mut stream = stream.to_vec();
    if control & 0x20 != 0 {
        // A valid first size line, so that data and trailers are reached more often.
        let size = stream.first().map_or(0, |&b| b % 32);
        let mut line = format!("{size:x}\r\n").into_bytes();
        line.append(&mut stream);
        stream = line;
    }
    let mut cuts: Vec<usize> = points
        .chunks(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for &cut in &cuts {
        chunks.push(&stream[last..cut]);
        last = cut;
    }
    chunks.push(&stream[last..]);

    let whole = decode(limits, &[&stream], true);
    let split = decode(limits, &chunks, sink);
    assert_eq!(split.0, whole.0, "split at {cuts:?}");
    if sink {
        assert_eq!(split.1, whole.1, "data split at {cuts:?}");
    } else {
        assert!(split.1.is_empty());
    }
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    let bytewise = decode(limits, &bytewise, true);
    assert_eq!(bytewise, whole, "byte by byte");

    match (reference(&stream, limits.0, limits.1), &whole) {
        (Reference::Done(len, data), (Outcome::Done(used), got)) => {
            assert_eq!(*used, len);
            assert_eq!(*got, data);
        }
        (Reference::Waiting, (Outcome::Waiting, _)) => {}
        (Reference::Refused, (Outcome::Error(_), _)) => {}
        (Reference::Open, (Outcome::Waiting | Outcome::Error(_), _)) => {}
        (expected, got) => panic!("reference {expected:?}, decoder {got:?}"),
    }
});
