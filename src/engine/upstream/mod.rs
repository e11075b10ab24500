//! Connections out: a core's connections to upstream servers, on its own ring, shared with
//! nothing.
//!
//! An upstream connection is a record (`Link`) in a table of the same kind as the clients'
//! (`table::Table`), with its own receive (a multishot receive from the same provided
//! buffers) and one send in flight at a time. Each `[[upstream]]` is a `Group` of servers,
//! each with its per-core pool of idle connections (`pool`). A client connection whose
//! request a proxy route answers holds a `Relay` (`relay`): which link carries its request,
//! how far the response has come, and how it is framed back to the client. A link's
//! completions reach the relay through the link's `client` key; the relay's deadlines are
//! its client connection's (`deadlines`), so they share the wheel. A relay whose server
//! switched protocols becomes a tunnel (`tunnel`); a client's pipelined requests queue
//! behind its relay and go upstream as a batch (`pipeline`). An `https://` server's link
//! speaks TLS (`link_tls`); what each server did is counted (`counts`). The core's own
//! tasks (async handlers) call the same upstreams through a door (`outbound`): a call is
//! carried by a link from the same pools, its response read into the call's slot
//! (`calls`); a raw connection is a link of its own whose bytes the task reads and writes
//! (`stream`, `stream_events`).

mod calls;
mod counts;
mod forward;
mod link;
mod link_events;
mod link_io;
mod link_tls;
pub(super) mod outbound;
mod pipeline;
mod pool;
pub(super) mod relay;
mod request_body;
mod response;
pub(super) mod stream;
mod stream_events;
mod tunnel;

use std::rc::Rc;

pub(super) use link::Link;
pub(super) use outbound::Outbound;
pub(super) use pool::{Group, Server};

use super::table::Table;
use super::token::Key;
use crate::config::{Config, ServerAddr};

/// What an upstream completion finishes (kept in the token's epoch bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LinkOp {
    Connect,
    Send,
    /// A multishot receive, with its arming's epoch (two bits).
    Recv(u8),
}

impl LinkOp {
    /// The four bits the token keeps.
    pub(super) fn bits(self) -> u8 {
        match self {
            LinkOp::Connect => 0,
            LinkOp::Send => 1 << 2,
            LinkOp::Recv(epoch) => 2 << 2 | (epoch & 3),
        }
    }

    /// Reads the four bits back.
    pub(super) fn of(bits: u8) -> LinkOp {
        match bits >> 2 & 3 {
            0 => LinkOp::Connect,
            1 => LinkOp::Send,
            _ => LinkOp::Recv(bits & 3),
        }
    }
}

/// One core's upstreams: the groups of servers with their pools, and the links.
pub(super) struct Upstreams {
    pub(super) groups: Vec<Group>,
    pub(super) links: Table<Link>,
    /// Links whose receive ended with `ENOBUFS`.
    pub(super) starved: Vec<Key>,
    /// Where the core's tasks post their calls.
    pub(super) door: Outbound,
    /// Boxes of relays that ended, for the next ones (`forward`): the boxes themselves are
    /// what is kept, for a connection's `Deferring::Proxy` to take without allocating.
    #[allow(clippy::vec_box)]
    pub(super) spare_relays: Vec<Box<relay::Relay>>,
    /// Client connections with relayed bytes not yet sent: they go out once the turn's
    /// completions are handled (`Connections::send_relayed`), so that a response that
    /// came in several receives leaves in one send.
    pub(super) unsent: Vec<Key>,
}

impl Upstreams {
    /// The `[[upstream]]` groups of `config` (their servers were checked when it was read),
    /// and the door through which the core's tasks call them.
    pub(super) fn new(config: &Config, door: Outbound) -> Upstreams {
        let mut slots = 0;
        let groups = config
            .upstream
            .iter()
            .map(|upstream| {
                let servers: Vec<Server> = upstream
                    .servers
                    .iter()
                    .filter_map(|text| {
                        let addr: ServerAddr = crate::config::parse_server(text).ok()?;
                        // An `https://` server whose name does not do is never reached:
                        // the start checked it.
                        let name = crate::config::server_tls_name(text)
                            .and_then(|host| crate::tls::server_name(upstream, &host).ok());
                        Some(Server::new(Rc::new(addr), name))
                    })
                    .collect();
                let first = slots;
                slots += servers.len();
                Group::new(upstream, servers, first)
            })
            .collect();
        Upstreams {
            groups,
            links: Table::default(),
            starved: Vec::new(),
            door,
            spare_relays: Vec::new(),
            unsent: Vec::new(),
        }
    }
}
