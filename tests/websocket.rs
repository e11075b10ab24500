//! WebSocket routes over real sockets: the opening handshake and its refusals, messages
//! echoed whole however the client splits or fragments them, pings answered between
//! fragments, the close handshake both ways, every protocol error closing with its code
//! (1002, 1007, 1009), the idle ping and timeout; then Python's `websockets` (an
//! independent client) against the binary's `/ws/echo`, over cleartext and over TLS.

mod common;
#[path = "common/tls.rs"]
mod tls_support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::serve::{serve, serve_with};
use common::ws::{frame, handshake, python_with_websockets, Raw, ACCEPT, KEY};
use common::{output_within, require, Percore};
use percore::{App, Message, WebSocket, WebSocketHandler};

/// Echoes each message; `close` closes with 4000 instead; records how it ended.
struct Echo {
    ended: Arc<Mutex<Vec<String>>>,
    protocol: Option<&'static str>,
}

impl WebSocketHandler for Echo {
    fn on_message(&mut self, message: Message<'_>, socket: &mut WebSocket<'_>) {
        match message {
            Message::Text("protocol?") => socket.text(self.protocol.unwrap_or("none")).unwrap(),
            Message::Text("close") => socket.close(4000, "asked to"),
            Message::Text("close 1005") => socket.close(1005, "not on the wire"),
            Message::Text("panic") => panic!("the handler fails"),
            message => socket.send(message).unwrap(),
        }
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        self.ended
            .lock()
            .unwrap()
            .push(format!("{code:?} {reason}"));
    }
}

fn echo_app(ended: Arc<Mutex<Vec<String>>>) -> App<()> {
    App::new(|_| Ok(()))
        .get("/echo", common::app::echo)
        .websocket("/ws", &["chat.v2", "chat"], move |_request, protocol, _| {
            Echo {
                ended: ended.clone(),
                protocol,
            }
        })
}

#[test]
fn the_handshake_is_accepted_with_its_hash_and_a_chosen_subprotocol() {
    let running = serve(echo_app(Arc::default()));
    let mut raw = Raw::connect(running.addr);
    raw.write(handshake("Sec-WebSocket-Protocol: other, chat\r\n").as_bytes());
    let head = raw.head();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: chat\r\n"), "{head}");
    raw.write(&frame(true, 0x1, b"protocol?"));
    assert_eq!(raw.frame(), (true, 0x1, b"chat".to_vec()));
    // Frames sent with the handshake, in the same packet, are read too.
    let mut raw = Raw::connect(running.addr);
    let mut bytes = handshake("").into_bytes();
    bytes.extend(frame(true, 0x1, b"right behind"));
    raw.write(&bytes);
    raw.head();
    assert_eq!(raw.frame(), (true, 0x1, b"right behind".to_vec()));
}

#[test]
fn a_bad_handshake_gets_the_status_the_rfc_names_and_stays_http() {
    let running = serve(echo_app(Arc::default()));
    let cases = [
        (
            handshake("").replace("Version: 13", "Version: 8"),
            "426",
            "Sec-WebSocket-Version: 13",
        ),
        (handshake("").replace(KEY, "c2hvcnQ="), "400", ""),
        (
            handshake("").replace("keep-alive, Upgrade", "keep-alive"),
            "400",
            "",
        ),
        (
            "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n".to_string(),
            "426",
            "Upgrade: websocket",
        ),
        (handshake("").replace("GET", "POST"), "405", "Allow: GET"),
    ];
    for (request, status, field) in cases {
        let mut raw = Raw::connect(running.addr);
        raw.write(request.as_bytes());
        let head = raw.head();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request}\n{head}"
        );
        assert!(head.contains(field), "{head}");
        // Still HTTP: the next request is answered.
        raw.buf.clear();
        raw.write(b"GET /echo?name=after HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut next = String::new();
        while !next.contains("Hi, after!") {
            assert!(raw.fill() > 0, "the connection went on as HTTP");
            next = String::from_utf8_lossy(&raw.buf).into_owned();
        }
    }
}

#[test]
fn messages_come_back_whole_however_split_and_pings_are_answered_between_fragments() {
    let ended = Arc::new(Mutex::new(Vec::new()));
    let running = serve(echo_app(ended.clone()));
    let mut raw = Raw::open(running.addr);
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut bytes = frame(false, 0x1, "κό".as_bytes());
    bytes.extend(frame(true, 0x9, b"still there?"));
    bytes.extend(frame(true, 0x0, "σμε".as_bytes()));
    bytes.extend(frame(true, 0x2, &big));
    // One byte at a time.
    for byte in &bytes {
        raw.write(std::slice::from_ref(byte));
    }
    assert_eq!(
        raw.frame(),
        (true, 0xA, b"still there?".to_vec()),
        "the pong first"
    );
    assert_eq!(raw.frame(), (true, 0x1, "κόσμε".as_bytes().to_vec()));
    assert_eq!(raw.frame(), (true, 0x2, big));
    // The client closes: the same code comes back, then the server closes.
    raw.write(&frame(true, 0x8, b"\x03\xe8done"));
    assert_eq!(raw.closed_with(), 1000);
    common::wait_until(
        "the handler hears of the close",
        Duration::from_secs(5),
        || ended.lock().unwrap().as_slice() == ["Some(1000) done"],
    );
}

#[test]
fn the_handler_closes_and_the_client_answers() {
    let running = serve(echo_app(Arc::default()));
    let mut raw = Raw::open(running.addr);
    raw.write(&frame(true, 0x1, b"close"));
    let (_, op, payload) = raw.frame();
    assert_eq!((op, &payload[..2]), (0x8, &4000u16.to_be_bytes()[..]));
    assert_eq!(&payload[2..], b"asked to");
    raw.write(&frame(true, 0x8, &payload[..2]));
    raw.expect_close("closed after the client's answer");
}

#[test]
fn a_client_that_leaves_without_a_close_frame_is_let_go() {
    let ended = Arc::new(Mutex::new(Vec::new()));
    let running = serve(echo_app(ended.clone()));
    let mut raw = Raw::open(running.addr);
    raw.write(&frame(true, 0x1, b"bye"));
    assert_eq!(raw.frame().2, b"bye");
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    raw.expect_close("closed, with nothing more sent");
    common::wait_until(
        "the handler hears the client left",
        Duration::from_secs(5),
        || ended.lock().unwrap().as_slice() == ["None "],
    );
}

#[test]
fn a_panicking_handler_ends_its_connection_with_1011_and_the_core_goes_on() {
    let ended: Arc<Mutex<Vec<String>>> = Arc::default();
    let running = serve(echo_app(ended.clone()));
    let mut raw = Raw::open(running.addr);
    raw.write(&frame(true, 0x1, b"panic"));
    assert_eq!(raw.closed_with(), 1011);
    // The handler that failed is told that its connection ended.
    common::wait_until(
        "the failed handler hears the end",
        Duration::from_secs(5),
        || ended.lock().unwrap().as_slice() == ["None "],
    );
    let mut other = Raw::open(running.addr);
    other.write(&frame(true, 0x1, b"still here"));
    assert_eq!(other.frame().2, b"still here");
    // A code a peer may not send becomes 1011 too.
    other.write(&frame(true, 0x1, b"close 1005"));
    let (_, op, payload) = other.frame();
    assert_eq!((op, &payload[..2]), (0x8, &1011u16.to_be_bytes()[..]));
    let summary = running.stop();
    assert_eq!(summary.merged_counters().handler_panics, 1);
}

#[test]
fn an_upgrade_that_was_the_connections_last_request_still_reads_frames() {
    let running = serve_with(echo_app(Arc::default()), |config| {
        config.http.max_requests_per_connection = 1;
    });
    let mut raw = Raw::open(running.addr);
    raw.write(&frame(true, 0x1, b"after the last request"));
    assert_eq!(raw.frame().2, b"after the last request");
}

#[test]
fn a_message_of_the_largest_size_is_echoed_whatever_the_send_queue() {
    let running = serve_with(echo_app(Arc::default()), |config| {
        config.websocket.max_message_bytes = 100_000;
        config.websocket.max_send_queue_bytes = 1024;
    });
    let mut raw = Raw::open(running.addr);
    let big = vec![7u8; 100_000];
    raw.write(&frame(true, 0x2, &big));
    assert_eq!(raw.frame(), (true, 0x2, big));
}

#[test]
fn protocol_errors_close_with_their_codes() {
    let running = serve_with(echo_app(Arc::default()), |config| {
        config.websocket.max_message_bytes = 1000;
    });
    let mut unmasked = frame(true, 0x1, b"hi");
    unmasked[1] &= 0x7F;
    unmasked.drain(2..6);
    let mut fragmented_bad = frame(false, 0x1, b"ok \xce");
    fragmented_bad.extend(frame(false, 0x0, b" not a continuation byte"));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked, 1002),
        ("reserved opcode", frame(true, 0x3, b""), 1002),
        ("fragmented ping", frame(false, 0x9, b""), 1002),
        ("continuation first", frame(true, 0x0, b"x"), 1002),
        (
            "bad close code",
            frame(true, 0x8, &1005u16.to_be_bytes()),
            1002,
        ),
        ("bad UTF-8, before the message ends", fragmented_bad, 1007),
        ("too big", frame(true, 0x2, &[0; 1001]), 1009),
    ];
    for (what, bytes, code) in cases {
        let mut raw = Raw::open(running.addr);
        raw.write(&bytes);
        assert_eq!(raw.closed_with(), code, "{what}");
    }
}

#[test]
fn an_idle_connection_is_pinged_then_closed_going_away() {
    let running = serve_with(echo_app(Arc::default()), |config| {
        config.websocket.idle_ping_ms = 100;
        config.websocket.idle_timeout_ms = 400;
    });
    let mut raw = Raw::open(running.addr);
    assert_eq!(raw.frame(), (true, 0x9, Vec::new()), "a ping when quiet");
    assert_eq!(raw.closed_with(), 1001);
}

#[test]
fn a_drain_asks_websockets_to_close_then_waits_for_them() {
    let ended = Arc::new(Mutex::new(Vec::new()));
    let running = serve_with(echo_app(ended.clone()), |config| {
        config.server.drain_idle_grace_ms = 100;
        config.server.drain_timeout_ms = 10_000;
    });
    let mut raw = Raw::open(running.addr);
    raw.write(&frame(true, 0x1, b"before"));
    assert_eq!(raw.frame(), (true, 0x1, b"before".to_vec()));
    let began = std::time::Instant::now();
    let stopping = std::thread::spawn(move || running.stop());
    let (_, op, payload) = raw.frame();
    assert_eq!(
        (op, &payload[..2]),
        (0x8, &1001u16.to_be_bytes()[..]),
        "Going Away"
    );
    raw.write(&frame(true, 0x8, &1001u16.to_be_bytes()));
    while raw.fill() > 0 {}
    let summary = stopping.join().unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(summary.merged_counters().websocket_opened, 1);
    assert_eq!(summary.merged_counters().websocket_closed, 1);
    assert_eq!(ended.lock().unwrap().as_slice(), ["Some(1001) "]);
}

#[test]
fn stats_count_websockets_and_the_access_log_has_a_line_when_one_ends() {
    let log = std::env::temp_dir().join(format!("percore-ws-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let app = echo_app(Arc::default()).stats();
    let running = serve_with(app, |config| {
        config.log.access = log.clone();
        // /stats shows what the core published at its last report tick.
        config.report.interval_ms = 50;
    });
    let mut raw = Raw::open(running.addr);
    for text in [&b"one"[..], b"two", b"three"] {
        raw.write(&frame(true, 0x1, text));
        assert_eq!(raw.frame().2, text);
    }
    let counts = "\"websocket\":{\"open\":1,\"opened\":1,\"messages_in\":3,\
                  \"messages_out\":3,\"bytes_in\":11,\"bytes_out\":11,\"published\":0,\"publish_dropped\":0}";
    let mut stats = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !stats.contains(counts) {
        assert!(
            std::time::Instant::now() < deadline,
            "/stats counts the WebSocket: {stats}"
        );
        std::thread::sleep(Duration::from_millis(20));
        stats = running.client().get("/stats").text();
    }
    raw.write(&frame(true, 0x8, &4001u16.to_be_bytes()));
    assert_eq!(raw.closed_with(), 4001);
    running.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("GET /ws "))
        .expect("the WebSocket's line");
    assert!(line.contains("\" 101 "), "{line}");
    assert!(
        line.ends_with(" ws_messages_in=3 ws_messages_out=3 ws_close=4001"),
        "{line}"
    );
    let _ = std::fs::remove_file(&log);
}

/// A client frame with RSV1 set (a compressed message's), masked.
fn compressed_frame(op: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = frame(true, op, payload);
    bytes[0] |= 0x40;
    bytes
}

/// Raw deflate of `data` as permessage-deflate sends it (sync flush, its last four bytes
/// left off).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::new(6), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    compress
        .compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut decompress = flate2::Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    decompress
        .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    out
}

#[test]
fn permessage_deflate_is_agreed_and_messages_go_both_ways_compressed() {
    let running = serve_with(echo_app(Arc::default()), |config| {
        config.websocket.max_message_bytes = 256 << 10;
    });
    let open = |offer: &str| {
        let mut raw = Raw::connect(running.addr);
        raw.write(handshake(&format!("Sec-WebSocket-Extensions: {offer}\r\n")).as_bytes());
        let head = raw.head();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        (raw, head)
    };
    let (mut raw, head) = open("permessage-deflate; client_max_window_bits, x-other");
    assert!(
        head.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        ),
        "{head}"
    );
    // RFC 7692 §7.2.3.1's "Hello": a short answer goes back uncompressed.
    raw.write(&compressed_frame(
        0x1,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ));
    assert_eq!(raw.frame(), (true, 0x1, b"Hello".to_vec()));
    // A longer one, in two messages: each compressed on its own, both ways.
    let text = "the same words again and again, ".repeat(100);
    for _ in 0..2 {
        raw.write(&compressed_frame(0x1, &deflate(text.as_bytes())));
        let (fin, op, payload) = raw.frame();
        assert_eq!((fin, op), (true, 0x41), "a text message with RSV1");
        assert!(
            payload.len() < text.len() / 4,
            "sent compressed: {}",
            payload.len()
        );
        assert_eq!(inflate(&payload), text.as_bytes());
    }
    // An uncompressed message is still allowed.
    raw.write(&frame(true, 0x2, b"plain"));
    assert_eq!(raw.frame(), (true, 0x2, b"plain".to_vec()));
    // A bomb stops at the message limit; garbage is 1007.
    raw.write(&compressed_frame(0x2, &deflate(&vec![0u8; 2 << 20])));
    assert_eq!(raw.closed_with(), 1009);
    let (mut raw, _) = open("permessage-deflate");
    raw.write(&compressed_frame(0x2, &[0xff, 0xff, 0xff, 0xff]));
    assert_eq!(raw.closed_with(), 1007);
    // Without an offer, RSV1 is a protocol error.
    let mut raw = Raw::open(running.addr);
    raw.write(&compressed_frame(
        0x1,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
    ));
    assert_eq!(raw.closed_with(), 1002);
    // An offer percore cannot take (a window of 8 bits) is no extension.
    let (_, head) = open("permessage-deflate; server_max_window_bits=8");
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
}

/// A Python with `websockets` (the venv `.ci/run` makes, else the system's).
/// Python's `websockets` client: text (non-ASCII) and a 80 kB binary message echoed, a
/// ping's pong, then a close with 1000.
const PY_CLIENT: &str = r#"
import ssl, sys
from websockets.sync.client import connect
url = sys.argv[1]
context = ssl.create_default_context(cafile=sys.argv[2]) if len(sys.argv) > 2 else None
with connect(url, ssl=context, max_size=None, open_timeout=10, close_timeout=10) as ws:
    ws.send("héllo wörld")
    assert ws.recv(timeout=10) == "héllo wörld"
    data = bytes(range(256)) * 320
    ws.send(data)
    assert ws.recv(timeout=10) == data
    assert ws.ping(b"p").wait(10)
    ws.close(1000, "bye")
print("ok", ws.close_code)
"#;

fn python_client(url: &str, ca: Option<&std::path::Path>) {
    let python = python_with_websockets();
    if !require(
        python.is_some(),
        "no Python with websockets (.ci/run makes .venv)",
    ) {
        return;
    }
    let mut command = Command::new(python.unwrap());
    command.args(["-c", PY_CLIENT, url]);
    if let Some(ca) = ca {
        command.arg(ca);
    }
    let out = output_within(&mut command, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok 1000",
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pythons_websockets_client_talks_to_the_binarys_ws_echo() {
    let mut percore = Percore::spawn(&["--port", "0", "--cores", "0", "--root", ""]);
    python_client(&format!("ws://{}/ws/echo", percore.addr), None);
    percore.stop_with(libc::SIGTERM);
}

#[test]
fn pythons_websockets_client_over_tls() {
    let pki = tls_support::Pki::new("ws");
    let default = pki.leaf("default", tls_support::DEFAULT_NAMES);
    let other = pki.leaf("other", tls_support::SNI_NAMES);
    let running = serve_with(echo_app(Arc::default()), |config| {
        config.tls = Some(tls_support::tls_config(&default, &other));
    });
    let https = running.server.tls_addr().expect("a TLS listener");
    python_client(
        &format!("wss://localhost:{}/ws", https.port()),
        Some(&pki.ca_pem),
    );
}
