//! What a connection's records carry after the handshake, and what a client may make percore
//! do with them: application data goes to HTTP; alerts end the exchange or are tolerated a
//! few times; the handshake messages that may follow a handshake (TLS 1.3 key updates, a
//! TLS 1.2 renegotiation) are joined across records and answered within limits.
//!
//! The limits are those rustls (`TemperCounters`) and BoringSSL hold for their own record
//! layers, so that a misbehaving client costs its own connection and never its core:
//!
//! - at most [`MAX_KEY_UPDATES`] key updates between two application-data records, and an
//!   `update_requested` answered at most once until percore next sends application data
//!   (RFC 8446 section 4.6.3: a side that receives several while silent answers once); a key
//!   update must end its record, since what follows it would be under the old key
//!   (section 5.1);
//! - one TLS 1.2 renegotiation attempt gets its `no_renegotiation` warning, a second is fatal;
//! - at most [`MAX_WARNINGS`] warning alerts, and in TLS 1.3 none but `user_canceled`
//!   (section 6: the others are error alerts whatever their level);
//! - at most [`MAX_EMPTY_IN_ROW`] empty application-data records in a row, and no empty
//!   handshake or alert record at all (section 5.1);
//! - a handshake message is at most 0xffff bytes, and no record of another type comes
//!   between its fragments (section 5.1).
//!
//! A handshake message is joined without being kept: its header is read across records, its
//! body skipped, and only a key update's one byte remembered, so joining costs a few bytes of
//! state and no buffer.

use super::record::{self, Fatal, Records, Version};

/// Key updates a client may send between two application-data records (rustls's and
/// BoringSSL's `kMaxKeyUpdates`).
pub(crate) const MAX_KEY_UPDATES: u8 = 32;

/// Warning alerts a client may send on a connection (BoringSSL's `kMaxWarningAlerts`).
pub(crate) const MAX_WARNINGS: u8 = 4;

/// Empty application-data records a client may send in a row (rustls's limit).
pub(crate) const MAX_EMPTY_IN_ROW: u8 = 32;

/// The largest handshake message percore reads (rustls's limit).
const MAX_HANDSHAKE_MESSAGE: usize = 0xffff;

/// Handshake message types that may come after the handshake.
const CLIENT_HELLO: u8 = 1;
const KEY_UPDATE: u8 = 24;

/// Bytes of a handshake message's header: type and 24-bit length.
const MESSAGE_HEADER: usize = 4;

/// What one record carried, for the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Carried {
    /// Application data (possibly empty): its place in the record's plaintext is the
    /// record's `data`.
    Data,
    /// The client's `close_notify`: it sends nothing more.
    Closed,
    /// Nothing for HTTP (a key update, a tolerated warning, a renegotiation refused).
    Nothing,
}

/// Why the exchange ends because of what the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// percore sends this fatal alert, then ends the connection.
    Alert(u8),
    /// The client sent a fatal alert: nothing is sent back.
    PeerAlert,
}

impl From<Fatal> for Refused {
    fn from(Fatal(alert): Fatal) -> Refused {
        Refused::Alert(alert)
    }
}

/// A handshake message on its way in, joined across records.
#[derive(Clone, Copy, Default)]
struct Message {
    /// Its header's bytes so far.
    header: [u8; MESSAGE_HEADER],
    have: usize,
    /// Body bytes still to come, once the header is whole.
    remaining: usize,
    /// The body's first byte (a key update's whole body).
    first: Option<u8>,
}

impl Message {
    /// Whether part of a message has arrived (and the rest must follow).
    fn started(&self) -> bool {
        self.have > 0
    }

    fn kind(&self) -> u8 {
        self.header[0]
    }

    fn len(&self) -> usize {
        u32::from_be_bytes([0, self.header[1], self.header[2], self.header[3]]) as usize
    }
}

/// A connection's records after the handshake, with the counts that bound what the client
/// may make percore do.
pub(crate) struct Traffic {
    records: Records,
    message: Message,
    /// Key updates since the last application-data record.
    key_updates: u8,
    /// An `update_requested` was answered since percore last sent application data.
    update_answered: bool,
    renegotiations: u8,
    warnings: u8,
    empty_in_row: u8,
}

impl Traffic {
    pub(crate) fn new(records: Records) -> Traffic {
        Traffic {
            records,
            message: Message::default(),
            key_updates: 0,
            update_answered: false,
            renegotiations: 0,
            warnings: 0,
            empty_in_row: 0,
        }
    }

    /// The record protection (for opening records and sealing alerts).
    pub(crate) fn records(&mut self) -> &mut Records {
        &mut self.records
    }

    /// What a record of `content_type` carrying `data` (decrypted) means; what must be sent
    /// back (a key update, a warning) is appended to `wire`.
    pub(crate) fn take(
        &mut self,
        content_type: u8,
        data: &[u8],
        wire: &mut Vec<u8>,
    ) -> Result<Carried, Refused> {
        if self.message.started() && content_type != record::HANDSHAKE {
            // A handshake message's fragments come one right after another.
            return Err(Refused::Alert(record::UNEXPECTED_MESSAGE));
        }
        match content_type {
            record::APPLICATION_DATA => {
                if data.is_empty() {
                    if self.empty_in_row == MAX_EMPTY_IN_ROW {
                        return Err(Refused::Alert(record::UNEXPECTED_MESSAGE));
                    }
                    self.empty_in_row += 1;
                } else {
                    self.empty_in_row = 0;
                }
                self.key_updates = 0;
                Ok(Carried::Data)
            }
            record::ALERT => {
                self.empty_in_row = 0;
                self.alert(data)
            }
            record::HANDSHAKE => {
                self.empty_in_row = 0;
                self.handshake(data, wire)?;
                Ok(Carried::Nothing)
            }
            _ => Err(Refused::Alert(record::UNEXPECTED_MESSAGE)),
        }
    }

    /// An alert record: exactly one alert, of a known level.
    fn alert(&mut self, data: &[u8]) -> Result<Carried, Refused> {
        let &[level, description] = data else {
            return Err(Refused::Alert(record::DECODE_ERROR));
        };
        if !matches!(level, 1 | 2) {
            return Err(Refused::Alert(record::ILLEGAL_PARAMETER));
        }
        if description == record::CLOSE_NOTIFY {
            return Ok(Carried::Closed);
        }
        if level == 2 {
            return Err(Refused::PeerAlert);
        }
        if self.warnings == MAX_WARNINGS {
            return Err(Refused::Alert(record::UNEXPECTED_MESSAGE));
        }
        self.warnings += 1;
        if self.records.version() == Version::Tls13 && description != record::USER_CANCELED {
            return Err(Refused::Alert(record::DECODE_ERROR));
        }
        Ok(Carried::Nothing)
    }

    /// A handshake record: the messages it ends are judged, one it starts is kept going.
    fn handshake(&mut self, mut data: &[u8], wire: &mut Vec<u8>) -> Result<(), Refused> {
        if data.is_empty() {
            return Err(Refused::Alert(record::UNEXPECTED_MESSAGE));
        }
        while !data.is_empty() {
            let message = &mut self.message;
            if message.have < MESSAGE_HEADER {
                let n = (MESSAGE_HEADER - message.have).min(data.len());
                message.header[message.have..message.have + n].copy_from_slice(&data[..n]);
                message.have += n;
                data = &data[n..];
                if message.have < MESSAGE_HEADER {
                    break;
                }
                if message.len() > MAX_HANDSHAKE_MESSAGE {
                    return Err(Refused::Alert(record::DECODE_ERROR));
                }
                message.remaining = message.len();
            }
            let n = message.remaining.min(data.len());
            if n > 0 && message.first.is_none() {
                message.first = Some(data[0]);
            }
            message.remaining -= n;
            data = &data[n..];
            if message.remaining == 0 {
                let whole = std::mem::take(&mut self.message);
                self.judge(whole, data.is_empty(), wire)?;
            }
        }
        Ok(())
    }

    /// A whole handshake message; `ends_record` says whether its last byte is its record's.
    fn judge(
        &mut self,
        message: Message,
        ends_record: bool,
        wire: &mut Vec<u8>,
    ) -> Result<(), Refused> {
        match (self.records.version(), message.kind()) {
            (Version::Tls13, KEY_UPDATE) => {
                let request = match (message.len(), message.first) {
                    (1, Some(request)) => request,
                    _ => return Err(Refused::Alert(record::DECODE_ERROR)),
                };
                if !ends_record {
                    return Err(Refused::Alert(record::UNEXPECTED_MESSAGE));
                }
                if self.key_updates == MAX_KEY_UPDATES {
                    return Err(Refused::Alert(record::UNEXPECTED_MESSAGE));
                }
                self.key_updates += 1;
                match request {
                    0 => {}
                    1 if self.update_answered => {}
                    1 => {
                        self.update_answered = true;
                        self.records.update_tx(wire)?;
                    }
                    _ => return Err(Refused::Alert(record::ILLEGAL_PARAMETER)),
                }
                self.records.update_rx()?;
                Ok(())
            }
            // A ClientHello: the client asks to renegotiate, which percore does not.
            (Version::Tls12, CLIENT_HELLO) => {
                if self.renegotiations > 0 {
                    return Err(Refused::Alert(record::UNEXPECTED_MESSAGE));
                }
                self.renegotiations += 1;
                self.records.alert(false, record::NO_RENEGOTIATION, wire);
                Ok(())
            }
            _ => Err(Refused::Alert(record::UNEXPECTED_MESSAGE)),
        }
    }

    /// Encrypts `plain` as application data into `wire`. Returns false when the connection
    /// must end after it (a TLS 1.2 connection at its key's record limit).
    pub(crate) fn seal(&mut self, plain: &[u8], wire: &mut Vec<u8>) -> bool {
        let fresh = self.records.refresh(wire);
        self.records.seal(record::APPLICATION_DATA, plain, wire);
        self.update_answered = false;
        fresh
    }
}
