//! What an async handler answers with: [`Reply`], owned, since it is made after the
//! request's buffers have gone back, and checked as [`crate::Response`] checks.

use super::response::{check_field, check_text, HeaderError};
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
#[derive(Clone, Debug, Default)]
pub struct Reply {
    status: Option<Status>,
    reason: Option<String>,
    fields: Vec<(String, String)>,
    own: OwnFields,
    body: Vec<u8>,
    close: bool,
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

    /// Closes the connection after this response.
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    /// Writes it as the deferred response `writer` stands for.
    pub(crate) fn write(&self, writer: &mut ResponseWriter) {
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
        writer.send_head_as(status, reason, None, &[], self.body.len() as u64);
        if writer.body_wanted() {
            writer.out().extend_from_slice(&self.body);
        }
    }
}
