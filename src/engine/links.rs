//! What connects a core to the rest of the server: the reporter thread's inbox, the
//! `/stats` board, the access log's writer, and the core's own measurements on their way
//! there.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use crate::access_log::{LogBuffer, LogMsg};
use crate::config::Config;
use crate::metrics::{Metrics, ReportMsg, StatsBoard};

/// What connects a core to the rest of the server: reporting, `/stats`, the access log.
pub(crate) struct Links {
    /// Position of this core in the server's core list.
    pub(crate) index: usize,
    /// The CPU this core runs on.
    pub(crate) cpu: usize,
    /// Where `/stats` totals are published.
    pub(crate) board: Arc<StatsBoard>,
    /// The reporter thread's inbox.
    pub(crate) reports: Sender<ReportMsg>,
    /// The access log writer's inbox, when a log is kept.
    pub(crate) log: Option<Sender<LogMsg>>,
}

/// A core's measurements and where they go.
pub(super) struct Reporting {
    pub(super) metrics: Metrics,
    pub(super) links: Links,
    /// The core's access log, when one is kept.
    pub(super) log: Option<LogBuffer>,
    /// Period of report ticks.
    pub(super) tick: Duration,
    /// Ticks done.
    pub(super) ticks: u64,
}

/// Period of report ticks: `report.interval_ms`, or one second when live lines are off
/// (`/stats` still needs fresh totals, and memory is given back on ticks).
pub(crate) fn report_tick(config: &Config) -> Duration {
    Duration::from_millis(match config.report.interval_ms {
        0 => 1000,
        ms => ms,
    })
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
}
