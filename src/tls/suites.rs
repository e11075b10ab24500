//! Which cipher suite a connection gets. percore chooses (rustls's `ignore_client_order`)
//! among rustls's default suites, all forward-secret AEAD, in the order that costs least on a
//! client with AES hardware: AES-128-GCM first (its SHA-256 key schedule runs on the CPU's SHA
//! extensions where SHA-384's runs in software, and AES-128 seals faster than AES-256), then
//! AES-256-GCM, then ChaCha20-Poly1305.
//!
//! A client that lists ChaCha20-Poly1305 first says it has no AES hardware (phones and small
//! boards without it put it first for that reason): it gets ChaCha20-Poly1305, as BoringSSL,
//! Go and OpenSSL's `PRIORITIZE_CHACHA` do. Its ClientHello is read for that (`hello`),
//! before rustls reads it ([`Preference::of`]).

use rustls::crypto::CryptoProvider;
use rustls::CipherSuite;

use super::hello::ClientHello;

/// The server's order of preference among the suites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Preference {
    /// AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305.
    Aes,
    /// ChaCha20-Poly1305 first, then the AES suites.
    ChaCha,
}

impl Preference {
    /// The preference for the client that sent `hello` (none when it could not be read):
    /// [`Preference::ChaCha`] when the first suite it lists (leaving out GREASE and
    /// signalling values) is a ChaCha20-Poly1305 suite.
    pub(crate) fn of(hello: Option<&ClientHello<'_>>) -> Preference {
        let first = hello.and_then(|hello| {
            hello
                .suites()
                .find(|&suite| !is_grease(suite) && !matches!(suite, 0x00ff | 0x5600))
        });
        match first.map(|suite| aead_of(CipherSuite::from(suite))) {
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

/// A GREASE value (RFC 8701): 0x0a0a, 0x1a1a, … 0xfafa.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preference for a ClientHello listing `suites`.
    fn of(suites: &[u16]) -> Preference {
        let message = crate::tls::hello::tests::hello(suites, &[]);
        Preference::of(ClientHello::parse(&message).as_ref())
    }

    #[test]
    fn the_first_real_suite_listed_decides() {
        assert_eq!(of(&[0x1301, 0x1303]), Preference::Aes);
        assert_eq!(of(&[0x1302, 0x1301, 0x1303]), Preference::Aes);
        // GREASE and the renegotiation SCSV are skipped.
        assert_eq!(of(&[0x3a3a, 0x00ff, 0x1303, 0x1301]), Preference::ChaCha);
        assert_eq!(of(&[0xcca9, 0xc02b]), Preference::ChaCha);
        // Nothing readable: the server's own order.
        assert_eq!(of(&[]), Preference::Aes);
        assert_eq!(Preference::of(None), Preference::Aes);
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
