//! TLS on an upstream connection (`https://` servers): rustls as the client, its records
//! carried by the link's own sends and receives on the ring. What the relay or the call
//! writes goes in as plaintext (buffered by rustls until the handshake is done, then
//! sealed); what comes back is opened before the relay or the call sees it, so that a pooled
//! connection's session tickets or key updates are never taken for bytes nobody asked for.

use std::io::{ErrorKind, Read, Write};

use super::super::conn::Conn;
use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;

impl<A: Application> Connections<A> {
    /// Hands `plaintext` to the link's TLS and sends what that makes.
    pub(super) fn link_tls_send(&mut self, turn: &mut Turn<'_>, link: &mut Link, plaintext: &[u8]) {
        if let Some(tls) = link.tls.as_mut() {
            // Buffered without a limit (`set_buffer_limit(None)`): it cannot fail short.
            let _ = tls.writer().write_all(plaintext);
        }
        self.link_tls_flush(turn, link);
    }

    /// Sends the records the link's TLS has waiting, unless a send is in flight (its
    /// completion calls this again).
    pub(super) fn link_tls_flush(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.send.is_some() {
            return;
        }
        let Some(tls) = link.tls.as_mut() else {
            return;
        };
        if !tls.wants_write() {
            return;
        }
        let mut buf = self.buffers.writes.take();
        while tls.wants_write() {
            if tls.write_tls(&mut buf).is_err() {
                break;
            }
        }
        if buf.is_empty() {
            return self.buffers.writes.give(buf);
        }
        self.send_buffer(turn, link, buf);
    }

    /// Records from the server: opened, and their plaintext handed on as the link's bytes.
    /// A record that does not open (or a handshake that fails: an unknown certificate, a
    /// wrong name) ends the link. Returns the client connection when its response is
    /// through.
    pub(super) fn link_tls_data(
        &mut self,
        turn: &mut Turn<'_>,
        link: &mut Link,
        mut data: &[u8],
    ) -> Option<Box<Conn>> {
        let mut plain = self.buffers.reads.take();
        let mut failed = false;
        if let Some(tls) = link.tls.as_mut() {
            'records: while !data.is_empty() && !failed {
                if tls.read_tls(&mut data).is_err() || tls.process_new_packets().is_err() {
                    failed = true;
                    break;
                }
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    match tls.reader().read(&mut chunk) {
                        Ok(0) => break 'records,
                        Ok(n) => plain.extend_from_slice(&chunk[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
            }
        }
        // Alerts, handshake replies, key updates.
        self.link_tls_flush(turn, link);
        let mut finished = None;
        if !plain.is_empty() {
            finished = self.link_data(turn, link, &plain);
        }
        self.buffers.reads.give(plain);
        if failed && finished.is_none() {
            link.ended = true;
            finished = self.link_ended(turn, link);
        }
        finished
    }
}
