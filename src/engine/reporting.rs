//! What a core tells the rest of the server, once per report tick and at the end: its
//! interval and totals to the reporter thread and the `/stats` board, its access log lines
//! to the log's writer. (The tick is also when the core tidies its connections' memory and
//! moves its TLS ticket keys on: `Connections::tidy`.)

use std::time::Duration;

use hdrhistogram::Histogram;

use super::links::{report_tick, Links};
use crate::access_log::{LogBuffer, LogMsg};
use crate::config::Config;
use crate::metrics::{new_histogram, Metrics, ReportMsg, Snapshot};

/// A core's measurements and where they go.
pub(super) struct Reporting {
    pub(super) metrics: Metrics,
    pub(super) links: Links,
    /// The core's access log, when one is kept.
    pub(super) log: Option<LogBuffer>,
    /// Period of report ticks.
    tick: Duration,
    /// Ticks done.
    ticks: u64,
}

impl Reporting {
    pub(super) fn new(config: &Config, links: Links, log: Option<LogBuffer>) -> Reporting {
        Reporting {
            metrics: Metrics {
                enabled: config.report.enabled,
                ..Metrics::default()
            },
            links,
            log,
            tick: report_tick(config),
            ticks: 0,
        }
    }

    /// When the next tick is due (ms since start).
    pub(super) fn next_tick_ms(&self) -> Option<u64> {
        Some((self.tick * (self.ticks as u32 + 1)).as_millis() as u64)
    }

    /// The core went to sleep once more.
    pub(super) fn count_park(&self) {
        self.metrics.counters.borrow_mut().parks += 1;
    }

    /// Until its first tick, `/stats` shows this core with zero counts.
    pub(super) fn publish_start(&self) {
        let snapshot = self.snapshot(0, Duration::ZERO, (new_histogram(), None), 0);
        self.links.board.publish(self.links.index, snapshot);
    }

    /// At `now_ms`, with `open` connections: when a tick is due, hands over the log lines
    /// and the interval. Returns whether it was a tick.
    pub(super) fn tick(&mut self, now_ms: u64, open: usize) -> bool {
        match self.next_tick_ms() {
            Some(due) if now_ms >= due => {}
            _ => return false,
        }
        self.ticks += 1;
        self.flush_log();
        if self.metrics.enabled {
            self.report_interval(self.ticks, self.tick, open);
        }
        true
    }

    /// A snapshot of `latency` and `upstream_latency` (an interval's, or the run's) with
    /// the counters as they stand.
    fn snapshot(
        &self,
        seq: u64,
        duration: Duration,
        (latency, upstream_latency): (Histogram<u64>, Option<Histogram<u64>>),
        open: usize,
    ) -> Snapshot {
        let mut counters = *self.metrics.counters.borrow();
        counters.access_log_dropped = self.log.as_ref().map_or(0, |log| log.dropped);
        Snapshot {
            core: self.links.cpu,
            seq,
            duration,
            latency,
            counters,
            open,
            upstream_latency,
            servers: self.metrics.servers.borrow().clone(),
        }
    }

    /// Ends interval `seq`: folds it into the totals, publishes them for `/stats` and sends
    /// the interval to the reporter.
    fn report_interval(&self, seq: u64, duration: Duration, open: usize) {
        let interval = (
            self.metrics.take_interval(),
            self.metrics.take_upstream_interval(),
        );
        let totals = self.totals();
        let links = &self.links;
        links
            .board
            .publish(links.index, self.snapshot(seq, duration, totals, open));
        let snapshot = self.snapshot(seq, duration, interval, open);
        let _ = links.reports.send(ReportMsg::Interval(snapshot));
    }

    /// The latencies since start: the clients' and the upstream servers'.
    fn totals(&self) -> (Histogram<u64>, Option<Histogram<u64>>) {
        let total = self.metrics.total.borrow().clone();
        (total, self.metrics.upstream.borrow().clone())
    }

    /// Hands this tick's access log lines to the writer.
    fn flush_log(&mut self) {
        let (Some(log), Some(writer)) = (self.log.as_mut(), &self.links.log) else {
            return;
        };
        if !log.is_empty() {
            let _ = writer.send(LogMsg::Lines(log.take()));
        }
    }

    /// The end of the core, with `open` connections left: the last log lines, the last
    /// interval and the whole run.
    pub(super) fn report_final(&mut self, open: usize) {
        self.flush_log();
        let seq = self.ticks + 1;
        let elapsed = self.links.board.started.elapsed();
        let last = elapsed.saturating_sub(self.tick * (seq as u32 - 1));
        self.report_interval(seq, last, open);
        let whole = self.snapshot(0, elapsed, self.totals(), open);
        let _ = self.links.reports.send(ReportMsg::Final(whole));
        // The writer finishes once every core has dropped its inbox.
        self.links.log.take();
    }
}
