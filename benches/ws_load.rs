//! A WebSocket load generator for the benchmark's WebSocket rows: CONNECTIONS connections
//! to an echo endpoint, each keeping INFLIGHT messages of SIZE bytes under way (a new one
//! sent for each echo back), for SECONDS seconds, on one thread (`poll(2)` over
//! non-blocking sockets; pin it with `taskset`). Messages are masked as a client must; with
//! `deflate` the handshake offers permessage-deflate and every message goes compressed
//! (RSV1, deflated once before the run); with `tls` the connections are `wss://` (rustls,
//! TLS 1.3, the server's certificate not verified: the bench's own self-signed one). Prints
//! the echoes counted.
//!
//! `cargo bench --bench ws_load -- ADDR PATH CONNECTIONS INFLIGHT SIZE SECONDS [text|binary] [deflate] [tls]`

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection};

#[path = "support/blind.rs"]
mod blind;

/// One connection: what it has read and not parsed, what it has still to write; its TLS
/// session for `wss://`.
struct Conn {
    stream: TcpStream,
    tls: Option<ClientConnection>,
    input: Vec<u8>,
    output: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage =
        "usage: ws_load ADDR PATH CONNECTIONS INFLIGHT SIZE SECONDS [text|binary] [deflate] [tls]";
    if args.is_empty() {
        // `cargo test --all-targets` runs this target without arguments: it checks its own
        // frame counting, which every figure it prints rests on.
        check_frame_counting();
        println!("ws_load: frame counting checked; {usage}");
        return;
    }
    if args.len() < 6 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let addr = &args[0];
    let path = &args[1];
    let connections: usize = args[2].parse().expect("CONNECTIONS");
    let inflight: usize = args[3].parse().expect("INFLIGHT");
    let size: usize = args[4].parse().expect("SIZE");
    let seconds: u64 = args[5].parse().expect("SECONDS");
    let binary = args.get(6).is_some_and(|a| a == "binary");
    let deflate = args.iter().any(|a| a == "deflate");
    let tls = args.iter().any(|a| a == "tls").then(tls_config);
    let frame = client_frame(size, binary, deflate);

    let mut conns: Vec<Conn> = (0..connections)
        .map(|_| open(addr, path, deflate, tls.as_ref()))
        .collect();
    for conn in &mut conns {
        for _ in 0..inflight {
            conn.output.extend_from_slice(&frame);
        }
        write_some(conn);
    }
    let mut fds: Vec<libc::pollfd> = conns
        .iter()
        .map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: 0,
            revents: 0,
        })
        .collect();
    let mut echoes = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    while Instant::now() < end {
        for (fd, conn) in fds.iter_mut().zip(&conns) {
            let writing =
                !conn.output.is_empty() || conn.tls.as_ref().is_some_and(|t| t.wants_write());
            fd.events = libc::POLLIN | if writing { libc::POLLOUT } else { 0 };
        }
        // SAFETY: `fds` is a valid array of pollfd of its length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if ready <= 0 {
            continue;
        }
        for (fd, conn) in fds.iter().zip(conns.iter_mut()) {
            if fd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                eprintln!("ws_load: a connection failed or closed");
                std::process::exit(1);
            }
            if fd.revents & libc::POLLIN != 0 {
                read_some(conn, &mut buf);
                let frames = take_frames(&mut conn.input);
                echoes += frames as u64;
                for _ in 0..frames {
                    conn.output.extend_from_slice(&frame);
                }
            }
            write_some(conn);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{echoes} messages echoed in {elapsed:.2} s, {:.0} per second ({connections} connections, {inflight} in flight each, {size} B {}{})",
        echoes as f64 / elapsed,
        if binary { "binary" } else { "text" },
        if deflate { ", deflate" } else { "" }
    );
}

/// A TLS 1.3 client that does not verify the server (the bench's self-signed certificate).
fn tls_config() -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(blind::Blind))
    .with_no_client_auth();
    Arc::new(config)
}

/// Connects and completes the handshake (checking that deflate was agreed when offered).
fn open(addr: &str, path: &str, deflate: bool, tls: Option<&Arc<ClientConfig>>) -> Conn {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_nodelay(true).unwrap();
    let mut session = tls.map(|config| {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        ClientConnection::new(config.clone(), name).expect("a TLS client")
    });
    let mut plain;
    let mut secure;
    let stream: &mut dyn ReadWrite = match session.as_mut() {
        Some(session) => {
            secure = rustls::Stream::new(session, &mut tcp);
            &mut secure
        }
        None => {
            plain = &tcp;
            &mut plain
        }
    };
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("the handshake's answer"), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
    if deflate {
        assert!(
            head.to_ascii_lowercase().contains("permessage-deflate"),
            "deflate not agreed: {head}"
        );
    }
    tcp.set_nonblocking(true).unwrap();
    Conn {
        stream: tcp,
        tls: session,
        input: Vec::new(),
        output: Vec::new(),
    }
}

/// A byte stream: the TCP connection, or TLS over it.
trait ReadWrite: Read + Write {}

impl<T: Read + Write> ReadWrite for T {}

/// Reads what the connection has into its input (through TLS for `wss://`).
fn read_some(conn: &mut Conn, buf: &mut [u8]) {
    loop {
        let read = match &mut conn.tls {
            Some(tls) => tls.read_tls(&mut conn.stream),
            None => conn.stream.read(buf),
        };
        match read {
            Ok(0) => {
                eprintln!("ws_load: the server closed a connection");
                std::process::exit(1);
            }
            Ok(n) => {
                let Some(tls) = &mut conn.tls else {
                    conn.input.extend_from_slice(&buf[..n]);
                    continue;
                };
                tls.process_new_packets().expect("TLS records");
                loop {
                    match tls.reader().read(buf) {
                        Ok(0) => break,
                        Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("TLS read: {e}"),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// A masked client frame of `size` bytes of text (or binary), compressed with `deflate`.
fn client_frame(size: usize, binary: bool, deflate: bool) -> Vec<u8> {
    let text: Vec<u8> = (0..size)
        .map(|i| b"percore websocket echo "[i % 23])
        .collect();
    let (payload, first) = if deflate {
        let mut compress = flate2::Compress::new(flate2::Compression::new(1), false);
        let mut out = Vec::with_capacity(size + 1024);
        compress
            .compress_vec(&text, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - 4);
        (out, 0xC0)
    } else {
        (text, 0x80)
    };
    let op = if binary { 0x2 } else { 0x1 };
    let key = [0x5a, 0x17, 0xc3, 0x08];
    let mut frame = vec![first | op];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Removes the whole frames at the start of `input`; returns how many.
fn take_frames(input: &mut Vec<u8>) -> usize {
    let mut at = 0;
    let mut frames = 0;
    loop {
        let rest = &input[at..];
        let [_, b1, ..] = *rest else { break };
        let (len, head) = match b1 & 0x7F {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => (
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if rest.len() < head + len {
            break;
        }
        at += head + len;
        frames += 1;
    }
    input.drain(..at);
    frames
}

/// Frames of every length form, whole and cut anywhere, are counted once each, and a cut
/// frame's bytes wait for the rest; a client frame's length form matches its payload.
fn check_frame_counting() {
    let mut stream = Vec::new();
    let sizes = [0usize, 1, 125, 126, 65535, 65536, 70000];
    for size in sizes {
        // A server frame: unmasked, the client frame's head without its mask bit and key.
        let client = client_frame(size, true, false);
        let head_len = match client[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        assert_eq!(client.len(), head_len + 4 + size, "client frame of {size}");
        let mut server = client[..head_len].to_vec();
        server[1] &= 0x7F;
        server.extend(std::iter::repeat_n(b'x', size));
        stream.extend_from_slice(&server);
    }
    for cut in [0, 1, 2, 3, 9, 130, 70_000, stream.len() - 1, stream.len()] {
        let mut input = stream[..cut].to_vec();
        let mut counted = take_frames(&mut input);
        input.extend_from_slice(&stream[cut..]);
        counted += take_frames(&mut input);
        assert_eq!(counted, sizes.len(), "cut at {cut}");
        assert!(input.is_empty(), "cut at {cut}: {} bytes left", input.len());
    }
}

/// Writes what the connection can take of its output (sealed into TLS records first for
/// `wss://`).
fn write_some(conn: &mut Conn) {
    if let Some(tls) = &mut conn.tls {
        // rustls takes plaintext only up to its buffer's limit: what it leaves waits.
        loop {
            if !conn.output.is_empty() {
                let n = tls.writer().write(&conn.output).unwrap();
                conn.output.drain(..n);
            }
            if !tls.wants_write() {
                return;
            }
            match tls.write_tls(&mut conn.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("write: {e}"),
            }
        }
    }
    while !conn.output.is_empty() {
        match conn.stream.write(&conn.output) {
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => panic!("write: {e}"),
        }
    }
}
