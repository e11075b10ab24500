//! Session tickets every core can open: resumption works whichever core a returning client
//! lands on, and nothing is shared between cores on the handshake path.
//!
//! One secret is made when the process starts (and handed to the process an upgrade starts,
//! so resumption survives reloads and upgrades). The key of each period of
//! `tls.ticket_lifetime_s` is derived from it with HKDF-SHA256, by whichever core needs it,
//! when it needs it: no core keeps state another could need, so none takes a lock. A ticket
//! names its period and is sealed with AES-256-GCM under a random nonce; it opens during its
//! own period and the next, so a ticket is good for between one and two lifetimes, and the
//! lifetime clients are told is one.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Prk, Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

/// Bytes of the secret.
pub(crate) const SECRET_BYTES: usize = 32;

/// Bytes before a ticket's ciphertext: its period, then its nonce.
const PREFIX: usize = 4 + NONCE_LEN;

/// The process's ticket secret.
#[derive(Clone)]
pub(crate) struct TicketSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSecret(..)")
    }
}

impl TicketSecret {
    /// A new random secret.
    pub(crate) fn generate() -> Result<TicketSecret, String> {
        let mut bytes = [0u8; SECRET_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "cannot draw random bytes for the TLS ticket secret".to_string())?;
        Ok(TicketSecret(bytes))
    }

    /// The secret a predecessor handed over.
    pub(crate) fn from_bytes(bytes: [u8; SECRET_BYTES]) -> TicketSecret {
        TicketSecret(bytes)
    }

    /// Its bytes, to hand to a successor.
    pub(crate) fn bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }
}

/// One core's ticket maker.
pub(crate) struct Tickets {
    /// HKDF's extract of the secret, from which each period's key is expanded.
    prk: Prk,
    lifetime: u32,
    random: SystemRandom,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl Tickets {
    /// Tickets from `secret`, each key in use for `lifetime` seconds.
    pub(crate) fn new(secret: &TicketSecret, lifetime: u32) -> Tickets {
        Tickets {
            prk: Salt::new(HKDF_SHA256, b"percore session tickets").extract(&secret.0),
            lifetime: lifetime.max(1),
            random: SystemRandom::new(),
        }
    }

    fn period_now(&self) -> u32 {
        let now = crate::support::civil_time::unix_now().max(0) as u64;
        (now / u64::from(self.lifetime)) as u32
    }

    /// The key of `period`.
    fn key(&self, period: u32) -> Option<LessSafeKey> {
        let period = period.to_be_bytes();
        let info = [&period[..]];
        let okm = self.prk.expand(&info, &AES_256_GCM).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let period = self.period_now();
        let key = self.key(period)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(PREFIX + plain.len() + 16);
        ticket.extend_from_slice(&period.to_be_bytes());
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(period.to_be_bytes()),
                &mut ticket[PREFIX..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < PREFIX + 16 {
            return None;
        }
        let period = u32::from_be_bytes(cipher[..4].try_into().ok()?);
        let now = self.period_now();
        if period != now && period.checked_add(1) != Some(now) {
            return None;
        }
        let key = self.key(period)?;
        let nonce: [u8; NONCE_LEN] = cipher[4..PREFIX].try_into().ok()?;
        let mut plain = cipher[PREFIX..].to_vec();
        let len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(period.to_be_bytes()),
                &mut plain,
            )
            .ok()?
            .len();
        plain.truncate(len);
        Some(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_core_opens_another_cores_ticket_and_nothing_else_opens() {
        let secret = TicketSecret::generate().unwrap();
        let (one, two) = (Tickets::new(&secret, 3600), Tickets::new(&secret, 3600));
        let ticket = one.encrypt(b"resumption state").unwrap();
        assert_eq!(
            two.decrypt(&ticket).as_deref(),
            Some(&b"resumption state"[..])
        );
        let other = Tickets::new(&TicketSecret::generate().unwrap(), 3600);
        assert_eq!(other.decrypt(&ticket), None);
        let mut forged = ticket.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(two.decrypt(&forged), None);
        assert_eq!(two.decrypt(&ticket[..10]), None);
    }

    #[test]
    fn a_ticket_opens_in_its_period_and_the_next_only() {
        let secret = TicketSecret::generate().unwrap();
        let tickets = Tickets::new(&secret, 3600);
        let now = tickets.period_now();
        let seal = |period: u32| {
            let key = tickets.key(period).unwrap();
            let mut ticket = period.to_be_bytes().to_vec();
            ticket.extend_from_slice(&[7; NONCE_LEN]);
            ticket.extend_from_slice(b"state");
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key([7; NONCE_LEN]),
                    Aad::from(period.to_be_bytes()),
                    &mut ticket[PREFIX..],
                )
                .unwrap();
            ticket.extend_from_slice(tag.as_ref());
            ticket
        };
        assert!(tickets.decrypt(&seal(now)).is_some());
        assert!(tickets.decrypt(&seal(now - 1)).is_some());
        assert!(tickets.decrypt(&seal(now - 2)).is_none());
        assert!(tickets.decrypt(&seal(now + 1)).is_none());
    }
}
