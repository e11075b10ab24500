//! What a core tells the rest of the server, once per report tick and at the end: its
//! interval and totals to the reporter thread and the `/stats` board, its access log lines
//! to the log's writer. The tick is also when the core gives back memory a burst made it
//! grow (pooled buffers unused through the tick, table slots past the last connection) and
//! moves its TLS ticket keys on when a period has begun.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::shard::Shard;
use super::Application;
use crate::access_log::LogMsg;
use crate::metrics::{new_histogram, ReportMsg, Snapshot};

impl<A: Application> Shard<A> {
    /// Until its first tick, `/stats` shows this core with zero counts.
    pub(super) fn publish_start(&self) {
        let links = &self.reporting.links;
        let snapshot = self.snapshot(0, Duration::ZERO, new_histogram());
        links.board.publish(links.index, snapshot);
    }

    /// On a tick: hands over the log lines and the interval, and gives back spare memory.
    pub(super) fn tick(&mut self) {
        let Some(due) = self.reporting.next_tick_ms() else {
            return;
        };
        if self.now.ms < due {
            return;
        }
        self.reporting.ticks += 1;
        self.flush_log();
        if self.reporting.metrics.enabled {
            let (seq, tick) = (self.reporting.ticks, self.reporting.tick);
            self.report_interval(seq, tick);
        }
        if let Some(tls) = &self.tls {
            tls.configs.move_tickets_on();
        }
        self.buffers.trim();
        if self.table.shrink() {
            self.wheel.fit(self.table.capacity());
        }
    }

    fn snapshot(&self, seq: u64, duration: Duration, latency: Histogram<u64>) -> Snapshot {
        let mut counters = *self.reporting.metrics.counters.borrow();
        counters.access_log_dropped = self.reporting.log.as_ref().map_or(0, |log| log.dropped);
        Snapshot {
            core: self.reporting.links.cpu,
            seq,
            duration,
            latency,
            counters,
            open: self.table.open(),
        }
    }

    /// Ends interval `seq`: folds it into the totals, publishes them for `/stats` and sends
    /// the interval to the reporter.
    fn report_interval(&self, seq: u64, duration: Duration) {
        let metrics = &self.reporting.metrics;
        let interval = metrics.take_interval();
        let totals = metrics.total.borrow().clone();
        let links = &self.reporting.links;
        links
            .board
            .publish(links.index, self.snapshot(seq, duration, totals));
        let snapshot = self.snapshot(seq, duration, interval);
        let _ = links.reports.send(ReportMsg::Interval(snapshot));
    }

    /// Hands this tick's access log lines to the writer.
    fn flush_log(&mut self) {
        let (Some(log), Some(writer)) = (self.reporting.log.as_mut(), &self.reporting.links.log)
        else {
            return;
        };
        if !log.is_empty() {
            let _ = writer.send(LogMsg::Lines(log.take()));
        }
    }

    /// The end of the core: the last log lines, the last interval and the whole run.
    pub(super) fn report_final(&mut self) {
        self.flush_log();
        let seq = self.reporting.ticks + 1;
        let tick = self.reporting.tick;
        let elapsed = self.reporting.links.board.started.elapsed();
        self.report_interval(seq, elapsed.saturating_sub(tick * (seq as u32 - 1)));
        let total = self.reporting.metrics.total.borrow().clone();
        let last = self.snapshot(0, elapsed, total);
        let _ = self.reporting.links.reports.send(ReportMsg::Final(last));
        // The writer finishes once every core has dropped its inbox.
        self.reporting.links.log.take();
    }
}
