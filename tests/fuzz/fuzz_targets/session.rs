//! Arbitrary bytes, split at arbitrary points, through the connection state machine.
//!
//! The first byte picks how many split points follow (each two bytes); the rest is the input
//! stream. Checks: no panic, consumed bytes never exceed what was offered, and the split
//! stream answers exactly like the unsplit one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::internals::Limits;

#[path = "../../common/replay.rs"]
mod replay;

fn run(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let limits = Limits {
        max_head_bytes: 512,
        max_headers: 16,
        max_target_bytes: 256,
        max_body_bytes: 4096,
        max_requests: 0,
    };
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for &cut in cuts {
        chunks.push(&stream[last..cut]);
        last = cut;
    }
    chunks.push(&stream[last..]);
    replay::replay(limits, &chunks)
}

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 16);
    if rest.len() < count * 2 {
        return;
    }
    let (points, stream) = rest.split_at(count * 2);
    let mut cuts: Vec<usize> = points
        .chunks(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    assert_eq!(run(stream, &cuts), run(stream, &[]));
});
