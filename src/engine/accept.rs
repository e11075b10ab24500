//! Accepting: one multishot accept per listening socket. A new connection becomes a record
//! in the table with a multishot receive armed, unless the core is full (a minimal 503) or,
//! with the PROXY protocol, its source may not speak for clients (closed at once).

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use io_uring::cqueue;

use super::conn::{Conn, Phase};
use super::connections::Connections;
use super::turn::Turn;
use super::Application;
use crate::http::session::Session;
use crate::proxy_protocol::is_trusted;
use crate::support::stderr::error_line;

/// Pause after an accept error such as EMFILE before accepting again, so that a core out of
/// file descriptors does not spin.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Sent to connections refused at `server.max_connections_per_core`.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: percore\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

impl<A: Application> Connections<A> {
    /// After an accept error's pause, accepts again on every listener that stopped.
    pub(super) fn retry_accept(&mut self, turn: &mut Turn<'_>) {
        if turn.listeners.retry_due(turn.now.ms) {
            let paused = self.tls.as_ref().is_some_and(|tls| tls.gate.paused());
            turn.listeners.arm_all(turn.ring, paused);
        }
    }

    /// Whether listener `index` is a TLS listener held back at the handshake bound.
    fn accept_paused(&self, turn: &Turn<'_>, index: usize) -> bool {
        turn.listeners.is_tls(index) && self.tls.as_ref().is_some_and(|tls| tls.gate.paused())
    }

    pub(super) fn on_accept(&mut self, turn: &mut Turn<'_>, index: usize, result: i32, flags: u32) {
        // The accept ended (its last completion): armed again while serving, unless its
        // listener is held back at the handshake bound or the error calls for a pause.
        let ended = !cqueue::more(flags) && turn.listeners.ended(index);
        if ended && turn.serving() && !self.accept_paused(turn, index) {
            if result >= 0 || is_transient_accept_error(-result) {
                turn.listeners.arm(index, turn.ring);
            } else {
                error_line(
                    Some(turn.reporting.links.cpu),
                    format_args!(
                        "accept failed: {}; accepting again in {ACCEPT_ERROR_BACKOFF_MS} ms",
                        io::Error::from_raw_os_error(-result)
                    ),
                );
                turn.listeners
                    .retry_at(turn.now.ms + ACCEPT_ERROR_BACKOFF_MS);
            }
        }
        if result < 0 {
            return;
        }
        // A connection accepted while the drain's cancel was on its way is served like the
        // others (its response says `Connection: close`): the client has sent its request,
        // and closing would lose it.
        let fd = result;
        if let Some(allowed) = &self.settings.proxy_from {
            // Only the balancers may say who the client is.
            if !peer_of(fd).is_some_and(|peer| is_trusted(allowed, peer.ip())) {
                turn.reporting.metrics.counters.borrow_mut().protocol_errors += 1;
                // SAFETY: a descriptor the kernel just gave us.
                unsafe { libc::close(fd) };
                return;
            }
        }
        let tls = turn.listeners.is_tls(index);
        if self.table.open() >= self.settings.max_connections {
            if tls {
                // A cleartext 503 means nothing to a TLS client: it just sees the close.
                // SAFETY: a descriptor the kernel just gave us.
                unsafe { libc::close(fd) };
            } else {
                refuse(fd);
            }
            turn.reporting.metrics.counters.borrow_mut().refused += 1;
            return;
        }
        turn.reporting.metrics.counters.borrow_mut().accepted += 1;
        let key = self.table.new_key();
        let session = Session::new();
        let mut conn = Box::new(Conn::new(
            fd,
            key,
            session,
            (turn.now.ms, turn.now.clock.stamp(turn.now.reaped_at)),
        ));
        if tls {
            if !self.start_tls(turn, &mut conn) {
                // SAFETY: the descriptor the kernel just gave us; the record is dropped.
                unsafe { libc::close(fd) };
                self.table.release(key);
                return;
            }
            // The handshake must finish within the head timeout.
            conn.phase = Phase::Handshake;
            conn.head_started = turn.now.ms;
        }
        if self.settings.proxy_from.is_some() {
            conn.phase = Phase::ProxyHeader;
        } else if turn.reporting.log.is_some() || !self.upstreams.groups.is_empty() {
            // The access log and `X-Forwarded-For` name the client: asked once per
            // connection (a PROXY header names it instead when there is one).
            conn.client = peer_of(fd).map(Box::new);
        }
        self.arm_recv(turn, &mut conn);
        self.schedule(turn, &conn);
        self.table.put(conn);
    }
}

/// The address at the other end of a socket.
pub(super) fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: the connection's own descriptor, open for the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).peer_addr().ok()?.as_socket()
}

/// Errors that concern one pending connection (it was reset before we took it); anything
/// else (EMFILE, ENFILE, ENOBUFS, ENOMEM) is a resource problem worth pausing for.
fn is_transient_accept_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNABORTED | libc::ECONNRESET | libc::EINTR | libc::EAGAIN | libc::ECANCELED
    )
}

/// Best-effort 503 without waiting, then close: the socket's send buffer is empty, so one
/// non-blocking send either takes it all or the client never learns why.
fn refuse(fd: RawFd) {
    // SAFETY: a descriptor we own; the buffer is valid for the call.
    unsafe {
        libc::send(
            fd,
            REFUSED.as_ptr().cast(),
            REFUSED.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::close(fd);
    }
}
