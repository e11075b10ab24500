//! One connection to an upstream server: its socket, the address it connects to (which the
//! kernel reads when the connect is submitted), its receive, its one send in flight, the
//! bytes of a response head still incomplete, and where it stands.

use std::os::fd::RawFd;
use std::rc::Rc;

use rustls::ClientConnection;
use socket2::SockAddr;

use super::super::buffers::Flight;
use super::super::table::Record;
use super::super::token::Key;
use super::outbound::CallSlot;
use super::stream::StreamSlot;

/// Where a link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum LinkState {
    /// Its connect is in flight.
    Connecting,
    /// Carrying a request for a client connection, and its response.
    Busy,
    /// In its server's pool, its receive armed to notice a close.
    Idle,
    /// Being closed: it waits for its operations in flight (connect, send) to complete.
    Closing,
}

/// One upstream connection.
pub(in crate::engine) struct Link {
    pub(in crate::engine) fd: RawFd,
    pub(in crate::engine) key: Key,
    pub(in crate::engine) state: LinkState,
    /// Its upstream and server.
    pub(in crate::engine) group: usize,
    pub(in crate::engine) server: usize,
    /// The client connection whose request it carries (while busy).
    pub(in crate::engine) client: Option<Key>,
    /// Or the task's call it carries (while busy).
    pub(in crate::engine) call: Option<Rc<CallSlot>>,
    /// Or the task's raw stream it is.
    pub(in crate::engine) stream: Option<Rc<StreamSlot>>,
    /// Where it connects to; read by the kernel when the connect is submitted.
    pub(in crate::engine) addr: SockAddr,
    pub(in crate::engine) connecting: bool,
    /// A multishot receive is armed, and which arming it is.
    pub(in crate::engine) receiving: bool,
    pub(in crate::engine) recv_epoch: u8,
    /// Not read for now: its client has a response's worth of output waiting.
    pub(in crate::engine) paused: bool,
    /// The send in flight, whose buffer the kernel reads until it completes.
    pub(in crate::engine) send: Option<Box<Flight>>,
    /// The server closed its side, or the connection failed.
    pub(in crate::engine) ended: bool,
    /// Bytes of a response head not complete yet.
    pub(in crate::engine) input: Vec<u8>,
    /// TLS to an `https://` server (`link_tls`).
    pub(in crate::engine) tls: Option<Box<ClientConnection>>,
    /// Requests it carried.
    pub(in crate::engine) served: u64,
    /// When it went idle, or was opened (ms since start).
    pub(in crate::engine) since: u64,
    /// When it was opened (ms since start).
    pub(in crate::engine) opened: u64,
}

impl Record for Link {
    fn key(&self) -> Key {
        self.key
    }
}

impl Link {
    /// Nothing of it is in the kernel's hands (its memory may go).
    pub(in crate::engine) fn settled(&self) -> bool {
        !self.connecting && self.send.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a pooled upstream connection costs the core while idle, beside the kernel's
    /// socket: its boxed record (its address kept for the connect) and a table slot. The
    /// issue's bound is 1 KiB.
    #[test]
    fn an_idle_pooled_link_stays_small() {
        let record = std::mem::size_of::<Link>();
        let slot = std::mem::size_of::<Option<Box<Link>>>() + std::mem::size_of::<u32>();
        assert!(
            record + slot <= 320,
            "a link is {record} B and its slot {slot} B"
        );
    }
}
