//! WebSocket's decoder (a client's frames read into messages) on arbitrary bytes, fed whole
//! and split at arbitrary points.
//!
//! Input: one byte whose low bit says whether permessage-deflate was agreed (RSV1 allowed)
//! and whose other bits pick the message limit, one byte counting split points (two bytes
//! each), then the stream.
//!
//! Checks:
//! - no panic, and what the decoder reads never runs past what it was given;
//! - split-independence: the same messages and control frames, in the same order, and the
//!   same failure (close code), whole or split;
//! - what it hands out keeps the rules: a text message is UTF-8 (unless compressed), a
//!   control payload is at most 125 bytes, a compressed message only with deflate agreed, a message is within the limit, a close code is
//!   one a peer may send; a failure's code is 1002, 1007 or 1009.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::internals::{WebSocketDecoder, WebSocketIncoming};

#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Compressed(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn decode(pieces: &[&[u8]], max: usize, deflate: bool) -> (Vec<Seen>, Option<u16>) {
    let mut decoder = WebSocketDecoder::new(max, deflate);
    let mut seen = Vec::new();
    for piece in pieces {
        let mut input: &[u8] = piece;
        loop {
            let before = input.len();
            let next = decoder.next(&mut input);
            assert!(input.len() <= before);
            match next {
                Ok(Some(item)) => seen.push(check(item, max, deflate)),
                Ok(None) => {
                    assert!(input.is_empty(), "waits with bytes left");
                    break;
                }
                Err(failure) => {
                    assert!(matches!(failure.code, 1002 | 1007 | 1009));
                    return (seen, Some(failure.code));
                }
            }
        }
    }
    (seen, None)
}

fn check(item: WebSocketIncoming<'_>, max: usize, deflate: bool) -> Seen {
    match item {
        WebSocketIncoming::Text(bytes) => {
            assert!(bytes.len() <= max);
            assert!(std::str::from_utf8(bytes).is_ok());
            Seen::Text(bytes.to_vec())
        }
        WebSocketIncoming::Compressed { text, bytes } => {
            assert!(deflate, "RSV1 only with permessage-deflate");
            assert!(bytes.len() <= max);
            Seen::Compressed(text, bytes.to_vec())
        }
        WebSocketIncoming::Binary(bytes) => {
            assert!(bytes.len() <= max);
            Seen::Binary(bytes.to_vec())
        }
        WebSocketIncoming::Ping(bytes) => {
            assert!(bytes.len() <= 125);
            Seen::Ping(bytes.to_vec())
        }
        WebSocketIncoming::Pong(bytes) => {
            assert!(bytes.len() <= 125);
            Seen::Pong(bytes.to_vec())
        }
        WebSocketIncoming::Close(code, reason) => {
            assert!(reason.len() <= 123);
            if let Some(code) = code {
                assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999));
            }
            Seen::Close(code, reason.to_owned())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, splits, rest @ ..] = data else {
        return;
    };
    let deflate = flags & 1 != 0;
    let max = [0, 1, 125, 126, 1000, 65536, 1 << 20][usize::from(flags >> 1) % 7];
    let count = usize::from(*splits % 8);
    let Some((points, stream)) = rest.split_at_checked(count * 2) else {
        return;
    };
    let mut cuts: Vec<usize> = points
        .chunks(2)
        .map(|pair| usize::from(u16::from_le_bytes([pair[0], pair[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts {
        pieces.push(&stream[from..cut]);
        from = cut;
    }
    pieces.push(&stream[from..]);
    let whole = decode(&[stream], max, deflate);
    assert_eq!(decode(&pieces, max, deflate), whole);
});
