//! The TLS record layer after the handshake: records protected and opened in place, in
//! buffers the engine owns (RFC 8446 section 5, RFC 5246 section 6.2, RFC 5288, RFC 7905).
//! What the records carry (application data, alerts, the few handshake messages that may
//! follow the handshake) and the limits on it are `traffic`'s concern.
//!
//! rustls drives the handshake; once it is over, [`Records`] takes the traffic keys from it
//! (`dangerous_into_kernel_connection`, the entry point rustls offers to kernel TLS) and
//! does what the kernel's TLS would: each received record is decrypted where the ring put
//! it, and each response batch is encrypted as it is copied into the send buffer. Nothing is
//! allocated per record and nothing is copied but the one copy into the send buffer, where
//! rustls's own record layer (0.23) copies every decrypted record into a fresh vector and
//! encrypts every outgoing one into another. rustls keeps the key schedule: a TLS 1.3 key
//! update (received, or made here before a cipher's confidentiality limit) derives the next
//! keys through it.
//!
//! A record's header is judged as soon as each of its fields is there (type, version, a
//! length no record may have), as rustls judges it, so a client cannot make percore wait for
//! the rest of a record that is refused anyway.

use std::ops::Range;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::aead::{CHACHA20_POLY1305, NONCE_LEN};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

/// Bytes of a record header: type, version, length.
pub(crate) const HEADER: usize = 5;

/// Bytes of an AEAD tag (all three ciphers).
const TAG: usize = 16;

/// Most plaintext one record carries (RFC 8446 section 5.1).
pub(crate) const MAX_FRAGMENT: usize = 1 << 14;

/// Most bytes a record adds to its plaintext when percore seals it: header, TLS 1.2's
/// explicit nonce or TLS 1.3's content type, tag.
pub(crate) const MAX_OVERHEAD: usize = HEADER + 8 + TAG;

/// Most ciphertext one record may carry: TLS 1.3 (RFC 8446 section 5.2), TLS 1.2 (RFC 5246
/// section 6.2.3).
const MAX_CIPHERTEXT_13: usize = MAX_FRAGMENT + 256;
pub(crate) const MAX_CIPHERTEXT_12: usize = MAX_FRAGMENT + 2048;

/// Record content types.
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

/// Alert descriptions percore sends or reads.
pub(crate) const CLOSE_NOTIFY: u8 = 0;
pub(crate) const UNEXPECTED_MESSAGE: u8 = 10;
pub(crate) const BAD_RECORD_MAC: u8 = 20;
pub(crate) const RECORD_OVERFLOW: u8 = 22;
pub(crate) const ILLEGAL_PARAMETER: u8 = 47;
pub(crate) const PROTOCOL_VERSION: u8 = 70;
pub(crate) const DECODE_ERROR: u8 = 50;
pub(crate) const INTERNAL_ERROR: u8 = 80;
pub(crate) const USER_CANCELED: u8 = 90;
pub(crate) const NO_RENEGOTIATION: u8 = 100;

/// TLS 1.3 records percore sends under one key before it updates it itself, well below every
/// cipher's confidentiality limit (2^23 records for AES-256-GCM is the lowest rustls knows).
const TLS13_RECORDS_PER_KEY: u64 = 1 << 22;

/// The handshake message a TLS 1.3 key update is (RFC 8446 section 4.6.3), not asking the
/// peer for one in return.
pub(crate) const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [24, 0, 0, 1, 0];

/// What percore makes of a record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// Not a whole record yet: the bytes are kept until more arrive.
    Incomplete,
    /// A record of `len` bytes, decrypted in place: its content type, and where its
    /// plaintext lies within the bytes given.
    Record {
        len: usize,
        content_type: u8,
        data: Range<usize>,
    },
}

/// Why a connection's records cannot go on: the alert percore sends before it ends the
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fatal(pub(crate) u8);

/// The TLS version the keys are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    Tls12,
    Tls13,
}

/// One direction's key, IV and sequence number.
struct Keys {
    key: LessSafeKey,
    iv: [u8; NONCE_LEN],
    seq: u64,
}

impl Keys {
    /// Keys from what rustls hands over; anything it should never hand over is percore's
    /// own failure (`internal_error`), not the client's.
    fn new(seq: u64, secrets: ConnectionTrafficSecrets) -> Result<Keys, Fatal> {
        let (algorithm, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (&CHACHA20_POLY1305, key, iv),
            _ => return Err(Fatal(INTERNAL_ERROR)),
        };
        let key = UnboundKey::new(algorithm, key.as_ref()).map_err(|_| Fatal(INTERNAL_ERROR))?;
        let iv: [u8; NONCE_LEN] = iv.as_ref().try_into().map_err(|_| Fatal(INTERNAL_ERROR))?;
        Ok(Keys {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The IV with the sequence number XORed into its last eight bytes.
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

/// A connection's record protection, both directions.
pub(crate) struct Records {
    version: Version,
    /// TLS 1.2 with AES-GCM: eight bytes of each record's nonce travel in it.
    explicit_nonce: bool,
    tx: Keys,
    rx: Keys,
    /// The key schedule, for TLS 1.3 key updates.
    schedule: KernelConnection<ServerConnectionData>,
}

impl Records {
    /// Takes over from rustls once the handshake is done and everything it had to send was
    /// sent.
    pub(crate) fn new(
        secrets: ExtractedSecrets,
        schedule: KernelConnection<ServerConnectionData>,
    ) -> Result<Records, Fatal> {
        let version = match schedule.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => return Err(Fatal(INTERNAL_ERROR)),
        };
        let explicit_nonce = version == Version::Tls12
            && !matches!(
                secrets.tx.1,
                ConnectionTrafficSecrets::Chacha20Poly1305 { .. }
            );
        Ok(Records {
            version,
            explicit_nonce,
            tx: Keys::new(secrets.tx.0, secrets.tx.1)?,
            rx: Keys::new(secrets.rx.0, secrets.rx.1)?,
            schedule,
        })
    }

    /// The TLS version the keys are for.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// Opens the record at the start of `buf` in place (bytes after it are not touched).
    pub(crate) fn open(&mut self, buf: &mut [u8]) -> Result<Opened, Fatal> {
        if buf.len() < HEADER {
            // What is there of the header is judged already.
            let mut header = [APPLICATION_DATA, 3, 3, 0, 0];
            header[..buf.len()].copy_from_slice(buf);
            self.check_header(&header)?;
            return Ok(Opened::Incomplete);
        }
        let len = self.check_header(&buf[..HEADER])?;
        if buf.len() < HEADER + len {
            return Ok(Opened::Incomplete);
        }
        let (header, rest) = buf.split_at_mut(HEADER);
        let record = &mut rest[..len];
        let (content_type, data) = match self.version {
            Version::Tls13 => self.open13(header, record)?,
            Version::Tls12 => self.open12(header, record)?,
        };
        Ok(Opened::Record {
            len: HEADER + len,
            content_type,
            data: HEADER + data.start..HEADER + data.end,
        })
    }

    /// The record body's length a header announces, if the header is one percore takes.
    ///
    /// After the handshake every record says version 3.3: TLS 1.2's negotiated version, TLS
    /// 1.3's legacy one (RFC 8446 section 5.1). Another is refused with `protocol_version`,
    /// as OpenSSL and BoringSSL refuse it (rustls takes, in TLS 1.2, any version it knows).
    fn check_header(&self, header: &[u8]) -> Result<usize, Fatal> {
        let (outer_type, version) = (header[0], [header[1], header[2]]);
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let (types_allowed, most) = match self.version {
            // Every TLS 1.3 record is protected and says it is application data (section
            // 5.2): a change_cipher_spec now is unexpected (section 5).
            Version::Tls13 => (outer_type == APPLICATION_DATA, MAX_CIPHERTEXT_13),
            // TLS 1.2: application data, alerts, and handshake messages (a renegotiation,
            // refused).
            Version::Tls12 => (
                matches!(outer_type, ALERT | HANDSHAKE | APPLICATION_DATA),
                MAX_CIPHERTEXT_12,
            ),
        };
        if !types_allowed {
            return Err(Fatal(UNEXPECTED_MESSAGE));
        }
        if version != [3, 3] {
            return Err(Fatal(PROTOCOL_VERSION));
        }
        if len > most {
            return Err(Fatal(RECORD_OVERFLOW));
        }
        Ok(len)
    }

    fn open13(&mut self, header: &[u8], record: &mut [u8]) -> Result<(u8, Range<usize>), Fatal> {
        if record.len() < TAG {
            return Err(Fatal(BAD_RECORD_MAC));
        }
        let nonce = Nonce::assume_unique_for_key(self.rx.nonce());
        let aad: [u8; HEADER] = header.try_into().expect("a header");
        let plain = self
            .rx
            .key
            .open_in_place(nonce, Aad::from(aad), record)
            .map_err(|_| Fatal(BAD_RECORD_MAC))?;
        self.rx.seq += 1;
        // The whole inner plaintext, padding included, is at most 2^14 + 1 bytes
        // (section 5.4).
        if plain.len() > MAX_FRAGMENT + 1 {
            return Err(Fatal(RECORD_OVERFLOW));
        }
        // The content type is the last byte that is not padding.
        let Some(at) = plain.iter().rposition(|&b| b != 0) else {
            return Err(Fatal(UNEXPECTED_MESSAGE));
        };
        Ok((plain[at], 0..at))
    }

    fn open12(&mut self, header: &[u8], record: &mut [u8]) -> Result<(u8, Range<usize>), Fatal> {
        let explicit = if self.explicit_nonce { 8 } else { 0 };
        if record.len() < explicit + TAG {
            return Err(Fatal(BAD_RECORD_MAC));
        }
        let plain_len = record.len() - explicit - TAG;
        let mut nonce = self.rx.nonce();
        if self.explicit_nonce {
            nonce[4..].copy_from_slice(&record[..8]);
        }
        let aad = tls12_aad(self.rx.seq, header[0], plain_len);
        self.rx
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut record[explicit..],
            )
            .map_err(|_| Fatal(BAD_RECORD_MAC))?;
        self.rx.seq += 1;
        if plain_len > MAX_FRAGMENT {
            return Err(Fatal(RECORD_OVERFLOW));
        }
        Ok((header[0], explicit..explicit + plain_len))
    }

    /// Appends `plain` to `out` as records of `content_type`, at most [`MAX_FRAGMENT`] bytes
    /// of plaintext each.
    pub(crate) fn seal(&mut self, content_type: u8, plain: &[u8], out: &mut Vec<u8>) {
        let records = plain.len().div_ceil(MAX_FRAGMENT).max(1);
        out.reserve(plain.len() + records * MAX_OVERHEAD);
        let mut fragments = plain.chunks(MAX_FRAGMENT);
        let first = fragments.next().unwrap_or_default();
        self.seal_one(content_type, first, out);
        for fragment in fragments {
            self.seal_one(content_type, fragment, out);
        }
    }

    fn seal_one(&mut self, content_type: u8, fragment: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let nonce = self.tx.nonce();
        match self.version {
            Version::Tls13 => {
                let len = fragment.len() + 1 + TAG;
                let header = record_header(APPLICATION_DATA, len);
                out.extend_from_slice(&header);
                out.extend_from_slice(fragment);
                out.push(content_type);
                let body = &mut out[start + HEADER..];
                let tag = self
                    .tx
                    .key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(header),
                        body,
                    )
                    .expect("sealing takes any plaintext up to the record size");
                out.extend_from_slice(tag.as_ref());
            }
            Version::Tls12 => {
                let explicit = if self.explicit_nonce { 8 } else { 0 };
                let header = record_header(content_type, explicit + fragment.len() + TAG);
                out.extend_from_slice(&header);
                if self.explicit_nonce {
                    out.extend_from_slice(&nonce[4..]);
                }
                out.extend_from_slice(fragment);
                let aad = tls12_aad(self.tx.seq, content_type, fragment.len());
                let body = &mut out[start + HEADER + explicit..];
                let tag = self
                    .tx
                    .key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        body,
                    )
                    .expect("sealing takes any plaintext up to the record size");
                out.extend_from_slice(tag.as_ref());
            }
        }
        self.tx.seq += 1;
    }

    /// Appends an alert record (fatal when `fatal`) to `out`.
    pub(crate) fn alert(&mut self, fatal: bool, description: u8, out: &mut Vec<u8>) {
        let level = if fatal { 2 } else { 1 };
        self.seal(ALERT, &[level, description], out);
    }

    /// The next receive key takes over (the client sent a TLS 1.3 key update).
    pub(crate) fn update_rx(&mut self) -> Result<(), Fatal> {
        let (seq, secrets) = self
            .schedule
            .update_rx_secret()
            .map_err(|_| Fatal(INTERNAL_ERROR))?;
        self.rx = Keys::new(seq, secrets)?;
        Ok(())
    }

    /// Sends a key update (not asking the peer for one) under the current key, then switches
    /// to the next. The next key is made first: if that fails, nothing is sent under the old
    /// key that announces a new one, and the alert that follows goes out under the key the
    /// client still expects.
    pub(crate) fn update_tx(&mut self, out: &mut Vec<u8>) -> Result<(), Fatal> {
        let (seq, secrets) = self
            .schedule
            .update_tx_secret()
            .map_err(|_| Fatal(INTERNAL_ERROR))?;
        let next = Keys::new(seq, secrets)?;
        self.seal(HANDSHAKE, &KEY_UPDATE_NOT_REQUESTED, out);
        self.tx = next;
        Ok(())
    }

    /// Before a batch is sealed: a TLS 1.3 send key that has sealed many records is replaced
    /// (a key update), as the cipher's confidentiality limit asks. Returns false for a TLS
    /// 1.2 connection that should end instead (it has no key update).
    pub(crate) fn refresh(&mut self, out: &mut Vec<u8>) -> bool {
        if self.tx.seq < TLS13_RECORDS_PER_KEY {
            return true;
        }
        match self.version {
            Version::Tls13 => self.update_tx(out).is_ok(),
            Version::Tls12 => false,
        }
    }
}

/// A record header for `len` bytes of record body.
fn record_header(content_type: u8, len: usize) -> [u8; HEADER] {
    let [hi, lo] = (len as u16).to_be_bytes();
    [content_type, 3, 3, hi, lo]
}

/// TLS 1.2's additional data: sequence number, type, version (3.3), plaintext length.
fn tls12_aad(seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9] = 3;
    aad[10] = 3;
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}
