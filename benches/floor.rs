//! The floor: a bare io_uring HTTP loop, the measuring stick of `benches/load.sh`. It shows
//! what the kernel's side of a keep-alive exchange costs on one core, so that percore's core
//! time per request can be read as a multiple of it.
//!
//! One thread, one ring (`SINGLE_ISSUER | DEFER_TASKRUN`, else `COOP_TASKRUN`, else plain:
//! the start-up line says which), its descriptor registered. One multishot accept; per
//! connection one multishot receive into a ring of provided buffers, each buffer handed back
//! as soon as its bytes are counted. A request is whatever ends in `\r\n\r\n`, even when the
//! four bytes arrive in two receives; every complete request of a receive is answered by one
//! send SQE of as many copies of one fixed `200` response (at most one send in flight per
//! connection; what arrives meanwhile goes into the next). A connection is closed on EOF or
//! an error, after what it is owed has been sent.
//!
//! It parses nothing else, with one exception: `ab` without `-k` sends HTTP/1.0 requests
//! without `keep-alive` and waits for the server to close, so such a request is answered and
//! then its connection closed (the `ab -c 50` row needs it). It serves no files and keeps no
//! deadlines. It is not percore and uses none of percore's code: only the `io-uring` crate,
//! the same one percore's engine drives, so the ratio between the two is percore's own work.
//!
//! `cargo bench --bench floor -- PORT` serves 127.0.0.1:PORT until killed. Without a port (as
//! `cargo test --all-targets` runs it) it checks its request counting against every split of
//! a pipelined batch into three receives, and prints its usage.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::squeue::Flags;
use io_uring::{cqueue, opcode, squeue, types, IoUring, SubmissionQueue, Submitter};
use socket2::{Domain, Socket, Type};

/// The one response, sent once per request.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\
Connection: keep-alive\r\n\r\nHi, Abcde!";
/// Responses in the block sends are taken from: one send carries at most this many (a deeper
/// pipeline takes more than one send).
const COPIES: usize = 256;
/// Provided receive buffers and their size (percore's defaults: `runtime.recv_buffers` ×
/// `runtime.recv_buffer_bytes`). With none left a multishot receive ends and is re-armed.
const BUFFERS: u16 = 1024;
const BUFFER_BYTES: usize = 4096;
/// The buffer group of the receives.
const GROUP: u16 = 0;
/// Submission and completion queue sizes: multishot operations post many completions per
/// submission, and a roomy completion queue keeps them out of the kernel's overflow list.
const SQ_ENTRIES: u32 = 4096;
const CQ_ENTRIES: u32 = 16384;
/// An unfinished request head longer than this closes its connection.
const MAX_HEAD: usize = 16 * 1024;

/// What a completion is for: the high half of its `user_data` (the low half is the socket).
const ACCEPT: u64 = 1;
const RECEIVE: u64 = 2;
const SEND: u64 = 3;
/// Shutdown and close post a completion only on failure, and a failure changes nothing.
const SHUTDOWN: u64 = 4;
const CLOSE: u64 = 5;

fn tag(kind: u64, fd: RawFd) -> u64 {
    kind << 32 | fd as u32 as u64
}

fn main() -> ExitCode {
    // `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let Some(port) = args.get(1) else {
        check_counting();
        println!("floor: request counting checked; usage: cargo bench --bench floor -- PORT");
        return ExitCode::SUCCESS;
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("floor: {port:?} is not a port");
        return ExitCode::from(2);
    };
    match serve(port) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves 127.0.0.1:`port` until the process is killed; returns only on a start-up error.
fn serve(port: u16) -> Result<std::convert::Infallible, String> {
    raise_descriptor_limit();
    let listener = listen(port).map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    let (mut ring, mode) = new_ring()?;
    let (mut submitter, sq, mut cq) = ring.split();
    // An optimisation only: enters then skip the descriptor look-up.
    let registered = submitter.register_ring_fd().is_ok();
    let mut buffers = BufferRing::new(&submitter)?;
    let block: &'static [u8] = Box::leak(RESPONSE.repeat(COPIES).into_boxed_slice());
    eprintln!(
        "floor: 127.0.0.1:{port}, ring {mode}, registered ring fd {}, multishot accept and \
         receive, {BUFFERS} buffers of {BUFFER_BYTES} B",
        if registered { "yes" } else { "no" }
    );

    let mut queue = Queue { submitter, sq };
    let mut conns: Vec<Conn> = Vec::new();
    let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
        .build()
        .user_data(tag(ACCEPT, listener.as_raw_fd()));
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
            let (kind, fd) = (cqe.user_data() >> 32, cqe.user_data() as u32 as RawFd);
            let (res, flags) = (cqe.result(), cqe.flags());
            match kind {
                ACCEPT => {
                    if res >= 0 {
                        let fd = res as usize;
                        if conns.len() <= fd {
                            conns.resize_with(fd + 1, Conn::default);
                        }
                        conns[fd].arm_receive(res, &mut queue);
                    }
                    if !cqueue::more(flags) {
                        queue.push(&accept);
                    }
                }
                RECEIVE => {
                    let conn = &mut conns[fd as usize];
                    let id = cqueue::buffer_select(flags);
                    let data = match id {
                        Some(id) if res > 0 => buffers.filled(id, res as usize),
                        _ => &[],
                    };
                    conn.received(res, cqueue::more(flags), data);
                    if let Some(id) = id {
                        buffers.give_back(id);
                    }
                    conn.progress(fd, &mut queue, block);
                }
                SEND => {
                    let conn = &mut conns[fd as usize];
                    conn.sent(res);
                    conn.progress(fd, &mut queue, block);
                }
                _ => {}
            }
        }
        buffers.publish();
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

/// A listening socket on 127.0.0.1:`port`; accepted sockets inherit its `TCP_NODELAY`.
fn listen(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    socket.listen(4096)?;
    Ok(socket)
}

/// Lifts the soft limit on descriptors to the hard one (the idle row holds 10,000 sockets).
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

/// The submission side: queues entries, and submits early only when the queue is full.
struct Queue<'a> {
    submitter: Submitter<'a>,
    sq: SubmissionQueue<'a>,
}

impl Queue<'_> {
    /// Queues `entry`. Every buffer it names lives as long as the program (the response
    /// block) or as long as the ring (the provided buffers).
    fn push(&mut self, entry: &squeue::Entry) {
        // SAFETY: see above; descriptors are closed only once nothing is in flight on them.
        while unsafe { self.sq.push(entry) }.is_err() {
            self.sq.sync();
            let _ = self.submitter.submit();
            self.sq.sync();
        }
    }
}

/// One connection, found by its descriptor.
#[derive(Default)]
struct Conn {
    requests: Requests,
    /// Response bytes counted but not yet handed to a send.
    owed: usize,
    /// Bytes of the send in flight (0: none).
    sending: usize,
    /// A multishot receive is armed.
    receiving: bool,
    /// Close once what is owed has been sent (EOF, an error, or an HTTP/1.0 request).
    closing: bool,
    /// A shutdown has been queued to end the receive.
    shut: bool,
}

impl Conn {
    fn arm_receive(&mut self, fd: RawFd, queue: &mut Queue) {
        let receive = opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(tag(RECEIVE, fd));
        queue.push(&receive);
        self.receiving = true;
    }

    /// A receive's completion: `res` bytes in `data`, or 0 at EOF, or an error.
    fn received(&mut self, res: i32, more: bool, data: &[u8]) {
        if !more {
            self.receiving = false;
        }
        if res > 0 && !self.closing {
            let counted = self.requests.count(data);
            self.owed += counted.requests * RESPONSE.len();
            self.closing = counted.close || self.requests.pending() > MAX_HEAD;
        } else if res == 0 {
            self.closing = true;
        } else if res < 0 && res != -libc::ENOBUFS {
            self.closing = true;
            self.owed = 0;
        }
    }

    /// A send's completion: what it did not send is owed again.
    fn sent(&mut self, res: i32) {
        let sending = std::mem::take(&mut self.sending);
        if res < 0 {
            self.closing = true;
            self.owed = 0;
        } else {
            self.owed += sending - res as usize;
        }
    }

    /// Queues what comes next: a send of what is owed, a new receive, or the steps of a close
    /// (a shutdown ends the receive; the close follows when its last completion is in).
    fn progress(&mut self, fd: RawFd, queue: &mut Queue, block: &'static [u8]) {
        if !self.closing && !self.receiving {
            self.arm_receive(fd, queue);
        }
        if self.sending > 0 {
            return;
        }
        if self.owed > 0 {
            // What is owed ends on a response boundary; the first byte owed sits this far
            // into a response.
            let offset = (RESPONSE.len() - self.owed % RESPONSE.len()) % RESPONSE.len();
            let len = self.owed.min(block.len() - offset);
            let send = opcode::Send::new(types::Fd(fd), block[offset..].as_ptr(), len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(tag(SEND, fd));
            queue.push(&send);
            self.owed -= len;
            self.sending = len;
        } else if self.closing && self.receiving {
            if !self.shut {
                let shutdown = opcode::Shutdown::new(types::Fd(fd), libc::SHUT_RDWR)
                    .build()
                    .flags(Flags::SKIP_SUCCESS)
                    .user_data(tag(SHUTDOWN, fd));
                queue.push(&shutdown);
                self.shut = true;
            }
        } else if self.closing {
            let close = opcode::Close::new(types::Fd(fd))
                .build()
                .flags(Flags::SKIP_SUCCESS)
                .user_data(tag(CLOSE, fd));
            queue.push(&close);
            *self = Conn::default();
        }
    }
}

/// Counts the complete requests in a connection's byte stream, keeping the bytes of an
/// unfinished one until its end arrives.
#[derive(Default)]
struct Requests {
    /// The start of a request whose `\r\n\r\n` has not arrived yet (usually empty).
    partial: Vec<u8>,
}

/// What one receive completed.
#[derive(Debug, PartialEq)]
struct Counted {
    requests: usize,
    /// The last request counted asks for the connection to close (HTTP/1.0 without
    /// keep-alive); nothing after it is counted.
    close: bool,
}

impl Requests {
    fn count(&mut self, data: &[u8]) -> Counted {
        if self.partial.is_empty() {
            let (counted, used) = scan(data);
            if !counted.close {
                self.partial.extend_from_slice(&data[used..]);
            }
            return counted;
        }
        self.partial.extend_from_slice(data);
        let (counted, used) = scan(&self.partial);
        if counted.close {
            self.partial.clear();
        } else {
            self.partial.drain(..used);
        }
        counted
    }

    /// Bytes of the unfinished request.
    fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Counts the requests that end in `bytes`; with the number of bytes they span.
fn scan(bytes: &[u8]) -> (Counted, usize) {
    let mut counted = Counted {
        requests: 0,
        close: false,
    };
    let mut start = 0;
    while let Some(end) = find(&bytes[start..], b"\r\n\r\n") {
        let head = &bytes[start..start + end + 4];
        start += end + 4;
        counted.requests += 1;
        if wants_close(head) {
            counted.close = true;
            break;
        }
    }
    (counted, start)
}

/// An HTTP/1.0 request line, and no `keep-alive` in the head.
fn wants_close(head: &[u8]) -> bool {
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    head[..line_end].ends_with(b" HTTP/1.0")
        && find(head, b"eep-alive").is_none()
        && find(head, b"eep-Alive").is_none()
}

/// The offset of `needle` in `haystack` (glibc's `memmem`).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // SAFETY: both pointers and lengths come from live slices; memmem only reads them.
    let at = unsafe {
        libc::memmem(
            haystack.as_ptr().cast(),
            haystack.len(),
            needle.as_ptr().cast(),
            needle.len(),
        )
    };
    (!at.is_null()).then(|| at as usize - haystack.as_ptr() as usize)
}

/// The provided-buffer ring: `BUFFERS` buffers of `BUFFER_BYTES`, in one mapping, and the
/// ring of entries that offers them to the kernel. Both live as long as the program.
struct BufferRing {
    entries: *mut types::BufRingEntry,
    memory: *mut u8,
    /// Our tail: entries written but not yet published to the kernel, up to here.
    tail: u16,
}

impl BufferRing {
    fn new(submitter: &Submitter) -> Result<BufferRing, String> {
        let entries = map(
            BUFFERS as usize * std::mem::size_of::<types::BufRingEntry>(),
            false,
        )?
        .cast();
        // Faulted in now, so the idle row's RSS growth is the connections' own.
        let memory = map(BUFFERS as usize * BUFFER_BYTES, true)?;
        // SAFETY: `entries` is a page-aligned mapping of BUFFERS entries, never unmapped.
        unsafe { submitter.register_buf_ring_with_flags(entries as u64, BUFFERS, GROUP, 0) }
            .map_err(|e| format!("cannot register a provided-buffer ring: {e}"))?;
        let mut ring = BufferRing {
            entries,
            memory,
            tail: 0,
        };
        for id in 0..BUFFERS {
            ring.give_back(id);
        }
        ring.publish();
        Ok(ring)
    }

    /// The first `len` bytes of buffer `id`, which the kernel has just filled.
    fn filled(&self, id: u16, len: usize) -> &[u8] {
        assert!(id < BUFFERS && len <= BUFFER_BYTES);
        // SAFETY: `id` names one of our buffers, and the kernel does not write it again until
        // it has been given back, which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.memory.add(id as usize * BUFFER_BYTES), len) }
    }

    /// Offers buffer `id` to the kernel again (from the next [`BufferRing::publish`]).
    fn give_back(&mut self, id: u16) {
        // SAFETY: the slot at the tail is ours to write until the tail is published.
        let entry = unsafe { &mut *self.entries.add((self.tail & (BUFFERS - 1)) as usize) };
        entry.set_addr(self.memory as u64 + id as u64 * BUFFER_BYTES as u64);
        entry.set_len(BUFFER_BYTES as u32);
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the ring's first entry, shared with the kernel.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

/// A private anonymous mapping of `len` bytes (zeroed, page-aligned), faulted in if `populate`.
fn map(len: usize, populate: bool) -> Result<*mut u8, String> {
    let flags =
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if populate { libc::MAP_POPULATE } else { 0 };
    // SAFETY: a fresh anonymous mapping; no existing memory is touched.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(format!("mmap: {}", io::Error::last_os_error()));
    }
    Ok(at.cast())
}

/// The counting the loop relies on: a pipelined batch cut into three receives at every pair
/// of points (a terminator split over two receives included) counts each request once, and
/// the HTTP/1.0 request without keep-alive closes, with nothing after it counted.
fn check_counting() {
    let keep = b"GET /echo?name=Abcde HTTP/1.1\r\nHost: a\r\n\r\n";
    let ab_k = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n";
    let close = b"GET / HTTP/1.0\r\nHost: a\r\n\r\n";
    let mut batch = Vec::new();
    for part in [&keep[..], ab_k, keep, close, keep] {
        batch.extend_from_slice(part);
    }
    let whole = Counted {
        requests: 4,
        close: true,
    };
    for i in 0..=batch.len() {
        for j in i..=batch.len() {
            let mut requests = Requests::default();
            let mut total = Counted {
                requests: 0,
                close: false,
            };
            for piece in [&batch[..i], &batch[i..j], &batch[j..]] {
                if total.close || piece.is_empty() {
                    continue;
                }
                let counted = requests.count(piece);
                total.requests += counted.requests;
                total.close = counted.close;
            }
            assert_eq!(total, whole, "batch cut at {i} and {j}");
        }
    }
    let mut requests = Requests::default();
    assert_eq!(requests.count(b"GET / HTTP/1.1\r\nHost: a\r\n").requests, 0);
    assert_eq!(requests.count(b"\r\n").requests, 1);
    assert_eq!(requests.pending(), 0);
}
