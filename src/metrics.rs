//! Per-core measurements: counters and a latency histogram, and the snapshots a core hands
//! to the reporter.
//!
//! A core records into its own [`Metrics`] with no synchronisation. Once per tick it folds
//! the interval histogram into its run total, publishes a copy for `/stats` on the
//! [`StatsBoard`] and sends the interval to the reporter thread (`report`). The board's lock
//! is taken once per tick by each core and by `/stats` requests, never per ordinary request.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency recorded, in microseconds (60 s); larger values are clamped to it.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// An empty latency histogram: 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Monotonic counters of one core since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Final responses by status class: index 1 for 1xx … 5 for 5xx.
    pub by_class: [u64; 6],
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Connections accepted (and served).
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Connections refused at `max_connections_per_core`.
    pub refused: u64,
    /// Requests refused for a protocol error (malformed, too large, timed out…).
    pub protocol_errors: u64,
    /// Times the core's ring loop found nothing to do and slept (in its own ring, or through
    /// glommio while a file read is outstanding) until a completion, a deadline or a file
    /// read woke it.
    pub parks: u64,
    /// Static-file requests answered from the core's cache of small files (the file was
    /// checked with one `stat`, not opened or read).
    pub file_cache_hits: u64,
    /// Requests whose handler panicked (each was answered 500 and its connection closed).
    pub handler_panics: u64,
    /// Access log lines dropped because the core's log buffer was full.
    pub access_log_dropped: u64,
}

impl Counters {
    /// Responses of every class.
    pub fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }

    /// Adds another core's counters.
    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.by_class.iter_mut().zip(other.by_class) {
            *a += b;
        }
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.accepted += other.accepted;
        self.closed += other.closed;
        self.refused += other.refused;
        self.protocol_errors += other.protocol_errors;
        self.parks += other.parks;
        self.file_cache_hits += other.file_cache_hits;
        self.handler_panics += other.handler_panics;
        self.access_log_dropped += other.access_log_dropped;
    }
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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            counters: RefCell::new(Counters::default()),
            interval: RefCell::new(new_histogram()),
            total: RefCell::new(new_histogram()),
        }
    }
}

impl Metrics {
    /// Records `count` requests answered `latency` after the read that completed them.
    pub fn record_latency(&self, latency: Duration, count: u64) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let _ = self.interval.borrow_mut().record_n(micros, count);
    }

    /// Records one batch of responses, counted by status class (index 1 for 1xx … 5 for 5xx),
    /// `errors` of them protocol errors; their latency runs from `read_at`, when the bytes that
    /// completed them were reaped from the ring, to now, when their send is queued.
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
}

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
}

impl StatsBoard {
    /// A board for `cores` cores.
    pub fn new(cores: usize) -> Arc<StatsBoard> {
        Arc::new(StatsBoard {
            started: std::time::Instant::now(),
            slots: Mutex::new(vec![None; cores]),
        })
    }

    /// Replaces one core's entry.
    pub fn publish(&self, index: usize, snapshot: Snapshot) {
        if let Ok(mut slots) = self.slots.lock() {
            slots[index] = Some(snapshot);
        }
    }
}

/// Latency percentiles of a histogram in microseconds, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Percentiles {
    /// Reads the percentiles of `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: histogram.len(),
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            p9999: histogram.value_at_quantile(0.9999),
            max: histogram.max(),
        }
    }

    /// As a JSON object, microseconds.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"count\":{},\"mean\":{:.1},\"p50\":{},\"p90\":{},\"p99\":{},\"p99_9\":{},\"p99_99\":{},\"max\":{}}}",
            self.count, self.mean, self.p50, self.p90, self.p99, self.p999, self.p9999, self.max
        )
    }
}

impl Counters {
    /// As JSON members (no braces).
    pub fn json_members(&self) -> String {
        let c = &self.by_class;
        format!(
            "\"requests\":{},\"status\":{{\"1xx\":{},\"2xx\":{},\"3xx\":{},\"4xx\":{},\"5xx\":{}}},\
             \"bytes_in\":{},\"bytes_out\":{},\"connections\":{{\"accepted\":{},\"closed\":{},\"refused\":{}}},\
             \"protocol_errors\":{},\"loop_parks\":{},\"file_cache_hits\":{},\"handler_panics\":{},\"access_log_dropped\":{}",
            self.requests(),
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            self.bytes_in,
            self.bytes_out,
            self.accepted,
            self.closed,
            self.refused,
            self.protocol_errors,
            self.parks,
            self.file_cache_hits,
            self.handler_panics,
            self.access_log_dropped
        )
    }
}

/// Renders the `/stats` body: every core's latest published totals and their merge.
pub fn stats_json(board: &StatsBoard, cores: &[usize]) -> String {
    let slots = match board.slots.lock() {
        Ok(slots) => slots.clone(),
        Err(_) => return "{}".into(),
    };
    let mut merged = new_histogram();
    let mut total = Counters::default();
    let mut open = 0;
    let mut parts = Vec::new();
    for (snapshot, core) in slots.iter().zip(cores) {
        let Some(s) = snapshot else {
            parts.push(format!("{{\"core\":{core},\"started\":false}}"));
            continue;
        };
        let _ = merged.add(&s.latency);
        total.add(&s.counters);
        open += s.open;
        parts.push(format!(
            "{{\"core\":{core},{},\"open\":{},\"latency_us\":{}}}",
            s.counters.json_members(),
            s.open,
            Percentiles::of(&s.latency).to_json()
        ));
    }
    format!(
        "{{\"server\":\"percore\",\"uptime_s\":{:.3},\"cores\":[{}],\"total\":{{{},\"open\":{},\"latency_us\":{}}}}}\n",
        board.started.elapsed().as_secs_f64(),
        parts.join(","),
        total.json_members(),
        open,
        Percentiles::of(&merged).to_json()
    )
}

/// Upper bounds of the request latency histogram's buckets, in seconds: 1 µs to 10 s.
pub const LATENCY_BUCKETS_S: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Renders the Prometheus text exposition (format 0.0.4) of every core's latest published
/// totals, each sample labelled with its `core`.
pub fn prometheus_text(board: &StatsBoard, cores: &[usize]) -> String {
    use std::fmt::Write as _;
    let slots = match board.slots.lock() {
        Ok(slots) => slots.clone(),
        Err(_) => Vec::new(),
    };
    let published: Vec<(usize, Snapshot)> = slots
        .into_iter()
        .zip(cores)
        .filter_map(|(slot, &core)| slot.map(|s| (core, s)))
        .collect();
    let mut out = String::with_capacity(4096 + published.len() * 2048);
    let family =
        |out: &mut String, name: &str, kind: &str, help: &str, value: &dyn Fn(&Snapshot) -> u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (core, s) in &published {
                let _ = writeln!(out, "{name}{{core=\"{core}\"}} {}", value(s));
            }
        };
    family(
        &mut out,
        "percore_requests_total",
        "counter",
        "Final responses sent.",
        &|s| s.counters.requests(),
    );
    let _ = writeln!(
        out,
        "# HELP percore_responses_total Final responses by status class.\n# TYPE percore_responses_total counter"
    );
    for (core, s) in &published {
        for class in 1..=5 {
            let _ = writeln!(
                out,
                "percore_responses_total{{core=\"{core}\",class=\"{class}xx\"}} {}",
                s.counters.by_class[class]
            );
        }
    }
    family(
        &mut out,
        "percore_received_bytes_total",
        "counter",
        "Bytes read from clients.",
        &|s| s.counters.bytes_in,
    );
    family(
        &mut out,
        "percore_sent_bytes_total",
        "counter",
        "Bytes written to clients.",
        &|s| s.counters.bytes_out,
    );
    family(
        &mut out,
        "percore_connections_accepted_total",
        "counter",
        "Connections accepted.",
        &|s| s.counters.accepted,
    );
    family(
        &mut out,
        "percore_connections_closed_total",
        "counter",
        "Connections closed.",
        &|s| s.counters.closed,
    );
    family(
        &mut out,
        "percore_connections_refused_total",
        "counter",
        "Connections refused at server.max_connections_per_core.",
        &|s| s.counters.refused,
    );
    family(
        &mut out,
        "percore_connections_open",
        "gauge",
        "Connections open.",
        &|s| s.open as u64,
    );
    family(
        &mut out,
        "percore_protocol_errors_total",
        "counter",
        "Requests refused for a protocol error.",
        &|s| s.counters.protocol_errors,
    );
    family(
        &mut out,
        "percore_handler_panics_total",
        "counter",
        "Requests whose handler panicked (answered 500).",
        &|s| s.counters.handler_panics,
    );
    let name = "percore_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from reading a request to queueing its response.\n# TYPE {name} histogram"
    );
    for (core, s) in &published {
        let h = &s.latency;
        for le in LATENCY_BUCKETS_S {
            let micros = (le * 1e6).round() as u64;
            let count = if h.is_empty() {
                0
            } else {
                h.count_between(0, micros)
            };
            let _ = writeln!(out, "{name}_bucket{{core=\"{core}\",le=\"{le}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{core=\"{core}\",le=\"+Inf\"}} {}",
            h.len()
        );
        let _ = writeln!(
            out,
            "{name}_sum{{core=\"{core}\"}} {}",
            h.mean() * h.len() as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{core=\"{core}\"}} {}", h.len());
    }
    out
}
