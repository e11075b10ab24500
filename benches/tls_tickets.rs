//! The cost of a TLS session ticket on a core: sealed (when a handshake sends one) and opened
//! (when a client resumes with one), as rustls asks percore's ticket maker, beside what the
//! ticket key's derivation adds: the seal of the design before (the period's key derived
//! from the process's root for each ticket, a random nonce), the same seal under one fixed
//! key (what a ticket costs without a key of its own), and one HKDF-Expand-SHA256 of 32
//! bytes (the derivation alone, and one step of the keys' ratchet).
//!
//! `cargo bench --bench tls_tickets -- [TICKETS]` (pin it: `taskset -c 1 …`)

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{KeyType, Prk, Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use percore::internals::SessionTickets;

/// Bytes of the session state in a ticket: about what rustls seals for a TLS 1.3 session
/// (its secret, suite, times, SNI name and ALPN protocol).
const STATE_BYTES: usize = 128;

fn main() {
    let tickets: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let maker = SessionTickets::new(3600).expect("random bytes for the keys");
    let state = [0x5a; STATE_BYTES];
    println!("{tickets} tickets of {STATE_BYTES} bytes of state, per ticket:");

    let sealed: Vec<Vec<u8>> = (0..1000).map(|_| maker.seal(&state).unwrap()).collect();
    let seal = time(tickets, || {
        black_box(maker.seal(black_box(&state)));
    });
    let mut i = 0;
    let open = time(tickets, || {
        i = (i + 1) % sealed.len();
        assert!(maker.open(black_box(&sealed[i])).is_some());
    });
    println!(
        "{:34} seal {seal:6.0} ns   open {open:6.0} ns",
        "percore: a key per ticket"
    );

    let random = SystemRandom::new();
    let root = Salt::new(HKDF_SHA256, b"percore session tickets").extract(&[3; 32]);
    let period = 472_222u32.to_be_bytes();
    let info = [&period[..]];
    let before = time(tickets, || {
        let okm = root.expand(&info, &AES_256_GCM).unwrap();
        let key = LessSafeKey::new(UnboundKey::from(okm));
        black_box(seal_with_random_nonce(&key, &random, &state));
    });
    println!(
        "{:34} seal {before:6.0} ns",
        "before: root -> key, random nonce"
    );
    let fixed = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
    let one_key = time(tickets, || {
        black_box(seal_with_random_nonce(&fixed, &random, &state));
    });
    println!("{:34} seal {one_key:6.0} ns", "one fixed key, random nonce");

    struct Bytes32;
    impl KeyType for Bytes32 {
        fn len(&self) -> usize {
            32
        }
    }
    let expand = time(tickets, || {
        let prk = Prk::new_less_safe(HKDF_SHA256, black_box(&[9; 32]));
        let mut out = [0; 32];
        prk.expand(&[b"percore ticket key ratchet"], Bytes32)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        black_box(out);
    });
    println!(
        "{:34}      {expand:6.0} ns",
        "HKDF-Expand-SHA256 (a ratchet step)"
    );
}

/// A ticket as percore sealed them before: period, random nonce, then the sealed state.
fn seal_with_random_nonce(key: &LessSafeKey, random: &SystemRandom, state: &[u8]) -> Vec<u8> {
    let mut nonce = [0; NONCE_LEN];
    random.fill(&mut nonce).unwrap();
    let mut ticket = Vec::with_capacity(4 + NONCE_LEN + state.len() + 16);
    ticket.extend_from_slice(&[0; 4]);
    ticket.extend_from_slice(&nonce);
    ticket.extend_from_slice(state);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&[0; 4]),
            &mut ticket[4 + NONCE_LEN..],
        )
        .unwrap();
    ticket.extend_from_slice(tag.as_ref());
    ticket
}

/// Nanoseconds per call of `f`, over `n` calls after a warm-up.
fn time(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    nanos(start.elapsed()) / f64::from(n)
}

fn nanos(time: Duration) -> f64 {
    time.as_secs_f64() * 1e9
}
