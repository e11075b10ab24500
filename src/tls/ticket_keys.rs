//! The keys session tickets are sealed with: one per period of `tls.ticket_lifetime_s`, each
//! derived from the one before by a one-way step, of which a holder keeps two.
//!
//! A ticket carries the session's resumption secret, so whoever holds the key a ticket was
//! sealed with can read every session that ticket came from, from a recording. The keys
//! therefore form a ratchet: the key of period `p + 1` is HKDF-Expand-SHA256 of the key of
//! period `p` (as the PRK) with the label [`RATCHET_LABEL`], and once the ratchet has moved
//! past a period its key is erased. A holder keeps the current period's key and the
//! previous one's (a ticket opens during its own period and the next) and the period's
//! number; nothing they were derived from is kept anywhere, so keys leaked at any time open
//! no ticket of an earlier period. The ratchet protects the past, not the future: leaked
//! keys lead to every later period's, until a start without handed keys draws new ones
//! (holders that agree without talking cannot do better).
//!
//! Every holder (each core, and the main thread that hands the keys to a successor) starts
//! from the same [`TicketKeys`] and moves it itself when it sees that the period has moved;
//! the step is deterministic, so all of them hold the same keys for the same period without
//! telling each other anything. A holder that sat idle through several periods steps through
//! each of them (0.3 to 0.5 µs a step, `benches/tls_tickets.rs`), erasing as it goes (a
//! clock that jumps forward by n periods costs every holder n steps once); a clock moved back
//! leaves the keys where they are until it catches up.
//!
//! Erasure: every key percore holds is in a heap box of [`Zeroizing`] bytes that is zeroed
//! when dropped, so moving a key (the ratchet's step, a clone per core) moves a pointer and
//! leaves no copy behind. What aws-lc-rs makes from a key was read in its source
//! (aws-lc-rs 1.19, aws-lc-sys 0.47): an `hkdf::Prk` made with `new_less_safe` keeps its
//! bytes inline and zeroes them in its `Drop`; aws-lc's `HKDF_expand` and `HMAC` cleanse
//! their stack state (`OPENSSL_cleanse`, `HMAC_CTX_cleanup`); a `LessSafeKey`'s AES key
//! schedule lives in an `EVP_AEAD_CTX` allocated with `OPENSSL_malloc` and released with
//! `EVP_AEAD_CTX_free`, whose `OPENSSL_free` cleanses the whole allocation (unlike
//! OpenSSL's). But `UnboundKey::from(Okm)` expands into a stack array it does not erase, so
//! percore expands into its own zeroed buffer and builds the key with `UnboundKey::new`.
//! Moves inside aws-lc-rs's constructors may leave copies in dead stack slots, which no safe
//! code can reach and the next calls overwrite.

use std::time::Duration;

use aws_lc_rs::aead::{LessSafeKey, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf::{KeyType, Prk, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// Bytes of a period key (and of the AES-256-GCM key each ticket is sealed under).
pub(crate) const KEY_BYTES: usize = 32;

/// HKDF-Expand's info for the step from one period's key to the next.
const RATCHET_LABEL: &[u8] = b"percore ticket key ratchet";

/// HKDF-Expand's info before a ticket's salt, for the key that seals that one ticket: a
/// different label from the ratchet's, so that no ticket key is ever a period key.
const TICKET_LABEL: &[u8] = b"percore ticket seal ";

/// What a hand-over starts with, so that another format is told from this one.
const HANDOVER_MAGIC: &[u8; 4] = b"PTK1";

/// Bytes of a hand-over: the magic, the lifetime and the period (big-endian), the previous
/// period's key, the current one's.
pub(crate) const HANDOVER_BYTES: usize = 4 + 4 + 4 + 2 * KEY_BYTES;

/// Bytes a percore from before the ratchet hands over: its root secret, which this one does
/// not use.
pub(crate) const ROOT_SECRET_BYTES: usize = 32;

/// Key bytes in a heap box, zeroed when dropped.
type Secret = Box<Zeroizing<[u8; KEY_BYTES]>>;

fn zeroed() -> Secret {
    Box::new(Zeroizing::new([0; KEY_BYTES]))
}

/// An output length for HKDF-Expand.
struct Bytes(usize);

impl KeyType for Bytes {
    fn len(&self) -> usize {
        self.0
    }
}

/// One period's key.
pub(crate) struct PeriodKey(Secret);

impl PeriodKey {
    fn random(random: &SystemRandom) -> Result<PeriodKey, String> {
        let mut key = zeroed();
        random
            .fill(&mut key[..])
            .map_err(|_| "cannot draw random bytes for the TLS ticket keys".to_string())?;
        Ok(PeriodKey(key))
    }

    fn from_bytes(bytes: &[u8]) -> PeriodKey {
        let mut key = zeroed();
        key.copy_from_slice(bytes);
        PeriodKey(key)
    }

    /// HKDF-Expand-SHA256 of this key (a uniformly random 32 bytes, so a PRK as it is) with
    /// `info`, into a zeroed box.
    fn expand(&self, info: &[&[u8]]) -> Secret {
        let prk = Prk::new_less_safe(HKDF_SHA256, &self.0[..]);
        let mut out = zeroed();
        prk.expand(info, Bytes(KEY_BYTES))
            .and_then(|okm| okm.fill(&mut out[..]))
            .expect("HKDF-SHA256 expands to 32 bytes");
        out
    }

    /// The next period's key.
    fn next(&self) -> PeriodKey {
        PeriodKey(self.expand(&[RATCHET_LABEL]))
    }

    /// The bytes of the key that seals the one ticket whose salt is `salt`.
    fn ticket_key_bytes(&self, salt: &[u8]) -> Secret {
        self.expand(&[TICKET_LABEL, salt])
    }

    /// The AES-256-GCM key that seals the one ticket whose salt is `salt`.
    pub(crate) fn ticket_key(&self, salt: &[u8]) -> Option<LessSafeKey> {
        let bytes = self.ticket_key_bytes(salt);
        let key = UnboundKey::new(&AES_256_GCM, &bytes[..]).ok()?;
        Some(LessSafeKey::new(key))
    }
}

impl Clone for PeriodKey {
    /// A copy made in its own box (`Box::clone` may build the value on the stack first).
    fn clone(&self) -> PeriodKey {
        PeriodKey::from_bytes(&self.0[..])
    }
}

/// The ticket keys one holder keeps: the current period's and the previous one's.
#[derive(Clone)]
pub(crate) struct TicketKeys {
    /// Seconds per period (`tls.ticket_lifetime_s`).
    lifetime: u32,
    /// The current period: Unix time over `lifetime`.
    period: u32,
    current: PeriodKey,
    previous: PeriodKey,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("lifetime", &self.lifetime)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// The period of `lifetime` seconds that Unix time `now` falls in (the last one a `u32`
/// counts for a time beyond it).
fn period_of(now: i64, lifetime: u32) -> u32 {
    let periods = now.max(0) as u64 / u64::from(lifetime.max(1));
    periods.min(u64::from(u32::MAX)) as u32
}

impl TicketKeys {
    /// New random keys for the period `now` falls in (and a random previous one, under which
    /// no ticket was sealed), periods of `lifetime` seconds.
    pub(crate) fn generate(lifetime: u32, now: i64) -> Result<TicketKeys, String> {
        let lifetime = lifetime.max(1);
        let random = SystemRandom::new();
        Ok(TicketKeys {
            lifetime,
            period: period_of(now, lifetime),
            current: PeriodKey::random(&random)?,
            previous: PeriodKey::random(&random)?,
        })
    }

    /// Seconds per period.
    pub(crate) fn lifetime(&self) -> u32 {
        self.lifetime
    }

    /// The current period and its key.
    pub(crate) fn current(&self) -> (u32, &PeriodKey) {
        (self.period, &self.current)
    }

    /// The key of `period` while it is held: during that period and the next.
    pub(crate) fn key(&self, period: u32) -> Option<&PeriodKey> {
        if period == self.period {
            Some(&self.current)
        } else if period.checked_add(1) == Some(self.period) {
            Some(&self.previous)
        } else {
            None
        }
    }

    /// Moves the ratchet to the period Unix time `now` falls in, one step per period, each
    /// erasing the key that falls out. A time before the current period moves nothing.
    pub(crate) fn catch_up(&mut self, now: i64) {
        let target = period_of(now, self.lifetime);
        while self.period < target {
            let next = self.current.next();
            // Boxes change places; the key that falls out is zeroed as it drops.
            self.previous = std::mem::replace(&mut self.current, next);
            self.period += 1;
        }
    }

    /// Keys for periods of `lifetime` seconds at `now`: these, moved on, when their lifetime
    /// is that one; otherwise new ones (a period of another length is another numbering, and
    /// the tickets sealed before do not open).
    pub(crate) fn fit(&mut self, lifetime: u32, now: i64) -> Result<(), String> {
        if lifetime.max(1) != self.lifetime {
            *self = TicketKeys::generate(lifetime, now)?;
        }
        self.catch_up(now);
        Ok(())
    }

    /// How long from `now` until the next period begins (at least a second).
    pub(crate) fn next_step_in(&self, now: i64) -> Duration {
        let next = (u64::from(self.period) + 1) * u64::from(self.lifetime);
        Duration::from_secs(next.saturating_sub(now.max(0) as u64).max(1))
    }

    /// The bytes handed to a successor: [`HANDOVER_BYTES`] of them, zeroed when dropped.
    pub(crate) fn handover(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(HANDOVER_BYTES));
        bytes.extend_from_slice(HANDOVER_MAGIC);
        bytes.extend_from_slice(&self.lifetime.to_be_bytes());
        bytes.extend_from_slice(&self.period.to_be_bytes());
        bytes.extend_from_slice(&self.previous.0[..]);
        bytes.extend_from_slice(&self.current.0[..]);
        bytes
    }

    /// The keys a predecessor handed over, moved on to `now`. `None` when the predecessor
    /// was a percore from before the ratchet, which handed its root secret instead (the
    /// tickets it sealed do not open here). An error, on one line, for bytes of neither
    /// form, and for keys of a period after `now`'s (the clock went back between the two
    /// processes: this one cannot tell which keys the other cores of its predecessor hold).
    pub(crate) fn from_handover(bytes: &[u8], now: i64) -> Result<Option<TicketKeys>, String> {
        if bytes.len() == ROOT_SECRET_BYTES {
            return Ok(None);
        }
        if bytes.len() != HANDOVER_BYTES || &bytes[..4] != HANDOVER_MAGIC {
            return Err(format!(
                "the TLS ticket keys handed over are malformed ({} bytes)",
                bytes.len()
            ));
        }
        let number = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let (lifetime, period) = (number(4), number(8));
        if lifetime == 0 {
            return Err("the TLS ticket keys handed over have a lifetime of 0 s".into());
        }
        let now_period = period_of(now, lifetime);
        if period > now_period {
            return Err(format!(
                "the TLS ticket keys handed over are for period {period} of {lifetime} s, \
                 after this clock's period {now_period}: the clock went back"
            ));
        }
        let mut keys = TicketKeys {
            lifetime,
            period,
            previous: PeriodKey::from_bytes(&bytes[12..12 + KEY_BYTES]),
            current: PeriodKey::from_bytes(&bytes[12 + KEY_BYTES..]),
        };
        keys.catch_up(now);
        Ok(Some(keys))
    }
}

#[cfg(test)]
impl TicketKeys {
    /// The raw bytes of both keys held, previous then current.
    pub(crate) fn held(&self) -> [[u8; KEY_BYTES]; 2] {
        [**self.previous.0, **self.current.0]
    }
}

#[cfg(test)]
impl PeriodKey {
    /// The bytes of the key of the ticket with `salt`.
    pub(crate) fn ticket_key_for_test(&self, salt: &[u8]) -> [u8; KEY_BYTES] {
        **self.ticket_key_bytes(salt)
    }
}
