//! One connection's TLS, between the ring and the HTTP session: rustls runs the handshake
//! (its unbuffered API, in buffers the engine owns), then percore's record layer
//! (`record`) takes the keys and protects the exchange. The session sees plaintext only and
//! knows nothing of TLS.
//!
//! [`TlsConn::step`] takes ciphertext as it arrived, decrypting in place, and returns what it
//! found next (the handshake settled, a record's plaintext, the client's close), appending
//! what must be sent back (handshake messages, alerts, key updates) to the connection's wire
//! buffer; [`TlsConn::seal`] encrypts a batch of
//! responses into it; [`TlsConn::close_notify`] ends the exchange cleanly.

use std::ops::Range;
use std::rc::Rc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{HandshakeKind, ProtocolVersion};

use super::hello::{client_hello, ClientHello, Start};
use super::info::TlsInfo;
use super::record::{self, Opened, Records};
use super::setup::ServerConfigs;
use super::traffic::{Carried, Refused, Traffic};

/// How a TLS connection failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The handshake broke down: rustls refused what the client sent, or found nothing to
    /// agree on (the alert, if any, is in the wire buffer).
    Handshake,
    /// A record after the handshake was bad (the alert is in the wire buffer), or the
    /// client sent a fatal alert.
    Record,
}

/// What one call to [`TlsConn::step`] found in its input.
#[derive(Debug)]
pub(crate) struct Step {
    /// Where the next step starts in the input: the bytes before it are done with.
    pub(crate) next: usize,
    pub(crate) event: Event,
}

/// What a step found.
#[derive(Debug)]
pub(crate) enum Event {
    /// No whole record (or handshake message) is left in the input: the rest is the start
    /// of one still to come.
    Waiting,
    /// The handshake is complete, before any data of the connection: what it settled.
    Established(Box<TlsInfo>),
    /// An application-data record, decrypted in place: its plaintext is at this range of
    /// the input.
    Data(Range<usize>),
    /// The client sent `close_notify`: it sends nothing more, and the rest of the input
    /// is used up.
    Closed,
}

enum State {
    /// Nothing read yet: the ClientHello chooses the configuration.
    Hello(Rc<ServerConfigs>),
    Handshake(Box<UnbufferedServerConnection>),
    Open(Box<Traffic>),
    /// Failed: nothing more is read.
    Done,
}

/// One connection's TLS state.
pub(crate) struct TlsConn {
    state: State,
    /// The SNI name its ClientHello sent, kept until the handshake is over.
    server_name: Option<Box<str>>,
    /// Bytes at the start of the next input that rustls has been shown already and kept
    /// (part of a handshake message that goes on in the next record).
    shown: usize,
    /// The client sent `close_notify`.
    peer_closed: bool,
    close_notify_sent: bool,
}

impl TlsConn {
    /// A connection whose handshake is to come, under one of a core's `configs`.
    pub(crate) fn new(configs: &Rc<ServerConfigs>) -> TlsConn {
        TlsConn {
            state: State::Hello(configs.clone()),
            server_name: None,
            shown: 0,
            peer_closed: false,
            close_notify_sent: false,
        }
    }

    /// Takes the next thing the ciphertext in `buf` from `at` holds, decrypting in place,
    /// and appends whatever must be sent back (handshake messages, alerts, key updates) to
    /// `wire`. The caller acts on what it found and calls again from [`Step::next`], until
    /// [`Event::Waiting`] (or [`Event::Closed`]); the bytes left then start the next call's
    /// input, with more behind them.
    ///
    /// Nothing is called back: the caller holds the connection and whatever it feeds the
    /// plaintext to apart, and lends this only the ciphertext and the wire buffer.
    pub(crate) fn step(
        &mut self,
        buf: &mut [u8],
        at: usize,
        wire: &mut Vec<u8>,
    ) -> Result<Step, Failure> {
        let step = self.step_at_start(&mut buf[at..], wire)?;
        let event = match step.event {
            Event::Data(plain) => Event::Data(at + plain.start..at + plain.end),
            other => other,
        };
        Ok(Step {
            next: at + step.next,
            event,
        })
    }

    /// [`TlsConn::step`] on the input from its start.
    fn step_at_start(&mut self, buf: &mut [u8], wire: &mut Vec<u8>) -> Result<Step, Failure> {
        let waiting = |next| Step {
            next,
            event: Event::Waiting,
        };
        if self.peer_closed {
            // What follows close_notify is not the client's to send.
            return Ok(Step {
                next: buf.len(),
                event: Event::Closed,
            });
        }
        if let State::Hello(configs) = &self.state {
            // The whole ClientHello before choosing.
            let start = client_hello(buf);
            let hello = match &start {
                Start::Waiting => return Ok(waiting(0)),
                Start::Hello(message) => ClientHello::parse(message),
                Start::Other => None,
            };
            self.server_name = hello.as_ref().and_then(ClientHello::server_name);
            let config = configs.for_hello(hello.as_ref()).clone();
            let conn = UnbufferedServerConnection::new(config).map_err(|_| {
                self.state = State::Done;
                Failure::Handshake
            })?;
            self.state = State::Handshake(Box::new(conn));
        }
        match &mut self.state {
            State::Handshake(conn) => {
                let (used, done) = match handshake(conn, buf, &mut self.shown, wire) {
                    Ok(outcome) => outcome,
                    Err(failure) => {
                        self.state = State::Done;
                        return Err(failure);
                    }
                };
                if !done {
                    return Ok(waiting(used));
                }
                let info = settled(conn, self.server_name.take());
                let State::Handshake(conn) = std::mem::replace(&mut self.state, State::Done) else {
                    unreachable!("the handshake state was just matched");
                };
                let (secrets, schedule) = conn
                    .dangerous_into_kernel_connection()
                    .map_err(|_| Failure::Handshake)?;
                let records = Records::new(secrets, schedule).map_err(|_| Failure::Record)?;
                self.state = State::Open(Box::new(Traffic::new(records)));
                Ok(Step {
                    next: used,
                    event: Event::Established(info),
                })
            }
            State::Open(traffic) => {
                let mut used = 0;
                loop {
                    let rest = &mut buf[used..];
                    let (len, carried, data) = match traffic.records().open(rest) {
                        Ok(Opened::Incomplete) => return Ok(waiting(used)),
                        Ok(Opened::Record {
                            len,
                            content_type,
                            data,
                        }) => (
                            len,
                            traffic.take(content_type, &rest[data.clone()], wire),
                            data,
                        ),
                        Err(refused) => (0, Err(Refused::from(refused)), 0..0),
                    };
                    let start = used;
                    used += len;
                    let event = match carried {
                        Ok(Carried::Data) => Event::Data(start + data.start..start + data.end),
                        Ok(Carried::Closed) => {
                            self.peer_closed = true;
                            return Ok(Step {
                                next: buf.len(),
                                event: Event::Closed,
                            });
                        }
                        Ok(Carried::Nothing) => continue,
                        Err(refused) => {
                            if let Refused::Alert(alert) = refused {
                                traffic.records().alert(true, alert, wire);
                            }
                            self.state = State::Done;
                            return Err(Failure::Record);
                        }
                    };
                    return Ok(Step { next: used, event });
                }
            }
            State::Hello(_) | State::Done => Ok(waiting(0)),
        }
    }

    /// Encrypts `plain` (a batch of responses) into `wire`. Returns false when the
    /// connection must end after it (a TLS 1.2 connection at its key's record limit).
    pub(crate) fn seal(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> bool {
        let State::Open(traffic) = &mut self.state else {
            return false;
        };
        traffic.seal(plain, wire)
    }

    /// Appends `close_notify` to `wire`, once, if the exchange is open.
    pub(crate) fn close_notify(&mut self, wire: &mut Vec<u8>) {
        if let (State::Open(traffic), false) = (&mut self.state, self.close_notify_sent) {
            traffic.records().alert(false, record::CLOSE_NOTIFY, wire);
            self.close_notify_sent = true;
        }
    }

    /// Whether `close_notify` still has to be sent before the connection closes.
    pub(crate) fn owes_close_notify(&self) -> bool {
        matches!(self.state, State::Open(_)) && !self.close_notify_sent
    }
}

/// What a complete handshake settled, as handlers and the access log see it.
fn settled(conn: &UnbufferedServerConnection, server_name: Option<Box<str>>) -> Box<TlsInfo> {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .and_then(|suite| suite.suite().as_str())
        .unwrap_or("unknown");
    Box::new(TlsInfo {
        version,
        cipher_suite,
        server_name,
        alpn: conn.alpn_protocol().map(Box::from),
        resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
    })
}

/// Drives rustls's handshake over `buf`. Returns the bytes used and whether the handshake
/// is done (and rustls has nothing left to send, so its keys can be taken).
///
/// rustls is shown one more whole record at a time and nothing once the handshake is
/// complete: what the client sent right behind its Finished (requests, a KeyUpdate,
/// `close_notify`) is left to percore's record layer, which then holds the keys. rustls
/// keeps the bytes it did not discard where they are, so each call's window starts at
/// what it has discarded so far and ends after the records it has been shown; `kept` says
/// how many of them there are at the start of `buf` (and is left saying so for the next).
fn handshake(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    kept: &mut usize,
    wire: &mut Vec<u8>,
) -> Result<(usize, bool), Failure> {
    let mut used = 0;
    let mut shown = *kept;
    loop {
        let window = &mut buf[used..shown];
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(window);
        let state = match state {
            Ok(state) => state,
            Err(_) => {
                // rustls queued its alert: send it with whatever else was due.
                flush_alert(conn, wire);
                return Err(Failure::Handshake);
            }
        };
        let mut blocked = false;
        match state {
            ConnectionState::EncodeTlsData(mut encode) => {
                encode_into(wire, |out| encode.encode(out))
            }
            ConnectionState::TransmitTlsData(transmit) => transmit.done(),
            ConnectionState::ReadTraffic(mut read) => {
                // Application data rustls decrypted itself. It is shown no record after the
                // one that completes the handshake, so none can come; if some did, the
                // connection fails rather than deliver it out of its order.
                while let Some(record) = read.next_record() {
                    let record = record.map_err(|_| Failure::Handshake)?;
                    if !record.payload.is_empty() {
                        return Err(Failure::Handshake);
                    }
                    discard += record.discard;
                }
            }
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => blocked = true,
            // Closed before the end, or early data, which percore does not accept.
            _ => return Err(Failure::Handshake),
        }
        used += discard;
        if !blocked {
            continue;
        }
        if !conn.is_handshaking() {
            return Ok((used, true));
        }
        match next_record_end(buf, shown) {
            Some(end) => shown = end,
            None => {
                *kept = shown - used;
                return Ok((used, false));
            }
        }
    }
}

/// The end of the whole record that starts at `from` in `buf`, if it is all there. A
/// header announcing more than any record may hold shows rustls everything, so that it
/// refuses the record at once rather than waiting for it.
fn next_record_end(buf: &[u8], from: usize) -> Option<usize> {
    let header = buf.get(from..from + record::HEADER)?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > record::MAX_CIPHERTEXT_12 {
        return Some(buf.len()).filter(|&end| end > from);
    }
    let end = from + record::HEADER + len;
    (end <= buf.len()).then_some(end)
}

/// After rustls failed a handshake, the alert it queued, if any.
fn flush_alert(conn: &mut UnbufferedServerConnection, wire: &mut Vec<u8>) {
    for _ in 0..4 {
        let status = conn.process_tls_records(&mut []);
        match status.state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                encode_into(wire, |out| encode.encode(out))
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
            _ => return,
        }
    }
}

/// Appends what `encode` writes to `wire`, growing it to the size rustls asks for.
fn encode_into(
    wire: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) {
    let mut room = 4096;
    loop {
        let start = wire.len();
        wire.resize(start + room, 0);
        match encode(&mut wire[start..]) {
            Ok(written) => {
                wire.truncate(start + written);
                return;
            }
            Err(EncodeError::InsufficientSize(needed)) => {
                wire.truncate(start);
                room = needed.required_size;
            }
            Err(_) => {
                wire.truncate(start);
                return;
            }
        }
    }
}
