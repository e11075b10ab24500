//! Per-core measurements: live lines, /stats, the shutdown summary and histogram files.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Percore, TestServer};
use percore::config::CoreSpec;

fn two_cores_if_possible() -> CoreSpec {
    let usable = percore::internals::usable_cores();
    CoreSpec::List(usable[..usable.len().min(2)].to_vec())
}

#[test]
fn per_core_counts_sum_to_the_requests_sent() {
    let mut server = TestServer::with(|c| c.server.cores = two_cores_if_possible());
    let mut sent = 0;
    for c in 0..40 {
        let mut client = server.client();
        for r in 0..5 {
            assert_eq!(client.get(&format!("/echo?name={c}-{r}")).status, 200);
            sent += 1;
        }
    }
    let mut client = server.client();
    assert_eq!(client.get("/nope").status, 404);
    sent += 1;
    drop(client);
    let summary = server.server.take().unwrap().shutdown();
    let per_core: Vec<u64> = summary
        .cores
        .iter()
        .map(|c| c.counters.requests())
        .collect();
    assert_eq!(per_core.iter().sum::<u64>(), sent, "{per_core:?}");
    assert_eq!(summary.merged_counters().by_class[4], 1);
    assert_eq!(summary.merged_counters().accepted, 41);
    assert_eq!(summary.merged_latency().len(), sent);
    for core in &summary.cores {
        assert_eq!(core.latency.len(), core.counters.requests());
    }
}

#[test]
fn stats_route_answers_json_per_core() {
    let server = TestServer::with(|c| {
        c.server.cores = two_cores_if_possible();
        c.report.interval_ms = 50;
    });
    let cores_served = server.server.as_ref().unwrap().cores().to_vec();
    let mut client = server.client();
    for i in 0..10 {
        client.get(&format!("/echo?name={i}"));
    }
    // Totals are published once per tick: ask until this connection's requests show.
    let stats = common::wait_for(
        "/stats shows the 10 requests answered",
        Duration::from_secs(20),
        || {
            let response = client.get("/stats");
            assert_eq!(response.status, 200);
            assert_eq!(response.header("content-type"), Some("application/json"));
            let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            if stats["total"]["requests"].as_u64().unwrap() >= 10 {
                Ok(stats)
            } else {
                Err(stats)
            }
        },
    );
    let cores = stats["cores"].as_array().unwrap();
    let listed: Vec<u64> = cores.iter().map(|c| c["core"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = cores_served.iter().map(|&c| c as u64).collect();
    assert_eq!(listed, expected, "{stats}");
    let sum: u64 = cores.iter().map(|c| c["requests"].as_u64().unwrap()).sum();
    assert_eq!(sum, stats["total"]["requests"].as_u64().unwrap());
    // One connection lives on one core: that core answered everything and holds it open,
    // any other core answered nothing.
    let busy: Vec<&serde_json::Value> = cores
        .iter()
        .filter(|c| c["requests"].as_u64().unwrap() > 0)
        .collect();
    assert_eq!(busy.len(), 1, "{stats}");
    assert!(busy[0]["requests"].as_u64().unwrap() >= 10, "{stats}");
    assert_eq!(busy[0]["status"]["2xx"], busy[0]["requests"], "{stats}");
    assert_eq!(busy[0]["open"], 1, "{stats}");
    assert_eq!(busy[0]["connections"]["accepted"], 1, "{stats}");
    for idle in cores.iter().filter(|c| c["requests"] == 0) {
        assert_eq!(idle["open"], 0, "{stats}");
        assert_eq!(idle["connections"]["accepted"], 0, "{stats}");
    }
    assert_eq!(stats["total"]["file_cache_hits"], 0, "{stats}");
    assert!(stats["total"]["loop_parks"].as_u64().is_some(), "{stats}");
    assert!(stats["total"]["latency_us"]["p99"].as_u64().is_some());
}

#[test]
fn stats_route_can_be_moved_or_disabled() {
    let server = TestServer::with(|c| c.report.stats_path = String::new());
    assert_eq!(server.client().get("/stats").status, 404);
    let server = TestServer::with(|c| c.report.stats_path = "/_status".into());
    assert_eq!(server.client().get("/_status").status, 200);
}

fn start_binary(config: &str, name: &str) -> Percore {
    let path = std::env::temp_dir().join(format!("percore-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, config).unwrap();
    Percore::spawn(&[
        "--config",
        path.to_str().unwrap(),
        "--port",
        "0",
        "--workers",
        "1",
    ])
}

/// Sends `count` pipelined requests and a last one that closes, and reads every answer.
fn send_requests(addr: &str, count: usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(common::EXIT_WAIT)).unwrap();
    let batch: String = (0..count)
        .map(|i| format!("GET /echo?name={i} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    stream.write_all(batch.as_bytes()).unwrap();
    stream
        .write_all(b"GET /echo?name=end HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    assert!(replies.ends_with("Hi, end!"));
}

/// At most this many intervals are read while waiting for requests to show in them (100 ms
/// each: far more than answering a few dozen requests takes).
const MAX_INTERVALS: usize = 200;

#[test]
fn json_lines_appear_every_interval_and_parse() {
    let mut server = start_binary(
        "[report]\ninterval_ms = 100\nformat = \"json\"\nper_core = true\n",
        "json",
    );
    let core: u64 = server.cores().parse().expect("one core");
    let lines = server.stdout_lines();
    send_requests(&server.addr, 50);
    // Each interval is one line for the core and one for all cores; read intervals until
    // all 51 requests have been counted in them.
    let mut counted = 0;
    let mut intervals = 0;
    while counted < 51 {
        intervals += 1;
        assert!(
            intervals <= MAX_INTERVALS,
            "{MAX_INTERVALS} intervals counted {counted} of 51 requests"
        );
        let line = lines.next("a per-core JSON line");
        let per_core: serde_json::Value = serde_json::from_str(&line).unwrap();
        if per_core["core"] == "all" && per_core["requests"] == 0 {
            // An interval with no request at all is one line, the total's.
            continue;
        }
        assert_eq!(per_core["core"], core, "{line}");
        assert!(per_core["req_per_s"].is_number(), "{line}");
        assert!(per_core["latency_us"]["p99_9"].is_number(), "{line}");
        let requests = per_core["requests"].as_u64().expect("requests");
        assert_eq!(per_core["latency_us"]["count"], requests, "{line}");
        let line = lines.next("the JSON line for all cores");
        let all: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(all["core"], "all", "{line}");
        assert_eq!(all["time_s"], per_core["time_s"], "{line}");
        assert_eq!(all["requests"], requests, "{line}");
        counted += requests;
    }
    assert_eq!(counted, 51);
    server.stop_with(libc::SIGINT);
    let summary: Vec<serde_json::Value> = lines
        .rest()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["summary"] == true)
        .collect();
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert_eq!(summary[0]["core"], core, "{summary:?}");
    assert_eq!(summary[0]["requests"].as_u64(), Some(51));
    assert_eq!(summary[1]["core"], "all", "{summary:?}");
    assert_eq!(summary[1]["requests"].as_u64(), Some(51));
}

#[test]
fn text_lines_have_a_header_and_one_row_per_core_plus_total() {
    let mut server = start_binary("[report]\ninterval_ms = 100\nper_core = true\n", "text");
    let core = server.cores().to_string();
    let lines = server.stdout_lines();
    send_requests(&server.addr, 20);
    let header = lines.next("the header line");
    for column in ["req/s", "p50", "p90", "p99", "p99.9", "max", "open"] {
        assert!(header.contains(column), "{header}");
    }
    // Rows: time, core, req/s, p50, p90, p99, p99.9, max, open. A row's requests are its
    // rate times the 100 ms interval; read intervals until all 21 requests showed.
    let mut counted = 0;
    let mut intervals = 0;
    while counted < 21 {
        intervals += 1;
        assert!(
            intervals <= MAX_INTERVALS,
            "{MAX_INTERVALS} intervals counted {counted} of 21 requests"
        );
        let core_line = lines.next("a per-core row");
        if core_line.contains(" all ") && core_line.contains("quiet") {
            // An interval with no request at all is one line, the total's.
            continue;
        }
        let fields: Vec<&str> = core_line.split_whitespace().collect();
        assert_eq!(fields.get(1), Some(&core.as_str()), "{core_line}");
        let rate: u64 = fields[2].parse().expect("req/s is a whole number");
        if rate == 0 {
            assert!(core_line.contains("(quiet: no requests)"), "{core_line}");
        } else {
            assert_eq!(fields.len(), 9, "{core_line}");
            assert_eq!(rate % 10, 0, "{core_line}");
        }
        assert!(fields.last().unwrap().parse::<u64>().is_ok(), "{core_line}");
        let all_line = lines.next("the row for all cores");
        let all: Vec<&str> = all_line.split_whitespace().collect();
        assert_eq!(all.get(1), Some(&"all"), "{all_line}");
        assert_eq!(all[0], fields[0], "same interval: {all_line}");
        assert_eq!(
            all[2], fields[2],
            "one core: its rate is the total's: {all_line}"
        );
        counted += rate / 10;
    }
    assert_eq!(counted, 21);
    server.stop_with(libc::SIGINT);
}

#[test]
fn sigint_writes_hgrm_files_and_interval_log_matching_the_counts() {
    let dir = std::env::temp_dir().join(format!("percore-reports-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = format!("[report]\ninterval_ms = 50\ndir = \"{}\"\n", dir.display());
    let mut server = start_binary(&config, "hgrm");
    send_requests(&server.addr, 99);
    server.stop_with(libc::SIGINT);
    let core_file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("core-")
        })
        .expect("a core-N.hgrm file");
    for file in [core_file, dir.join("all.hgrm")] {
        let text = std::fs::read_to_string(&file).unwrap();
        let total: u64 = text
            .lines()
            .find(|l| l.starts_with("#[Max"))
            .and_then(|l| l.split("Total count    =").nth(1))
            .map(|n| n.trim().trim_end_matches(']').trim().parse().unwrap())
            .expect("footer with the total count");
        assert_eq!(total, 100, "{}", file.display());
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
            .collect();
        let last = rows.last().unwrap();
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 100.0);
    }
    let log = std::fs::read(dir.join("intervals.hlog")).unwrap();
    let mut counted = 0;
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log) {
        if let Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(h)) = entry {
            assert!(h.tag().unwrap().as_str().starts_with("core-"));
            let bytes = base64_decode(h.encoded_histogram());
            let histogram: hdrhistogram::Histogram<u64> =
                hdrhistogram::serialization::Deserializer::new()
                    .deserialize(&mut bytes.as_slice())
                    .unwrap();
            counted += histogram.len();
        }
    }
    assert_eq!(counted, 100);
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(value(c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// The value of every sample of `name` (labels ignored) in a Prometheus exposition.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.parse().ok()?))
    })
}

/// `/metrics` is Prometheus' text format: per-core counters that add up to the requests
/// answered, a latency histogram whose buckets are cumulative and end in `+Inf` equal to its
/// count, and (where promtool is installed) a clean `promtool check metrics`.
#[test]
fn metrics_route_is_prometheus_text_that_adds_up() {
    let server = TestServer::with(|config| config.server.cores = two_cores_if_possible());
    let mut client = server.client();
    for n in 0..25 {
        assert_eq!(client.get(&format!("/echo?name={n}")).status, 200);
    }
    assert_eq!(client.get("/nope").status, 404);
    let text = common::wait_for(
        "/metrics shows the 26 requests",
        Duration::from_secs(20),
        || {
            let response = client.get("/metrics");
            assert_eq!(response.status, 200);
            assert_eq!(
                response.header("content-type"),
                Some("text/plain; version=0.0.4; charset=utf-8")
            );
            let text = response.text();
            let requests: f64 = samples(&text, "percore_requests_total")
                .map(|(_, v)| v)
                .sum();
            if requests >= 26.0 {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    let requests: f64 = samples(&text, "percore_requests_total")
        .map(|(_, v)| v)
        .sum();
    let by_class: f64 = samples(&text, "percore_responses_total")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(requests, by_class, "{text}");
    let two_xx: f64 = samples(&text, "percore_responses_total")
        .filter(|(labels, _)| labels.contains("class=\"2xx\""))
        .map(|(_, v)| v)
        .sum();
    let four_xx: f64 = samples(&text, "percore_responses_total")
        .filter(|(labels, _)| labels.contains("class=\"4xx\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(four_xx, 1.0, "{text}");
    assert_eq!(two_xx + four_xx, requests, "{text}");
    // Every core is named, in every family.
    let cores = server.server.as_ref().unwrap().cores().to_vec();
    for core in &cores {
        let label = format!("core=\"{core}\"");
        for family in [
            "percore_requests_total",
            "percore_connections_open",
            "percore_request_duration_seconds_count",
        ] {
            assert!(
                samples(&text, family).any(|(labels, _)| labels.contains(&label)),
                "{family} has no {label}: {text}"
            );
        }
    }
    let mut histogram_total = 0.0;
    for core in &cores {
        let label = format!("core=\"{core}\"");
        let buckets: Vec<(String, f64)> = samples(&text, "percore_request_duration_seconds_bucket")
            .filter(|(labels, _)| labels.starts_with(&format!("{label},")))
            .map(|(labels, v)| (labels.to_string(), v))
            .collect();
        assert_eq!(buckets.len(), 23, "{text}");
        assert!(buckets[0].0.contains("le=\"0.000001\""), "{buckets:?}");
        assert!(buckets[21].0.contains("le=\"10\""), "{buckets:?}");
        assert!(buckets[22].0.ends_with("le=\"+Inf\""), "{buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "not cumulative: {buckets:?}"
        );
        let count = samples(&text, "percore_request_duration_seconds_count")
            .find(|(labels, _)| *labels == label)
            .unwrap()
            .1;
        assert_eq!(buckets[22].1, count, "{text}");
        histogram_total += count;
    }
    assert_eq!(histogram_total, requests, "{text}");

    if common::require(
        common::have_tool("promtool", &["--version"]),
        "promtool is not installed (apt-get install prometheus): `promtool check metrics` \
         did not run, the exposition was checked by this test's own parser only",
    ) {
        let output = common::output_with_input(
            std::process::Command::new("promtool").args(["check", "metrics"]),
            text.as_bytes(),
            common::EXIT_WAIT,
        );
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// An idle server prints one "quiet" line and then nothing until requests return; by
/// default (no `report.per_core`) each busy interval is one total line.
#[test]
fn an_idle_server_says_quiet_once_until_traffic_returns() {
    let mut server = start_binary("[report]\ninterval_ms = 50\n", "quiet");
    let lines = server.stdout_lines();
    let header = lines.next("the header line");
    assert!(header.contains("req/s"), "{header}");
    let quiet = lines.next("the quiet line");
    assert!(
        quiet.contains(" all ") && quiet.contains("quiet"),
        "{quiet}"
    );
    // Twenty intervals of silence: no line at all (it used to be two lines each).
    assert_eq!(lines.next_within(Duration::from_millis(1000)), None);
    send_requests(&server.addr, 5);
    let busy = lines.next("a line once requests return");
    let fields: Vec<&str> = busy.split_whitespace().collect();
    assert_eq!(
        fields.get(1),
        Some(&"all"),
        "one total line, no per-core line: {busy}"
    );
    assert!(!busy.contains("quiet"), "{busy}");
    // Quiet again: one more line, then silence.
    let mut next = lines.next("the next line");
    while !next.contains("quiet") {
        assert_eq!(next.split_whitespace().nth(1), Some("all"), "{next}");
        next = lines.next("the quiet line after the traffic");
    }
    assert_eq!(lines.next_within(Duration::from_millis(1000)), None);
    server.stop_with(libc::SIGINT);
}

/// The y-axis mapping of a plot: (pixel, value) of its numeric tick labels (right-aligned
/// texts left of the plot), as a line value = a × pixel + b.
fn y_axis(svg: &roxmltree::Document) -> (f64, f64) {
    let ticks: Vec<(f64, f64)> = svg
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("text-anchor") == Some("end"))
        .filter_map(|n| {
            let value: f64 = n.text()?.trim().parse().ok()?;
            Some((n.attribute("y")?.parse().ok()?, value))
        })
        .collect();
    assert!(ticks.len() >= 2, "no y ticks");
    let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
    let a = (last.1 - first.1) / (last.0 - first.0);
    (a, first.1 - a * first.0)
}

/// With `report.dir`, shutdown also draws `latency.svg` and `timeline.svg`: valid SVG of
/// 900×500, axes labelled with units, every core and `all` named, the latency curve's top
/// matching `all.hgrm`; and `percore report DIR` draws the very same files again.
#[test]
fn shutdown_draws_the_plots_and_percore_report_draws_them_again() {
    let dir = std::env::temp_dir().join(format!("percore-plots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = format!("[report]\ninterval_ms = 50\ndir = \"{}\"\n", dir.display());
    let path = dir.with_extension("toml");
    std::fs::write(&path, config).unwrap();
    // Two cores where there are two: both are named in the pictures, served or not.
    let workers = percore::internals::usable_cores().len().min(2).to_string();
    let mut server = Percore::spawn(&[
        "--config",
        path.to_str().unwrap(),
        "--port",
        "0",
        "--workers",
        &workers,
    ]);
    let cores: Vec<String> = match server.cores().split_once('-') {
        Some((first, last)) => (first.parse::<usize>().unwrap()..=last.parse().unwrap())
            .map(|c| c.to_string())
            .collect(),
        None => server.cores().split(',').map(str::to_string).collect(),
    };
    send_requests(&server.addr, 300);
    for _ in 0..20 {
        send_requests(&server.addr, 5);
    }
    server.stop_with(libc::SIGINT);

    let latency = std::fs::read_to_string(dir.join("latency.svg")).expect("latency.svg");
    let timeline = std::fs::read_to_string(dir.join("timeline.svg")).expect("timeline.svg");
    for (name, text, labels) in [
        (
            "latency.svg",
            &latency,
            &["percentile", "latency (ms)", "99.9%"][..],
        ),
        (
            "timeline.svg",
            &timeline,
            &["requests/s", "latency", "time", "all p99"][..],
        ),
    ] {
        let svg = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let root = svg.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(root.attribute("width"), Some("900"), "{name}");
        assert_eq!(root.attribute("height"), Some("500"), "{name}");
        let texts: Vec<&str> = svg
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(str::trim))
            .collect();
        for label in labels {
            assert!(texts.contains(label), "{name} lacks {label:?}: {texts:?}");
        }
        for core in &cores {
            let wanted = format!("core {core}");
            assert!(
                texts.iter().any(|t| t.starts_with(&wanted)),
                "{name} does not name {wanted}: {texts:?}"
            );
        }
        assert!(
            texts.iter().any(|t| t.starts_with("all")),
            "{name}: {texts:?}"
        );
    }

    // The thick black line is `all`: its highest point is the largest latency of all.hgrm
    // on the axis (percentiles up to 99.999%).
    let svg = roxmltree::Document::parse(&latency).unwrap();
    let (a, b) = y_axis(&svg);
    let all_line = svg
        .descendants()
        .find(|n| {
            n.has_tag_name("polyline")
                && n.attribute("stroke") == Some("#000000")
                && n.attribute("stroke-width") == Some("2")
                && n.attribute("points")
                    .is_some_and(|p| p.split_whitespace().count() > 2)
        })
        .expect("the line for all");
    let top_pixel = all_line
        .attribute("points")
        .unwrap()
        .split_whitespace()
        .map(|p| p.split(',').nth(1).unwrap().parse::<f64>().unwrap())
        .fold(f64::MAX, f64::min);
    let plotted_max = a * top_pixel + b;
    let hgrm = std::fs::read_to_string(dir.join("all.hgrm")).unwrap();
    let data_max = hgrm
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<f64> = l
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() >= 2 && f[1] >= 0.5 && 1.0 / (1.0 - f[1]) <= 100_000.0).then(|| f[0])
        })
        .fold(0.0, f64::max);
    let tolerance = (a.abs() * 1.5).max(data_max * 0.02);
    assert!(
        (plotted_max - data_max).abs() <= tolerance,
        "plotted top {plotted_max} ms, all.hgrm {data_max} ms"
    );

    // `percore report DIR` on a copy: the same pictures, and the summary.
    let copy = dir.with_extension("copy");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".hgrm") || name == "intervals.hlog" {
            std::fs::copy(&path, copy.join(&name)).unwrap();
        }
    }
    let output = common::output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
            .arg("report")
            .arg(&copy),
        common::EXIT_WAIT,
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let all_row = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("all"))
        .expect("a summary row for all");
    // send_requests adds one closing request to each batch: 301 + 20 × 6.
    assert_eq!(all_row.split_whitespace().nth(1), Some("421"), "{stdout}");
    for core in &cores {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(core.as_str())),
            "no row for core {core}: {stdout}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(copy.join("latency.svg")).unwrap(),
        latency
    );
    assert_eq!(
        std::fs::read_to_string(copy.join("timeline.svg")).unwrap(),
        timeline
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&copy);
}
