//! Property tests of the protocol state machine: splitting never changes the answers, and no
//! input makes it panic or loop.

#[path = "common/replay.rs"]
mod replay;

use percore::internals::Limits;
use proptest::prelude::*;

fn run(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    replay::replay(Limits::default(), chunks)
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[a-zA-Z0-9%]{0,12}".prop_map(|name| format!(
            "GET /echo?name={name} HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        .into_bytes()),
        "[a-z]{0,40}".prop_map(|body| format!(
            "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()),
        ("[a-z]{1,20}", "[a-z]{1,20}").prop_map(|(a, b)| format!(
            "PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x};e=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nT: v\r\n\r\n",
            a.len(),
            b.len(),
        )
        .into_bytes()),
        Just(b"HEAD /echo?name=h HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec()),
        Just(b"GET /missing HTTP/1.1\r\nHost: h\r\n\r\n".to_vec()),
    ]
}

proptest! {
    #[test]
    fn any_split_of_a_pipelined_stream_gives_the_same_responses(
        requests in prop::collection::vec(request(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let stream: Vec<u8> = requests.concat();
        let whole = run(&[&stream]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&stream[last..p]);
            last = p;
        }
        chunks.push(&stream[last..]);
        prop_assert_eq!(run(&chunks), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_the_same(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cut in any::<prop::sample::Index>(),
    ) {
        let at = cut.index(bytes.len() + 1);
        prop_assert_eq!(run(&[&bytes[..at], &bytes[at..]]), run(&[&bytes]));
    }

    #[test]
    fn mutated_valid_requests_never_panic(
        request in request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = request;
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let (split_a, split_b) = bytes.split_at(bytes.len() / 2);
        prop_assert_eq!(run(&[split_a, split_b]), run(&[&bytes]));
    }
}
