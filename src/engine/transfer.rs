//! A static file's body on its way out, after the head the application wrote.
//!
//! A small body (up to a chunk, and within the output's high-water mark) joins the batch:
//! it is read into the output buffer behind its head. A larger one is sent a chunk at a
//! time from a pooled chunk buffer, each chunk read and sent before the next is read, so one
//! transfer holds one chunk however large the file. Bytes in the page cache are copied at
//! once; what would wait for the disk is read by a glommio task, which posts its result
//! back to the loop (`FileDone`). A file that fails to read after its head went out ends the
//! connection (the client could not tell a short body from a slow one); a small body's head
//! not yet sent is replaced by a 500 instead.

use std::io;
use std::os::fd::AsRawFd;

use super::background::{DeferredLog, FileDone};
use super::conn::{Conn, Deferring, Transfer};
use super::connections::Connections;
use super::turn::Turn;
use super::Application;
use crate::files::read::{read_cached, read_slow};
use crate::files::FileBody;
use crate::http::session::OUTPUT_HIGH_WATER;
use crate::http::status::Status;

impl<A: Application> Connections<A> {
    /// Starts sending `body` behind the head written at `head` in the output buffer.
    /// `log`: the access log's line, for a body coded as it goes (its length known at the
    /// end).
    pub(super) fn start_transfer(
        &mut self,
        conn: &mut Conn,
        body: Box<FileBody>,
        head: usize,
        log: Option<Box<DeferredLog>>,
    ) {
        // A coded body goes chunk by chunk whatever its length: its coder frames each chunk.
        let small = body.coder.is_none()
            && body.len <= self.settings.chunk_bytes.min(OUTPUT_HIGH_WATER as u64);
        let transfer = Box::new(Transfer {
            pos: body.offset,
            end: body.offset + body.len,
            small,
            head,
            start: conn.out.len(),
            body,
            source: None,
            reading: false,
            log: log.map(|line| (line, (conn.out.len() - head) as u64)),
        });
        conn.deferring = Deferring::File(transfer);
        if small {
            self.read_small(conn);
        }
    }

    fn transfer(conn: &mut Conn) -> &mut Transfer {
        match &mut conn.deferring {
            Deferring::File(transfer) => transfer,
            _ => unreachable!("the connection has a transfer"),
        }
    }

    /// Reads a small body into the output buffer: at once from the page cache, through a
    /// glommio task for what would wait.
    fn read_small(&mut self, conn: &mut Conn) {
        let Deferring::File(transfer) = &mut conn.deferring else {
            return;
        };
        if !transfer.body.direct {
            let want = (transfer.end - transfer.pos) as usize;
            let fd = transfer.body.fd.as_raw_fd();
            match read_cached(fd, transfer.pos, want, &mut conn.out) {
                Ok(n) if n == want => return self.small_read_done(conn, Ok(())),
                Ok(n) => transfer.pos += n as u64,
                Err(e) => return self.small_read_done(conn, Err(e)),
            }
        }
        let buf = self.buffers.chunks.take();
        self.spawn_read(conn, buf);
    }

    /// The small body's bytes are all in the output buffer (or could not be read).
    fn small_read_done(&mut self, conn: &mut Conn, result: io::Result<()>) {
        let Deferring::File(mut transfer) =
            std::mem::replace(&mut conn.deferring, Deferring::Nothing)
        else {
            return;
        };
        match result {
            Ok(()) => transfer.body.fill_cache(&conn.out[transfer.start..]),
            // Nothing of this response has gone out yet: a 500 takes its place after the
            // responses before it, and the connection closes.
            Err(_) => conn.session.fail_file(&mut conn.out, transfer.head),
        }
    }

    /// Sends the next chunk of a large body, or ends the transfer when all went out.
    pub(super) fn next_chunk(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let chunk_bytes = self.settings.chunk_bytes;
        let transfer = Self::transfer(conn);
        if transfer.pos >= transfer.end {
            Self::log_transfer(turn, transfer);
            conn.deferring = Deferring::Nothing;
            self.pump(turn, conn, &[]);
            self.flush(turn, conn);
            return;
        }
        let want = (transfer.end - transfer.pos).min(chunk_bytes);
        let mut buf = self.buffers.chunks.take();
        if !transfer.body.direct {
            let fd = transfer.body.fd.as_raw_fd();
            match read_cached(fd, transfer.pos, want as usize, &mut buf) {
                Ok(n) if n == want as usize => {
                    transfer.pos += want;
                    return self.send_file_chunk(turn, conn, buf);
                }
                Ok(_) => {}
                Err(_) => {
                    // The head promised bytes that cannot be read: the client could not tell
                    // a short body from a slow one, so the connection ends.
                    self.buffers.chunks.give(buf);
                    return conn.cut();
                }
            }
        }
        self.spawn_read(conn, buf);
    }

    /// Writes a coded transfer's access log line (once): its head and the coded bytes made.
    fn log_transfer(turn: &mut Turn<'_>, transfer: &mut Transfer) {
        let (Some((line, head)), Some(coder)) = (transfer.log.take(), &transfer.body.coder) else {
            return;
        };
        if let Some(log) = turn.reporting.log.as_mut() {
            line.record(log, Status::OK, head + coder.made(), None);
        }
    }

    /// The connection ends with a coded transfer under way: its line says what was sent.
    pub(super) fn transfer_abandoned(turn: &mut Turn<'_>, conn: &mut Conn) {
        if let Deferring::File(transfer) = &mut conn.deferring {
            Self::log_transfer(turn, transfer);
        }
    }

    /// Hands the rest of the current read (`buf` holds what is already read) to a glommio
    /// task.
    fn spawn_read(&mut self, conn: &mut Conn, buf: Vec<u8>) {
        let chunk_bytes = self.settings.chunk_bytes;
        let transfer = Self::transfer(conn);
        let len = if transfer.small {
            (transfer.end - transfer.pos) as usize
        } else {
            (transfer.end - transfer.pos).min(chunk_bytes) as usize - buf.len()
        };
        let pos = transfer.pos + if transfer.small { 0 } else { buf.len() as u64 };
        let fd = match transfer.source {
            Some(_) => None,
            None => match transfer.body.fd.try_clone() {
                Ok(fd) => Some(fd),
                Err(e) => {
                    let small = transfer.small;
                    self.buffers.chunks.give(buf);
                    return match small {
                        true => self.small_read_done(conn, Err(e)),
                        false => conn.cut(),
                    };
                }
            },
        };
        transfer.reading = true;
        let source = transfer.source.clone();
        let direct = transfer.body.direct;
        let key = conn.key;
        let read = async move {
            let (source, buf, result) = read_slow(source, fd, direct, pos, len, buf).await;
            FileDone {
                key,
                source,
                buf,
                result,
            }
        };
        self.background.read_file(read);
    }

    /// Takes the results of file reads done by glommio tasks; true if there were any.
    pub(super) fn finish_file_reads(&mut self, turn: &mut Turn<'_>) -> bool {
        let done = self.background.take_file_reads();
        if done.is_empty() {
            return false;
        }
        for read in done {
            let Some(mut conn) = self.table.take(read.key) else {
                self.buffers.chunks.give(read.buf);
                continue;
            };
            self.file_read(turn, &mut conn, read);
            self.settle(turn, conn);
        }
        true
    }

    fn file_read(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, read: FileDone) {
        let Deferring::File(transfer) = &mut conn.deferring else {
            self.buffers.chunks.give(read.buf);
            return;
        };
        transfer.reading = false;
        if transfer.source.is_none() {
            transfer.source = read.source;
        }
        if transfer.small {
            if read.result.is_ok() {
                conn.out.extend_from_slice(&read.buf);
            }
            self.buffers.chunks.give(read.buf);
            self.small_read_done(conn, read.result);
            self.pump(turn, conn, &[]);
            self.flush(turn, conn);
            return;
        }
        if read.result.is_err() {
            self.buffers.chunks.give(read.buf);
            return conn.cut();
        }
        transfer.pos += read.buf.len() as u64;
        self.send_file_chunk(turn, conn, read.buf);
    }

    /// Sends a chunk of the file just read, coded first when the body is coded as it goes
    /// (its last chunk ending the coded stream).
    fn send_file_chunk(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, buf: Vec<u8>) {
        let transfer = Self::transfer(conn);
        let last = transfer.pos >= transfer.end;
        let Some(coder) = transfer.body.coder.as_mut() else {
            return self.send_chunk(turn, conn, buf);
        };
        let mut coded = self.buffers.chunks.take();
        let done = coder.code(&buf, last, &mut coded);
        self.buffers.chunks.give(buf);
        if !done {
            // The head promised a body that cannot be finished: the client must not take
            // what came for the whole of it.
            self.buffers.chunks.give(coded);
            return conn.cut();
        }
        if coded.is_empty() {
            // Nothing to send yet for this chunk (a coder holding its bytes): read the next.
            self.buffers.chunks.give(coded);
            return self.next_chunk(turn, conn);
        }
        self.send_chunk(turn, conn, coded);
    }
}
