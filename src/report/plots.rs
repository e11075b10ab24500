//! Pictures of a run, drawn by percore itself (plotters, SVG backend): `latency.svg`, latency
//! by percentile on HdrHistogram's usual log-scaled percentile axis, one line per core and
//! one for all; and `timeline.svg`, requests per second and p50/p99/max latency per interval,
//! per core and in total.
//!
//! Their axes read as a person writes them (`80k`, `500 ms`, `1 min`, `250 µs`: `ticks`), and
//! a core's p50, p99 and max lines share the core's colour but not its stroke: solid, dashed,
//! dotted and thinner.
//!
//! Both are drawn from a report directory's files, `core-N.hgrm`, `all.hgrm` and
//! `intervals.hlog`, whether at shutdown (right after they are written) or later by
//! `percore report DIR`: the same files give the same pictures.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::ticks::{count_label, decimal_label, latency_label, TimeAxis};
use crate::metrics::{new_histogram, Percentiles};

/// Pixels of each picture.
const SIZE: (u32, u32) = (900, 500);

/// The highest percentile on the latency axis: 99.999% (1 / (1 - q) = 100,000).
const LAST_PERCENTILE_X: f64 = 100_000.0;

/// One core's (or all cores') latency by percentile, as an `.hgrm` file lists it: the
/// quantile (0 to 1) and the latency in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// `core N` or `all`.
    pub name: String,
    /// (quantile, milliseconds), in file order.
    pub points: Vec<(f64, f64)>,
}

/// Reads the rows of HdrHistogram's percentile distribution text: (quantile, value).
pub fn read_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .take_while(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let value = fields.next()?.parse().ok()?;
            let quantile = fields.next()?.parse().ok()?;
            Some((quantile, value))
        })
        .collect()
}

/// One interval of one core from an interval log.
#[derive(Clone, Debug)]
pub struct Interval {
    /// The CPU.
    pub core: usize,
    /// Start, seconds since the run began.
    pub start: f64,
    /// Length, seconds.
    pub duration: f64,
    /// Its latencies, microseconds.
    pub latency: Histogram<u64>,
    /// They are the core's upstream servers' latencies (tagged `upstream-N`), not its
    /// clients'.
    pub upstream: bool,
}

/// Reads `intervals.hlog` (histograms tagged `core-N`, and `upstream-N` for the upstream
/// servers' latencies of core N).
pub fn read_hlog(bytes: &[u8]) -> Result<Vec<Interval>, String> {
    let mut intervals = Vec::new();
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| format!("interval log: {e:?}"))?;
        let LogEntry::Interval(logged) = entry else {
            continue;
        };
        let tag = logged.tag().map_or("", |tag| tag.as_str());
        let (upstream, core) = match tag.strip_prefix("upstream-") {
            Some(core) => (true, core),
            None => (false, tag.strip_prefix("core-").unwrap_or("")),
        };
        let core = core
            .parse()
            .map_err(|_| "interval log: a histogram without a core-N or upstream-N tag")?;
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(logged.encoded_histogram())
            .map_err(|e| format!("interval log: {e}"))?;
        let latency: Histogram<u64> = deserializer
            .deserialize(&mut encoded.as_slice())
            .map_err(|e| format!("interval log: {e:?}"))?;
        intervals.push(Interval {
            core,
            start: logged.start_timestamp().as_secs_f64(),
            duration: logged.duration().as_secs_f64(),
            latency,
            upstream,
        });
    }
    Ok(intervals)
}

/// What a report directory holds, read back.
pub struct Run {
    /// Latency by percentile: every core in order, then all.
    pub curves: Vec<Curve>,
    /// Every interval of every core.
    pub intervals: Vec<Interval>,
}

impl Run {
    /// Reads `core-N.hgrm`, `all.hgrm` and `intervals.hlog` from `dir`.
    pub fn read(dir: &Path) -> Result<Run, String> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut cores = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(core) = name
                .strip_prefix("core-")
                .and_then(|n| n.strip_suffix(".hgrm"))
                .and_then(|n| n.parse::<usize>().ok())
            {
                cores.push(core);
            }
        }
        cores.sort_unstable();
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .map_err(|e| format!("cannot read {}: {e}", dir.join(file).display()))
        };
        let mut curves = Vec::new();
        for core in cores {
            curves.push(Curve {
                name: format!("core {core}"),
                points: read_hgrm(&read(&format!("core-{core}.hgrm"))?),
            });
        }
        curves.push(Curve {
            name: "all".into(),
            points: read_hgrm(&read("all.hgrm")?),
        });
        if dir.join("upstream.hgrm").exists() {
            // Where the time went: the backend's share of it.
            curves.push(Curve {
                name: "upstream".into(),
                points: read_hgrm(&read("upstream.hgrm")?),
            });
        }
        let log = std::fs::read(dir.join("intervals.hlog"))
            .map_err(|e| format!("cannot read {}: {e}", dir.join("intervals.hlog").display()))?;
        Ok(Run {
            curves,
            intervals: read_hlog(&log)?,
        })
    }

    /// The run per core and merged, from the interval log: (name, requests, seconds,
    /// latency).
    pub fn totals(&self) -> Vec<(String, u64, f64, Histogram<u64>)> {
        let mut cores: BTreeMap<usize, (f64, Histogram<u64>)> = BTreeMap::new();
        for interval in self.intervals.iter().filter(|i| !i.upstream) {
            let (end, latency) = cores
                .entry(interval.core)
                .or_insert_with(|| (0.0, new_histogram()));
            *end = end.max(interval.start + interval.duration);
            let _ = latency.add(&interval.latency);
        }
        let mut rows: Vec<_> = cores
            .iter()
            .map(|(core, (end, latency))| (core.to_string(), latency.len(), *end, latency.clone()))
            .collect();
        let mut all = new_histogram();
        let mut end: f64 = 0.0;
        for (core_end, latency) in cores.values() {
            let _ = all.add(latency);
            end = end.max(*core_end);
        }
        rows.push(("all".into(), all.len(), end, all));
        rows
    }
}

/// Draws `latency.svg` and `timeline.svg` into `dir` from its files.
pub fn render(dir: &Path) -> Result<Run, String> {
    let run = Run::read(dir)?;
    draw_latency(&dir.join("latency.svg"), &run.curves)?;
    draw_timeline(&dir.join("timeline.svg"), &run.intervals)?;
    Ok(run)
}

/// A color per series: the core's place among the cores; `all` is black.
fn color(index: usize) -> RGBColor {
    let RGBAColor(r, g, b, _) = Palette99::pick(index).to_rgba();
    RGBColor(r, g, b)
}

fn plot_error(e: impl std::fmt::Display) -> String {
    format!("cannot draw: {e}")
}

/// `latency.svg`: latency (ms) by percentile, 50% to 99.999%.
fn draw_latency(path: &Path, curves: &[Curve]) -> Result<(), String> {
    let on_axis = |&(q, ms): &(f64, f64)| {
        let x = 1.0 / (1.0 - q);
        (q >= 0.5 && x <= LAST_PERCENTILE_X).then_some((x, ms))
    };
    let top = curves
        .iter()
        .flat_map(|c| c.points.iter().filter_map(on_axis))
        .map(|(_, ms)| ms)
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency by percentile", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((2.0..LAST_PERCENTILE_X).log_scale(), 0.0..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|ms| decimal_label(*ms))
        .draw()
        .map_err(plot_error)?;
    for (i, curve) in curves.iter().enumerate() {
        let all = curve.name == "all";
        let style = match all {
            true => BLACK.stroke_width(2),
            false => color(i).stroke_width(1),
        };
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().filter_map(on_axis),
                style,
            ))
            .map_err(plot_error)?
            .label(curve.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// "99.9%" for the x that is 1 / (1 - 0.999).
fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 1.0 / x);
    let text = format!("{percent:.4}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// One point of a timeline: interval end (s), requests per second, p50, p99, max (µs).
type Point = (f64, f64, u64, u64, u64);

/// Which latency of a [`Point`] a line shows.
type Pick = fn(&Point) -> u64;

fn point(end: f64, duration: f64, latency: &Histogram<u64>) -> Point {
    let p = Percentiles::of(latency);
    let rate = latency.len() as f64 / duration.max(1e-9);
    (end, rate, p.p50.max(1), p.p99.max(1), p.max.max(1))
}

/// How a latency line is stroked, beside its colour.
#[derive(Clone, Copy)]
enum Dash {
    Solid,
    Dashed,
    Dotted,
}

impl Dash {
    /// The SVG `stroke-dasharray`; none for a solid line.
    fn pattern(self) -> Option<&'static str> {
        match self {
            Dash::Solid => None,
            Dash::Dashed => Some("6 3"),
            Dash::Dotted => Some("2 3"),
        }
    }

    /// The opacity that marks the dash in what plotters writes (its SVG backend draws no
    /// dashes); [`add_dashes`] makes it opaque again, with the dash pattern.
    fn marker(self) -> f64 {
        match self {
            Dash::Solid => 1.0,
            Dash::Dashed => 0.999,
            Dash::Dotted => 0.998,
        }
    }
}

/// The latency lines of each core and of all: which latency, its stroke, its width in
/// pixels (one more for all).
const METRICS: [(&str, Pick, Dash, u32); 3] = [
    ("p50", |p| p.2, Dash::Solid, 2),
    ("p99", |p| p.3, Dash::Dashed, 2),
    ("max", |p| p.4, Dash::Dotted, 1),
];

/// Gives the lines (and their legend samples) drawn with a [`Dash::marker`] opacity their
/// dash pattern.
fn add_dashes(svg: &str) -> String {
    let mut svg = svg.to_string();
    for dash in [Dash::Dashed, Dash::Dotted] {
        if let Some(pattern) = dash.pattern() {
            svg = svg.replace(
                &format!("opacity=\"{}\"", dash.marker()),
                &format!("opacity=\"1\" stroke-dasharray=\"{pattern}\""),
            );
        }
    }
    svg
}

/// One point per interval start: the intervals of every core that began then, merged.
fn merged_points(intervals: &[&Interval]) -> Vec<Point> {
    let mut merged: BTreeMap<u64, (f64, f64, Histogram<u64>)> = BTreeMap::new();
    for interval in intervals {
        let key = (interval.start * 1000.0).round() as u64;
        let end = interval.start + interval.duration;
        let slot = merged
            .entry(key)
            .or_insert_with(|| (end, interval.duration, new_histogram()));
        let _ = slot.2.add(&interval.latency);
    }
    merged
        .values()
        .map(|(end, duration, latency)| point(*end, *duration, latency))
        .collect()
}

/// `timeline.svg`: requests per second above, latency below, per interval.
fn draw_timeline(path: &Path, intervals: &[Interval]) -> Result<(), String> {
    let svg = timeline_svg(intervals)?;
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The picture of [`draw_timeline`], as SVG text.
fn timeline_svg(intervals: &[Interval]) -> Result<String, String> {
    let mut svg = String::new();
    draw_timeline_on(SVGBackend::with_string(&mut svg, SIZE), intervals)?;
    Ok(add_dashes(&svg))
}

/// Draws the timeline of `intervals` on `backend`.
fn draw_timeline_on(backend: SVGBackend<'_>, intervals: &[Interval]) -> Result<(), String> {
    let (upstream, clients): (Vec<&Interval>, Vec<&Interval>) =
        intervals.iter().partition(|i| i.upstream);
    let mut per_core: BTreeMap<usize, Vec<Point>> = BTreeMap::new();
    for interval in &clients {
        let end = interval.start + interval.duration;
        per_core.entry(interval.core).or_default().push(point(
            end,
            interval.duration,
            &interval.latency,
        ));
    }
    let total = merged_points(&clients);
    // The upstream servers' latencies of all cores: where the time went.
    let upstream = merged_points(&upstream);
    let end = total.iter().map(|p| p.0).fold(1.0, f64::max);
    let top_rate = total.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let top_latency = total.iter().map(|p| p.4).max().unwrap_or(1).max(10) as f64 * 2.0;

    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (upper, lower) = root.split_vertically(SIZE.1 / 2);
    let mut rates = ChartBuilder::on(&upper)
        .caption(
            "Requests per second and latency per interval",
            ("sans-serif", 18),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(70)
        .build_cartesian_2d(TimeAxis::up_to(end), 0.0..top_rate)
        .map_err(plot_error)?;
    rates
        .configure_mesh()
        .y_desc("requests/s")
        .y_label_formatter(&|rate| count_label(*rate))
        .draw()
        .map_err(plot_error)?;
    for (i, (core, points)) in per_core.iter().enumerate() {
        let style = color(i).stroke_width(1);
        rates
            .draw_series(LineSeries::new(points.iter().map(|p| (p.0, p.1)), style))
            .map_err(plot_error)?
            .label(format!("core {core}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    let all = BLACK.stroke_width(2);
    rates
        .draw_series(LineSeries::new(total.iter().map(|p| (p.0, p.1)), all))
        .map_err(plot_error)?
        .label("all")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], all));
    rates
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;

    let mut latency = ChartBuilder::on(&lower)
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(TimeAxis::up_to(end), (1.0..top_latency).log_scale())
        .map_err(plot_error)?;
    latency
        .configure_mesh()
        .x_desc("time")
        .y_desc("latency")
        .y_label_formatter(&|micros| latency_label(*micros))
        .draw()
        .map_err(plot_error)?;
    let cores = per_core
        .iter()
        .enumerate()
        .map(|(i, (core, points))| (format!("core {core}"), [color(i); 3], 0, points));
    // All's lines have a colour each, and are a pixel wider.
    let all = (
        "all".to_string(),
        [RGBColor(0, 120, 0), BLACK, RGBColor(200, 0, 0)],
        1,
        &total,
    );
    let purple = RGBColor(120, 40, 160);
    let servers = ("upstream".to_string(), [purple; 3], 1, &upstream);
    let servers = (!upstream.is_empty()).then_some(servers);
    for (name, strokes, wider, points) in cores.chain([all]).chain(servers) {
        for ((metric, value, dash, width), stroke) in METRICS.into_iter().zip(strokes) {
            let style = stroke.mix(dash.marker()).stroke_width(width + wider);
            latency
                .draw_series(LineSeries::new(
                    // Intervals without requests have no latency to show.
                    points
                        .iter()
                        .filter(|p| p.1 > 0.0)
                        .map(|p| (p.0, value(p) as f64)),
                    style,
                ))
                .map_err(plot_error)?
                .label(format!("{name} {metric}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
    }
    latency
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

#[cfg(test)]
mod tests;
