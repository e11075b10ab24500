//! The text the reporter prints: live lines per interval, and the run's summary, as aligned
//! text or JSON Lines.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::RunSummary;
use crate::config::ReportFormat;
use crate::metrics::{new_histogram, Counters, Percentiles, Snapshot};
use crate::support::stderr::emit;

/// Formats microseconds with a unit, right-aligned in 8 columns.
pub(crate) fn format_latency(micros: u64) -> String {
    let text = if micros < 10_000 {
        format!("{micros}µs")
    } else if micros < 10_000_000 {
        format!("{:.1}ms", micros as f64 / 1000.0)
    } else {
        format!("{:.2}s", micros as f64 / 1e6)
    };
    format!("{text:>8}")
}

pub(crate) fn text_header() -> String {
    format!(
        "{:>7} {:>6} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "time", "core", "req/s", "p50", "p90", "p99", "p99.9", "max", "open"
    )
}

/// Prints one interval: a line per core when `per_core`, then the total. An interval without
/// requests is one line saying so (the caller prints it once per quiet spell).
/// `handshakes` holds each core's TLS handshakes as of its last interval, to tell the
/// handshakes of this one.
pub(crate) fn print_interval(
    interval: &[Snapshot],
    seq: usize,
    tick: Duration,
    format: ReportFormat,
    per_core: bool,
    handshakes: &mut HashMap<usize, u64>,
) {
    let at = (tick * seq as u32).as_secs_f64();
    let mut merged = new_histogram();
    let mut upstream: Option<Histogram<u64>> = None;
    let mut open = 0;
    let mut lines = String::new();
    let mut sorted: Vec<&Snapshot> = interval.iter().collect();
    sorted.sort_by_key(|s| s.core);
    let idle = sorted.iter().all(|s| s.latency.is_empty());
    let mut all_tls = 0;
    for s in &sorted {
        let _ = merged.add(&s.latency);
        if let Some(h) = &s.upstream_latency {
            let _ = upstream.get_or_insert_with(new_histogram).add(h);
        }
        open += s.open;
        let now = s.counters.tls_handshakes();
        let tls = now - handshakes.insert(s.core, now).unwrap_or(0).min(now);
        all_tls += tls;
        if !per_core || idle {
            continue;
        }
        let line = Line {
            at,
            core: &s.core.to_string(),
            latency: &s.latency,
            duration: s.duration,
            open: s.open,
            tls,
            upstream: s.upstream_latency.as_ref(),
        };
        lines.push_str(&line.render(format));
    }
    let duration = sorted.first().map(|s| s.duration).unwrap_or(tick);
    let line = Line {
        at,
        core: "all",
        latency: &merged,
        duration,
        open,
        tls: all_tls,
        upstream: upstream.as_ref(),
    };
    lines.push_str(&line.render(format));
    emit(&lines);
}

/// One live line: a core's (or all cores') interval.
struct Line<'a> {
    at: f64,
    core: &'a str,
    latency: &'a Histogram<u64>,
    duration: Duration,
    open: usize,
    /// TLS handshakes completed in the interval.
    tls: u64,
    /// The upstream servers' latencies in the interval (proxied requests and handlers'
    /// calls), if there were any.
    upstream: Option<&'a Histogram<u64>>,
}

impl Line<'_> {
    fn render(&self, format: ReportFormat) -> String {
        let mut text = interval_line(
            self.at,
            self.core,
            self.latency,
            self.duration,
            self.open,
            format,
        );
        let tls_rate = self.tls as f64 / self.duration.as_secs_f64().max(1e-9);
        match format {
            ReportFormat::Json => {
                text.truncate(text.len() - 2);
                text.push_str(&format!(",\"tls_handshakes_per_s\":{tls_rate:.0}}}\n"));
            }
            ReportFormat::Text if self.tls > 0 => {
                text.pop();
                text.push_str(&format!("  tls/s {tls_rate:.0}\n"));
            }
            ReportFormat::Text => {}
        }
        if let Some(upstream) = self.upstream.filter(|h| !h.is_empty()) {
            let rate = upstream.len() as f64 / self.duration.as_secs_f64().max(1e-9);
            let p = Percentiles::of(upstream);
            text.pop();
            match format {
                ReportFormat::Json => {
                    text.pop();
                    text.push_str(&format!(
                        ",\"upstream_per_s\":{rate:.0},\"upstream_latency_us\":{}}}\n",
                        p.to_json()
                    ));
                }
                ReportFormat::Text => text.push_str(&format!(
                    "  upstream/s {rate:.0} p50 {} p99 {}\n",
                    format_latency(p.p50).trim_start(),
                    format_latency(p.p99).trim_start()
                )),
            }
        }
        text
    }
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

/// The header of a run's summary table.
pub(crate) const SUMMARY_HEADER: &str =
    "  core     requests      req/s     mean      p50      p90      p99    p99.9   p99.99      max\n";

/// A row of a run's summary: the core, its requests, their rate, then the latency's mean and
/// percentiles.
pub(crate) fn summary_row(
    core: &str,
    requests: u64,
    rate: f64,
    latency: &Histogram<u64>,
) -> String {
    let p = Percentiles::of(latency);
    format!(
        "{core:>6} {requests:>12} {rate:>10.0} {} {} {} {} {} {} {}\n",
        format_latency(p.mean.round() as u64),
        format_latency(p.p50),
        format_latency(p.p90),
        format_latency(p.p99),
        format_latency(p.p999),
        format_latency(p.p9999),
        format_latency(p.max),
    )
}

/// The `core` member of a JSON line: a number, or the string `"all"` for the merge.
fn json_core(core: &str) -> String {
    if core == "all" {
        "\"all\"".into()
    } else {
        core.into()
    }
}

/// The upstream latencies of `core` (a number, or `"all"` as JSON writes it) in `summary`.
fn upstream_of(summary: &RunSummary, core: &str) -> Option<Histogram<u64>> {
    match core.parse::<usize>() {
        Ok(n) => summary
            .cores
            .iter()
            .find(|c| c.core == n)?
            .upstream_latency
            .clone(),
        Err(_) => summary.merged_upstream_latency(),
    }
}

/// The upstream latency member of a summary line (with its leading comma), if any.
fn upstream_member(h: Option<&Histogram<u64>>) -> String {
    match h {
        Some(h) => format!(",\"upstream_latency_us\":{}", Percentiles::of(h).to_json()),
        None => String::new(),
    }
}

/// Prints the end-of-run summary to stdout, per core and merged.
pub(crate) fn print_summary(summary: &RunSummary, format: ReportFormat) {
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
                let upstream = upstream_of(summary, core);
                let core = json_core(core);
                let _ = writeln!(
                    out,
                    "{{\"summary\":true,\"core\":{core},\"duration_s\":{seconds:.3},\"mean_req_per_s\":{:.0},{},\"latency_us\":{}{}}}",
                    counters.requests() as f64 / seconds,
                    counters.json_members(),
                    Percentiles::of(latency).to_json(),
                    upstream_member(upstream.as_ref())
                );
            }
        }
        ReportFormat::Text => {
            let _ = writeln!(out, "percore run summary: {seconds:.1} s");
            out.push_str(SUMMARY_HEADER);
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
                let requests = counters.requests();
                out.push_str(&summary_row(
                    core,
                    requests,
                    requests as f64 / seconds,
                    latency,
                ));
            }
            let upstream: Vec<(String, &Histogram<u64>)> = summary
                .cores
                .iter()
                .filter_map(|c| Some((c.core.to_string(), c.upstream_latency.as_ref()?)))
                .collect();
            if !upstream.is_empty() {
                let _ = writeln!(out, "upstream servers (request out to response head):");
                let merged = summary.merged_upstream_latency();
                let all = merged.as_ref().map(|h| ("all".to_string(), h));
                for (core, h) in upstream.iter().cloned().chain(all) {
                    out.push_str(&summary_row(&core, h.len(), h.len() as f64 / seconds, h));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_upstream_latencies_says_their_rate_and_percentiles() {
        let mut latency = new_histogram();
        latency.record_n(200, 1000).unwrap();
        let mut upstream = new_histogram();
        upstream.record_n(150, 980).unwrap();
        upstream.record_n(2000, 20).unwrap();
        let mut line = Line {
            at: 1.0,
            core: "0",
            latency: &latency,
            duration: Duration::from_secs(1),
            open: 3,
            tls: 0,
            upstream: Some(&upstream),
        };
        let text = line.render(ReportFormat::Text);
        assert!(
            text.ends_with("  upstream/s 1000 p50 150µs p99 2000µs\n"),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 1);
        let json = line.render(ReportFormat::Json);
        let parsed: serde_json::Value = serde_json::from_str(json.trim_end()).expect("JSON");
        assert_eq!(parsed["upstream_per_s"], 1000);
        assert_eq!(parsed["upstream_latency_us"]["p50"], 150);
        assert_eq!(parsed["tls_handshakes_per_s"], 0);
        // No upstream latency in the interval: the line says nothing of it.
        line.upstream = None;
        assert!(!line.render(ReportFormat::Text).contains("upstream"));
        assert!(!line.render(ReportFormat::Json).contains("upstream"));
    }
}
