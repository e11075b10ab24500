//! Server-Sent Events (the HTML Living Standard's `text/event-stream`) on a streamed body:
//! [`Event`]s written as `id:`, `event:`, `retry:` and `data:` lines, and a comment sent as
//! a keep-alive whenever the stream has been quiet for a while, so that proxies and
//! browsers do not take an idle stream for a dead one. The client's `Last-Event-ID` (sent
//! when it reconnects) is the request's [`crate::Request::last_event_id`].

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use super::body::{BodyClosed, BodySender};
use super::response::HeaderError;
use super::BoxError;

/// How long a stream may be quiet before a keep-alive comment goes out, unless the
/// producer says otherwise ([`EventSender::keep_alive`]).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event: its data (any text; each line becomes a `data:` line), and optionally an id,
/// a type and a reconnection time.
///
/// ```
/// # use percore::Event;
/// let event = Event::new("42 °C\nrising").id("7").unwrap().event("temperature").unwrap();
/// assert_eq!(event.to_bytes(), b"id: 7\nevent: temperature\ndata: 42 \xc2\xb0C\ndata: rising\n\n");
/// assert!(Event::new("x").id("a\nb").is_err());
/// ```
#[derive(Clone, Debug, Default)]
pub struct Event {
    id: Option<String>,
    event: Option<String>,
    retry: Option<u64>,
    data: String,
}

impl Event {
    /// An event carrying `data`.
    pub fn new(data: impl Into<String>) -> Event {
        Event {
            data: data.into(),
            ..Event::default()
        }
    }

    /// Sets its id, which the client sends back as `Last-Event-ID` when it reconnects. It
    /// may not hold CR, LF or NUL.
    pub fn id(mut self, id: &str) -> Result<Event, HeaderError> {
        if id.contains(['\r', '\n', '\0']) {
            return Err(HeaderError::InvalidValue);
        }
        self.id = Some(id.to_owned());
        Ok(self)
    }

    /// Sets its type (the client's event listener name). It may not hold CR or LF.
    pub fn event(mut self, name: &str) -> Result<Event, HeaderError> {
        if name.contains(['\r', '\n']) {
            return Err(HeaderError::InvalidValue);
        }
        self.event = Some(name.to_owned());
        Ok(self)
    }

    /// Sets the client's reconnection time.
    pub fn retry(mut self, after: Duration) -> Event {
        self.retry = Some(after.as_millis() as u64);
        self
    }

    /// The event as the stream carries it, ending in its blank line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 32);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        if let Some(id) = &self.id {
            field(out, "id", id);
        }
        if let Some(event) = &self.event {
            field(out, "event", event);
        }
        if let Some(retry) = self.retry {
            field(out, "retry", &retry.to_string());
        }
        // CRLF, CR and LF all end a line in the stream: each line of the data is a field.
        let data = self.data.replace("\r\n", "\n").replace('\r', "\n");
        for line in data.split('\n') {
            field(out, "data", line);
        }
        out.push(b'\n');
    }
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// The writing side of an event stream (see [`crate::Reply::events`]).
#[derive(Debug)]
pub struct EventSender {
    body: BodySender,
    quiet: Rc<Quiet>,
}

/// What the keep-alive looks at: whether anything was sent since its last look, and how
/// long it waits.
#[derive(Debug)]
struct Quiet {
    sent: Cell<bool>,
    every: Cell<Option<Duration>>,
}

impl EventSender {
    /// Sends `event` (waiting while 64 KiB are pending; see [`BodySender::send`]).
    pub async fn send(&mut self, event: &Event) -> Result<(), BodyClosed> {
        self.quiet.sent.set(true);
        self.body.send(event.to_bytes()).await
    }

    /// Sends a comment line (ignored by clients): `text` with any line break dropped.
    pub async fn comment(&mut self, text: &str) -> Result<(), BodyClosed> {
        self.quiet.sent.set(true);
        let text: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
        self.body.send(format!(": {text}\n\n")).await
    }

    /// Sets how long the stream may be quiet before a keep-alive comment goes out (`None`:
    /// never); 15 s unless set.
    pub fn keep_alive(&mut self, every: Option<Duration>) {
        self.quiet.every.set(every);
    }

    /// The body underneath, for bytes of one's own.
    pub fn body(&mut self) -> &mut BodySender {
        &mut self.body
    }
}

/// Runs `producer` with an event sender over `body`, and beside it the keep-alive: a
/// comment each time the stream was quiet for the keep-alive time. The stream ends with
/// the producer.
pub(crate) async fn produce<F, Fut>(body: BodySender, producer: F) -> Result<(), BoxError>
where
    F: FnOnce(EventSender) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let quiet = Rc::new(Quiet {
        sent: Cell::new(false),
        every: Cell::new(Some(DEFAULT_KEEP_ALIVE)),
    });
    let keeper = body.alias();
    let events = EventSender {
        body,
        quiet: quiet.clone(),
    };
    futures_lite::future::or(producer(events), keep_alive(quiet, keeper)).await
}

/// Sends a comment each time the stream was quiet for the keep-alive time; returns (ending
/// the stream, its producer dropped) only when nobody takes the body any more, so that a
/// producer waiting on something rare does not outlive its client.
async fn keep_alive(quiet: Rc<Quiet>, mut keeper: BodySender) -> Result<(), BoxError> {
    loop {
        let Some(every) = quiet.every.get() else {
            // Looked at again a second later, should the producer turn it back on.
            glommio::timer::sleep(Duration::from_secs(1)).await;
            if !keeper.is_open() {
                return Err(BodyClosed::Gone.into());
            }
            continue;
        };
        glommio::timer::sleep(every).await;
        if !keeper.is_open() {
            return Err(BodyClosed::Gone.into());
        }
        if quiet.sent.replace(false) || keeper.queued() > 0 {
            continue;
        }
        keeper.send(b":\n\n").await?;
    }
}
