//! The reporter thread: merges the cores' snapshots into live report lines, an HdrHistogram
//! interval log, and at shutdown a summary and `.hgrm` percentile files.
//!
//! Cores send [`ReportMsg`]s over a channel once per tick; nothing here touches a core's
//! request path. The thread ends when every core has dropped its sender (after draining)
//! and returns the [`RunSummary`].

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::config::{ReportConfig, ReportFormat};
use crate::metrics::{new_histogram, Counters, Percentiles, ReportMsg, Snapshot};

/// One core's whole run.
#[derive(Clone, Debug)]
pub struct CoreSummary {
    /// The core.
    pub core: usize,
    /// Its counters.
    pub counters: Counters,
    /// Its latencies, microseconds.
    pub latency: Histogram<u64>,
}

/// The whole run, per core and merged.
#[derive(Clone, Debug)]
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
                        print_interval(&interval, seq, tick, config.format, config.per_core);
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
                }
            })
            .collect(),
    };
    if let Some(dir) = dir {
        if let Err(e) = write_hgrm_files(dir, &summary) {
            note(&format!(
                "cannot write histograms to {}: {e}",
                dir.display()
            ));
        } else if let Err(e) = crate::plots::render(dir) {
            note(&format!("cannot draw the plots in {}: {e}", dir.display()));
        }
    }
    summary
}

/// `percore report DIR`: draws the plots again from a report directory and prints the run's
/// summary as the interval log has it (per core and all).
pub fn report_dir(dir: &Path) -> Result<(), String> {
    let run = crate::plots::render(dir)?;
    let mut out = format!(
        "percore report of {}: {} and {} written\n",
        dir.display(),
        dir.join("latency.svg").display(),
        dir.join("timeline.svg").display()
    );
    let _ = writeln!(
        out,
        "{:>6} {:>12} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "core", "requests", "req/s", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    for (core, requests, seconds, latency) in run.totals() {
        let p = Percentiles::of(&latency);
        let _ = writeln!(
            out,
            "{core:>6} {requests:>12} {:>10.0} {} {} {} {} {} {} {}",
            requests as f64 / seconds.max(1e-9),
            format_latency(p.mean.round() as u64),
            format_latency(p.p50),
            format_latency(p.p90),
            format_latency(p.p99),
            format_latency(p.p999),
            format_latency(p.p9999),
            format_latency(p.max),
        );
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
            note(&format!(
                "cannot write {}: {e}",
                dir.join("intervals.hlog").display()
            ));
            None
        }
    }
}

/// Writes report text to stdout. A closed stdout (`percore | head`) must not stop the
/// server, so errors are ignored.
pub fn emit(text: &str) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes one `percore: ` line to stderr, ignoring errors for the same reason as [`emit`].
pub fn note(text: &str) {
    let _ = writeln!(io::stderr().lock(), "percore: {text}");
}

/// Error lines allowed per second, all cores together; past it they are counted and the
/// count is given with the next line that goes out, so a flood of bad clients cannot fill a
/// disk with stderr.
const ERROR_LINES_PER_SECOND: u32 = 20;

/// The error log's budget: (second, lines written in it, lines suppressed since the last).
static ERROR_BUDGET: std::sync::Mutex<(i64, u32, u64)> = std::sync::Mutex::new((0, 0, 0));

/// Writes one error line to stderr with a timestamp and the core (`None`: the server as a
/// whole), unless this second's budget is spent. Only errors take this path, never a request
/// that went well.
pub fn error_line(core: Option<usize>, text: &str) {
    let now = crate::http::date::unix_now();
    let suppressed = {
        let Ok(mut budget) = ERROR_BUDGET.lock() else {
            return;
        };
        if budget.0 != now {
            *budget = (now, 0, budget.2);
        }
        if budget.1 >= ERROR_LINES_PER_SECOND {
            budget.2 += 1;
            return;
        }
        budget.1 += 1;
        std::mem::take(&mut budget.2)
    };
    let time = crate::access_log::iso_time(now);
    let core = match core {
        Some(core) => format!("core {core}: "),
        None => String::new(),
    };
    let more = match suppressed {
        0 => String::new(),
        n => format!(" ({n} earlier error lines not printed)"),
    };
    let _ = writeln!(io::stderr().lock(), "percore: {time} {core}{text}{more}");
}

/// Formats microseconds with a unit, right-aligned in 8 columns.
pub fn format_latency(micros: u64) -> String {
    let text = if micros < 10_000 {
        format!("{micros}µs")
    } else if micros < 10_000_000 {
        format!("{:.1}ms", micros as f64 / 1000.0)
    } else {
        format!("{:.2}s", micros as f64 / 1e6)
    };
    format!("{text:>8}")
}

fn text_header() -> String {
    format!(
        "{:>7} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "time", "core", "req/s", "p50", "p90", "p99", "p99.9", "max", "open"
    )
}

/// Prints one interval: a line per core when `per_core`, then the total. An interval without
/// requests is one line saying so (the caller prints it once per quiet spell).
fn print_interval(
    interval: &[Snapshot],
    seq: usize,
    tick: Duration,
    format: ReportFormat,
    per_core: bool,
) {
    let at = (tick * seq as u32).as_secs_f64();
    let mut merged = new_histogram();
    let mut open = 0;
    let mut lines = String::new();
    let mut sorted: Vec<&Snapshot> = interval.iter().collect();
    sorted.sort_by_key(|s| s.core);
    let idle = sorted.iter().all(|s| s.latency.is_empty());
    for s in &sorted {
        let _ = merged.add(&s.latency);
        open += s.open;
        if !per_core || idle {
            continue;
        }
        lines.push_str(&interval_line(
            at,
            &s.core.to_string(),
            &s.latency,
            s.duration,
            s.open,
            format,
        ));
    }
    let duration = sorted.first().map(|s| s.duration).unwrap_or(tick);
    lines.push_str(&interval_line(at, "all", &merged, duration, open, format));
    emit(&lines);
}

fn interval_line(
    at: f64,
    core: &str,
    latency: &Histogram<u64>,
    duration: Duration,
    open: usize,
    format: ReportFormat,
) -> String {
    let rate = latency.len() as f64 / duration.as_secs_f64().max(1e-9);
    let p = Percentiles::of(latency);
    match format {
        ReportFormat::Json => {
            let core = json_core(core);
            format!(
                "{{\"time_s\":{at:.3},\"core\":{core},\"req_per_s\":{rate:.0},\"requests\":{},\"open\":{open},\"latency_us\":{}}}\n",
                latency.len(),
                p.to_json()
            )
        }
        ReportFormat::Text if latency.is_empty() && core == "all" => format!(
            "{:>6.1}s {core:>6} {:>10} {:>44} {open:>6}\n",
            at, 0, "(quiet: nothing more until requests return)"
        ),
        ReportFormat::Text if latency.is_empty() => format!(
            "{:>6.1}s {core:>6} {:>10} {:>44} {open:>6}\n",
            at, 0, "(quiet: no requests)"
        ),
        ReportFormat::Text => format!(
            "{:>6.1}s {core:>6} {rate:>10.0} {} {} {} {} {} {open:>6}\n",
            at,
            format_latency(p.p50),
            format_latency(p.p90),
            format_latency(p.p99),
            format_latency(p.p999),
            format_latency(p.max),
        ),
    }
}

/// The `core` member of a JSON line: a number, or the string `"all"` for the merge.
fn json_core(core: &str) -> String {
    if core == "all" {
        "\"all\"".into()
    } else {
        core.into()
    }
}

/// Prints the end-of-run summary to stdout, per core and merged.
pub fn print_summary(summary: &RunSummary, format: ReportFormat) {
    let seconds = summary.duration.as_secs_f64().max(1e-9);
    let mut rows: Vec<(String, Counters, Histogram<u64>)> = summary
        .cores
        .iter()
        .map(|c| (c.core.to_string(), c.counters, c.latency.clone()))
        .collect();
    rows.push((
        "all".into(),
        summary.merged_counters(),
        summary.merged_latency(),
    ));
    let mut out = String::new();
    match format {
        ReportFormat::Json => {
            for (core, counters, latency) in &rows {
                let core = json_core(core);
                let _ = writeln!(
                    out,
                    "{{\"summary\":true,\"core\":{core},\"duration_s\":{seconds:.3},\"mean_req_per_s\":{:.0},{},\"latency_us\":{}}}",
                    counters.requests() as f64 / seconds,
                    counters.json_members(),
                    Percentiles::of(latency).to_json()
                );
            }
        }
        ReportFormat::Text => {
            let _ = writeln!(out, "percore run summary: {seconds:.1} s");
            let _ = writeln!(
                out,
                "{:>6} {:>12} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "core", "requests", "req/s", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max"
            );
            for (core, counters, latency) in &rows {
                if latency.is_empty() {
                    let _ = writeln!(
                        out,
                        "{core:>6} {:>12} {:>10} {:>44}",
                        counters.requests(),
                        0,
                        "(no latency samples)"
                    );
                    continue;
                }
                let p = Percentiles::of(latency);
                let _ = writeln!(
                    out,
                    "{core:>6} {:>12} {:>10.0} {} {} {} {} {} {} {}",
                    counters.requests(),
                    counters.requests() as f64 / seconds,
                    format_latency(p.mean.round() as u64),
                    format_latency(p.p50),
                    format_latency(p.p90),
                    format_latency(p.p99),
                    format_latency(p.p999),
                    format_latency(p.p9999),
                    format_latency(p.max),
                );
            }
            let panics = summary.merged_counters().handler_panics;
            if panics > 0 {
                let _ = writeln!(
                    out,
                    "{panics} handler panic(s): each request answered 500, its connection closed"
                );
            }
        }
    }
    emit(&out);
}

/// Writes `core-N.hgrm` for each core and `all.hgrm` merged.
fn write_hgrm_files(dir: &Path, summary: &RunSummary) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for core in &summary.cores {
        let mut file = BufWriter::new(File::create(dir.join(format!("core-{}.hgrm", core.core)))?);
        write_percentile_distribution(&mut file, &core.latency)?;
        file.flush()?;
    }
    let mut file = BufWriter::new(File::create(dir.join("all.hgrm"))?);
    write_percentile_distribution(&mut file, &summary.merged_latency())?;
    file.flush()
}

/// HdrHistogram's percentile distribution text (what `outputPercentileDistribution` prints and
/// HdrHistogram's plotters read), values in milliseconds.
pub fn write_percentile_distribution(out: &mut impl Write, h: &Histogram<u64>) -> io::Result<()> {
    const SCALE: f64 = 1000.0;
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    if !h.is_empty() {
        let mut total = 0;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {total:10}")?;
            }
        }
    }
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / SCALE,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // 3 significant digits (see `new_histogram`) need 2048 sub-buckets per bucket.
        2048
    )
}
