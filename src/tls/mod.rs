//! TLS on the core's own ring: what the engine needs to terminate HTTPS itself, each core on
//! its own, with nothing shared between cores on the handshake or request path.
//!
//! - `setup`: the certificates read once, and rustls's configurations on each core
//!   (`certs`, `resolver` for SNI, `tickets` for resumption on any core, `suites` for the
//!   server's choice of cipher suite);
//! - `ticket_keys`: the ratchet of ticket keys each core, the main thread and a successor
//!   hold a copy of (`confined` keeps a core's copy to its own thread);
//! - `conn`: one connection's TLS between the ring and the HTTP session: rustls's handshake,
//!   then `record`, percore's record layer, which decrypts in place in the receive buffers
//!   and encrypts each batch of responses as it is copied out, and `traffic`, what the
//!   records carry after the handshake and the limits on what a client may make percore do;
//! - [`TlsInfo`]: what handlers and the access log learn of a connection's TLS.

mod certs;
mod client;
mod confined;
mod conn;
mod hello;
mod info;
mod record;
mod resolver;
mod setup;
mod suites;
mod ticket_keys;
mod tickets;
mod traffic;

#[cfg(test)]
mod tests;

pub(crate) use client::{client_config, server_name};
pub(crate) use conn::{Event, Failure, Step, TlsConn};
pub use info::TlsInfo;
pub(crate) use record::{MAX_FRAGMENT, MAX_OVERHEAD};
pub(crate) use setup::{ServerConfigs, TlsSetup};
pub(crate) use ticket_keys::{TicketKeys, HANDOVER_BYTES};
#[cfg(feature = "internals")]
pub(crate) use tickets::Tickets;

/// What a cleartext HTTP request sent to the TLS port gets, before the connection closes
/// (nginx answers the same way).
pub(crate) const CLEARTEXT_ON_TLS_PORT: &[u8] = b"HTTP/1.1 400 Bad Request\r\nServer: percore\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 59\r\nConnection: close\r\n\r\nThis port speaks HTTPS: the request was sent in cleartext.\n";

/// What the first byte of a connection on the TLS port says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// A TLS handshake record.
    Tls,
    /// A cleartext HTTP request (a method's first letter).
    Cleartext,
    /// Neither.
    Garbage,
}

/// Tells a TLS connection from a cleartext request and from garbage by its first byte.
pub(crate) fn opening(first: u8) -> Opening {
    match first {
        0x16 => Opening::Tls,
        b'A'..=b'Z' => Opening::Cleartext,
        _ => Opening::Garbage,
    }
}
