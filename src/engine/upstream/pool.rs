//! An `[[upstream]]` on one core: its servers, the choice of the next one (round robin or
//! least busy, counted on this core alone), passive health (a server that failed
//! `max_fails` times within `fail_timeout_ms` is left out for `fail_timeout_ms`), and each
//! server's pool of idle connections, most recently used first.

use std::rc::Rc;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::config::{Balance, ServerAddr, UpstreamConfig};

use super::super::token::Key;

/// An upstream's settings, as one core uses them.
pub(in crate::engine) struct GroupSettings {
    pub(in crate::engine) balance: Balance,
    pub(in crate::engine) keepalive: usize,
    pub(in crate::engine) keepalive_requests: u64,
    pub(in crate::engine) keepalive_timeout_ms: u64,
    pub(in crate::engine) keepalive_time_ms: u64,
    pub(in crate::engine) connect_timeout_ms: u64,
    pub(in crate::engine) read_timeout_ms: u64,
    pub(in crate::engine) send_timeout_ms: u64,
    pub(in crate::engine) max_fails: u32,
    pub(in crate::engine) fail_timeout_ms: u64,
}

/// One server of an upstream on this core.
pub(in crate::engine) struct Server {
    pub(in crate::engine) addr: Rc<ServerAddr>,
    /// For an `https://` server: the name TLS asks for and checks.
    pub(in crate::engine) tls_name: Option<ServerName<'static>>,
    /// Idle connections to it, the most recently used last.
    idle: Vec<Key>,
    /// Requests under way to it from this core.
    busy: usize,
    /// Failures since `fails_since`.
    fails: u32,
    fails_since: u64,
    /// Left out of the rotation until then (ms since start).
    down_until: u64,
}

impl Server {
    pub(in crate::engine) fn new(
        addr: Rc<ServerAddr>,
        tls_name: Option<ServerName<'static>>,
    ) -> Server {
        Server {
            addr,
            tls_name,
            idle: Vec::new(),
            busy: 0,
            fails: 0,
            fails_since: 0,
            down_until: 0,
        }
    }
}

/// An upstream on this core.
pub(in crate::engine) struct Group {
    pub(in crate::engine) settings: GroupSettings,
    /// This core's TLS configuration for the group's `https://` servers.
    pub(in crate::engine) tls: Option<Arc<ClientConfig>>,
    servers: Vec<Server>,
    /// The round robin's next server.
    next: usize,
    /// Where its servers' counts start among all upstream servers' (`Metrics::servers`).
    first_slot: usize,
}

impl Group {
    /// The group of `config`'s `servers`, counted from entry `first_slot` on.
    pub(in crate::engine) fn new(
        config: &UpstreamConfig,
        servers: Vec<Server>,
        first_slot: usize,
    ) -> Group {
        let tls = servers
            .iter()
            .any(|s| s.tls_name.is_some())
            .then(|| crate::tls::client_config(config).ok())
            .flatten();
        Group {
            tls,
            settings: GroupSettings {
                balance: config.balance,
                keepalive: config.keepalive,
                keepalive_requests: config.keepalive_requests,
                keepalive_timeout_ms: config.keepalive_timeout_ms,
                keepalive_time_ms: config.keepalive_time_ms,
                connect_timeout_ms: config.connect_timeout_ms,
                read_timeout_ms: config.read_timeout_ms,
                send_timeout_ms: config.send_timeout_ms,
                max_fails: config.max_fails,
                fail_timeout_ms: config.fail_timeout_ms,
            },
            servers,
            next: 0,
            first_slot,
        }
    }

    /// The entry of server `index` among all upstream servers' counts.
    pub(in crate::engine) fn slot(&self, index: usize) -> usize {
        self.first_slot + index
    }

    /// The server for the next request at `now` (ms), other than `avoid` when another is
    /// up: the next in turn (or the least busy) among those not marked down; when all are
    /// down, the next in turn anyway (a request is never refused for want of a server).
    pub(in crate::engine) fn choose(&mut self, now: u64, avoid: Option<usize>) -> Option<usize> {
        let count = self.servers.len();
        if count == 0 {
            return None;
        }
        let up = |i: usize, s: &Server| s.down_until <= now && Some(i) != avoid;
        let chosen = match self.settings.balance {
            Balance::RoundRobin => (0..count)
                .map(|k| (self.next + k) % count)
                .find(|&i| up(i, &self.servers[i])),
            Balance::LeastConn => (0..count)
                .map(|k| (self.next + k) % count)
                .filter(|&i| up(i, &self.servers[i]))
                .min_by_key(|&i| self.servers[i].busy),
        };
        let chosen = chosen.unwrap_or(self.next % count);
        self.next = (chosen + 1) % count;
        Some(chosen)
    }

    pub(in crate::engine) fn server(&self, index: usize) -> &Server {
        &self.servers[index]
    }

    /// An idle connection to server `index`, the most recently used.
    pub(in crate::engine) fn take_idle(&mut self, index: usize) -> Option<Key> {
        self.servers[index].idle.pop()
    }

    /// Whether server `index`'s pool has room for one more idle connection.
    pub(in crate::engine) fn has_room(&self, index: usize) -> bool {
        self.servers[index].idle.len() < self.settings.keepalive
    }

    /// Keeps `key` as an idle connection to server `index`.
    pub(in crate::engine) fn keep_idle(&mut self, index: usize, key: Key) {
        self.servers[index].idle.push(key);
    }

    /// Forgets the idle connection `key` (it closed, or timed out).
    pub(in crate::engine) fn forget_idle(&mut self, index: usize, key: Key) {
        self.servers[index].idle.retain(|&k| k != key);
    }

    /// A request to server `index` starts or ends.
    pub(in crate::engine) fn set_busy(&mut self, index: usize, starts: bool) {
        let busy = &mut self.servers[index].busy;
        *busy = if starts {
            *busy + 1
        } else {
            busy.saturating_sub(1)
        };
    }

    /// Server `index` failed at `now` (a refused or reset connection, a timeout). Returns
    /// whether that took it out of the rotation.
    pub(in crate::engine) fn failed(&mut self, index: usize, now: u64) -> bool {
        let (max, window) = (self.settings.max_fails, self.settings.fail_timeout_ms);
        let server = &mut self.servers[index];
        if max == 0 {
            return false;
        }
        if now.saturating_sub(server.fails_since) > window {
            server.fails = 0;
            server.fails_since = now;
        }
        server.fails += 1;
        if server.fails >= max {
            server.fails = 0;
            server.down_until = now + window;
            return true;
        }
        false
    }

    /// Server `index` answered: its failures are forgotten.
    pub(in crate::engine) fn answered(&mut self, index: usize) {
        self.servers[index].fails = 0;
    }

    /// The keys of every idle connection of every server.
    pub(in crate::engine) fn idle_keys(&self) -> impl Iterator<Item = (usize, Key)> + '_ {
        self.servers
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.idle.iter().map(move |&k| (i, k)))
    }
}
