//! A core's connections and what handling them owns: the table of records, their deadlines,
//! the application that answers them, the buffer pools, TLS, the glommio tasks at work for
//! them, the memory their bodies hold, and the receives waiting for buffers.
//!
//! The loop (`shard`) hands each completion to [`Connections`], lending it the ring, the
//! moment, the reports and the listeners for that one event (`turn::Turn`). A connection's
//! way through is written one stage per file: `accept`, `receive`, `exchange`, `send`,
//! `transfer`, `tasks`, `secure`, `deadlines`, `close`. Here are the things done to all of
//! them at once: draining, cutting, forgetting them when the core leaves, tidying on a tick.

use std::collections::VecDeque;
use std::rc::Rc;

use super::background::Background;
use super::bodies::BodyBudget;
use super::buffers::Buffers;
use super::conn::Send;
use super::courier::Courier;
use super::groups::{Groups, Hub};
use super::handshakes::HandshakeGate;
use super::outflow::{OutflowSlot, Outflows};
use super::settings::{chunk_buffer_bytes, input_cap, Settings};
use super::socket::CoreDeflate;
use super::table::Table;
use super::token::Key;
use super::turn::Turn;
use super::upstream::outbound::UpstreamError;
use super::upstream::{Outbound, Upstreams};
use super::wake::Wake;
use super::wheel::Wheel;
use super::{Application, TlsOptions};
use crate::config::Config;
use crate::tls::ServerConfigs;

/// TLS on one core.
pub(super) struct TlsCore {
    /// This core's rustls configurations.
    pub(super) configs: Rc<ServerConfigs>,
    /// Handshakes under way, and their bound.
    pub(super) gate: HandshakeGate,
}

/// One core's connections and what their handling owns.
pub(super) struct Connections<A: Application> {
    pub(super) table: Table,
    pub(super) wheel: Wheel,
    pub(super) settings: Settings,
    pub(super) app: A,
    pub(super) buffers: Buffers,
    /// TLS on this core, when there is a TLS listener.
    pub(super) tls: Option<TlsCore>,
    pub(super) background: Background,
    /// Bytes all sessions hold for bodies being gathered.
    pub(super) bodies: BodyBudget,
    /// Connections whose receive ended with `ENOBUFS`, in the order they ran dry.
    pub(super) starved: VecDeque<Key>,
    /// Connections out: the upstream servers, their pools and links.
    pub(super) upstreams: Upstreams,
    /// Where the producers of streamed responses stir the loop.
    pub(super) outflows: Outflows,
    /// permessage-deflate's compressor and inflater, made for the first connection that
    /// agrees to it.
    pub(super) ws_deflate: Option<Box<CoreDeflate>>,
    /// The streamed bodies being taken this turn (kept for its capacity).
    pub(super) stirred: Vec<Rc<OutflowSlot>>,
    /// Where async WebSocket handlers and tasks reach the loop; the core's groups; the
    /// other cores.
    pub(super) hub: Hub,
    pub(super) groups: Groups,
    pub(super) courier: Courier,
    /// The WebSockets stirred this turn, and a group's members (kept for their capacity).
    pub(super) socket_keys: Vec<Key>,
    pub(super) member_keys: Vec<Key>,
}

/// What a core's connections reach beyond the core's own: its upstreams' door, its
/// WebSockets' hub, the other cores.
pub(super) struct Doors {
    pub(super) door: Outbound,
    pub(super) hub: Hub,
    pub(super) courier: Courier,
}

impl<A: Application> Connections<A> {
    /// No connection yet; glommio tasks at work for them fire `wake` when they finish.
    pub(super) fn new(
        config: &Config,
        app: A,
        tls: Option<TlsOptions>,
        wake: Rc<Wake>,
        doors: Doors,
    ) -> Connections<A> {
        let Doors { door, hub, courier } = doors;
        door.attach(wake.clone());
        hub.attach(wake.clone());
        Connections {
            table: Table::default(),
            wheel: Wheel::new(),
            settings: Settings::of(config),
            app,
            buffers: Buffers::new(input_cap(config), chunk_buffer_bytes(config, tls.is_some())),
            tls: tls.map(|tls| TlsCore {
                configs: Rc::new(tls.configs),
                gate: HandshakeGate::new(tls.max_handshakes),
            }),
            outflows: Outflows::new(wake.clone()),
            stirred: Vec::new(),
            ws_deflate: None,
            background: Background::new(wake),
            bodies: BodyBudget::new(config.http.body_buffer_bytes_per_core),
            starved: VecDeque::new(),
            upstreams: Upstreams::new(config, door),
            hub,
            groups: Groups::default(),
            courier,
            socket_keys: Vec::new(),
            member_keys: Vec::new(),
        }
    }

    /// Connections open.
    pub(super) fn open(&self) -> usize {
        self.table.open()
    }

    /// File reads and async handlers at work in glommio tasks.
    pub(super) fn at_work(&self) -> usize {
        self.background.at_work() + self.outflows.live() + self.hub.live()
    }

    /// The earliest moment a connection's deadline may be due.
    pub(super) fn next_due_ms(&self) -> Option<u64> {
        self.wheel.next_due_ms()
    }

    /// The settings they run under.
    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The core begins to drain: the application is told, and every connection is settled
    /// (an idle one now waits for its last request, or closes).
    pub(super) fn drain(&mut self, turn: &mut Turn<'_>) {
        self.app.drain();
        for key in self.table.keys() {
            if let Some(conn) = self.table.take(key) {
                self.settle(turn, conn);
            }
        }
    }

    /// The drain's deadline passed: every connection is cut.
    pub(super) fn cut_all(&mut self, turn: &mut Turn<'_>) {
        for key in self.table.keys() {
            if let Some(mut conn) = self.table.take(key) {
                conn.cut();
                self.settle(turn, conn);
            }
        }
    }

    /// The core leaves: every connection's socket is closed and its record dropped. With
    /// `still_held`, the kernel may still read the buffers of sends in flight: those are
    /// leaked rather than freed under it.
    pub(super) fn forget_all(&mut self, still_held: bool) {
        for key in self.table.keys() {
            let Some(mut conn) = self.table.take(key) else {
                continue;
            };
            // SAFETY: the record's own descriptor, never closed while the record exists.
            unsafe { libc::close(conn.fd) };
            if still_held {
                if let Send::InFlight(flight) = std::mem::replace(&mut conn.send, Send::Idle) {
                    // The kernel may still read it: leaked rather than freed under it.
                    std::mem::forget(flight.buf);
                }
            }
        }
        self.upstreams.door.close();
        for key in self.upstreams.links.keys() {
            let Some(mut link) = self.upstreams.links.take(key) else {
                continue;
            };
            // SAFETY: the link's own descriptor, never closed while the link exists.
            unsafe { libc::close(link.fd) };
            if let Some(call) = link.call.take() {
                call.fail(UpstreamError::Closed);
            }
            if let Some(stream) = link.stream.take() {
                stream.fail(std::io::ErrorKind::ConnectionAborted);
            }
            if still_held {
                if let Some(flight) = link.send.take() {
                    std::mem::forget(flight.buf);
                }
                // A connect still held reads the address inside the link.
                std::mem::forget(link);
            }
        }
    }

    /// On a report tick: TLS ticket keys move on when a period has begun, and memory a burst
    /// made grow (pooled buffers unused through the tick, table slots past the last
    /// connection) is given back.
    pub(super) fn tidy(&mut self) {
        if let Some(tls) = &self.tls {
            tls.configs.move_tickets_on();
        }
        self.buffers.trim();
        if self.table.shrink() {
            self.wheel.fit(self.table.capacity());
        }
    }
}
