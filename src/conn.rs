//! A connection's I/O: read, let the session answer, write the batch, repeat.
//!
//! The loop answers everything already buffered before reading again, and writes all the
//! responses of one read with one `write`. It holds a read buffer only while part of a request
//! is buffered and a write buffer only while output is unsent; a connection waiting between
//! requests holds neither: it waits, through glommio's poll, for a one-byte read and takes a
//! buffer from the core's pool only when bytes are there to read. Timeouts are chosen from the
//! session's state: keep-alive between requests, an absolute deadline for a head, an
//! inactivity limit for a body. Protocol decisions belong to `http::session`.
//!
//! A static file's bytes are read here, through glommio's file I/O (io_uring reads, buffered
//! or direct), after the session has written the response head: a small body joins the
//! batch, a larger one goes out in `static.chunk_bytes` steps through a pooled buffer, each
//! read and then written before the next, so that one transfer holds one chunk however large
//! the file.

use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::io::{BufferedFile, DmaFile};
use glommio::net::TcpStream;

use crate::config::Config;
use crate::http::session::{Session, OUTPUT_HIGH_WATER};
use crate::routes::FileBody;
use crate::shard::Shard;

/// After an error response, how long unread client bytes are drained before closing, so the
/// kernel does not answer them with a reset that could destroy the response in flight.
const LINGER: Duration = Duration::from_secs(2);

/// Non-blocking `recv` attempts, one after each round of the core's other connections, before
/// a connection with nothing to read arms a ring poll (see `fill`). Measured with wrk -c 50
/// on one core: 1 try 8.1 µs of core time per request, 4 tries 6.6 µs, 8 tries 5.0 µs,
/// 16 tries 5.0 µs.
const RECV_TRIES: usize = 8;

/// At most this many bytes are drained while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// Why the read loop stopped.
enum Ending {
    /// Close now.
    Close,
    /// The client may still be sending: shut our side, drain a little, then close.
    Linger,
}

struct Connection<'a> {
    stream: TcpStream,
    shard: &'a Shard,
    id: usize,
    session: Session,
    /// Read buffer while it holds unprocessed bytes, `input[start..end]`.
    input: Option<Vec<u8>>,
    start: usize,
    end: usize,
    /// Write buffer while it holds bytes.
    out: Option<Vec<u8>>,
    /// When the first byte of the head now being read arrived.
    head_started: Option<Instant>,
    /// When the last read returned: the start of the latency of what it completes.
    read_at: Instant,
}

/// Serves one accepted connection until it closes.
pub async fn serve(stream: TcpStream, shard: &Shard, id: usize) {
    let http = &shard.config.http;
    let _ = stream.set_write_timeout(Some(Config::millis(http.write_timeout_ms)));
    let session = Session::new(shard.limits, http.max_requests_per_connection);
    let mut conn = Connection {
        stream,
        shard,
        id,
        session,
        input: None,
        start: 0,
        end: 0,
        out: None,
        head_started: None,
        read_at: Instant::now(),
    };
    let ending = conn.run().await.unwrap_or(Ending::Close);
    if let Ending::Linger = ending {
        conn.linger().await;
    }
    conn.release_buffers();
}

impl Connection<'_> {
    async fn run(&mut self) -> io::Result<Ending> {
        loop {
            if self.end > self.start {
                self.answer_buffered().await?;
                if self.session.is_closed() {
                    return Ok(if self.end > self.start {
                        Ending::Linger
                    } else {
                        Ending::Close
                    });
                }
            }
            let between_requests = self.end == self.start && self.session.is_between_requests();
            if between_requests && self.shard.draining.get() {
                return Ok(Ending::Close);
            }
            self.shard.set_idle(self.id, between_requests);
            let read = self.fill().await;
            self.shard.set_idle(self.id, false);
            match read {
                Ok(0) => return Ok(Ending::Close),
                Ok(n) => {
                    self.read_at = Instant::now();
                    self.end += n;
                    self.shard.metrics.counters.borrow_mut().bytes_in += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return self.time_out().await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Lets the session answer what is buffered, writing after each batch.
    async fn answer_buffered(&mut self) -> io::Result<()> {
        loop {
            let input = self
                .input
                .as_ref()
                .expect("bytes buffered without a buffer");
            let out = self
                .out
                .get_or_insert_with(|| self.shard.writes.take_empty());
            let progress = self.session.process(
                &input[self.start..self.end],
                out,
                &mut self.shard.context.borrow_mut(),
                self.shard.draining.get(),
            );
            self.start += progress.consumed;
            if progress.responses > 0 {
                self.head_started = None;
            }
            let mut written = 0;
            if let Some((file, head)) = self.session.take_file() {
                // Boxed: the file's futures (opening, ring reads) would otherwise enlarge
                // every connection's task, idle ones included, by their size.
                written += Box::pin(self.send_file(file, head)).await?;
            }
            written += self.flush().await?;
            self.shard
                .metrics
                .record_batch(&progress, written, self.read_at);
            let more = progress.consumed > 0 && self.start < self.end;
            if !more || self.session.is_closed() {
                break;
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if let Some(buf) = self.input.take() {
                self.shard.reads.give(buf);
            }
        } else if self.start > 0 {
            let input = self
                .input
                .as_mut()
                .expect("bytes buffered without a buffer");
            input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end > 0 && self.head_started.is_none() && !self.session.is_reading_body() {
            self.head_started = Some(Instant::now());
        }
        Ok(())
    }

    /// Writes the committed part of the output buffer; returns the bytes written.
    async fn flush(&mut self) -> io::Result<usize> {
        let Some(out) = self.out.as_mut() else {
            return Ok(0);
        };
        let ready = self.session.committed(out);
        if ready > 0 {
            self.stream.write_all(&out[..ready]).await?;
            out.drain(..ready);
            self.session.output_drained(ready);
        }
        if out.is_empty() {
            let out = self.out.take().expect("checked above");
            self.shard.writes.give(out);
        }
        Ok(ready)
    }

    /// Sends a file body after the head in the output buffer (which starts at `head`);
    /// returns the bytes written (a body small enough to join the batch is left in the buffer
    /// for `flush`). A small body that cannot be read is answered with a 500 instead; an
    /// error after the head has gone out ends the connection, as the client could not tell
    /// a short body from a slow one otherwise.
    async fn send_file(&mut self, body: FileBody, head: usize) -> io::Result<usize> {
        let chunk = self.shard.config.files.chunk_bytes as u64;
        let file = FileSource::open(body.fd, body.direct).await;
        let end = body.offset + body.len;
        // A body that fits a write buffer joins the batch; a larger one is streamed.
        let result = if body.len <= chunk.min(OUTPUT_HIGH_WATER as u64) {
            let out = self
                .out
                .get_or_insert_with(|| self.shard.writes.take_empty());
            let start = out.len();
            match file.read_into(body.offset, body.len as usize, out).await {
                Ok(()) => {
                    if let Some(fill) = body.fill {
                        if let Some(files) = self.shard.context.borrow_mut().files.as_mut() {
                            files.fill_cache(*fill, &out[start..]);
                        }
                    }
                }
                // Nothing of this response has gone out yet: a 500 takes its place after
                // the responses before it, and the connection closes.
                Err(_) => self.session.fail_file(out, head),
            }
            Ok(0)
        } else {
            self.stream_file(&file, body.offset, end, chunk).await
        };
        file.close().await;
        result
    }

    /// Writes the head, then `file[pos..end]` one chunk at a time through a pooled buffer.
    async fn stream_file(
        &mut self,
        file: &FileSource,
        mut pos: u64,
        end: u64,
        chunk: u64,
    ) -> io::Result<usize> {
        let mut written = self.flush().await?;
        let mut buf = self.shard.chunks.take_empty();
        let result = async {
            while pos < end {
                let want = chunk.min(end - pos) as usize;
                file.read_into(pos, want, &mut buf).await?;
                self.stream.write_all(&buf).await?;
                pos += want as u64;
                written += want;
                buf.clear();
            }
            Ok(written)
        }
        .await;
        self.shard.chunks.give(buf);
        result
    }

    /// Reads more bytes after `input[..end]`, with the timeout the session's state calls for.
    ///
    /// First a non-blocking `recv`, after letting the core's other tasks run: under load the
    /// next request is usually there by then, and one system call is all it costs. While other
    /// connections are at work (not waiting in the ring), it tries again after each round of
    /// theirs, up to [`RECV_TRIES`] times, rather than arming a ring poll at once: a poll that
    /// fires while the core is busy interrupts it (the kernel signals the thread to run the
    /// completion) and costs more than the `recv` calls that found nothing. Only then does
    /// the connection wait, through the ring, for a single byte: a one-byte read needs no
    /// buffer from the pool while it waits, and glommio waits for it with a poll that
    /// allocates nothing either.
    async fn fill(&mut self) -> io::Result<usize> {
        let timeout = self.read_timeout();
        if timeout.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let end = self.end;
        if self.input.as_ref().is_some_and(|buf| end == buf.len()) {
            // A full buffer the session could not use: only possible with limits larger than
            // the buffer, which `read_buffer_size` rules out.
            return Err(io::ErrorKind::InvalidData.into());
        }
        // With no other connection at work, more tries would only spin: one, then the ring.
        let busy = self.shard.open_connections() - self.shard.parked.get();
        let tries = busy.clamp(1, RECV_TRIES);
        for _ in 0..tries {
            futures_lite::future::yield_now().await;
            if let Some(n) = self.try_recv(end)? {
                return Ok(n);
            }
        }
        if end == 0 {
            if let Some(buf) = self.input.take() {
                self.shard.reads.give(buf);
            }
        }
        self.stream.set_read_timeout(Some(timeout))?;
        let mut first = [0u8; 1];
        let parked = Parked::new(self.shard);
        let read = self.stream.read(&mut first).await;
        drop(parked);
        if read? == 0 {
            return Ok(0);
        }
        let buf = self.input.get_or_insert_with(|| self.shard.reads.take());
        buf[end] = first[0];
        if end + 1 == buf.len() {
            return Ok(1);
        }
        Ok(1 + self.try_recv(end + 1)?.unwrap_or(0))
    }

    /// A non-blocking `recv` into the read buffer at `at`; `None` when nothing is waiting.
    fn try_recv(&mut self, at: usize) -> io::Result<Option<usize>> {
        let fd = self.stream.as_raw_fd();
        let buf = self.input.get_or_insert_with(|| self.shard.reads.take());
        let spare = &mut buf[at..];
        loop {
            // SAFETY: `spare` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    fd,
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(error),
            }
        }
    }

    fn read_timeout(&self) -> Duration {
        let http = &self.shard.config.http;
        if self.session.is_reading_body() {
            return Config::millis(http.body_timeout_ms);
        }
        match self.head_started {
            Some(started) => {
                Config::millis(http.header_timeout_ms).saturating_sub(started.elapsed())
            }
            None => Config::millis(http.keepalive_timeout_ms),
        }
    }

    /// The head or body did not arrive in time: 408 if a request was under way, then close.
    async fn time_out(&mut self) -> io::Result<Ending> {
        let out = self
            .out
            .get_or_insert_with(|| self.shard.writes.take_empty());
        if self.session.time_out(out, self.end > self.start) {
            {
                let mut counters = self.shard.metrics.counters.borrow_mut();
                counters.by_class[4] += 1;
                counters.protocol_errors += 1;
            }
            self.flush().await?;
            return Ok(Ending::Linger);
        }
        Ok(Ending::Close)
    }

    /// Half-closes, then reads and discards what the client still sends, for a while.
    async fn linger(&mut self) {
        if self.stream.shutdown(Shutdown::Write).await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        // The sink is a pooled buffer: an array here would enlarge every connection's task.
        let mut sink = self.input.take().unwrap_or_else(|| self.shard.reads.take());
        while drained < LINGER_BYTES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
        self.shard.reads.give(sink);
    }

    fn release_buffers(&mut self) {
        if let Some(buf) = self.input.take() {
            self.shard.reads.give(buf);
        }
        if let Some(buf) = self.out.take() {
            self.shard.writes.give(buf);
        }
    }
}

/// A file opened for glommio: buffered reads through the page cache, or direct I/O.
enum FileSource {
    Buffered(BufferedFile),
    Direct(DmaFile),
}

impl FileSource {
    /// Takes over `fd`. Direct I/O opens the same file again through `/proc/self/fd` (glommio
    /// sets it up itself); where that fails, the file is read buffered.
    async fn open(fd: std::os::fd::OwnedFd, direct: bool) -> FileSource {
        use std::os::fd::{FromRawFd, IntoRawFd};
        if direct {
            let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
            if let Ok(file) = DmaFile::open(&path).await {
                return FileSource::Direct(file);
            }
        }
        // SAFETY: the descriptor is ours and handed over whole.
        FileSource::Buffered(unsafe { BufferedFile::from_raw_fd(fd.into_raw_fd()) })
    }

    /// Appends `file[pos..pos + len]` to `out`; end of file before that is an error, since
    /// the response head already promised the bytes.
    ///
    /// Bytes already in the page cache are copied at once with `preadv2(RWF_NOWAIT)`, which
    /// never waits for the disk, into `out`, a pooled buffer; only what would have to wait
    /// goes through the ring. A ring read returns a buffer of its own, freshly allocated per
    /// read, and at tens of concurrent transfers their page faults cost more than the copy.
    async fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        out.reserve(len);
        let mut done = 0;
        while done < len {
            let at = pos + done as u64;
            if let FileSource::Buffered(file) = self {
                match read_cached(file.as_raw_fd(), at, len - done, out) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        done += n;
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            let data = match self {
                FileSource::Buffered(file) => file.read_at(at, len - done).await,
                FileSource::Direct(file) => file.read_at(at, len - done).await,
            }
            .map_err(io::Error::from)?;
            if data.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = data.len().min(len - done);
            out.extend_from_slice(&data[..take]);
            done += take;
        }
        Ok(())
    }

    async fn close(self) {
        let _ = match self {
            FileSource::Buffered(file) => file.close().await,
            FileSource::Direct(file) => file.close().await,
        };
    }
}

/// `preadv2(fd, …, pos, RWF_NOWAIT)` into the spare capacity of `out` (at most `len` bytes):
/// `WouldBlock` when the bytes are not all in the page cache.
fn read_cached(
    fd: std::os::fd::RawFd,
    pos: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    let spare = &mut out.spare_capacity_mut()[..len];
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    loop {
        // SAFETY: `iov` describes writable memory owned by `out`; the kernel writes at most
        // its length, and only the bytes it reports are marked initialised below.
        let n = unsafe { libc::preadv2(fd, &iov, 1, pos as libc::off_t, libc::RWF_NOWAIT) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel initialised these `n` bytes of spare capacity.
            unsafe { out.set_len(out.len() + n) };
            return Ok(n);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Not every file system takes RWF_NOWAIT: the ring reads those.
            Some(libc::EOPNOTSUPP) => return Err(io::ErrorKind::WouldBlock.into()),
            _ => return Err(error),
        }
    }
}

/// Counts a connection as waiting in the ring for as long as it lives.
struct Parked<'a>(&'a Shard);

impl<'a> Parked<'a> {
    fn new(shard: &'a Shard) -> Parked<'a> {
        shard.parked.set(shard.parked.get() + 1);
        Parked(shard)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.parked.set(self.0.parked.get() - 1);
    }
}
