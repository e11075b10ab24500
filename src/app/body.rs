//! Response bodies written over time: [`BodySender`], what a streamed [`crate::Reply`]'s
//! producer writes with. The producer runs as a glommio task on the core once the handler
//! has returned its reply; the engine sends each write as it comes (a chunk, or raw bytes to
//! an HTTP/1.0 client whose connection closes at the end), and a write waits while the
//! client is behind, so a slow reader holds the producer, not the core's memory.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::FutureExt;

use super::response::{check_field, HeaderError};
use super::BoxError;
use crate::engine::{OutflowEnd, OutflowSlot, OUTFLOW_HIGH_WATER};

/// Why a streamed body takes no more bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyClosed {
    /// The client is gone: it closed the connection, stopped reading past the write
    /// timeout, or the core is leaving (the drain's deadline).
    Gone,
    /// The response has no body: the request was a `HEAD`, or the status is 204 or 304.
    NoBody,
}

impl std::fmt::Display for BodyClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyClosed::Gone => "the client is gone",
            BodyClosed::NoBody => "the response has no body",
        })
    }
}

impl std::error::Error for BodyClosed {}

/// The writing side of a streamed response body (see [`crate::Reply::stream`]).
///
/// Each [`send`](BodySender::send) is handed to the connection at the core's next turn;
/// it waits while 64 KiB are pending, so a producer runs only as fast as its client
/// reads. The body ends when the producer returns `Ok`; an `Err` (or a panic) cuts the
/// response short, which the client can tell (no last chunk).
pub struct BodySender {
    slot: Rc<OutflowSlot>,
}

impl std::fmt::Debug for BodySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySender")
            .field("queued", &self.queued())
            .finish()
    }
}

impl BodySender {
    /// Sends `bytes` as the body's next part, once the head has gone out and fewer than
    /// 64 KiB wait to go out. Fails when nobody takes the body any more.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) -> Result<(), BodyClosed> {
        self.ready().await?;
        let bytes = bytes.as_ref();
        if !bytes.is_empty() {
            self.slot.0.borrow_mut().push(bytes);
            self.slot.stir();
        }
        Ok(())
    }

    /// Waits until fewer than 64 KiB wait to go out (at once if so), or fails when nobody
    /// takes the body any more.
    pub async fn ready(&mut self) -> Result<(), BodyClosed> {
        Room(&self.slot).await
    }

    /// A second sender on the same body (for a keep-alive beside the producer).
    pub(crate) fn alias(&self) -> BodySender {
        BodySender {
            slot: self.slot.clone(),
        }
    }

    /// Bytes written and not yet taken by the connection.
    pub fn queued(&self) -> usize {
        self.slot.0.borrow().pending.len()
    }

    /// Whether the body can still be sent (the client is there, the response has one).
    pub fn is_open(&self) -> bool {
        self.slot.0.borrow().ended.is_none()
    }

    /// Adds a trailer field, sent after the last chunk (checked as a header field is; an
    /// HTTP/1.0 client gets no trailer). Fields that frame, route or authenticate a message
    /// (`Content-Length`, `Host`, `Authorization`, …) are not allowed in a trailer (RFC
    /// 9110 §6.5.1) and are refused.
    pub fn trailer(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        check_field(name, value)?;
        if crate::http::upstream_head::NOT_IN_TRAILER
            .iter()
            .any(|refused| name.as_bytes().eq_ignore_ascii_case(refused))
        {
            return Err(HeaderError::Reserved);
        }
        let value = value.trim_matches([' ', '\t']).to_owned();
        self.slot
            .0
            .borrow_mut()
            .trailers
            .push((name.to_owned(), value));
        Ok(())
    }
}

/// Waits for room in a body's pending bytes.
struct Room<'a>(&'a Rc<OutflowSlot>);

impl Future for Room<'_> {
    type Output = Result<(), BodyClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0 .0.borrow_mut();
        match state.ended {
            Some(OutflowEnd::Gone) => return Poll::Ready(Err(BodyClosed::Gone)),
            Some(OutflowEnd::NoBody) => return Poll::Ready(Err(BodyClosed::NoBody)),
            None => {}
        }
        if state.started && state.pending.len() < OUTFLOW_HIGH_WATER {
            return Poll::Ready(Ok(()));
        }
        state.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// What makes a streamed body: called once with the sender, after the head is written.
pub(crate) type Producer =
    Box<dyn FnOnce(BodySender) -> Pin<Box<dyn Future<Output = Result<(), BoxError>>>>>;

/// Starts `producer` as a glommio task on this core, writing into a new body; returns the
/// body for the engine. When the producer returns, the body is finished (`Ok`) or cut
/// short (an error, a panic).
pub(crate) fn start(producer: Producer) -> Rc<OutflowSlot> {
    let slot = Rc::new(OutflowSlot::default());
    let sender = BodySender { slot: slot.clone() };
    let body = slot.clone();
    glommio::spawn_local(async move {
        let outcome = std::panic::AssertUnwindSafe(producer(sender))
            .catch_unwind()
            .await;
        let mut state = body.0.borrow_mut();
        match outcome {
            Ok(Ok(())) => state.finished = true,
            _ => state.failed = true,
        }
        drop(state);
        body.stir();
        body.producer_done();
    })
    .detach();
    slot
}
