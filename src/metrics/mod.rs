//! Per-core measurements: counters and latency histograms, the snapshots a core hands to
//! the reporter, and the `/stats` and `/metrics` renderings of them.
//!
//! A core records into its own [`Metrics`] with no synchronisation. Once per tick it folds
//! the interval histogram into its run total, publishes a copy for `/stats` on the
//! [`StatsBoard`] and sends the interval to the reporter thread (`report`). Metrics are fed
//! plain numbers: nothing here knows the protocol.

mod board;
mod counters;
mod percentiles;
mod prometheus;
mod stats_json;
mod upstreams;

use std::cell::RefCell;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub use board::{ReportMsg, Snapshot, StatsBoard};
pub use counters::{Counters, TlsFailure};
pub use percentiles::Percentiles;
pub use prometheus::prometheus_text;
pub use stats_json::stats_json;
pub use upstreams::{server_labels, total_servers, ServerCounts};

/// Highest latency recorded, in microseconds (60 s); larger values are clamped to it.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram: 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// One core's live measurements.
pub struct Metrics {
    /// Whether latencies are recorded (`report.enabled`).
    pub enabled: bool,
    /// Counters since start.
    pub counters: RefCell<Counters>,
    /// Latencies since the last tick, in microseconds.
    pub interval: RefCell<Histogram<u64>>,
    /// Latencies of completed ticks, in microseconds.
    pub total: RefCell<Histogram<u64>>,
    /// Upstream servers' latencies since start, in microseconds: from a proxied request
    /// going out to its response head coming back (none until a first one is recorded).
    pub upstream: RefCell<Option<Histogram<u64>>>,
    /// The same since the last tick.
    pub upstream_interval: RefCell<Option<Histogram<u64>>>,
    /// Each upstream server's counts, in configuration order (grown on first use).
    pub servers: RefCell<Vec<ServerCounts>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            counters: RefCell::new(Counters::default()),
            interval: RefCell::new(new_histogram()),
            total: RefCell::new(new_histogram()),
            upstream: RefCell::new(None),
            upstream_interval: RefCell::new(None),
            servers: RefCell::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// Records an upstream server's latency: its response head came `latency` after the
    /// request went out.
    pub fn record_upstream(&self, latency: Duration) {
        if !self.enabled {
            return;
        }
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let mut upstream = self.upstream.borrow_mut();
        let _ = upstream.get_or_insert_with(new_histogram).record(micros);
        let mut interval = self.upstream_interval.borrow_mut();
        let _ = interval.get_or_insert_with(new_histogram).record(micros);
    }

    /// The upstream latencies since the last tick (none if there was none), the next
    /// interval starting empty.
    pub fn take_upstream_interval(&self) -> Option<Histogram<u64>> {
        let mut interval = self.upstream_interval.borrow_mut();
        let taken = interval.clone();
        if let Some(h) = interval.as_mut() {
            h.reset();
        }
        taken.filter(|h| !h.is_empty())
    }

    /// Counts something upstream server `index` (in configuration order) did.
    pub fn count_server(&self, index: usize, count: impl FnOnce(&mut ServerCounts)) {
        let mut servers = self.servers.borrow_mut();
        if servers.len() <= index {
            servers.resize(index + 1, ServerCounts::default());
        }
        count(&mut servers[index]);
    }

    /// Records `count` requests answered `latency` after the read that completed them.
    pub fn record_latency(&self, latency: Duration, count: u64) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let _ = self.interval.borrow_mut().record_n(micros, count);
    }

    /// Records one batch of responses, counted by status class (index 1 for 1xx … 5 for 5xx),
    /// `errors` of them protocol errors; their latency runs from `read_at`, when the bytes that
    /// completed them were reaped from the ring, to now, when their send is queued. Every
    /// response percore counts comes through here.
    pub fn record_batch(&self, by_class: &[u32; 6], errors: u32, read_at: Instant) {
        let mut counters = self.counters.borrow_mut();
        let mut responses = 0;
        for (total, &n) in counters.by_class.iter_mut().zip(by_class) {
            *total += u64::from(n);
            responses += u64::from(n);
        }
        counters.protocol_errors += u64::from(errors);
        if self.enabled && responses > 0 {
            self.record_latency(read_at.elapsed(), responses);
        }
    }

    /// Ends an interval: folds it into the total and returns it.
    pub fn take_interval(&self) -> Histogram<u64> {
        let interval = std::mem::replace(&mut *self.interval.borrow_mut(), new_histogram());
        let _ = self.total.borrow_mut().add(&interval);
        interval
    }

    /// Records one response of status class `class` (1 for 1xx … 5 for 5xx), a protocol
    /// error or not; its latency runs from `read_at` when it answers bytes reaped then, and
    /// is not recorded for a response no bytes asked for (a timeout's 408).
    pub fn record_one(&self, class: usize, protocol_error: bool, read_at: Option<Instant>) {
        let mut by_class = [0; 6];
        by_class[class.min(5)] = 1;
        match read_at {
            Some(read_at) => self.record_batch(&by_class, u32::from(protocol_error), read_at),
            None => {
                let mut counters = self.counters.borrow_mut();
                counters.by_class[class.min(5)] += 1;
                counters.protocol_errors += u64::from(protocol_error);
            }
        }
    }
}
