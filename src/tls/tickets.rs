//! Session tickets every core can open: resumption works whichever core a returning client
//! lands on, and nothing is shared between cores on the handshake path.
//!
//! Each core has its own [`Tickets`], made on its thread from a copy of the process's
//! [`TicketKeys`] and used there only: it moves its keys on itself when it sees that the
//! period has moved (see `ticket_keys`), and every core's keys agree without a lock, an
//! atomic or a message. rustls wants a ticket maker that is `Send + Sync` behind an `Arc`
//! with `&self` methods; the keys sit in a [`Confined`] cell, which lends them to the thread
//! that made it only.
//!
//! A ticket is its period (4 bytes, big-endian), a random salt ([`SALT_BYTES`]), then the
//! session's state sealed with AES-256-GCM under a key made for this one ticket,
//! HKDF-Expand(period key, label ‖ salt), with a fixed nonce, the period and salt as
//! associated data. Why a key per ticket rather than a random nonce under the period key:
//! the period key is shared by every core, the main thread and a successor, so a nonce
//! unique by construction would need an owner for each part of the nonce space across
//! processes (a core number and a counter repeat after an upgrade); a 96-bit random nonce
//! is unique only by chance, and the chance runs out at about 2^32 tickets under one key.
//! A ticket key is used for one seal, so a nonce never repeats under a key unless a 256-bit
//! salt repeats. It costs one HKDF-Expand (one HMAC-SHA256) and an AES key schedule per
//! ticket sealed or opened: `benches/tls_tickets.rs` measured 1.2 µs a seal and 0.8 µs an
//! open (128 bytes of state), where the design before (HKDF's extract and expand of the
//! period's key for each ticket, a random nonce) took 1.5 µs a seal and one fixed key would
//! take 0.6 µs; a resumed handshake takes about 136 µs.
//!
//! A ticket opens during its own period and the next, so it is good for between one and two
//! lifetimes, and the lifetime clients are told is one.

use aws_lc_rs::aead::{Aad, Nonce, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use super::confined::Confined;
use super::ticket_keys::TicketKeys;

/// Bytes of a ticket's salt: as many as a key's, so that two tickets share a key only if
/// 256 random bits repeat.
pub(crate) const SALT_BYTES: usize = 32;

/// Bytes before a ticket's ciphertext: its period, then its salt.
const HEADER: usize = 4 + SALT_BYTES;

/// The nonce of every ticket: each is sealed under a key of its own.
const NONCE: [u8; NONCE_LEN] = [0; NONCE_LEN];

/// One core's ticket maker.
pub(crate) struct Tickets {
    lifetime: u32,
    keys: Confined<TicketKeys>,
    random: SystemRandom,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Tickets {
    /// Tickets under `keys`, for the calling thread only (on any other, no ticket is sealed
    /// or opened).
    pub(crate) fn new(keys: TicketKeys) -> Tickets {
        Tickets {
            lifetime: keys.lifetime(),
            keys: Confined::new(keys),
            random: SystemRandom::new(),
        }
    }

    /// Moves the keys on to Unix time `now` (nothing when called on another thread).
    pub(crate) fn catch_up(&self, now: i64) {
        self.keys.with(|keys| keys.catch_up(now));
    }

    /// A ticket of `plain` sealed at Unix time `now`.
    pub(crate) fn seal_at(&self, plain: &[u8], now: i64) -> Option<Vec<u8>> {
        let mut salt = [0u8; SALT_BYTES];
        self.random.fill(&mut salt).ok()?;
        let tag_len = AES_256_GCM.tag_len();
        self.keys
            .with(|keys| {
                keys.catch_up(now);
                let (period, key) = keys.current();
                let key = key.ticket_key(&salt)?;
                let mut ticket = Vec::with_capacity(HEADER + plain.len() + tag_len);
                ticket.extend_from_slice(&period.to_be_bytes());
                ticket.extend_from_slice(&salt);
                ticket.extend_from_slice(plain);
                let (header, body) = ticket.split_at_mut(HEADER);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(&*header),
                        body,
                    )
                    .ok()?;
                ticket.extend_from_slice(tag.as_ref());
                Some(ticket)
            })
            .flatten()
    }

    /// What `ticket` holds, if it is one of this process's, sealed during the period that
    /// Unix time `now` falls in or the one before.
    pub(crate) fn open_at(&self, ticket: &[u8], now: i64) -> Option<Vec<u8>> {
        if ticket.len() < HEADER + AES_256_GCM.tag_len() {
            return None;
        }
        let (header, sealed) = ticket.split_at(HEADER);
        let period = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let salt = &header[4..];
        self.keys
            .with(|keys| {
                keys.catch_up(now);
                let key = keys.key(period)?.ticket_key(salt)?;
                let mut plain = sealed.to_vec();
                let len = key
                    .open_in_place(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(header),
                        &mut plain,
                    )
                    .ok()?
                    .len();
                plain.truncate(len);
                Some(plain)
            })
            .flatten()
    }
}

fn unix_now() -> i64 {
    crate::support::civil_time::unix_now()
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, unix_now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, unix_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ticket_keys::{HANDOVER_BYTES, KEY_BYTES};

    const LIFETIME: u32 = 3600;

    /// Ten seconds into period 472,222 (2023-11-14).
    const START: i64 = 472_222 * LIFETIME as i64 + 10;

    /// Ten seconds into the period `periods` after the start's.
    fn at(periods: i64) -> i64 {
        START + periods * i64::from(LIFETIME)
    }

    fn keys() -> TicketKeys {
        TicketKeys::generate(LIFETIME, START).unwrap()
    }

    #[test]
    fn two_cores_that_ratchet_on_their_own_agree() {
        let keys = keys();
        let (busy, idle) = (Tickets::new(keys.clone()), Tickets::new(keys.clone()));
        // One core seals in every period; the other first wakes three periods on.
        for period in 0..=3 {
            assert!(busy.seal_at(b"x", at(period)).is_some());
        }
        let from_busy = busy.seal_at(b"busy", at(3)).unwrap();
        assert_eq!(
            idle.open_at(&from_busy, at(3)).as_deref(),
            Some(&b"busy"[..])
        );
        let from_idle = idle.seal_at(b"idle", at(3)).unwrap();
        assert_eq!(
            busy.open_at(&from_idle, at(3)).as_deref(),
            Some(&b"idle"[..])
        );
        // Step by step or in one go, the same keys.
        let (mut stepped, mut jumped) = (keys.clone(), keys);
        for period in 1..=3 {
            stepped.catch_up(at(period));
        }
        jumped.catch_up(at(3));
        assert_eq!(stepped.held(), jumped.held());
        assert_eq!(stepped.current().0, jumped.current().0);
    }

    #[test]
    fn a_ticket_opens_in_its_period_and_the_next_only() {
        let keys = keys();
        let ticket = Tickets::new(keys.clone()).seal_at(b"state", at(0)).unwrap();
        let last_second_of_next = at(2) - 11;
        for (now, opens) in [
            (at(0), true),
            (at(1), true),
            (last_second_of_next, true),
            (at(2), false),
            (at(9), false),
        ] {
            let core = Tickets::new(keys.clone());
            assert_eq!(core.open_at(&ticket, now).is_some(), opens, "at {now}");
        }
        // A ticket of a period this core has not reached does not open on it.
        let ahead = Tickets::new(keys.clone()).seal_at(b"state", at(1)).unwrap();
        assert!(Tickets::new(keys.clone()).open_at(&ahead, at(0)).is_none());
        // Once a core has seen period 2, a clock moved back does not bring period 0 back.
        let core = Tickets::new(keys);
        assert!(core.open_at(&ticket, at(2)).is_none());
        assert!(core.open_at(&ticket, at(1)).is_none());
    }

    #[test]
    fn after_two_steps_the_first_key_is_nowhere_in_the_state() {
        let mut keys = keys();
        let [_, first] = keys.held();
        keys.catch_up(at(1));
        assert!(
            keys.held().contains(&first),
            "one step keeps it as the previous key"
        );
        keys.catch_up(at(2));
        assert!(!keys.held().contains(&first));
        let handed = keys.handover();
        assert!(!handed.windows(KEY_BYTES).any(|bytes| bytes == first));
        // What is held is the chain's next two links, from which the first is not derived.
        let mut again = TicketKeys::from_handover(&handed, at(2)).unwrap().unwrap();
        assert_eq!(again.held(), keys.held());
        again.catch_up(at(3));
        assert!(!again.held().contains(&first));
    }

    #[test]
    fn keys_handed_over_open_the_predecessors_tickets() {
        let keys = keys();
        let ticket = Tickets::new(keys.clone()).seal_at(b"state", at(0)).unwrap();
        let handed = keys.handover();
        assert_eq!(handed.len(), HANDOVER_BYTES);
        for (start, opens) in [(at(0), true), (at(1), true), (at(2), false)] {
            let restored = TicketKeys::from_handover(&handed, start).unwrap().unwrap();
            let successor = Tickets::new(restored);
            assert_eq!(
                successor.open_at(&ticket, start).is_some(),
                opens,
                "at {start}"
            );
        }
        // The successor's tickets open on the predecessor's cores too.
        let successor = Tickets::new(TicketKeys::from_handover(&handed, at(1)).unwrap().unwrap());
        let new_ticket = successor.seal_at(b"new", at(1)).unwrap();
        let predecessor = Tickets::new(keys);
        assert_eq!(
            predecessor.open_at(&new_ticket, at(1)).as_deref(),
            Some(&b"new"[..])
        );
    }

    #[test]
    fn handed_keys_from_the_future_or_malformed_are_refused() {
        let handed = keys().handover();
        let error = TicketKeys::from_handover(&handed, at(-1)).unwrap_err();
        assert!(error.contains("the clock went back"), "{error}");
        assert!(!error.contains('\n'));
        let mut long = handed.to_vec();
        long.push(0);
        let mut magic = handed.to_vec();
        magic[0] ^= 1;
        let mut no_lifetime = handed.to_vec();
        no_lifetime[4..8].fill(0);
        for bytes in [
            &handed[..HANDOVER_BYTES - 1],
            &long,
            &magic,
            &no_lifetime,
            &[],
        ] {
            let error = TicketKeys::from_handover(bytes, at(0)).unwrap_err();
            assert!(
                error.starts_with("the TLS ticket keys handed over "),
                "{error}"
            );
        }
        // A percore from before the ratchet hands its 32-byte root: not used, not an error.
        assert!(TicketKeys::from_handover(&[7; 32], at(0))
            .unwrap()
            .is_none());
    }

    #[test]
    fn tampered_tickets_are_refused() {
        let keys = keys();
        let core = Tickets::new(keys.clone());
        let ticket = core.seal_at(b"resumption state", at(1)).unwrap();
        assert!(core.open_at(&ticket, at(1)).is_some());
        // Every byte matters: the period (period 0's key is held too), the salt, the
        // ciphertext and the tag.
        for at_byte in 0..ticket.len() {
            let mut tampered = ticket.clone();
            tampered[at_byte] ^= 0x01;
            assert!(core.open_at(&tampered, at(1)).is_none(), "byte {at_byte}");
        }
        for len in [0, 4, HEADER, HEADER + 15, ticket.len() - 1] {
            assert!(core.open_at(&ticket[..len], at(1)).is_none(), "{len} bytes");
        }
        let other = Tickets::new(TicketKeys::generate(LIFETIME, at(1)).unwrap());
        assert!(other.open_at(&ticket, at(1)).is_none());
    }

    #[test]
    fn every_ticket_has_a_salt_and_a_key_of_its_own() {
        let keys = keys();
        let core = Tickets::new(keys.clone());
        let tickets: Vec<Vec<u8>> = (0..1000)
            .map(|_| core.seal_at(b"the same state", at(0)).unwrap())
            .collect();
        let salts: std::collections::HashSet<&[u8]> =
            tickets.iter().map(|ticket| &ticket[4..HEADER]).collect();
        assert_eq!(salts.len(), tickets.len());
        let sealed: std::collections::HashSet<&[u8]> =
            tickets.iter().map(|ticket| &ticket[HEADER..]).collect();
        assert_eq!(sealed.len(), tickets.len());
        let (_, period_key) = keys.current();
        let ticket_keys: std::collections::HashSet<[u8; KEY_BYTES]> = salts
            .iter()
            .map(|salt| period_key.ticket_key_for_test(salt))
            .collect();
        assert_eq!(ticket_keys.len(), tickets.len());
        assert!(!ticket_keys.contains(&keys.held()[1]));
    }

    #[test]
    fn another_lifetime_means_new_keys_and_the_same_one_keeps_them() {
        let mut keys = keys();
        let ticket = Tickets::new(keys.clone()).seal_at(b"state", at(0)).unwrap();
        keys.fit(LIFETIME, at(1)).unwrap();
        assert!(Tickets::new(keys.clone()).open_at(&ticket, at(1)).is_some());
        keys.fit(60, at(1)).unwrap();
        assert_eq!(keys.lifetime(), 60);
        assert_eq!(keys.current().0, (at(1) / 60) as u32);
        assert!(Tickets::new(keys).open_at(&ticket, at(1)).is_none());
    }

    #[test]
    fn the_next_step_is_due_when_the_next_period_begins() {
        let keys = keys();
        assert_eq!(keys.next_step_in(at(0)).as_secs(), u64::from(LIFETIME) - 10);
        assert_eq!(keys.next_step_in(at(1)).as_secs(), 1, "overdue: at once");
    }

    #[test]
    fn a_core_moved_on_at_its_tick_has_dropped_what_sealing_would_have() {
        let core = Tickets::new(keys());
        let ticket = core.seal_at(b"state", at(0)).unwrap();
        core.catch_up(at(1));
        assert!(core.open_at(&ticket, at(1)).is_some());
        core.catch_up(at(2));
        assert!(
            core.open_at(&ticket, at(1)).is_none(),
            "period 0's key is gone"
        );
    }

    #[test]
    fn a_core_seals_and_opens_on_its_own_thread_only() {
        let core = std::sync::Arc::new(Tickets::new(keys()));
        let ticket = core.seal_at(b"state", at(0)).unwrap();
        let elsewhere = core.clone();
        let (sealed, opened) = std::thread::spawn(move || {
            (
                elsewhere.seal_at(b"state", at(0)),
                elsewhere.open_at(&ticket, at(0)),
            )
        })
        .join()
        .unwrap();
        assert_eq!((sealed, opened), (None, None));
    }
}
