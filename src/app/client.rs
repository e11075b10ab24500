//! A client for handlers: calls from an async handler (or a task it spawns) to the
//! configuration's `[[upstream]]`s, carried by the core's own ring on the same per-core
//! pools of keep-alive connections as the reverse proxy, with its choice of server, passive
//! health and safe retry. A core's [`Upstream`] handles come from its [`crate::Setup`].
//!
//! ```no_run
//! use percore::{App, Reply, Status, Upstream};
//!
//! struct State {
//!     users: Upstream,
//! }
//!
//! let app = App::new(|setup| Ok(State { users: setup.upstream("users")? }))
//!     .get_async("/user/{id}", |request, state| async move {
//!         let id = request.param("id").unwrap_or_default();
//!         let call = state.users.get(&format!("/users/{id}")).header("Accept", "text/plain");
//!         let Ok(call) = call else { return Reply::status(Status::BAD_REQUEST) };
//!         match call.send().await {
//!             Ok(user) if user.status() == Status::OK => match user.text().await {
//!                 Ok(name) => Reply::text(format!("user {id} is {name}\n")),
//!                 Err(_) => Reply::status(Status::BAD_GATEWAY),
//!             },
//!             Ok(_) => Reply::status(Status::NOT_FOUND),
//!             Err(_) => Reply::status(Status::BAD_GATEWAY),
//!         }
//!     });
//! ```

use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::response::{check_field, check_text, HeaderError};
use super::stream::UpstreamStream;
use crate::engine::{CallSlot, CallState, Outbound, Seen, UpstreamError};
use crate::http::fields::{head_fields, is_tchar};
use crate::http::response::push_decimal;
use crate::http::status::Status;

/// Longest body [`UpstreamResponse::bytes`] gathers unless the call says otherwise.
const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// One `[[upstream]]`, as this core's handlers call it. Cheap to clone; it belongs to its
/// core (it is not `Send`).
#[derive(Clone)]
pub struct Upstream {
    door: Outbound,
    index: usize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("index", &self.index)
            .finish()
    }
}

impl Upstream {
    pub(crate) fn new(door: Outbound, index: usize) -> Upstream {
        Upstream { door, index }
    }

    /// A `GET` of `target` (an origin-form path and query, e.g. `/users/1?full=yes`).
    pub fn get(&self, target: &str) -> Call {
        self.request("GET", target)
    }

    /// A `HEAD` of `target`.
    pub fn head(&self, target: &str) -> Call {
        self.request("HEAD", target)
    }

    /// A `POST` to `target` (give it a body with [`Call::body`]).
    pub fn post(&self, target: &str) -> Call {
        self.request("POST", target)
    }

    /// A `PUT` to `target`.
    pub fn put(&self, target: &str) -> Call {
        self.request("PUT", target)
    }

    /// A `DELETE` of `target`.
    pub fn delete(&self, target: &str) -> Call {
        self.request("DELETE", target)
    }

    /// A raw connection to the next server of this upstream (its `balance` chooses), for a
    /// protocol of the handler's own: see [`UpstreamStream`]. Waits at most the upstream's
    /// `connect_timeout_ms`.
    pub async fn connect(&self) -> std::io::Result<UpstreamStream> {
        let (connect, _) = self.door.timeouts(self.index);
        let limit = Duration::from_millis(connect);
        UpstreamStream::open(self.door.clone(), self.index, limit).await
    }

    /// A request with any method.
    pub fn request(&self, method: &str, target: &str) -> Call {
        let (connect, read) = self.door.timeouts(self.index);
        let valid = !method.is_empty()
            && method.bytes().all(is_tchar)
            && target.starts_with('/')
            && target.bytes().all(|b| b.is_ascii_graphic());
        Call {
            upstream: self.clone(),
            method: method.to_string(),
            target: target.to_string(),
            fields: Vec::new(),
            host: None,
            body: Vec::new(),
            head_wait: Duration::from_millis(connect + read),
            read_wait: Duration::from_millis(read),
            max_body: DEFAULT_MAX_BODY,
            invalid: !valid,
        }
    }
}

/// A request being made to an upstream: add fields and a body, then [`Call::send`] it.
///
/// The request goes out framed by percore (a `Content-Length` of the body given), with a
/// `Host` of the upstream's `host` setting (or its first server) unless one is set here.
/// `Content-Length`, `Transfer-Encoding` and `Connection` cannot be set.
#[must_use = "a call does nothing until it is sent"]
pub struct Call {
    upstream: Upstream,
    method: String,
    target: String,
    fields: Vec<(String, String)>,
    host: Option<String>,
    body: Vec<u8>,
    head_wait: Duration,
    read_wait: Duration,
    max_body: usize,
    /// The method or target is not one a request line may carry.
    invalid: bool,
}

impl Call {
    /// Adds a header field (checked as [`crate::Reply::header`] checks it).
    pub fn header(mut self, name: &str, value: &str) -> Result<Call, HeaderError> {
        check_field(name, value)?;
        let value = value.trim_matches([' ', '\t']).to_string();
        if name.eq_ignore_ascii_case("host") {
            self.host = Some(value);
        } else {
            self.fields.push((name.to_string(), value));
        }
        Ok(self)
    }

    /// Sets the body (sent with its `Content-Length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Call {
        self.body = body.into();
        self
    }

    /// Bounds each wait: for the response head, and for each read of its body. By default
    /// the upstream's `connect_timeout_ms` + `read_timeout_ms` for the head, and its
    /// `read_timeout_ms` for the body.
    pub fn timeout(mut self, timeout: Duration) -> Call {
        self.head_wait = timeout;
        self.read_wait = timeout;
        self
    }

    /// The longest body [`UpstreamResponse::bytes`] and [`UpstreamResponse::text`] gather
    /// (16 MiB unless set); a longer one is [`UpstreamError::TooLarge`].
    pub fn max_body(mut self, bytes: usize) -> Call {
        self.max_body = bytes;
        self
    }

    /// Sends the request and waits for the response head. A request that fails before any
    /// response byte is sent again once, on another connection, when that cannot make it
    /// happen twice (nothing of it was sent, the connection was a pooled one the server had
    /// closed, or the method is idempotent), as the proxy does.
    pub async fn send(self) -> Result<UpstreamResponse, UpstreamError> {
        if self.invalid || check_text(self.host.as_deref().unwrap_or("")).is_err() {
            return Err(UpstreamError::InvalidRequest);
        }
        let door = self.upstream.door.clone();
        let host = self
            .host
            .as_deref()
            .unwrap_or(door.host(self.upstream.index));
        let request = self.write(host);
        let method = self.method.as_str();
        let idempotent = matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE");
        let state = CallState::new(self.upstream.index, request, method == "HEAD", idempotent);
        let call = Pending {
            slot: door.post(state),
            door,
        };
        call.wait(self.head_wait, false).await?;
        let (status, head) = call.slot.head();
        Ok(UpstreamResponse {
            status: Status(status),
            head,
            ended: false,
            call,
            read_wait: self.read_wait,
            max_body: self.max_body,
        })
    }

    /// The request's bytes: request line, `Host`, the fields, the framing, the body.
    fn write(&self, host: &str) -> Vec<u8> {
        let fields: usize = self.fields.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(64 + fields + host.len() + self.body.len());
        for part in [
            &self.method,
            " ",
            &self.target,
            " HTTP/1.1\r\nHost: ",
            host,
            "\r\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        for (name, value) in &self.fields {
            for part in [name, ": ", value, "\r\n"] {
                out.extend_from_slice(part.as_bytes());
            }
        }
        let bodied = matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if bodied || !self.body.is_empty() {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(&mut out, self.body.len() as u64);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A call in flight: given up (its connection closed) when dropped before its response is
/// through.
struct Pending {
    slot: Rc<CallSlot>,
    door: Outbound,
}

impl Pending {
    /// Waits, at most `limit`, for news of the call: its head (unless `for_body`), more of
    /// its body, or its end.
    async fn wait(&self, limit: Duration, for_body: bool) -> Result<Seen, UpstreamError> {
        let news = std::future::poll_fn(|cx| match self.slot.look(cx.waker()) {
            Seen::Waiting => Poll::Pending,
            Seen::Head if for_body && self.slot.buffered() == 0 => Poll::Pending,
            Seen::Failed(error) => Poll::Ready(Err(error)),
            seen => Poll::Ready(Ok(seen)),
        });
        let deadline = Instant::now() + limit;
        let timer = async move {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            Err(UpstreamError::Timeout)
        };
        futures_lite::future::or(news, timer).await
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.door.drop_call(&self.slot);
    }
}

/// An upstream's response: its status and fields at once, its body as it comes.
pub struct UpstreamResponse {
    status: Status,
    /// The head's bytes (status line and field lines).
    head: Vec<u8>,
    call: Pending,
    /// The body is all taken.
    ended: bool,
    read_wait: Duration,
    max_body: usize,
}

impl std::fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl UpstreamResponse {
    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The first value of the field `name` (any case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Every field line, in order: name and value.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        head_fields(&self.head)
            .filter_map(|(name, value)| Some((std::str::from_utf8(name).ok()?, value)))
    }

    /// The next bytes of the body as they arrive; `None` once it is complete. A response
    /// not read stops percore reading its connection once 64 KiB wait here.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, UpstreamError> {
        loop {
            if self.call.slot.buffered() > 0 {
                return Ok(Some(self.call.door.take_body(&self.call.slot)));
            }
            if self.ended {
                return Ok(None);
            }
            let seen = self.call.wait(self.read_wait, true).await?;
            if seen == Seen::Done && self.call.slot.buffered() == 0 {
                self.ended = true;
            }
        }
    }

    /// The whole body (at most the call's `max_body`).
    pub async fn bytes(mut self) -> Result<Vec<u8>, UpstreamError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            if body.len() + chunk.len() > self.max_body {
                return Err(UpstreamError::TooLarge);
            }
            if body.is_empty() {
                body = chunk;
            } else {
                body.extend_from_slice(&chunk);
            }
        }
        Ok(body)
    }

    /// The whole body as text (bytes that are not UTF-8 replaced).
    pub async fn text(self) -> Result<String, UpstreamError> {
        let body = self.bytes().await?;
        Ok(match String::from_utf8(body) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}
