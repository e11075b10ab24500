//! Which cipher suite a connection gets. percore chooses (rustls's `ignore_client_order`)
//! among rustls's default suites, all forward-secret AEAD, in the order that costs least on a
//! client with AES hardware: AES-128-GCM first (its SHA-256 key schedule runs on the CPU's SHA
//! extensions where SHA-384's runs in software, and AES-128 seals faster than AES-256), then
//! AES-256-GCM, then ChaCha20-Poly1305.
//!
//! A client that lists ChaCha20-Poly1305 first says it has no AES hardware (phones and small
//! boards without it put it first for that reason): it gets ChaCha20-Poly1305, as BoringSSL,
//! Go and OpenSSL's `PRIORITIZE_CHACHA` do. Its ClientHello is peeked at for that, before
//! rustls reads it ([`Preference::of`]).

use rustls::crypto::CryptoProvider;
use rustls::CipherSuite;

/// The server's order of preference among the suites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preference {
    /// AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
    Aes,
    /// ChaCha20-Poly1305 first, then the AES suites.
    ChaCha,
}

impl Preference {
    /// The preference for the client whose ClientHello record starts `hello` (the first
    /// record of the connection): [`Preference::ChaCha`] when the first suite it lists
    /// (leaving out GREASE and signalling values) is a ChaCha20-Poly1305 suite.
    pub(crate) fn of(hello: &[u8]) -> Preference {
        match first_suite(hello).map(|suite| aead_of(CipherSuite::from(suite))) {
            Some(Aead::ChaCha) => Preference::ChaCha,
            _ => Preference::Aes,
        }
    }

    /// Orders `provider`'s suites by this preference (TLS 1.3 suites first).
    pub(crate) fn order(self, provider: &mut CryptoProvider) {
        provider.cipher_suites.sort_by_key(|suite| {
            let name = suite.suite();
            let rank = match (aead_of(name), self) {
                (Aead::Aes128, Preference::Aes) | (Aead::ChaCha, Preference::ChaCha) => 0,
                (Aead::Aes256, Preference::Aes) | (Aead::Aes128, Preference::ChaCha) => 1,
                (Aead::ChaCha, Preference::Aes) | (Aead::Aes256, Preference::ChaCha) => 2,
                (Aead::Other, _) => 3,
            };
            (suite.tls13().is_none(), rank)
        });
    }
}

enum Aead {
    Aes128,
    Aes256,
    ChaCha,
    Other,
}

fn aead_of(suite: CipherSuite) -> Aead {
    use CipherSuite::*;
    match suite {
        TLS13_AES_128_GCM_SHA256
        | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Aead::Aes128,
        TLS13_AES_256_GCM_SHA384
        | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Aead::Aes256,
        TLS13_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Aead::ChaCha,
        _ => Aead::Other,
    }
}

/// The first real suite a ClientHello record lists, if the record is one and that far of it
/// is there (RFC 8446 section 4.1.2: version, random, session id, then the suites).
fn first_suite(record: &[u8]) -> Option<u16> {
    const HANDSHAKE: u8 = 22;
    const CLIENT_HELLO: u8 = 1;
    // Record header (5), handshake header (4).
    if record.first() != Some(&HANDSHAKE) || record.get(5) != Some(&CLIENT_HELLO) {
        return None;
    }
    let body = record.get(9..)?;
    // legacy_version (2), random (32), then the session id and its length byte.
    let suites_at = 35 + usize::from(*body.get(34)?);
    let len = u16::from_be_bytes([*body.get(suites_at)?, *body.get(suites_at + 1)?]);
    let listed = body.get(suites_at + 2..)?;
    listed[..listed.len().min(usize::from(len))]
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .find(|&suite| !is_grease(suite) && !matches!(suite, 0x00ff | 0x5600))
}

/// A GREASE value (RFC 8701): 0x0a0a, 0x1a1a, … 0xfafa.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record listing `suites`, with a session id of `sid` bytes.
    fn hello(suites: &[u16], sid: u8) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(sid);
        body.extend(std::iter::repeat_n(9, usize::from(sid)));
        body.extend_from_slice(&(2 * suites.len() as u16).to_be_bytes());
        for suite in suites {
            body.extend_from_slice(&suite.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]);
        let mut handshake = vec![1, 0];
        handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
        handshake.extend_from_slice(&body);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn the_first_real_suite_listed_decides() {
        assert_eq!(
            Preference::of(&hello(&[0x1301, 0x1303], 32)),
            Preference::Aes
        );
        assert_eq!(
            Preference::of(&hello(&[0x1302, 0x1301, 0x1303], 0)),
            Preference::Aes
        );
        // GREASE and the renegotiation SCSV are skipped.
        assert_eq!(
            Preference::of(&hello(&[0x3a3a, 0x00ff, 0x1303, 0x1301], 32)),
            Preference::ChaCha
        );
        assert_eq!(
            Preference::of(&hello(&[0xcca9, 0xc02b], 0)),
            Preference::ChaCha
        );
        // Anything unreadable: the server's own order.
        let whole = hello(&[0x1303], 32);
        for cut in 0..whole.len() {
            let expected = match cut >= 9 + 35 + 32 + 2 + 2 {
                true => Preference::ChaCha,
                false => Preference::Aes,
            };
            assert_eq!(Preference::of(&whole[..cut]), expected, "{cut}");
        }
        assert_eq!(Preference::of(b"GET / HTTP/1.1\r\n"), Preference::Aes);
        assert!(is_grease(0xfafa) && !is_grease(0x0a1a) && !is_grease(0x1303));
    }

    #[test]
    fn the_orders_put_aes_128_or_chacha_first_tls_1_3_before_1_2() {
        let names = |preference: Preference| {
            let mut provider = rustls::crypto::aws_lc_rs::default_provider();
            preference.order(&mut provider);
            provider
                .cipher_suites
                .iter()
                .map(|suite| suite.suite())
                .collect::<Vec<_>>()
        };
        use CipherSuite::*;
        assert_eq!(
            names(Preference::Aes)[..4],
            [
                TLS13_AES_128_GCM_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            ]
        );
        assert_eq!(
            names(Preference::ChaCha)[..4],
            [
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS13_AES_128_GCM_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            ]
        );
        assert_eq!(names(Preference::Aes).len(), 9);
    }
}
