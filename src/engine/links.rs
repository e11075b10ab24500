//! What connects a core to the rest of the server: the reporter thread's inbox, the
//! `/stats` board, the access log's writer (the core's measurements on their way there are
//! `reporting`).

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use crate::access_log::LogMsg;
use crate::config::Config;
use crate::metrics::{ReportMsg, StatsBoard};

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

/// Period of report ticks: `report.interval_ms`, or one second when live lines are off
/// (`/stats` still needs fresh totals, and memory is given back on ticks).
pub(crate) fn report_tick(config: &Config) -> Duration {
    Duration::from_millis(match config.report.interval_ms {
        0 => 1000,
        ms => ms,
    })
}
