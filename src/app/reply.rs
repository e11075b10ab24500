//! What an async handler answers with: [`Reply`], owned, since it is made after the
//! request's buffers have gone back, and checked as [`crate::Response`] checks. Its body
//! is whole, or written over time by a producer (`body`).

use std::future::Future;

use super::body::{BodySender, Producer};
use super::compress::{Choice, Compressor, Traits, VARY};
use super::events::{self, EventSender};
use super::response::{check_field, check_text, HeaderError};
use super::BoxError;
use crate::engine::OutflowSlot;
use crate::http::coding::Ranked;
use crate::http::response::{OwnFields, ResponseWriter, TEXT_PLAIN};
use crate::http::status::Status;

/// The answer of an async handler: status, checked header fields, body.
///
/// ```
/// # use percore::{Reply, Status};
/// let reply = Reply::text("done\n").header("Cache-Control", "no-store").unwrap();
/// let missing = Reply::status(Status::NOT_FOUND);
/// assert!(Reply::new().header("X-Bad", "a\nb").is_err());
/// ```
#[derive(Default)]
pub struct Reply {
    status: Option<Status>,
    reason: Option<String>,
    fields: Vec<(String, String)>,
    own: OwnFields,
    body: Vec<u8>,
    close: bool,
    /// Not to be compressed: `Content-Encoding` was set, or the handler opted out.
    exempt: bool,
    producer: Option<Producer>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("fields", &self.fields)
            .field("body", &self.body.len())
            .field("streamed", &self.producer.is_some())
            .finish()
    }
}

impl Reply {
    /// An empty 200.
    pub fn new() -> Reply {
        Reply::default()
    }

    /// An empty response with `status` (see [`Reply::with_status`]).
    pub fn status(status: Status) -> Reply {
        Reply::new().with_status(status)
    }

    /// A 200 with a text body (`text/plain; charset=utf-8`).
    pub fn text(text: impl Into<String>) -> Reply {
        let mut reply = Reply::new();
        reply
            .fields
            .push(("Content-Type".into(), TEXT_PLAIN.into()));
        reply.body = text.into().into_bytes();
        reply
    }

    /// A 200 with `body`.
    pub fn bytes(body: impl Into<Vec<u8>>) -> Reply {
        Reply::new().with_body(body)
    }

    /// Sets the final status (200 unless set). An interim (1xx) status is not a final one: a
    /// reply with one is answered as a failed handler's, a 500 that closes the connection.
    pub fn with_status(mut self, status: Status) -> Reply {
        self.status = Some(status);
        self
    }

    /// Replaces the registered reason phrase (checked like a field value).
    pub fn with_reason(mut self, reason: &str) -> Result<Reply, HeaderError> {
        check_text(reason)?;
        self.reason = Some(reason.into());
        Ok(self)
    }

    /// Adds a header field, checked as [`crate::Response::header`] checks it.
    pub fn header(mut self, name: &str, value: &str) -> Result<Reply, HeaderError> {
        let own = check_field(name, value)?;
        self.exempt |= name.eq_ignore_ascii_case("content-encoding");
        self.own.server |= own.server;
        self.own.date |= own.date;
        if name.eq_ignore_ascii_case("content-type") {
            self.fields
                .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        }
        self.fields
            .push((name.into(), value.trim_matches([' ', '\t']).into()));
        Ok(self)
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// A 200 whose body `producer` writes over time, after the head has gone out: it is
    /// called once with a [`BodySender`] and runs as a task on the core. The body is sent
    /// chunked (to an HTTP/1.0 client, as it comes, the connection closing at its end);
    /// it ends when the producer returns `Ok`, and is cut short (no last chunk) when it
    /// returns an error or panics. Requests pipelined behind it wait for it.
    ///
    /// ```
    /// # use percore::Reply;
    /// let reply = Reply::stream(|mut body| async move {
    ///     for i in 0..3 {
    ///         body.send(format!("line {i}\n")).await?;
    ///     }
    ///     body.trailer("X-Lines", "3")?;
    ///     Ok(())
    /// })
    /// .header("Content-Type", "text/plain")
    /// .unwrap();
    /// # drop(reply);
    /// ```
    pub fn stream<F, Fut>(producer: F) -> Reply
    where
        F: FnOnce(BodySender) -> Fut + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        let mut reply = Reply::new();
        reply.producer = Some(Box::new(move |sender| Box::pin(producer(sender))));
        reply
    }

    /// A 200 event stream (`text/event-stream`, not to be cached) whose events `producer`
    /// sends over time, as [`Reply::stream`] runs it; a keep-alive comment goes out each
    /// time the stream has been quiet for 15 s (see [`EventSender::keep_alive`]).
    ///
    /// ```
    /// # use percore::{Event, Reply};
    /// let reply = Reply::events(|mut events| async move {
    ///     events.send(&Event::new("hello").id("1")?).await?;
    ///     Ok(())
    /// });
    /// # drop(reply);
    /// ```
    pub fn events<F, Fut>(producer: F) -> Reply
    where
        F: FnOnce(EventSender) -> Fut + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        let mut reply = Reply::stream(move |body| events::produce(body, producer));
        reply.fields.extend([
            ("Content-Type".into(), "text/event-stream".into()),
            ("Cache-Control".into(), "no-cache".into()),
        ]);
        reply
    }

    /// The producer of a streamed body, taken out to be started.
    pub(crate) fn take_producer(&mut self) -> Option<Producer> {
        self.producer.take()
    }

    /// Sends the body as it is, whatever the request accepts (see
    /// [`crate::Response::no_compression`]: pages that mix secrets with reflected input, over
    /// TLS).
    pub fn no_compression(mut self) -> Reply {
        self.exempt = true;
        self
    }

    /// Closes the connection after this response.
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    /// Writes it as the deferred response `writer` stands for, its body compressed as
    /// `compressor` chooses for a request that accepts `ranked`; a streamed body's head says
    /// how the body will go out (`body`, its producer's, learns whether it is chunked,
    /// whether it is wanted at all, and its coder).
    pub(crate) fn write(
        &self,
        writer: &mut ResponseWriter,
        body: Option<&OutflowSlot>,
        compressor: &mut Compressor,
        ranked: Ranked,
    ) {
        let status = self.status.unwrap_or(Status::OK);
        if status.is_interim() {
            writer.fail();
            return;
        }
        if self.close {
            writer.close();
        }
        writer.own(self.own);
        for (name, value) in &self.fields {
            writer.stage_field(name, value);
        }
        let reason = self.reason.as_deref().map(str::as_bytes);
        let content_type = self
            .fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.as_str());
        let traits = Traits {
            status,
            content_type,
            exempt: self.exempt,
            len: body.is_none().then_some(self.body.len()),
        };
        let choice = compressor.choose(traits, writer.head_only(), || ranked);
        if let Some(body) = body {
            let coder = match choice {
                Choice::Coded(coding) => compressor.stream_coder(coding).map(|c| (coding, c)),
                _ => None,
            };
            if let Some((coding, _)) = &coder {
                writer.stage_field("Content-Encoding", coding.token());
            }
            if choice != Choice::Untouched {
                writer.stage_field(VARY.0, VARY.1);
            }
            let chunked = writer.send_head_unsized(status, reason);
            let mut state = body.0.borrow_mut();
            state.chunked = chunked;
            state.wanted = writer.body_wanted();
            if let Some((coding, coder)) = coder.filter(|_| state.wanted) {
                state.coder = Some(coder);
                writer.mark_coded(coding.token(), 0);
            }
            return;
        }
        compressor.send_whole(writer, choice, (status, reason, None), &self.body);
    }
}
