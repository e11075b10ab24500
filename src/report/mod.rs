//! The reporter thread: merges the cores' snapshots into live report lines (`lines`), an
//! HdrHistogram interval log, and at shutdown a summary, `.hgrm` percentile files (`hgrm`)
//! and two pictures (`plots`, with the cargo feature `plots`).
//!
//! Cores send [`ReportMsg`]s over a channel once per tick; nothing here touches a core's
//! request path. The thread ends when every core has dropped its sender (after draining)
//! and returns the [`RunSummary`].

mod hgrm;
mod lines;
#[cfg(feature = "plots")]
mod plots;
#[cfg(feature = "plots")]
mod ticks;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use hgrm::write_hgrm_files;
pub(crate) use lines::print_summary;
use lines::{print_interval, text_header};
#[cfg(feature = "plots")]
use lines::{summary_row, SUMMARY_HEADER};

use crate::config::{ReportConfig, ReportFormat};
use crate::metrics::{new_histogram, Counters, ReportMsg, Snapshot};
use crate::support::stderr::{emit, note};

/// One core's whole run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CoreSummary {
    /// The core.
    pub core: usize,
    /// Its counters.
    pub counters: Counters,
    /// Its latencies, microseconds.
    pub latency: Histogram<u64>,
    /// Its upstream servers' latencies (request out to response head), microseconds; none
    /// without proxied requests or handlers' calls.
    pub upstream_latency: Option<Histogram<u64>>,
}

/// The whole run, per core and merged.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunSummary {
    /// How long the server ran.
    pub duration: Duration,
    /// One entry per core, in the configured order.
    pub cores: Vec<CoreSummary>,
}

impl RunSummary {
    /// All cores' latencies merged.
    pub fn merged_latency(&self) -> Histogram<u64> {
        let mut merged = new_histogram();
        for core in &self.cores {
            let _ = merged.add(&core.latency);
        }
        merged
    }

    /// All cores' upstream latencies merged; none if no core had any.
    pub fn merged_upstream_latency(&self) -> Option<Histogram<u64>> {
        let mut merged: Option<Histogram<u64>> = None;
        for h in self
            .cores
            .iter()
            .filter_map(|c| c.upstream_latency.as_ref())
        {
            let _ = merged.get_or_insert_with(new_histogram).add(h);
        }
        merged
    }

    /// All cores' counters added.
    pub fn merged_counters(&self) -> Counters {
        let mut total = Counters::default();
        for core in &self.cores {
            total.add(&core.counters);
        }
        total
    }
}

/// Runs the reporter until every core has sent its final snapshot and hung up.
pub fn run(
    messages: Receiver<ReportMsg>,
    cores: Vec<usize>,
    config: ReportConfig,
    tick: Duration,
) -> RunSummary {
    let started = SystemTime::now();
    let dir = (!config.dir.as_os_str().is_empty()).then_some(config.dir.as_path());
    let mut hlog_file = dir.and_then(open_hlog);
    let mut serializer = V2DeflateSerializer::new();
    let mut hlog = match hlog_file.as_mut() {
        Some(file) => IntervalLogWriterBuilder::new()
            .with_start_time(started)
            .with_base_time(started)
            .add_comment("percore per-core latency intervals, microseconds")
            .begin_log_with(file, &mut serializer)
            .ok(),
        None => None,
    };

    let mut pending: Vec<Vec<Snapshot>> = Vec::new();
    // Each core's TLS handshakes as of its last printed interval.
    let mut handshakes = std::collections::HashMap::new();
    let mut finals: Vec<Snapshot> = Vec::new();
    let mut printed_header = false;
    // The last interval printed was quiet: say nothing more until traffic returns.
    let mut quiet = false;
    for message in messages {
        match message {
            ReportMsg::Final(snapshot) => finals.push(snapshot),
            ReportMsg::Interval(snapshot) => {
                let seq = snapshot.seq as usize;
                if let Some(log) = hlog.as_mut() {
                    let start = tick * (seq as u32 - 1);
                    let tag = format!("core-{}", snapshot.core);
                    let _ = log.write_histogram(
                        &snapshot.latency,
                        start,
                        snapshot.duration,
                        Tag::new(&tag),
                    );
                    if let Some(upstream) = &snapshot.upstream_latency {
                        let tag = format!("upstream-{}", snapshot.core);
                        let _ =
                            log.write_histogram(upstream, start, snapshot.duration, Tag::new(&tag));
                    }
                }
                if pending.len() < seq {
                    pending.resize_with(seq, Vec::new);
                }
                pending[seq - 1].push(snapshot);
                if pending[seq - 1].len() == cores.len() {
                    let interval = std::mem::take(&mut pending[seq - 1]);
                    let idle = interval.iter().all(|s| s.latency.is_empty());
                    if config.interval_ms > 0 && !(idle && quiet) {
                        if !printed_header && config.format == ReportFormat::Text {
                            emit(&format!("{}\n", text_header()));
                            printed_header = true;
                        }
                        print_interval(
                            &interval,
                            seq,
                            tick,
                            config.format,
                            config.per_core,
                            &mut handshakes,
                        );
                    }
                    quiet = idle;
                }
            }
        }
    }
    drop(hlog);
    if let Some(file) = hlog_file.as_mut() {
        let _ = file.flush();
    }

    let summary = RunSummary {
        duration: started.elapsed().unwrap_or_default(),
        cores: cores
            .iter()
            .map(|&core| {
                let last = finals.iter().find(|s| s.core == core);
                CoreSummary {
                    core,
                    counters: last.map(|s| s.counters).unwrap_or_default(),
                    latency: last
                        .map(|s| s.latency.clone())
                        .unwrap_or_else(new_histogram),
                    upstream_latency: last.and_then(|s| s.upstream_latency.clone()),
                }
            })
            .collect(),
    };
    if let Some(dir) = dir {
        if let Err(e) = write_hgrm_files(dir, &summary) {
            note(format_args!(
                "cannot write histograms to {}: {e}",
                dir.display()
            ));
        } else {
            draw_plots(dir);
        }
    }
    summary
}

/// Draws latency.svg and timeline.svg from the files just written into `dir`.
#[cfg(feature = "plots")]
fn draw_plots(dir: &Path) {
    if let Err(e) = plots::render(dir) {
        note(format_args!(
            "cannot draw the plots in {}: {e}",
            dir.display()
        ));
    }
}

/// Without the `plots` feature there are no pictures: the .hgrm files and the interval log
/// are the run's record.
#[cfg(not(feature = "plots"))]
fn draw_plots(_dir: &Path) {}

/// `percore report DIR` (with the `plots` feature): draws the plots again from a report
/// directory and prints the run's summary as the interval log has it (per core and all).
#[cfg(feature = "plots")]
pub fn report_dir(dir: &Path) -> Result<(), String> {
    let run = plots::render(dir)?;
    let mut out = format!(
        "percore report of {}: {} and {} written\n",
        dir.display(),
        dir.join("latency.svg").display(),
        dir.join("timeline.svg").display()
    );
    out.push_str(SUMMARY_HEADER);
    for (core, requests, seconds, latency) in run.totals() {
        let rate = requests as f64 / seconds.max(1e-9);
        out.push_str(&summary_row(&core, requests, rate, &latency));
    }
    emit(&out);
    Ok(())
}

fn open_hlog(dir: &Path) -> Option<BufWriter<File>> {
    let opened =
        std::fs::create_dir_all(dir).and_then(|()| File::create(dir.join("intervals.hlog")));
    match opened {
        Ok(file) => Some(BufWriter::new(file)),
        Err(e) => {
            note(format_args!(
                "cannot write {}: {e}",
                dir.join("intervals.hlog").display()
            ));
            None
        }
    }
}
