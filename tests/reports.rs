//! Per-core measurements: live lines, /stats, the shutdown summary and histogram files.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;

use common::{Percore, TestServer};
use percore::config::CoreSpec;

fn two_cores_if_possible() -> CoreSpec {
    let usable = percore::config::usable_cores();
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
    let mut client = server.client();
    for i in 0..10 {
        client.get(&format!("/echo?name={i}"));
    }
    // Totals are published once per tick: ask until this connection's requests show.
    let stats = loop {
        let response = client.get("/stats");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let stats: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        if stats["total"]["requests"].as_u64().unwrap() >= 10 {
            break stats;
        }
    };
    let cores = stats["cores"].as_array().unwrap();
    assert_eq!(cores.len(), server.server.as_ref().unwrap().cores().len());
    let sum: u64 = cores.iter().map(|c| c["requests"].as_u64().unwrap()).sum();
    assert_eq!(sum, stats["total"]["requests"].as_u64().unwrap());
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

fn send_requests(addr: &str, count: usize) {
    let mut stream = TcpStream::connect(addr).unwrap();
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

#[test]
fn json_lines_appear_every_interval_and_parse() {
    let mut server = start_binary("[report]\ninterval_ms = 100\nformat = \"json\"\n", "json");
    send_requests(&server.addr, 50);
    let mut seen_core = false;
    let mut seen_all = false;
    let mut line = String::new();
    while !(seen_core && seen_all) {
        line.clear();
        assert!(
            server
                .stdout
                .as_mut()
                .unwrap()
                .read_line(&mut line)
                .unwrap()
                > 0
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(value["req_per_s"].is_number(), "{line}");
        assert!(value["latency_us"]["p99_9"].is_number(), "{line}");
        seen_core |= value["core"].is_number();
        seen_all |= value["core"] == "all";
    }
    server.stop_with(libc::SIGINT);
    let mut rest = String::new();
    server
        .stdout
        .as_mut()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    let summary: Vec<serde_json::Value> = rest
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["summary"] == true)
        .collect();
    let all = summary.iter().find(|v| v["core"] == "all").unwrap();
    assert_eq!(all["requests"].as_u64(), Some(51));
}

#[test]
fn text_lines_have_a_header_and_one_row_per_core_plus_total() {
    let mut server = start_binary("[report]\ninterval_ms = 100\n", "text");
    send_requests(&server.addr, 20);
    let mut header = String::new();
    server
        .stdout
        .as_mut()
        .unwrap()
        .read_line(&mut header)
        .unwrap();
    for column in ["req/s", "p50", "p90", "p99", "p99.9", "max", "open"] {
        assert!(header.contains(column), "{header}");
    }
    let mut core_line = String::new();
    server
        .stdout
        .as_mut()
        .unwrap()
        .read_line(&mut core_line)
        .unwrap();
    let mut all_line = String::new();
    server
        .stdout
        .as_mut()
        .unwrap()
        .read_line(&mut all_line)
        .unwrap();
    assert!(
        all_line.split_whitespace().nth(1) == Some("all"),
        "{all_line}"
    );
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
