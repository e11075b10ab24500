//! A TLS client's record layer after the handshake, written apart from percore's (from RFC
//! 8446 sections 5.2–5.3 and 4.6.3, RFC 5246 section 6.2.3.3, RFC 5288 and RFC 7905), for
//! tests and fuzz targets that play a client percore's record layer must survive: any inner
//! content type, any payload, any amount of padding, a chosen header, corrupt bytes.
//!
//! rustls makes the handshake ([`handshake`], over anything that reads and writes: a socket,
//! or an in-memory server), then hands its keys over (`dangerous_into_kernel_connection`,
//! the entry point it offers kernel TLS) to a [`ClientRecords`], which seals the client's
//! records and opens the server's, following the client's key schedule both ways (a TLS 1.3
//! KeyUpdate sent switches to the next send key, one received to the next receive key) and
//! giving the server's session tickets to rustls.
//!
//! It depends on `rustls` and `aws_lc_rs` only (no other test module), so that a fuzz crate
//! can include it too: `#[path = "../../common/records.rs"] mod records;`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ClientConfig, ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

/// Bytes of a record header: type, version, length.
pub const HEADER: usize = 5;
/// Bytes of an AEAD tag (all three ciphers).
pub const TAG: usize = 16;
/// Most plaintext (TLS 1.3: content) one record may carry.
pub const MAX_FRAGMENT: usize = 1 << 14;

/// Record content types.
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;

/// Handshake message types.
pub const CLIENT_HELLO: u8 = 1;
pub const NEW_SESSION_TICKET: u8 = 4;
pub const KEY_UPDATE: u8 = 24;

/// Alert levels.
pub const WARNING: u8 = 1;
pub const FATAL: u8 = 2;

/// Alert descriptions.
pub const CLOSE_NOTIFY: u8 = 0;
pub const UNEXPECTED_MESSAGE: u8 = 10;
pub const BAD_RECORD_MAC: u8 = 20;
pub const RECORD_OVERFLOW: u8 = 22;
pub const BAD_CERTIFICATE: u8 = 42;
pub const ILLEGAL_PARAMETER: u8 = 47;
pub const PROTOCOL_VERSION: u8 = 70;
pub const DECODE_ERROR: u8 = 50;
pub const USER_CANCELED: u8 = 90;
pub const NO_RENEGOTIATION: u8 = 100;

/// A handshake message: type, 24-bit length, body.
pub fn handshake_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("a handshake body under 2^24 bytes");
    let [_, a, b, c] = len.to_be_bytes();
    let mut message = vec![kind, a, b, c];
    message.extend_from_slice(body);
    message
}

/// A TLS 1.3 KeyUpdate message: update_requested (1) or update_not_requested (0).
pub fn key_update(requested: bool) -> [u8; 5] {
    [KEY_UPDATE, 0, 0, 1, u8::from(requested)]
}

/// A plausible TLS 1.2 ClientHello message (a renegotiation's): version 1.2, `random`, no
/// session ID, two ECDHE AES-GCM suites, no compression, and the extensions a renegotiating
/// client sends (renegotiation_info, supported groups, point formats, signature
/// algorithms). Its `renegotiation_info` carries no verify data: a server that parsed it
/// would find it wrong, which percore's rules say it does not do.
pub fn renegotiation_client_hello(random: [u8; 32]) -> Vec<u8> {
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }
    let mut extensions = Vec::new();
    extensions.extend(extension(0xff01, &[0]));
    // supported_groups: x25519, secp256r1.
    extensions.extend(extension(0x000a, &[0, 4, 0, 0x1d, 0, 0x17]));
    // ec_point_formats: uncompressed.
    extensions.extend(extension(0x000b, &[1, 0]));
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256.
    extensions.extend(extension(0x000d, &[0, 4, 4, 3, 8, 4]));
    let mut body = vec![3, 3];
    body.extend_from_slice(&random);
    body.push(0); // session ID
    body.extend_from_slice(&[0, 4, 0xc0, 0x2b, 0xc0, 0x2f]); // cipher suites
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    handshake_message(CLIENT_HELLO, &body)
}

/// How a record is made beyond its content type and payload: what a misbehaving client may
/// vary. [`Shape::default`] is a well-formed record.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// The header's type, if not the usual one (TLS 1.3: 23; TLS 1.2: the content type,
    /// which the AAD then carries as sent).
    pub outer_type: Option<u8>,
    /// The header's version, if not 0x0303 (in the AAD as sent, both versions).
    pub version: Option<u16>,
    /// TLS 1.3: zero bytes after the inner content type. Ignored in TLS 1.2, which has none.
    pub padding: usize,
    /// TLS 1.3: leave out the inner content type (the inner plaintext is the payload and the
    /// padding only: all zeros, for a payload of zeros).
    pub no_inner_type: bool,
    /// The header's length, if not the true length of what follows it (the AAD carries the
    /// header as sent; the bytes after the header are the record sealed as usual).
    pub length: Option<u16>,
    /// Bytes XORed into the record once it is sealed, at offsets from its first header byte
    /// (past the end: ignored): a tampered record.
    pub flips: Vec<(usize, u8)>,
}

/// A record of the server's, opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Its content type (TLS 1.3: the inner one).
    pub content_type: u8,
    /// Its plaintext (TLS 1.3: without the content type and padding).
    pub data: Vec<u8>,
    /// The bytes it took on the wire, header included.
    pub wire_len: usize,
}

impl Opened {
    /// The alert it carries (level, description), if it is an alert record of two bytes.
    pub fn alert(&self) -> Option<[u8; 2]> {
        match (self.content_type, &self.data[..]) {
            (ALERT, &[level, description]) => Some([level, description]),
            _ => None,
        }
    }

    /// The types of the whole handshake messages it carries, if it is a handshake record.
    pub fn handshake_types(&self) -> Vec<u8> {
        let mut types = Vec::new();
        if self.content_type == HANDSHAKE {
            let mut rest = &self.data[..];
            while let Some(((kind, len), after)) = split_message(rest) {
                types.push(kind);
                rest = &after[len..];
            }
        }
        types
    }
}

/// The first whole handshake message of `bytes`: (type, body length) and the bytes after
/// its header.
fn split_message(bytes: &[u8]) -> Option<((u8, usize), &[u8])> {
    let [kind, a, b, c, ref rest @ ..] = *bytes else {
        return None;
    };
    let len = u32::from_be_bytes([0, a, b, c]) as usize;
    (rest.len() >= len).then_some(((kind, len), rest))
}

/// The TLS version the keys are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

/// One direction's AEAD key, IV and sequence number.
struct Direction {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
    /// TLS 1.2 AES-GCM: eight bytes of each record's nonce travel in it (RFC 5288).
    explicit_nonce: bool,
}

impl Direction {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Result<Direction, String> {
        let (algorithm, key, iv, explicit_nonce) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&CHACHA20_POLY1305, key, iv, false)
            }
            _ => return Err("a cipher the record tool lacks".into()),
        };
        let key = UnboundKey::new(algorithm, key.as_ref()).map_err(|e| format!("key: {e}"))?;
        let iv = iv.as_ref().try_into().map_err(|_| "an IV of 12 bytes")?;
        Ok(Direction {
            key: LessSafeKey::new(key),
            iv,
            seq,
            explicit_nonce,
        })
    }

    /// The per-record nonce: the IV with the sequence number XORed into its end (RFC 8446
    /// 5.3, RFC 7905; RFC 5288's explicit part is chosen the same way, as rustls does).
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

/// TLS 1.2's additional data (RFC 5246 6.2.3.3): sequence number, type, version, length of
/// the plaintext.
fn tls12_aad(seq: u64, content_type: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&version);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// Handshake messages seen in one direction, joined across records: counts the KeyUpdates
/// that end in what was added.
#[derive(Default)]
struct Joiner(Vec<u8>);

impl Joiner {
    /// Adds a record's handshake bytes; returns the whole messages they complete.
    fn push(&mut self, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.0.extend_from_slice(bytes);
        let mut whole = Vec::new();
        let mut used = 0;
        while let Some(((kind, len), rest)) = split_message(&self.0[used..]) {
            whole.push((kind, rest[..len].to_vec()));
            used += 4 + len;
        }
        self.0.drain(..used);
        whole
    }
}

/// The client's side of a connection's records after the handshake.
pub struct ClientRecords {
    version: Version,
    tx: Direction,
    rx: Direction,
    /// rustls's key schedule (and session-ticket store) for this connection.
    kernel: KernelConnection<ClientConnectionData>,
    sent_handshake: Joiner,
    received_handshake: Joiner,
    key_updates_received: usize,
    tickets_received: usize,
}

impl ClientRecords {
    /// Takes over from a client whose handshake is complete, with nothing left to send; its
    /// config must have `enable_secret_extraction` ([`extractable`]).
    pub fn new(conn: UnbufferedClientConnection) -> Result<ClientRecords, String> {
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(|e| format!("the client's keys: {e}"))?;
        ClientRecords::from_kernel(secrets, kernel)
    }

    /// Takes over from the keys and key schedule rustls handed over.
    pub fn from_kernel(
        secrets: ExtractedSecrets,
        kernel: KernelConnection<ClientConnectionData>,
    ) -> Result<ClientRecords, String> {
        let version = match kernel.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            other => return Err(format!("records of {other:?}")),
        };
        Ok(ClientRecords {
            version,
            tx: Direction::new(secrets.tx)?,
            rx: Direction::new(secrets.rx)?,
            kernel,
            sent_handshake: Joiner::default(),
            received_handshake: Joiner::default(),
            key_updates_received: 0,
            tickets_received: 0,
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The name of the cipher suite (`TLS13_AES_128_GCM_SHA256`…).
    pub fn suite(&self) -> &'static str {
        let suite = self.kernel.negotiated_cipher_suite().suite();
        suite.as_str().unwrap_or("unknown")
    }

    /// KeyUpdate messages the server sent (each switched the receive key).
    pub fn key_updates_received(&self) -> usize {
        self.key_updates_received
    }

    /// TLS 1.3 session tickets the server sent (each given to rustls's store).
    pub fn tickets_received(&self) -> usize {
        self.tickets_received
    }

    /// One well-formed record of `content_type` carrying `payload` (at most
    /// [`MAX_FRAGMENT`] bytes for a peer to accept it).
    pub fn seal(&mut self, content_type: u8, payload: &[u8]) -> Vec<u8> {
        self.seal_shaped(content_type, payload, &Shape::default())
    }

    /// A TLS 1.3 record whose inner plaintext ends in `padding` zeros.
    pub fn seal_padded(&mut self, content_type: u8, payload: &[u8], padding: usize) -> Vec<u8> {
        let shape = Shape {
            padding,
            ..Shape::default()
        };
        self.seal_shaped(content_type, payload, &shape)
    }

    /// One record of `content_type` carrying `payload`, made as `shape` says, under the
    /// current send key (a payload too long for a record's 16-bit length field gets that
    /// field cut to 16 bits, as a broken client might send it). A TLS 1.3 handshake record's KeyUpdate messages switch the send
    /// key after it, one step each (a message split across records counts in the record
    /// that ends it), as a client that sent them would.
    pub fn seal_shaped(&mut self, content_type: u8, payload: &[u8], shape: &Shape) -> Vec<u8> {
        let version = shape.version.unwrap_or(0x0303).to_be_bytes();
        let mut record = match self.version {
            Version::Tls13 => self.seal13(content_type, payload, shape, version),
            Version::Tls12 => self.seal12(content_type, payload, shape, version),
        };
        self.tx.seq += 1;
        for &(at, mask) in &shape.flips {
            if let Some(byte) = record.get_mut(at) {
                *byte ^= mask;
            }
        }
        if self.version == Version::Tls13 && content_type == HANDSHAKE {
            let updates = self
                .sent_handshake
                .push(payload)
                .iter()
                .filter(|(kind, _)| *kind == KEY_UPDATE)
                .count();
            for _ in 0..updates {
                let next = self
                    .kernel
                    .update_tx_secret()
                    .expect("TLS 1.3 has a next send key");
                self.tx = Direction::new(next).expect("the same cipher");
            }
        }
        record
    }

    fn seal13(&self, content_type: u8, payload: &[u8], shape: &Shape, version: [u8; 2]) -> Vec<u8> {
        let mut inner = payload.to_vec();
        if !shape.no_inner_type {
            inner.push(content_type);
        }
        inner.resize(inner.len() + shape.padding, 0);
        let len = shape.length.unwrap_or((inner.len() + TAG) as u16);
        let [hi, lo] = len.to_be_bytes();
        let header = [
            shape.outer_type.unwrap_or(APPLICATION_DATA),
            version[0],
            version[1],
            hi,
            lo,
        ];
        let nonce = Nonce::assume_unique_for_key(self.tx.nonce());
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&header[..]), &mut inner)
            .expect("sealing takes a record's worth");
        let mut record = header.to_vec();
        record.extend_from_slice(&inner);
        record.extend_from_slice(tag.as_ref());
        record
    }

    fn seal12(&self, content_type: u8, payload: &[u8], shape: &Shape, version: [u8; 2]) -> Vec<u8> {
        let outer_type = shape.outer_type.unwrap_or(content_type);
        let nonce = self.tx.nonce();
        let explicit: &[u8] = if self.tx.explicit_nonce {
            &nonce[4..]
        } else {
            &[]
        };
        let len = shape
            .length
            .unwrap_or((explicit.len() + payload.len() + TAG) as u16);
        let [hi, lo] = len.to_be_bytes();
        let aad = tls12_aad(self.tx.seq, outer_type, version, payload.len());
        let mut body = payload.to_vec();
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut body,
            )
            .expect("sealing takes a record's worth");
        let mut record = vec![outer_type, version[0], version[1], hi, lo];
        record.extend_from_slice(explicit);
        record.extend_from_slice(&body);
        record.extend_from_slice(tag.as_ref());
        record
    }

    /// Opens the server's record at the start of `buf`: `Ok(None)` until it is all there.
    /// A TLS 1.3 handshake record is followed: its KeyUpdates switch the receive key after
    /// it (one asking for the client's is not answered: the caller seals one if it wants),
    /// its session tickets go to rustls.
    pub fn open(&mut self, buf: &[u8]) -> Result<Option<Opened>, String> {
        let Some(header) = buf.get(..HEADER) else {
            return Ok(None);
        };
        let header: [u8; HEADER] = header.try_into().expect("a header");
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(body) = buf.get(HEADER..HEADER + len) else {
            return Ok(None);
        };
        let mut body = body.to_vec();
        let (content_type, data) = match self.version {
            Version::Tls13 => self.open13(header, &mut body)?,
            Version::Tls12 => self.open12(header, &mut body)?,
        };
        self.rx.seq += 1;
        let opened = Opened {
            content_type,
            data: body[data].to_vec(),
            wire_len: HEADER + len,
        };
        if self.version == Version::Tls13 && content_type == HANDSHAKE {
            for (kind, body) in self.received_handshake.push(&opened.data) {
                match kind {
                    KEY_UPDATE => {
                        let next = self
                            .kernel
                            .update_rx_secret()
                            .map_err(|e| format!("the next receive key: {e}"))?;
                        self.rx = Direction::new(next)?;
                        self.key_updates_received += 1;
                    }
                    NEW_SESSION_TICKET => {
                        self.kernel
                            .handle_new_session_ticket(&body)
                            .map_err(|e| format!("the server's session ticket: {e}"))?;
                        self.tickets_received += 1;
                    }
                    other => return Err(format!("handshake message {other} after the handshake")),
                }
            }
        }
        Ok(Some(opened))
    }

    fn open13(
        &mut self,
        header: [u8; HEADER],
        body: &mut [u8],
    ) -> Result<(u8, std::ops::Range<usize>), String> {
        if header[0] != APPLICATION_DATA {
            return Err(format!("an unprotected TLS 1.3 record: {header:?}"));
        }
        let nonce = Nonce::assume_unique_for_key(self.rx.nonce());
        let plain = self
            .rx
            .key
            .open_in_place(nonce, Aad::from(&header[..]), body)
            .map_err(|_| format!("a record that does not open (seq {})", self.rx.seq))?;
        let at = plain
            .iter()
            .rposition(|&b| b != 0)
            .ok_or("a record with no content type")?;
        Ok((plain[at], 0..at))
    }

    fn open12(
        &mut self,
        header: [u8; HEADER],
        body: &mut [u8],
    ) -> Result<(u8, std::ops::Range<usize>), String> {
        let explicit = if self.rx.explicit_nonce { 8 } else { 0 };
        let plain_len = body
            .len()
            .checked_sub(explicit + TAG)
            .ok_or("a record shorter than its nonce and tag")?;
        let mut nonce = self.rx.nonce();
        if self.rx.explicit_nonce {
            nonce[4..].copy_from_slice(&body[..8]);
        }
        let aad = tls12_aad(self.rx.seq, header[0], [header[1], header[2]], plain_len);
        self.rx
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut body[explicit..],
            )
            .map_err(|_| format!("a record that does not open (seq {})", self.rx.seq))?;
        Ok((header[0], explicit..explicit + plain_len))
    }

    /// Opens every whole record at the start of `buf`, removing them from it.
    pub fn open_all(&mut self, buf: &mut Vec<u8>) -> Result<Vec<Opened>, String> {
        let mut opened = Vec::new();
        let mut used = 0;
        while let Some(record) = self.open(&buf[used..])? {
            used += record.wire_len;
            opened.push(record);
        }
        buf.drain(..used);
        Ok(opened)
    }
}

/// `config` with secret extraction on, which [`ClientRecords`] needs.
pub fn extractable(config: &ClientConfig) -> Arc<ClientConfig> {
    let mut config = config.clone();
    config.enable_secret_extraction = true;
    Arc::new(config)
}

/// A handshake as `name` under `config` (TLS 1.3 or 1.2, as it allows) over `io`: a socket,
/// or anything standing for a server (an in-memory one answers each write). Returns the
/// client's records and the bytes read past the handshake (the start of what the server
/// sent next), or what went wrong.
pub fn connect(
    config: &ClientConfig,
    name: &str,
    io: &mut (impl Read + Write),
) -> Result<(ClientRecords, Vec<u8>), String> {
    let name = ServerName::try_from(name.to_string()).map_err(|e| format!("{name}: {e}"))?;
    let conn = UnbufferedClientConnection::new(extractable(config), name)
        .map_err(|e| format!("a client: {e}"))?;
    handshake(conn, io)
}

/// Drives `conn`'s handshake over `io` (rustls's unbuffered API, as percore drives the
/// server's), then takes its keys: see [`connect`].
pub fn handshake(
    mut conn: UnbufferedClientConnection,
    io: &mut (impl Read + Write),
) -> Result<(ClientRecords, Vec<u8>), String> {
    let mut incoming = Vec::new();
    let mut outgoing = Vec::new();
    loop {
        let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut incoming);
        let mut done = false;
        let mut read_more = false;
        match state.map_err(|e| format!("handshake: {e}"))? {
            ConnectionState::EncodeTlsData(mut encode) => {
                let start = outgoing.len();
                let mut room = 4096;
                loop {
                    outgoing.resize(start + room, 0);
                    match encode.encode(&mut outgoing[start..]) {
                        Ok(written) => {
                            outgoing.truncate(start + written);
                            break;
                        }
                        Err(EncodeError::InsufficientSize(needed)) => room = needed.required_size,
                        Err(e) => return Err(format!("encoding the handshake: {e}")),
                    }
                }
            }
            ConnectionState::TransmitTlsData(transmit) => {
                io.write_all(&outgoing)
                    .and_then(|()| io.flush())
                    .map_err(|e| format!("sending the handshake: {e}"))?;
                outgoing.clear();
                transmit.done();
            }
            ConnectionState::BlockedHandshake => read_more = true,
            ConnectionState::WriteTraffic(_) => done = true,
            // Application data before the client has finished: none is expected.
            ConnectionState::ReadTraffic(_) => {
                return Err("application data during the handshake".into())
            }
            other => return Err(format!("handshake: {other:?}")),
        }
        incoming.drain(..discard);
        if done {
            return Ok((ClientRecords::new(conn)?, incoming));
        }
        if read_more {
            let mut chunk = [0u8; 16384];
            match io.read(&mut chunk) {
                Ok(0) => return Err("the server closed during the handshake".into()),
                Ok(n) => incoming.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("reading the handshake: {e}")),
            }
        }
    }
}
