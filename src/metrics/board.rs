//! What cores hand over once per tick: [`Snapshot`]s, sent to the reporter thread and
//! published on the [`StatsBoard`] that `/stats` and `/metrics` read. The board's lock is
//! taken once per tick by each core and by those routes, never per ordinary request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::{Counters, ServerCounts};

/// What a core reports: either one interval or, at shutdown, its whole run.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The core.
    pub core: usize,
    /// Interval number, from 1; 0 for the final snapshot.
    pub seq: u64,
    /// Length of the interval (or of the run).
    pub duration: Duration,
    /// Latencies in the interval (or the run), microseconds.
    pub latency: Histogram<u64>,
    /// Counters since start.
    pub counters: Counters,
    /// Connections open at the end of the interval.
    pub open: usize,
    /// Upstream servers' latencies in the interval (or the run), microseconds (none
    /// without a proxied request).
    pub upstream_latency: Option<Histogram<u64>>,
    /// Each upstream server's counts since start, in configuration order.
    pub servers: Vec<ServerCounts>,
}

/// Messages from cores to the reporter thread.
#[derive(Debug)]
pub enum ReportMsg {
    /// One core's interval.
    Interval(Snapshot),
    /// One core's whole run, sent once after draining.
    Final(Snapshot),
}

/// Each core's latest run totals, for `/stats`: written once per tick per core.
#[derive(Debug)]
pub struct StatsBoard {
    /// When the server started.
    pub started: std::time::Instant,
    /// One slot per core, in the server's core order.
    pub slots: Mutex<Vec<Option<Snapshot>>>,
    /// The names of the upstream servers the snapshots count, in their order: upstream,
    /// server.
    pub servers: Vec<(String, String)>,
}

impl StatsBoard {
    /// A board for `cores` cores.
    pub fn new(cores: usize) -> Arc<StatsBoard> {
        StatsBoard::with_servers(cores, Vec::new())
    }

    /// A board for `cores` cores whose snapshots count the upstream servers `servers`.
    pub fn with_servers(cores: usize, servers: Vec<(String, String)>) -> Arc<StatsBoard> {
        Arc::new(StatsBoard {
            started: std::time::Instant::now(),
            slots: Mutex::new(vec![None; cores]),
            servers,
        })
    }

    /// Replaces one core's entry.
    pub fn publish(&self, index: usize, snapshot: Snapshot) {
        if let Ok(mut slots) = self.slots.lock() {
            slots[index] = Some(snapshot);
        }
    }
}
