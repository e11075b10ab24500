//! Start-up errors and signals, through the real binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::Percore;

const BIN: &str = env!("CARGO_BIN_EXE_percore");

/// Runs the binary expecting a start-up failure; returns its stderr.
fn fails(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(!output.status.success(), "{args:?} should fail");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("percore-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unknown_key_names_the_key_and_the_file() {
    let path = temp_config("unknown", "[server]\nport = 0\nworkerz = 3\n");
    let stderr = fails(&["--config", path.to_str().unwrap()]);
    assert!(stderr.contains("workerz"), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn wrong_type_is_reported() {
    let path = temp_config("type", "[server]\nport = \"eighty\"\n");
    let stderr = fails(&["--config", path.to_str().unwrap()]);
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[test]
fn unavailable_core_lists_the_usable_ones() {
    let usable = percore::config::format_cores(&percore::config::usable_cores());
    let stderr = fails(&["--port", "0", "--cores", "4000"]);
    assert!(
        stderr.contains(&format!(
            "core 4000 is not available; usable cores: {usable}"
        )),
        "{stderr}"
    );
    let stderr = fails(&["--port", "0", "--workers", "5000"]);
    assert!(stderr.contains("--workers 5000"), "{stderr}");
}

#[test]
fn port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let stderr = fails(&["--port", &port, "--workers", "1"]);
    assert!(stderr.contains("already in use"), "{stderr}");
}

#[test]
fn sigterm_after_serving_exits_zero() {
    let mut server = Percore::spawn(&["--port", "0", "--workers", "1"]);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .write_all(b"GET /echo?name=bye HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("Hi, bye!"), "{reply}");
    server.stop_with(libc::SIGTERM);
}
