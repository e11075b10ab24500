//! Raw connections for handlers: a byte stream to a server of an `[[upstream]]`, on the
//! core's own ring, for any protocol a runtime-agnostic client speaks (Redis, PostgreSQL,
//! memcached, …): [`UpstreamStream`] is `futures-io`'s `AsyncRead` and `AsyncWrite`.
//!
//! ```no_run
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//! use percore::{App, Reply, Status, Upstream};
//!
//! struct State {
//!     redis: Upstream,
//! }
//!
//! let app = App::new(|setup| Ok(State { redis: setup.upstream("redis")? }))
//!     .get_async("/ping", |_request, state| async move {
//!         let answer = async {
//!             let mut redis = state.redis.connect().await?;
//!             redis.write_all(b"PING\r\n").await?;
//!             let mut line = [0u8; 7];
//!             redis.read_exact(&mut line).await?;
//!             Ok::<_, std::io::Error>(line)
//!         };
//!         match answer.await {
//!             Ok(line) => Reply::bytes(line.to_vec()),
//!             Err(_) => Reply::status(Status::BAD_GATEWAY),
//!         }
//!     });
//! ```

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::engine::{Outbound, StreamSlot, STREAM_HIGH_WATER};

/// A raw connection to an upstream server, made by [`crate::Upstream::connect`]. Reads
/// return what the server sent (0 at its close); writes are queued (up to 64 KiB, then they
/// wait) and sent by the core's loop; `close` sends what is queued, then the end. Dropping
/// it closes the connection. It belongs to its core (it is not `Send`), and has no timeout
/// of its own: wrap reads in one (e.g. `glommio::timer::timeout`) as the protocol needs.
pub struct UpstreamStream {
    slot: Rc<StreamSlot>,
    door: Outbound,
}

impl std::fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStream").finish_non_exhaustive()
    }
}

impl UpstreamStream {
    /// Asks the core's loop for a connection to a server of upstream `index`, and waits
    /// (at most `limit`) until it is open.
    pub(crate) async fn open(
        door: Outbound,
        index: usize,
        limit: std::time::Duration,
    ) -> io::Result<UpstreamStream> {
        let stream = UpstreamStream {
            slot: door.open_stream(index),
            door,
        };
        let connected = std::future::poll_fn(|cx| {
            let mut state = stream.slot.0.borrow_mut();
            match state.connected {
                Some(Ok(())) => Poll::Ready(Ok(())),
                Some(Err(kind)) => Poll::Ready(Err(io::Error::from(kind))),
                None => {
                    state.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        let timer = async move {
            glommio::timer::sleep(limit).await;
            Err(io::Error::from(io::ErrorKind::TimedOut))
        };
        futures_lite::future::or(connected, timer).await?;
        Ok(stream)
    }

    /// The error a failed stream gives, if it failed.
    fn failed(&self) -> Option<io::Error> {
        let state = self.slot.0.borrow();
        match state.connected {
            Some(Err(kind)) => Some(kind.into()),
            _ => state.error.map(io::Error::from),
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut state = this.slot.0.borrow_mut();
        if !state.input.is_empty() {
            let n = buf.len().min(state.input.len());
            buf[..n].copy_from_slice(&state.input[..n]);
            state.input.drain(..n);
            let room = state.paused && state.input.len() < STREAM_HIGH_WATER / 2;
            drop(state);
            if room {
                this.door.stir(&this.slot);
            }
            return Poll::Ready(Ok(n));
        }
        if state.eof {
            return Poll::Ready(Ok(0));
        }
        drop(state);
        if let Some(error) = this.failed() {
            return Poll::Ready(Err(error));
        }
        this.slot.0.borrow_mut().reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.failed() {
            return Poll::Ready(Err(error));
        }
        let mut state = this.slot.0.borrow_mut();
        if state.shut {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = STREAM_HIGH_WATER.saturating_sub(state.output.len());
        if room == 0 {
            state.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(room);
        state.output.extend_from_slice(&buf[..n]);
        drop(state);
        this.door.stir(&this.slot);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.failed() {
            return Poll::Ready(Err(error));
        }
        let mut state = this.slot.0.borrow_mut();
        if state.output.is_empty() && !state.sending {
            return Poll::Ready(Ok(()));
        }
        state.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.failed() {
            return Poll::Ready(Err(error));
        }
        let mut state = this.slot.0.borrow_mut();
        if state.shut_done {
            return Poll::Ready(Ok(()));
        }
        state.shut = true;
        state.writer = Some(cx.waker().clone());
        drop(state);
        this.door.stir(&this.slot);
        Poll::Pending
    }
}

impl Drop for UpstreamStream {
    fn drop(&mut self) {
        self.slot.0.borrow_mut().dropped = true;
        self.door.stir(&self.slot);
    }
}
