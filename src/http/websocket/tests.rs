//! The decoder against frames a client could send, split at every byte.

use super::decoder::{Decoder, Failure, Incoming};
use super::frame::{opcode, unmask};

/// A client frame: masked with a fixed key.
fn frame(fin: bool, rsv: u8, op: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xA1, 0x02, 0xC3, 0x44];
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | op];
    match payload.len() {
        0..=125 => out.push(0x80 | payload.len() as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], key, 0);
    out
}

/// What the decoder makes of `bytes` fed in pieces of `piece` bytes: each item as text,
/// up to the first failure.
fn decode(bytes: &[u8], piece: usize, max: usize, deflate: bool) -> (Vec<String>, Option<Failure>) {
    let mut decoder = Decoder::new(max, deflate);
    let mut seen = Vec::new();
    for mut input in bytes.chunks(piece.max(1)) {
        loop {
            match decoder.next(&mut input) {
                Ok(Some(item)) => seen.push(match item {
                    Incoming::Text(b) => format!("text:{}", String::from_utf8_lossy(b)),
                    Incoming::Binary(b) => format!("binary:{}", b.len()),
                    Incoming::Ping(b) => format!("ping:{}", String::from_utf8_lossy(b)),
                    Incoming::Pong(b) => format!("pong:{}", String::from_utf8_lossy(b)),
                    Incoming::Close(code, reason) => format!("close:{code:?}:{reason}"),
                    Incoming::Compressed { text, bytes } => {
                        format!("compressed:{text}:{}", bytes.len())
                    }
                }),
                Ok(None) => break,
                Err(failure) => return (seen, Some(failure)),
            }
        }
    }
    (seen, None)
}

/// The same at every piece size: it must not matter where the bytes are split.
fn decode_everywhere(bytes: &[u8], deflate: bool) -> (Vec<String>, Option<Failure>) {
    let whole = decode(bytes, bytes.len(), 1 << 20, deflate);
    for piece in 1..bytes.len().min(40) {
        assert_eq!(
            decode(bytes, piece, 1 << 20, deflate),
            whole,
            "pieces of {piece}"
        );
    }
    whole
}

#[test]
fn messages_fragments_and_control_frames_between_them() {
    let mut bytes = frame(true, 0, opcode::TEXT, b"Hello");
    bytes.extend(frame(false, 0, opcode::TEXT, "κό".as_bytes()));
    bytes.extend(frame(true, 0, opcode::PING, b"are you there"));
    bytes.extend(frame(false, 0, opcode::CONTINUATION, b""));
    bytes.extend(frame(true, 0, opcode::CONTINUATION, "σμε".as_bytes()));
    bytes.extend(frame(true, 0, opcode::BINARY, &[7; 300]));
    bytes.extend(frame(true, 0, opcode::PONG, b""));
    bytes.extend(frame(true, 0, opcode::CLOSE, b"\x03\xe8bye"));
    let (seen, failure) = decode_everywhere(&bytes, false);
    assert_eq!(failure, None);
    assert_eq!(
        seen,
        [
            "text:Hello",
            "ping:are you there",
            "text:κόσμε",
            "binary:300",
            "pong:",
            "close:Some(1000):bye"
        ]
    );
}

fn failure_of(bytes: &[u8], deflate: bool) -> u16 {
    decode_everywhere(bytes, deflate).1.expect("fails").code
}

#[test]
fn protocol_errors_are_1002() {
    let mut unmasked = frame(true, 0, opcode::TEXT, b"hi");
    unmasked[1] &= 0x7F;
    unmasked.drain(2..6);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", unmasked),
        ("rsv2", frame(true, 2, opcode::TEXT, b"x")),
        ("rsv1 without deflate", frame(true, 4, opcode::TEXT, b"x")),
        ("opcode 3", frame(true, 0, 3, b"")),
        ("opcode 0xB", frame(true, 0, 0xB, b"")),
        ("fragmented ping", frame(false, 0, opcode::PING, b"")),
        ("ping of 126", frame(true, 0, opcode::PING, &[0; 126])),
        (
            "continuation first",
            frame(true, 0, opcode::CONTINUATION, b"x"),
        ),
        ("close of one byte", frame(true, 0, opcode::CLOSE, b"\x03")),
        ("close 1005", frame(true, 0, opcode::CLOSE, b"\x03\xed")),
        ("close 999", frame(true, 0, opcode::CLOSE, b"\x03\xe7")),
        (
            "close 5000",
            frame(true, 0, opcode::CLOSE, &5000u16.to_be_bytes()),
        ),
    ];
    for (what, bytes) in cases {
        assert_eq!(failure_of(&bytes, false), 1002, "{what}");
    }
    let mut nested = frame(false, 0, opcode::TEXT, b"a");
    nested.extend(frame(true, 0, opcode::TEXT, b"b"));
    assert_eq!(
        failure_of(&nested, false),
        1002,
        "a message inside a message"
    );
    let mut rsv1_continued = frame(false, 4, opcode::TEXT, b"a");
    rsv1_continued.extend(frame(true, 4, opcode::CONTINUATION, b"b"));
    assert_eq!(
        failure_of(&rsv1_continued, true),
        1002,
        "RSV1 on a continuation"
    );
    // With permessage-deflate, RSV1 on a message's first frame is its mark.
    let (seen, failure) = decode_everywhere(&frame(true, 4, opcode::BINARY, b"zz"), true);
    assert_eq!(
        (seen, failure),
        (vec!["compressed:false:2".to_string()], None)
    );
}

#[test]
fn bad_utf8_fails_at_the_fragment_that_carries_it() {
    let mut bytes = frame(false, 0, opcode::TEXT, b"fine \xce");
    bytes.extend(frame(
        false,
        0,
        opcode::CONTINUATION,
        b"\x20 not a continuation",
    ));
    // A third fragment never comes: the failure must not wait for it.
    let (seen, failure) = decode_everywhere(&bytes, false);
    assert!(seen.is_empty());
    assert_eq!(failure.unwrap().code, 1007);
    // A text cut inside a character at its end.
    assert_eq!(
        failure_of(&frame(true, 0, opcode::TEXT, b"\xce"), false),
        1007
    );
    assert_eq!(
        failure_of(&frame(true, 0, opcode::CLOSE, b"\x03\xe8\xff"), false),
        1007,
        "a close reason that is not UTF-8"
    );
}

#[test]
fn a_message_over_the_limit_is_1009_before_its_bytes_come() {
    let mut bytes = frame(false, 0, opcode::BINARY, &[1; 600]);
    bytes.extend(frame(true, 0, opcode::CONTINUATION, &[1; 600]));
    let (seen, failure) = decode(&bytes[..700], 700, 1000, false);
    assert!(seen.is_empty());
    assert_eq!(failure.unwrap().code, 1009);
    let (seen, failure) = decode(&bytes, 1, 1200, false);
    assert_eq!((seen, failure), (vec!["binary:1200".to_string()], None));
    let big = frame(true, 0, opcode::BINARY, &[0; 70_000]);
    let (_, failure) = decode(&big[..14], 14, 65_536, false);
    assert_eq!(failure.unwrap().code, 1009, "known from the head alone");
}
