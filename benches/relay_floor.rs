//! The relay floor: a bare io_uring byte relay, the measuring stick of the proxy rows of
//! `benches/load.sh`. It shows what the kernel's side of a proxied exchange costs on one core
//! (two legs: client ↔ relay ↔ backend), so that a proxy's core time per request can be read
//! as a multiple of it.
//!
//! One thread, one ring (`SINGLE_ISSUER | DEFER_TASKRUN`, else `COOP_TASKRUN`, else plain:
//! the start-up line says which), its descriptor registered, one multishot accept. Each
//! accepted client gets its own upstream connection to the backend (a blocking connect: on
//! loopback it returns at once, and it is not the per-byte path). Then bytes are copied
//! unparsed both ways, client → upstream and upstream → client, each direction with one
//! 64 KiB buffer: a receive into it, then sends until all of it is out, then the next
//! receive, so at most one receive or one send is in flight per direction. When either side
//! reads EOF or an error, or a send fails, both sockets are shut down, and closed once their
//! last operation has completed.
//!
//! It parses nothing, pools nothing and keeps no deadlines. It is not percore and uses none
//! of percore's code: only the `io-uring` crate, the same one percore's engine drives.
//!
//! `cargo bench --bench relay_floor -- PORT BACKEND` (`BACKEND` as `127.0.0.1:8097`) relays
//! 127.0.0.1:PORT to BACKEND until killed. Without arguments (as `cargo test --all-targets`
//! runs it) it relays a few connections to an echoing backend of its own, checks that every
//! byte comes back in order and that a client's close is passed on, and prints its usage.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, SubmissionQueue, Submitter};
use socket2::{Domain, Socket, Type};

/// The buffer of one direction of one connection: the most one receive takes.
const BUFFER_BYTES: usize = 64 * 1024;
/// Submission and completion queue sizes (at most four operations per connection are in
/// flight; the completion queue has room for 4,096 busy connections).
const SQ_ENTRIES: u32 = 4096;
const CQ_ENTRIES: u32 = 16384;
/// The `user_data` of the accept; every other is `slot << 2 | direction << 1 | is_send`.
const ACCEPT: u64 = u64::MAX;

fn main() -> ExitCode {
    // `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let usage = "usage: cargo bench --bench relay_floor -- PORT BACKEND (e.g. 8098 127.0.0.1:8097)";
    match (args.get(1), args.get(2)) {
        (None, _) => match check_relay() {
            Ok(()) => {
                println!("relay_floor: relaying checked; {usage}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("relay_floor: check failed: {e}");
                ExitCode::FAILURE
            }
        },
        (Some(port), Some(backend)) => {
            let Ok(port) = port.parse::<u16>() else {
                eprintln!("relay_floor: {port:?} is not a port; {usage}");
                return ExitCode::from(2);
            };
            let Ok(backend) = backend.parse::<SocketAddr>() else {
                eprintln!("relay_floor: {backend:?} is not an address like 127.0.0.1:8097");
                return ExitCode::from(2);
            };
            raise_descriptor_limit();
            let listener = match listen(port) {
                Ok(listener) => listener,
                Err(e) => {
                    eprintln!("relay_floor: cannot listen on port {port}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match relay(listener, backend) {
                Ok(never) => match never {},
                Err(e) => {
                    eprintln!("relay_floor: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        (Some(_), None) => {
            eprintln!("relay_floor: no backend address; {usage}");
            ExitCode::from(2)
        }
    }
}

/// Relays the connections `listener` accepts to `backend` until the process is killed;
/// returns only on a start-up error.
fn relay(listener: Socket, backend: SocketAddr) -> Result<std::convert::Infallible, String> {
    let (mut ring, mode) = new_ring()?;
    let (mut submitter, sq, mut cq) = ring.split();
    // An optimisation only: enters then skip the descriptor look-up.
    let registered = submitter.register_ring_fd().is_ok();
    let local = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map_or_else(|| "?".to_string(), |a| a.to_string());
    eprintln!(
        "relay_floor: {local} -> {backend}, ring {mode}, registered ring fd {}, multishot \
         accept, one upstream connection per client, {} KiB per direction",
        if registered { "yes" } else { "no" },
        BUFFER_BYTES / 1024
    );

    let mut queue = Queue { submitter, sq };
    let mut pairs = Pairs::default();
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .build()
        .user_data(ACCEPT);
    queue.push(&accept);
    loop {
        // The one enter of a turn: submit what the last turn queued, wait for a completion.
        queue.sq.sync();
        match queue.submitter.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(format!("io_uring_enter: {e}")),
        }
        cq.sync();
        for cqe in &mut cq {
            let (data, res) = (cqe.user_data(), cqe.result());
            if data == ACCEPT {
                if res >= 0 {
                    pairs.open(res, backend, &mut queue);
                }
                if !cqueue::more(cqe.flags()) {
                    queue.push(&accept);
                }
            } else {
                let slot = (data >> 2) as usize;
                let direction = (data >> 1 & 1) as usize;
                if data & 1 == 0 {
                    pairs.received(slot, direction, res, &mut queue);
                } else {
                    pairs.sent(slot, direction, res, &mut queue);
                }
            }
        }
    }
}

/// One direction of a connection: the bytes of its last receive, and how many are sent.
struct Leg {
    buffer: Box<[u8]>,
    len: usize,
    sent: usize,
}

/// A client connection and its upstream one.
struct Pair {
    /// `[client, upstream]`: direction `d` receives from `fds[d]` and sends to `fds[1 - d]`.
    fds: [RawFd; 2],
    legs: [Leg; 2],
    /// Operations whose completion has not arrived.
    in_flight: u32,
    /// Both sockets are shut down; they are closed when `in_flight` reaches 0.
    closing: bool,
}

/// The connections, by slot; a slot (and its buffers, which operations in flight point into)
/// is reused only once it has nothing in flight.
#[derive(Default)]
struct Pairs {
    slots: Vec<Pair>,
    free: Vec<usize>,
}

impl Pairs {
    /// A client was accepted: connects its upstream connection and receives from both.
    fn open(&mut self, client: RawFd, backend: SocketAddr, queue: &mut Queue) {
        let upstream = match connect(backend) {
            Ok(upstream) => upstream,
            Err(e) => {
                eprintln!("relay_floor: cannot connect to {backend}: {e}");
                // SAFETY: the accepted descriptor is ours, and nothing is in flight on it.
                unsafe { libc::close(client) };
                return;
            }
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            let leg = || Leg {
                buffer: vec![0; BUFFER_BYTES].into_boxed_slice(),
                len: 0,
                sent: 0,
            };
            self.slots.push(Pair {
                fds: [-1, -1],
                legs: [leg(), leg()],
                in_flight: 0,
                closing: false,
            });
            self.slots.len() - 1
        });
        let pair = &mut self.slots[slot];
        pair.fds = [client, upstream.into_raw_fd()];
        pair.closing = false;
        for direction in 0..2 {
            pair.receive(slot, direction, queue);
        }
    }

    /// A receive's completion: sends what came, or closes the pair at EOF or an error.
    fn received(&mut self, slot: usize, direction: usize, res: i32, queue: &mut Queue) {
        let pair = &mut self.slots[slot];
        pair.in_flight -= 1;
        if !pair.closing && res > 0 {
            let leg = &mut pair.legs[direction];
            leg.len = res as usize;
            leg.sent = 0;
            pair.send(slot, direction, queue);
        } else {
            self.close(slot);
        }
    }

    /// A send's completion: sends the rest, or receives again once all is out.
    fn sent(&mut self, slot: usize, direction: usize, res: i32, queue: &mut Queue) {
        let pair = &mut self.slots[slot];
        pair.in_flight -= 1;
        if !pair.closing && res > 0 {
            let leg = &mut pair.legs[direction];
            leg.sent += res as usize;
            if leg.sent < leg.len {
                pair.send(slot, direction, queue);
            } else {
                pair.receive(slot, direction, queue);
            }
        } else {
            self.close(slot);
        }
    }

    /// Shuts both sockets down (which ends the operations in flight on them), and closes
    /// them and frees the slot once nothing is in flight.
    fn close(&mut self, slot: usize) {
        let pair = &mut self.slots[slot];
        if !pair.closing {
            pair.closing = true;
            for fd in pair.fds {
                // SAFETY: the pair's descriptors stay open until the close below.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        }
        if pair.in_flight == 0 {
            for fd in std::mem::replace(&mut pair.fds, [-1, -1]) {
                // SAFETY: as above; nothing is in flight on either descriptor any more.
                unsafe { libc::close(fd) };
            }
            self.free.push(slot);
        }
    }
}

impl Pair {
    fn receive(&mut self, slot: usize, direction: usize, queue: &mut Queue) {
        let buffer = &mut self.legs[direction].buffer;
        let receive = opcode::Recv::new(
            types::Fd(self.fds[direction]),
            buffer.as_mut_ptr(),
            buffer.len() as u32,
        )
        .build()
        .user_data((slot as u64) << 2 | (direction as u64) << 1);
        queue.push(&receive);
        self.in_flight += 1;
    }

    fn send(&mut self, slot: usize, direction: usize, queue: &mut Queue) {
        let leg = &self.legs[direction];
        let rest = &leg.buffer[leg.sent..leg.len];
        let send = opcode::Send::new(
            types::Fd(self.fds[1 - direction]),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data((slot as u64) << 2 | (direction as u64) << 1 | 1);
        queue.push(&send);
        self.in_flight += 1;
    }
}

/// The submission side: queues entries, and submits early only when the queue is full.
struct Queue<'a> {
    submitter: Submitter<'a>,
    sq: SubmissionQueue<'a>,
}

impl Queue<'_> {
    /// Queues `entry`. Every buffer it names is a connection slot's, which lives as long as
    /// the program and is not reused while an operation on it is in flight.
    fn push(&mut self, entry: &squeue::Entry) {
        // SAFETY: see above; descriptors are closed only once nothing is in flight on them.
        while unsafe { self.sq.push(entry) }.is_err() {
            self.sq.sync();
            let _ = self.submitter.submit();
            self.sq.sync();
        }
    }
}

/// The ring, with the strongest completion mode the kernel offers, and that mode's name.
fn new_ring() -> Result<(IoUring, &'static str), String> {
    /// A completion mode: its name, and what it asks of the builder.
    type Mode = (&'static str, fn(&mut io_uring::Builder));
    let modes: [Mode; 3] = [
        ("SINGLE_ISSUER|DEFER_TASKRUN", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("COOP_TASKRUN", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("plain", |_| {}),
    ];
    let mut refusal = None;
    for (name, setup) in modes {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(CQ_ENTRIES);
        setup(&mut builder);
        match builder.build(SQ_ENTRIES) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) => refusal = Some(e),
        }
    }
    Err(format!("cannot set up io_uring: {}", refusal.unwrap()))
}

/// A listening socket on 127.0.0.1:`port` (0: any free port); accepted sockets inherit its
/// `TCP_NODELAY`.
fn listen(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(4096)?;
    Ok(socket)
}

/// A blocking connection to `backend`, with `TCP_NODELAY`.
fn connect(backend: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(backend), Type::STREAM, None)?;
    socket.set_nodelay(true)?;
    socket.connect(&backend.into())?;
    Ok(socket)
}

/// Lifts the soft limit on descriptors to the hard one.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls read or write one rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The relaying the proxy rows rely on: through a relay on a free port to an echoing backend
/// of this process's own, a few connections one after another (slots reused) and two at
/// once each send 1 MiB (more than a buffer, in writes of odd sizes) and get it back in
/// order; a client's half-close closes its connection, which the client reads as EOF.
fn check_relay() -> Result<(), String> {
    let backend = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let backend_addr = backend.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for stream in backend.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = &stream;
                let mut writer = &stream;
                let _ = io::copy(&mut reader, &mut writer);
            });
        }
    });
    let listener = listen(0).map_err(|e| e.to_string())?;
    let port = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or("no local address")?
        .port();
    // The ring is set up on the relay's thread (SINGLE_ISSUER wants its one submitter there);
    // a start-up error comes back through the channel, success as silence.
    let (failed, failure) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Err(e) = relay(listener, backend_addr);
        let _ = failed.send(e);
    });
    let round = move |seed: u8| -> Result<(), String> {
        let client = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let payload: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(31) >> 3) as u8 ^ seed)
            .collect();
        let mut writer = client.try_clone().map_err(|e| e.to_string())?;
        let sending = payload.clone();
        let sender = std::thread::spawn(move || -> io::Result<()> {
            for piece in sending.chunks(7919) {
                writer.write_all(piece)?;
            }
            Ok(())
        });
        let mut back = vec![0; payload.len()];
        (&client)
            .read_exact(&mut back)
            .map_err(|e| format!("reading the echo: {e}"))?;
        sender
            .join()
            .map_err(|_| "the sender panicked")?
            .map_err(|e| format!("sending: {e}"))?;
        if back != payload {
            return Err("the bytes came back changed".into());
        }
        client
            .shutdown(Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let mut rest = [0; 16];
        match (&client).read(&mut rest) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} bytes after the echo")),
            Err(e) => Err(format!("waiting for the close: {e}")),
        }
    };
    for seed in 0..3 {
        round(seed).map_err(|e| match failure.try_recv() {
            Ok(start) => start,
            Err(_) => e,
        })?;
    }
    let together: Vec<_> = (3..5)
        .map(|seed| std::thread::spawn(move || round(seed)))
        .collect();
    for one in together {
        one.join().map_err(|_| "a client panicked")??;
    }
    Ok(())
}
