//! What a warm WebSocket message costs the heap, counted: a counting global allocator
//! watches every thread of the process while clients send messages to an echo handler
//! (inline on the core's loop) and read them back. Without compression, nothing on the way
//! may allocate: not the frames read, the message gathered, the handler's answer, nor the
//! send; the only allowance is for the loop's parks (glommio may allocate when the loop
//! sleeps through it).
//!
//! Its own test binary with a single test: the allocator counts every thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use percore::config::{Config, CoreSpec};
use percore::{App, Message, WebSocket, WebSocketHandler};

#[path = "common/counting.rs"]
mod counting;

/// Allocations (and reallocations) made by any thread while the gate was open.
static ALLOCATIONS: counting::Gate = counting::Gate::new();

fn count() {
    ALLOCATIONS.count();
}

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting(count);

const CONNECTIONS: usize = 20;
const WARM_UP_ROUNDS: usize = 300;
const MEASURED_ROUNDS: usize = 100;

struct Echo;

impl WebSocketHandler for Echo {
    fn on_message(&mut self, message: Message<'_>, socket: &mut WebSocket<'_>) {
        let _ = socket.send(message);
    }
}

/// A masked text frame of 512 bytes (the reference workload's message size).
fn message() -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | 126, 0x02, 0x00];
    frame.extend_from_slice(&key);
    frame.extend((0..512).map(|i| b"abcdefgh"[i % 8] ^ key[i % 4]));
    frame
}

/// Sends one message on each stream, then reads each echo (`buf.len()` bytes).
fn round(streams: &mut [TcpStream], frame: &[u8], buf: &mut [u8]) -> usize {
    for stream in streams.iter_mut() {
        stream.write_all(frame).unwrap();
    }
    let mut wrong = 0;
    for stream in streams.iter_mut() {
        stream.read_exact(buf).unwrap();
        if buf[..4] != [0x81, 126, 0x02, 0x00] || !buf.ends_with(b"efgh") {
            wrong += 1;
        }
    }
    wrong
}

#[test]
fn a_warm_echoed_message_allocates_nothing() {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.cores = CoreSpec::First(1);
    config.report.enabled = false;
    config.report.interval_ms = 0;
    config.websocket.permessage_deflate = false;
    let app = App::new(|_| Ok(())).websocket("/ws", &[], |_, _, _| Echo);
    let server = app.start(config).expect("the server starts");
    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = TcpStream::connect(server.local_addr()).unwrap();
            stream.set_nodelay(true).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
                .write_all(
                    b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                )
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed before the 101");
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101 "));
            stream
        })
        .collect();
    let frame = message();
    let mut buf = vec![0u8; 4 + 512];
    for _ in 0..WARM_UP_ROUNDS {
        assert_eq!(round(&mut streams, &frame, &mut buf), 0);
    }

    ALLOCATIONS.open();
    let mut wrong = 0;
    for _ in 0..MEASURED_ROUNDS {
        wrong += round(&mut streams, &frame, &mut buf);
    }
    ALLOCATIONS.close();
    let allocations = ALLOCATIONS.counted();
    assert_eq!(wrong, 0);

    drop(streams);
    let summary = server.shutdown();
    let counters = summary.cores[0].counters;
    let messages = (CONNECTIONS * MEASURED_ROUNDS) as u64;
    eprintln!(
        "measured: {allocations} allocations for {messages} echoed messages ({} parks)",
        counters.parks
    );
    assert_eq!(
        counters.websocket_messages_out,
        (CONNECTIONS * (WARM_UP_ROUNDS + MEASURED_ROUNDS)) as u64
    );
    assert!(
        allocations <= 2 * counters.parks,
        "{allocations} allocations for {messages} messages ({} parks)",
        counters.parks
    );
}
