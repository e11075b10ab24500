//! One connection's TLS, between the ring and the HTTP session: rustls runs the handshake
//! (its unbuffered API, in buffers the engine owns), then percore's record layer
//! (`record`) takes the keys and protects the exchange. The session sees plaintext only and
//! knows nothing of TLS.
//!
//! [`TlsConn::receive`] takes ciphertext as it arrived, decrypting in place, hands the
//! plaintext on and appends what must be sent back (handshake messages, alerts, key
//! updates) to the connection's wire buffer; [`TlsConn::seal`] encrypts a batch of
//! responses into it; [`TlsConn::close_notify`] ends the exchange cleanly.

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

/// What one call to [`TlsConn::receive`] did.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Bytes of the input used; the rest is the start of a record still to come.
    pub(crate) consumed: usize,
    /// The client sent `close_notify`: it sends nothing more.
    pub(crate) peer_closed: bool,
}

/// What [`TlsConn::receive`] hands on, in order.
pub(crate) enum Input<'a> {
    /// The handshake is complete (before any data of the connection): what it settled.
    Established(Box<TlsInfo>),
    /// Plaintext of an application-data record.
    Data(&'a [u8]),
}

enum State {
    /// Nothing read yet: the ClientHello chooses the configuration.
    Hello(Rc<ServerConfigs>),
    Handshake(Box<UnbufferedServerConnection>),
    Open(Box<Traffic>),
    /// Failed, or closed by the client: nothing more is read.
    Done,
}

/// One connection's TLS state.
pub(crate) struct TlsConn {
    state: State,
    /// The SNI name its ClientHello sent, kept until the handshake is over.
    server_name: Option<Box<str>>,
    /// [`Input::Established`] was handed on.
    established: bool,
    /// Bytes at the start of the next input that rustls has been shown already and kept
    /// (part of a handshake message that goes on in the next record).
    shown: usize,
    close_notify_sent: bool,
}

impl TlsConn {
    /// A connection whose handshake is to come, under one of a core's `configs`.
    pub(crate) fn new(configs: &Rc<ServerConfigs>) -> TlsConn {
        TlsConn {
            state: State::Hello(configs.clone()),
            server_name: None,
            established: false,
            shown: 0,
            close_notify_sent: false,
        }
    }

    /// Processes the ciphertext at the start of `buf`, decrypting in place: the plaintext
    /// of each application-data record goes to `plain`, in order; whatever must be sent
    /// back is appended to `wire`. Bytes after the last whole record are left for the next
    /// call (with more after them).
    pub(crate) fn receive(
        &mut self,
        buf: &mut [u8],
        wire: &mut Vec<u8>,
        plain: &mut dyn FnMut(Input<'_>),
    ) -> Result<Received, Failure> {
        let mut received = Received::default();
        if let State::Hello(configs) = &self.state {
            // The whole ClientHello before choosing.
            let start = client_hello(buf);
            let hello = match &start {
                Start::Waiting => return Ok(received),
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
        if let State::Handshake(conn) = &mut self.state {
            let mut announce = Announce {
                server_name: &mut self.server_name,
                established: &mut self.established,
            };
            let outcome = handshake(conn, buf, &mut self.shown, wire, plain, &mut announce);
            let (used, done) = outcome.inspect_err(|_| self.state = State::Done)?;
            received.consumed = used;
            if !done {
                return Ok(received);
            }
            let State::Handshake(conn) = std::mem::replace(&mut self.state, State::Done) else {
                unreachable!("the handshake state was just matched");
            };
            let (secrets, schedule) = conn
                .dangerous_into_kernel_connection()
                .map_err(|_| Failure::Handshake)?;
            let records = Records::new(secrets, schedule).map_err(|_| Failure::Record)?;
            self.state = State::Open(Box::new(Traffic::new(records)));
        }
        let State::Open(traffic) = &mut self.state else {
            return Ok(received);
        };
        while !received.peer_closed {
            let rest = &mut buf[received.consumed..];
            let opened = traffic.records().open(rest).map_err(Refused::from);
            let (len, carried, data) = match opened {
                Ok(Opened::Incomplete) => break,
                Ok(Opened::Record {
                    len,
                    content_type,
                    data,
                }) => {
                    let carried = traffic.take(content_type, &rest[data.clone()], wire);
                    (len, carried, data)
                }
                Err(refused) => (0, Err(refused), 0..0),
            };
            match carried {
                Ok(Carried::Data) => plain(Input::Data(&rest[data])),
                Ok(Carried::Closed) => received.peer_closed = true,
                Ok(Carried::Nothing) => {}
                Err(refused) => {
                    if let Refused::Alert(alert) = refused {
                        traffic.records().alert(true, alert, wire);
                    }
                    self.state = State::Done;
                    return Err(Failure::Record);
                }
            }
            received.consumed += len;
        }
        if received.peer_closed {
            // What follows close_notify is not the client's to send.
            received.consumed = buf.len();
        }
        Ok(received)
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

/// What the handshake tells once it is complete.
struct Announce<'a> {
    server_name: &'a mut Option<Box<str>>,
    established: &'a mut bool,
}

impl Announce<'_> {
    /// After rustls processed records: hands on [`Input::Established`] the first time the
    /// handshake is found complete.
    fn after(&mut self, conn: &UnbufferedServerConnection, plain: &mut dyn FnMut(Input<'_>)) {
        if *self.established || conn.is_handshaking() {
            return;
        }
        *self.established = true;
        let version = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str())
            .unwrap_or("unknown");
        plain(Input::Established(Box::new(TlsInfo {
            version,
            cipher_suite,
            server_name: self.server_name.take(),
            alpn: conn.alpn_protocol().map(Box::from),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        })));
    }
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
    plain: &mut dyn FnMut(Input<'_>),
    announce: &mut Announce<'_>,
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
        // Application data rustls decrypted itself (it is shown none once the handshake is
        // complete, so this is not expected): handed on after the handshake is announced.
        let mut early = Vec::new();
        match state {
            ConnectionState::EncodeTlsData(mut encode) => {
                encode_into(wire, |out| encode.encode(out))
            }
            ConnectionState::TransmitTlsData(transmit) => transmit.done(),
            ConnectionState::ReadTraffic(mut read) => {
                while let Some(record) = read.next_record() {
                    let record = record.map_err(|_| Failure::Handshake)?;
                    discard += record.discard;
                    early.extend_from_slice(record.payload);
                }
            }
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => blocked = true,
            // Closed before the end, or early data, which percore does not accept.
            _ => return Err(Failure::Handshake),
        }
        used += discard;
        announce.after(conn, plain);
        if !early.is_empty() {
            plain(Input::Data(&early));
        }
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
