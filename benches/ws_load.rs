//! A WebSocket load generator for the benchmark's WebSocket rows: CONNECTIONS connections
//! to an echo endpoint, each keeping INFLIGHT messages of SIZE bytes under way (a new one
//! sent for each echo back), for SECONDS seconds, on one thread (`poll(2)` over
//! non-blocking sockets; pin it with `taskset`). Messages are masked as a client must; with
//! `deflate` the handshake offers permessage-deflate and every message goes compressed
//! (RSV1, deflated once before the run). Prints the echoes counted.
//!
//! `cargo bench --bench ws_load -- ADDR PATH CONNECTIONS INFLIGHT SIZE SECONDS [text|binary] [deflate]`

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// One connection: what it has read and not parsed, what it has still to write.
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage =
        "usage: ws_load ADDR PATH CONNECTIONS INFLIGHT SIZE SECONDS [text|binary] [deflate]";
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
    let frame = client_frame(size, binary, deflate);

    let mut conns: Vec<Conn> = (0..connections)
        .map(|_| open(addr, path, deflate))
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
            fd.events = libc::POLLIN
                | if conn.output.is_empty() {
                    0
                } else {
                    libc::POLLOUT
                };
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
                loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            eprintln!("ws_load: the server closed a connection");
                            std::process::exit(1);
                        }
                        Ok(n) => conn.input.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read: {e}"),
                    }
                }
                let frames = take_frames(&mut conn.input);
                echoes += frames as u64;
                for _ in 0..frames {
                    conn.output.extend_from_slice(&frame);
                }
            }
            if !conn.output.is_empty() {
                write_some(conn);
            }
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

/// Connects and completes the handshake (checking that deflate was agreed when offered).
fn open(addr: &str, path: &str, deflate: bool) -> Conn {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
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
    stream.set_nonblocking(true).unwrap();
    Conn {
        stream,
        input: Vec::new(),
        output: Vec::new(),
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

/// Writes what the connection can take of its output.
fn write_some(conn: &mut Conn) {
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
