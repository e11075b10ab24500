//! The access log over real sockets: a line per response (pipelined, keep-alive and error
//! requests alike) with the right fields, JSON lines that parse, no line lost through a
//! SIGUSR1 rotation, and a full buffer dropping lines and counting them rather than stalling.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use common::{Percore, TestServer};
use percore::config::LogFormat;

fn temp(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("percore-access-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Three pipelined requests (two answered 200, one 404) on a keep-alive connection, one more
/// after them, and a malformed request on a second connection.
fn traffic(server: &TestServer) {
    let mut client = server.client();
    client.send(
        "GET /echo?name=a HTTP/1.1\r\nHost: t\r\nUser-Agent: agent \"one\"\r\nReferer: http://r/\r\n\r\n\
         GET /echo?name=b HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /missing HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(client.response().text(), "Hi, a!");
    assert_eq!(client.response().text(), "Hi, b!");
    assert_eq!(client.response().status, 404);
    assert_eq!(client.get("/echo?name=c").text(), "Hi, c!");
    let mut bad = server.client();
    bad.send("GET /x HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n");
    assert_eq!(bad.response().status, 400);
}

#[test]
fn combined_lines_for_pipelined_keep_alive_and_error_requests() {
    let path = temp("combined.log");
    let mut server = TestServer::with(|config| config.log.access = path.clone());
    traffic(&server);
    server.stop();
    let text = std::fs::read_to_string(&path).expect("the access log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    // client - - [time] "request" status bytes "referer" "user agent" µs core
    let first = lines[0];
    assert!(first.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        first.contains(" +0000] \"GET /echo?name=a HTTP/1.1\" 200 "),
        "{first}"
    );
    assert!(
        first.contains(" \"http://r/\" \"agent \\\"one\\\"\" "),
        "{first}"
    );
    let tail: Vec<&str> = first.rsplitn(3, ' ').collect();
    assert!(tail[1].parse::<u64>().is_ok(), "duration µs: {first}");
    assert!(tail[0].parse::<usize>().is_ok(), "core: {first}");
    assert!(
        lines[1].contains("\"GET /echo?name=b HTTP/1.1\" 200 "),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains(" \"-\" \"-\" "), "{}", lines[1]);
    assert!(
        lines[2].contains("\"GET /missing HTTP/1.1\" 404 "),
        "{}",
        lines[2]
    );
    assert!(
        lines[3].contains("\"GET /echo?name=c HTTP/1.1\" 200 "),
        "{}",
        lines[3]
    );
    assert!(lines[4].contains("\"-\" 400 "), "{}", lines[4]);
    for line in &lines[..4] {
        let bytes: u64 = line
            .split("\" ")
            .nth(1)
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(bytes > 100, "the response's bytes, head included: {line}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn json_lines_parse_with_the_same_fields() {
    let path = temp("json.log");
    let mut server = TestServer::with(|config| {
        config.log.access = path.clone();
        config.log.format = LogFormat::Json;
    });
    traffic(&server);
    server.stop();
    let text = std::fs::read_to_string(&path).expect("the access log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(lines[0]["request"], "GET /echo?name=a HTTP/1.1");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["referer"], "http://r/");
    assert_eq!(lines[0]["user_agent"], "agent \"one\"");
    assert!(lines[0]["bytes"].as_u64().unwrap() > 100);
    assert!(lines[0]["duration_us"].is_u64());
    assert!(lines[0]["core"].is_u64());
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[1]["user_agent"], serde_json::Value::Null);
    assert_eq!(lines[2]["status"], 404);
    assert_eq!(lines[4]["status"], 400);
    let _ = std::fs::remove_file(&path);
}

/// Sends `count` requests on one connection and reads their answers.
fn requests(addr: &str, count: usize) {
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

/// logrotate's way: the file is renamed, SIGUSR1, later lines go to a new file at the path;
/// every line is in one of the two.
#[test]
fn sigusr1_reopens_the_log_and_loses_no_line() {
    let path = temp("rotate.log");
    let config = temp("rotate.toml");
    std::fs::write(
        &config,
        format!(
            "[report]\ninterval_ms = 0\n\n[log]\naccess = {:?}\n",
            path.display().to_string()
        ),
    )
    .unwrap();
    let mut server = Percore::spawn(&[
        "--config",
        config.to_str().unwrap(),
        "--port",
        "0",
        "--workers",
        "1",
    ]);
    requests(&server.addr, 29);
    let rotated = path.with_extension("log.1");
    // The lines reach the file within a tick; wait for them, then rotate.
    common::wait_until(
        "the first lines reach the file",
        std::time::Duration::from_secs(20),
        || std::fs::read_to_string(&path).map_or(0, |t| t.lines().count()) >= 30,
    );
    std::fs::rename(&path, &rotated).unwrap();
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGUSR1) };
    common::wait_until(
        "SIGUSR1 reopens the log",
        std::time::Duration::from_secs(20),
        || path.exists(),
    );
    requests(&server.addr, 19);
    server.stop_with(libc::SIGTERM);
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    assert_eq!(old.lines().count(), 30, "{old}");
    assert_eq!(new.lines().count(), 20, "{new}");
    assert!(new.contains("name=end"), "{new}");
    for file in [path, rotated, config] {
        let _ = std::fs::remove_file(file);
    }
}

/// A core whose buffer fills between two hand-overs drops lines and counts them; it never
/// waits. Lines written and lines dropped add up to the responses.
#[test]
fn a_full_buffer_drops_lines_and_counts_them() {
    let path = temp("full.log");
    let mut server = TestServer::with(|config| {
        config.log.access = path.clone();
        config.log.buffer_bytes = 1000;
    });
    requests(&server.addr.to_string(), 99);
    let summary = server.server.take().unwrap().shutdown();
    let counters = summary.merged_counters();
    let written = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
    assert!(counters.access_log_dropped > 0, "nothing dropped");
    assert_eq!(written + counters.access_log_dropped, 100);
    let _ = std::fs::remove_file(&path);
}
