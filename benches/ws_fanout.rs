//! One publish to a large WebSocket group: CONNECTIONS members of the binary's
//! `/ws/room/{name}` (spread over the server's cores by the kernel), one of which sends a
//! message of SIZE bytes per round; the round lasts until every member has read it whole.
//! Prints, for the server process PID: its resident memory before the members, with them,
//! and after the rounds; the median and slowest round; and the server's CPU time per
//! publish (all its cores together, from `/proc/PID/stat`).
//!
//! `cargo bench --bench ws_fanout -- ADDR PID CONNECTIONS ROUNDS SIZE`
//!
//! The members are read on one thread through epoll over non-blocking sockets (pin it with
//! `taskset`).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let usage = "usage: ws_fanout ADDR PID CONNECTIONS ROUNDS SIZE";
    if args.is_empty() {
        // `cargo test --all-targets` runs this target without arguments: it checks the
        // frame it sends and the byte count it waits for.
        check_frames();
        println!("ws_fanout: frames checked; {usage}");
        return;
    }
    if args.len() < 5 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let addr = &args[0];
    let pid: u32 = args[1].parse().expect("PID");
    let connections: usize = args[2].parse().expect("CONNECTIONS");
    let rounds: usize = args[3].parse().expect("ROUNDS");
    let size: usize = args[4].parse().expect("SIZE");

    let rss_before = rss_kib(pid);
    let mut members: Vec<TcpStream> = (0..connections).map(|_| open(addr)).collect();
    let rss_members = rss_kib(pid);

    let epoll = Epoll::new();
    for (i, member) in members.iter().enumerate() {
        member.set_nonblocking(true).unwrap();
        epoll.add(member.as_raw_fd(), i as u64);
    }
    let frame = client_frame(size);
    let expected = server_frame_len(size);
    let mut times = Vec::with_capacity(rounds);
    let cpu_before = cpu_ticks(pid);
    let mut got = vec![0usize; connections];
    let mut buf = vec![0u8; 64 * 1024];
    for round in 0..rounds {
        got.iter_mut().for_each(|n| *n = 0);
        let start = Instant::now();
        members[round % connections].write_all(&frame).unwrap();
        let mut done = 0;
        let deadline = start + Duration::from_secs(30);
        while done < connections {
            assert!(
                Instant::now() < deadline,
                "round {round}: {done} of {connections} got it"
            );
            for token in epoll.wait() {
                let i = token as usize;
                loop {
                    match members[i].read(&mut buf) {
                        Ok(0) => panic!("member {i} closed"),
                        Ok(n) => {
                            got[i] += n;
                            if got[i] == expected {
                                done += 1;
                            }
                            assert!(got[i] <= expected, "member {i} read too much");
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("member {i}: {e}"),
                    }
                }
            }
        }
        times.push(start.elapsed());
    }
    let cpu = cpu_ticks(pid) - cpu_before;
    let rss_after = rss_kib(pid);
    times.sort();
    let hz = clock_ticks();
    println!(
        "members {connections} size {size} rounds {rounds}: publish-to-last-member median {:.2} ms, \
         slowest {:.2} ms; server cpu {:.2} ms per publish; server RSS KiB {rss_before} before, \
         {rss_members} with the members ({:.0} B each), {rss_after} after the rounds",
        times[rounds / 2].as_secs_f64() * 1e3,
        times[rounds - 1].as_secs_f64() * 1e3,
        cpu as f64 * 1e3 / hz / rounds as f64,
        (rss_members.saturating_sub(rss_before)) as f64 * 1024.0 / connections as f64,
    );
}

/// Connects to the room and completes the handshake.
fn open(addr: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).unwrap();
    write!(
        stream,
        "GET /ws/room/fanout HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the 101's head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// A masked text message of `size` bytes.
fn client_frame(size: usize) -> Vec<u8> {
    let key = [0x1f, 0x2e, 0x3d, 0x4c];
    let mut frame = vec![0x81];
    match size {
        0..=125 => frame.push(0x80 | size as u8),
        126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend((0..size).map(|i| b"fanout!"[i % 7] ^ key[i % 4]));
    frame
}

/// The length of the server's (unmasked) frame of a `size`-byte message.
fn server_frame_len(size: usize) -> usize {
    size + match size {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

fn check_frames() {
    assert_eq!(client_frame(5).len(), 2 + 4 + 5);
    assert_eq!(client_frame(5)[..2], [0x81, 0x85]);
    assert_eq!(client_frame(300)[..4], [0x81, 0x80 | 126, 1, 44]);
    assert_eq!(server_frame_len(64), 66);
    assert_eq!(server_frame_len(300), 304);
    assert_eq!(server_frame_len(70_000), 70_010);
}

/// The process's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The process's user and system time, clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the server's stat");
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// A level-triggered epoll set.
struct Epoll {
    fd: i32,
    events: std::cell::RefCell<Vec<libc::epoll_event>>,
}

impl Epoll {
    fn new() -> Epoll {
        // SAFETY: epoll_create1 with a flag.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(fd >= 0, "epoll_create1");
        Epoll {
            fd,
            events: std::cell::RefCell::new(vec![libc::epoll_event { events: 0, u64: 0 }; 1024]),
        }
    }

    fn add(&self, fd: i32, token: u64) {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: a valid epoll descriptor and event.
        let rc = unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut event) };
        assert_eq!(rc, 0, "epoll_ctl");
    }

    /// The tokens of the ready descriptors (waits up to 100 ms).
    fn wait(&self) -> Vec<u64> {
        let mut events = self.events.borrow_mut();
        // SAFETY: the buffer holds `len` events.
        let n = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), events.len() as i32, 100) };
        (0..n.max(0) as usize).map(|i| events[i].u64).collect()
    }
}
