//! Arbitrary bytes, split at arbitrary points, through the connection state machine.
//!
//! The first byte picks how many split points follow (each two bytes); the rest is the input
//! stream. Checks: no panic, consumed bytes never exceed what was offered, and the split
//! stream answers exactly like the unsplit one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::http::request::Limits;
use percore::http::response::CONTINUE;
use percore::http::session::Session;
use percore::routes::Context;

fn run(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let mut session = Session::new(
        Limits {
            max_head_bytes: 512,
            max_headers: 16,
            max_target_bytes: 256,
            max_body_bytes: 4096,
        },
        0,
    );
    let mut context = Context::default();
    let mut buffered = Vec::new();
    let mut out = Vec::new();
    let mut written = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        buffered.extend_from_slice(&stream[last..cut]);
        last = cut;
        loop {
            let progress = session.process(&buffered, &mut out, &mut context, false);
            assert!(progress.consumed <= buffered.len());
            buffered.drain(..progress.consumed);
            let ready = session.committed(&out);
            written.extend(out.drain(..ready));
            session.output_drained(ready);
            if session.is_closed() || progress.consumed == 0 || buffered.is_empty() {
                break;
            }
        }
        if session.is_closed() {
            break;
        }
    }
    // Whether `100 Continue` is sent depends on whether the body had arrived with the head;
    // that is the one difference splitting may make. Date values may differ too.
    while let Some(at) = written
        .windows(CONTINUE.len())
        .position(|w| w == CONTINUE)
    {
        written.drain(at..at + CONTINUE.len());
    }
    let mut i = 0;
    while let Some(at) = written[i..].windows(6).position(|w| w == b"Date: ") {
        let start = i + at + 6;
        written[start..start + 29].fill(b'#');
        i = start + 29;
    }
    (written, session.is_closed())
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
