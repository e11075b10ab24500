//! An upstream connection on the ring: its socket and connect, its one send in flight,
//! its multishot receive, its completions, and its close (once the kernel holds nothing of
//! it). What its events mean for the relay it carries is `link_events`.

use io_uring::{cqueue, opcode, squeue, types};
use rustls::ClientConnection;
use socket2::{Domain, SockAddr, Socket, Type};

use super::super::buffer_ring::RECV_GROUP;
use super::super::buffers::Flight;
use super::super::connections::Connections;
use super::super::token::{token, Key, Op, NO_KEY};
use super::super::turn::Turn;
use super::super::Application;
use super::link::{Link, LinkState};
use super::LinkOp;
use crate::config::ServerAddr;

impl<A: Application> Connections<A> {
    /// Opens a connection to server `server` of upstream `group`: its socket, and a connect
    /// on the ring. The link is the caller's to give an owner and put in the table. None if
    /// no socket could be made.
    pub(super) fn open_link(
        &mut self,
        turn: &mut Turn<'_>,
        group: usize,
        server: usize,
    ) -> Option<Box<Link>> {
        let target = self.upstreams.groups[group].server(server);
        let addr = target.addr.clone();
        let tls = match &target.tls_name {
            // An `https://` server: a TLS client for it (none if its configuration could
            // not be made, which the start reported).
            Some(name) => {
                let config = self.upstreams.groups[group].tls.clone()?;
                let mut tls = ClientConnection::new(config, name.clone()).ok()?;
                tls.set_buffer_limit(None);
                Some(Box::new(tls))
            }
            None => None,
        };
        let (domain, sockaddr) = match &*addr {
            ServerAddr::Tcp(addr) => (Domain::for_address(*addr), SockAddr::from(*addr)),
            ServerAddr::Unix(path) => (Domain::UNIX, SockAddr::unix(path).ok()?),
        };
        let socket = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), None).ok()?;
        if matches!(*addr, ServerAddr::Tcp(_)) {
            let _ = socket.set_nodelay(true);
        }
        let fd = std::os::fd::IntoRawFd::into_raw_fd(socket);
        let key = self.upstreams.links.new_key();
        let link = Box::new(Link {
            fd,
            key,
            state: LinkState::Connecting,
            group,
            server,
            client: None,
            call: None,
            stream: None,
            addr: sockaddr,
            connecting: true,
            receiving: false,
            recv_epoch: 0,
            paused: false,
            send: None,
            ended: false,
            input: Vec::new(),
            tls,
            served: 0,
            since: turn.now.ms,
            opened: turn.now.ms,
        });
        let connect =
            opcode::Connect::new(types::Fd(fd), link.addr.as_ptr().cast(), link.addr.len())
                .build()
                .user_data(token(Op::Upstream, key, LinkOp::Connect.bits()));
        // SAFETY: the address lives in the boxed link, which is kept until this connect
        // completes (`close_link` waits for it).
        unsafe { turn.ring.push(&connect) };
        turn.reporting
            .metrics
            .counters
            .borrow_mut()
            .upstream_connects += 1;
        self.count_server(turn, group, server, |c| c.connects += 1);
        Some(link)
    }

    /// An idle connection to server `server` of upstream `group` from its pool, made busy;
    /// pooled links found closed on the way are closed.
    pub(super) fn pooled_link(
        &mut self,
        turn: &mut Turn<'_>,
        group: usize,
        server: usize,
    ) -> Option<Box<Link>> {
        while let Some(key) = self.upstreams.groups[group].take_idle(server) {
            let Some(mut link) = self.upstreams.links.take(key) else {
                continue;
            };
            let lifetime = self.upstreams.groups[group].settings.keepalive_time_ms;
            let old = turn.now.ms.saturating_sub(link.opened) >= lifetime;
            if link.state != LinkState::Idle || link.ended || old {
                self.close_link(turn, link);
                continue;
            }
            link.state = LinkState::Busy;
            self.count_server(turn, group, server, |c| c.reused += 1);
            return Some(link);
        }
        None
    }

    /// Sends `request` on `link` (see [`Connections::send_bytes`]) and reads for its answer.
    pub(super) fn send_request(&mut self, turn: &mut Turn<'_>, link: &mut Link, request: &[u8]) {
        link.served += 1;
        self.send_bytes(turn, link, request);
        self.arm_link_recv(turn, link);
    }

    /// Sends `bytes` on `link`: sealed by its TLS (which sends as it can), or copied into a
    /// pooled buffer as its one send in flight (the caller checks that none is).
    pub(super) fn send_bytes(&mut self, turn: &mut Turn<'_>, link: &mut Link, bytes: &[u8]) {
        if link.tls.is_some() {
            return self.link_tls_send(turn, link, bytes);
        }
        let mut buf = self.buffers.writes.take();
        buf.extend_from_slice(bytes);
        self.send_buffer(turn, link, buf);
    }

    /// As [`Connections::send_bytes`], with the bytes already in a pooled buffer, given up.
    pub(super) fn send_owned(&mut self, turn: &mut Turn<'_>, link: &mut Link, buf: Vec<u8>) {
        if link.tls.is_some() {
            self.link_tls_send(turn, link, &buf);
            return self.buffers.writes.give(buf);
        }
        self.send_buffer(turn, link, buf);
    }

    /// Sends `buf` (a pooled buffer) as the link's one send in flight; the link keeps it
    /// until the send completes.
    pub(super) fn send_buffer(&mut self, turn: &mut Turn<'_>, link: &mut Link, buf: Vec<u8>) {
        let mut flight = self.buffers.flights.take();
        *flight = Flight {
            buf,
            sent: 0,
            chunk: false,
            since: turn.now.ms,
        };
        link.send = Some(flight);
        self.submit_link_send(turn, link);
    }

    pub(super) fn submit_link_send(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        let Some(flight) = &link.send else {
            return;
        };
        let rest = &flight.buf[flight.sent..];
        let send = opcode::Send::new(types::Fd(link.fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(Op::Upstream, link.key, LinkOp::Send.bits()));
        // SAFETY: the buffer stays in the link, untouched, until this send completes; a link
        // closed meanwhile waits for it (`close_link`), and a core leaving cancels and reaps
        // it first, or leaks the buffer.
        unsafe { turn.ring.push(&send) };
    }

    pub(super) fn arm_link_recv(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.receiving || link.ended || link.paused {
            return;
        }
        link.recv_epoch = link.recv_epoch.wrapping_add(1) & 3;
        let recv = opcode::RecvMulti::new(types::Fd(link.fd), RECV_GROUP)
            .build()
            .user_data(token(
                Op::Upstream,
                link.key,
                LinkOp::Recv(link.recv_epoch).bits(),
            ));
        turn.push_plain(&recv);
        link.receiving = true;
    }

    pub(super) fn cancel_link_recv(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        if link.receiving {
            turn.ring.cancel(token(
                Op::Upstream,
                link.key,
                LinkOp::Recv(link.recv_epoch).bits(),
            ));
            link.receiving = false;
        }
    }

    /// A completion for link `key`.
    pub(in crate::engine) fn on_upstream(
        &mut self,
        turn: &mut Turn<'_>,
        key: Key,
        bits: u8,
        result: i32,
        flags: u32,
    ) {
        let op = LinkOp::of(bits);
        let buffer = cqueue::buffer_select(flags);
        // A client whose response is through, to go on once the link is back in its table
        // (its next request may take this very link from the pool).
        let mut finished = None;
        let Some(mut link) = self.upstreams.links.take(key) else {
            if let Some(bid) = buffer {
                turn.ring.recycle(bid);
            }
            return;
        };
        match op {
            LinkOp::Connect => {
                link.connecting = false;
                // A link closed while connecting only waited for this completion.
                match (link.state, result < 0) {
                    (LinkState::Closing, _) => {}
                    (_, true) => {
                        link.ended = true;
                        self.server_failed(turn, link.group, link.server);
                        self.link_failed(turn, &mut link, true);
                    }
                    (_, false) => {
                        link.state = LinkState::Busy;
                        self.link_connected(turn, &mut link);
                    }
                }
            }
            LinkOp::Send => self.link_sent(turn, &mut link, result),
            LinkOp::Recv(epoch) => {
                if !cqueue::more(flags) && epoch == link.recv_epoch {
                    link.receiving = false;
                }
                match (result, buffer) {
                    (n, Some(bid)) if n > 0 => {
                        // SAFETY: the completion just reaped names this buffer with `n`
                        // bytes, taken once here; it goes back when `received` is dropped.
                        let mut received = unsafe { turn.ring.received(bid, n as usize) };
                        turn.reporting
                            .metrics
                            .counters
                            .borrow_mut()
                            .upstream_bytes_in += n as u64;
                        finished = match link.tls.is_some() {
                            true => self.link_tls_data(turn, &mut link, received.bytes()),
                            false => self.link_data(turn, &mut link, received.bytes()),
                        };
                    }
                    (n, _) if n == -libc::ENOBUFS && epoch == link.recv_epoch => {
                        self.upstreams.starved.push(key);
                    }
                    (n, _) if n == -libc::ENOBUFS || n == -libc::ECANCELED => {}
                    (n, _) if n <= 0 => {
                        link.ended = true;
                        finished = self.link_ended(turn, &mut link);
                    }
                    _ => {}
                }
                if let Some(bid) = buffer.filter(|_| result <= 0) {
                    turn.ring.recycle(bid);
                }
            }
        }
        self.settle_link(turn, link);
        if let Some(mut conn) = finished {
            // Back in its table, the link may carry the relay's next call.
            self.relay_next(turn, &mut conn);
            self.pump(turn, &mut conn, &[]);
            self.flush(turn, &mut conn);
            self.settle(turn, conn);
        }
    }

    /// After any event: a link being closed goes once the kernel holds nothing of it; an
    /// open one keeps its receive armed.
    pub(super) fn settle_link(&mut self, turn: &mut Turn<'_>, mut link: Box<Link>) {
        if link.state == LinkState::Closing {
            if link.settled() {
                return self.free_link(turn, link);
            }
            return self.upstreams.links.put(link);
        }
        if link.ended && link.state == LinkState::Idle {
            self.upstreams.groups[link.group].forget_idle(link.server, link.key);
            return self.close_link(turn, link);
        }
        if !link.ended && link.state != LinkState::Connecting {
            self.arm_link_recv(turn, &mut link);
        }
        self.upstreams.links.put(link);
    }

    /// Closes a link at once if the kernel holds nothing of it, or once it lets go.
    pub(super) fn close_link(&mut self, turn: &mut Turn<'_>, mut link: Box<Link>) {
        self.shut_link(turn, &mut link);
        self.settle_link(turn, link);
    }

    /// The link carries nothing more: it is closing, its receive is cancelled and its
    /// socket shut (it is freed once the kernel holds nothing of it, `settle_link`).
    pub(super) fn shut_link(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        link.state = LinkState::Closing;
        self.cancel_link_recv(turn, link);
        // SAFETY: shutdown(2) on the link's own socket.
        unsafe { libc::shutdown(link.fd, libc::SHUT_RDWR) };
    }

    /// Frees a closed link whose operations have all completed.
    pub(super) fn free_link(&mut self, turn: &mut Turn<'_>, link: Box<Link>) {
        let close = opcode::Close::new(types::Fd(link.fd))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(token(Op::Ignore, NO_KEY, 0));
        turn.ring.push_quiet(&close);
        self.upstreams.links.release(link.key);
    }

    /// Closes the idle links that waited longer than their upstream's keep-alive timeout,
    /// and arms again the receives of links that ran out of buffers.
    pub(in crate::engine) fn tend_links(&mut self, turn: &mut Turn<'_>) {
        let now = turn.now.ms;
        let mut stale = Vec::new();
        for (g, group) in self.upstreams.groups.iter().enumerate() {
            let timeout = group.settings.keepalive_timeout_ms;
            for (server, key) in group.idle_keys() {
                if let Some(link) = self.upstreams.links.peek(key) {
                    if now.saturating_sub(link.since) >= timeout {
                        stale.push((g, server, key));
                    }
                }
            }
        }
        for (g, server, key) in stale {
            self.upstreams.groups[g].forget_idle(server, key);
            if let Some(link) = self.upstreams.links.take(key) {
                self.close_link(turn, link);
            }
        }
        for key in std::mem::take(&mut self.upstreams.starved) {
            if let Some(mut link) = self.upstreams.links.take(key) {
                if link.state != LinkState::Closing {
                    self.arm_link_recv(turn, &mut link);
                }
                self.upstreams.links.put(link);
            }
        }
    }
}
