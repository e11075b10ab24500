//! The README's "Write your own handlers" program, built as printed in a crate of its own
//! (depending on this checkout, offline, from the same lock file) and run with percore's flags:
//! its three routes must answer as the README says. The same program on the library without
//! its default features builds without the operator's plots. The README's other programs
//! (calling upstreams, WebSocket, streamed responses) are built and exercised the same way.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "common/backend.rs"]
mod backend;
mod common;

use backend::{Backend, Request};
use common::ws::Raw;
use common::{Client, KillOnDrop, Lines, EXIT_WAIT};

/// How long building the README's program may take: a build from cold (percore and all its
/// dependencies, in a target directory of its own) on a slow machine, with room to spare.
const BUILD_WAIT: Duration = Duration::from_secs(20 * 60);

/// The first ```rust block after the "Write your own handlers" heading.
fn readme_program() -> String {
    program_under("\n## Write your own handlers\n")
}

/// The first ```rust block after the line `heading` (newlines around it included).
fn program_under(heading: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("README has a {heading:?} section"));
    let block = section
        .split("```rust\n")
        .nth(1)
        .expect("the section has a rust block");
    block.split("\n```").next().unwrap().to_string()
}

/// Writes a crate named `name` whose `src/main.rs` is `program`, depending on this checkout
/// as `percore` with `options` (after its path, e.g. `, default-features = false`); returns
/// its directory.
fn write_crate(name: &str, program: &str, options: &str) -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = {name:?}\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
         [dependencies]\npercore = {{ package = \"percore-httpd\", path = {:?}{options} }}\n\n\
         [workspace]\n",
        manifest_dir.display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), program).unwrap();
    // The same versions as percore's own build, which are in the local registry already.
    std::fs::copy(manifest_dir.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    dir
}

/// Runs `cargo ARGS --offline --quiet` in the crate at `dir` and returns its stdout; fails
/// the test with cargo's stderr when it fails. Every such crate builds into one target
/// directory, so the dependencies they share are built once (cargo's lock on it makes two
/// builds take turns).
fn cargo(dir: &Path, args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("programs-target");
    let output = common::output_within(
        Command::new(cargo)
            .args(args)
            .args(["--offline", "--quiet"])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", target),
        BUILD_WAIT,
    );
    assert!(
        output.status.success(),
        "cargo {args:?} fails in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Writes the crate and builds it; returns the binary.
fn build(name: &str, program: &str, options: &str) -> PathBuf {
    let dir = write_crate(name, program, options);
    cargo(&dir, &["build"]);
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("programs-target/debug/{name}"))
}

/// Starts the program with `args` and reads its address from the start-up line (within
/// `EXIT_WAIT`); the program is killed if the test fails.
fn start(binary: &Path, args: &[&str]) -> (KillOnDrop, SocketAddr) {
    let mut child = KillOnDrop(
        Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the README program starts"),
    );
    // Read on a thread to its end, so the program never blocks on a full pipe.
    let lines = Lines::new(BufReader::new(child.0.stderr.take().unwrap()));
    let line = lines.find("the README program's start-up line", |line| {
        line.contains("listening on http://")
    });
    let addr = line
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

#[test]
fn the_readme_program_builds_and_answers_as_printed() {
    let binary = build("readme-example", &readme_program(), "");
    let (mut child, addr) = start(&binary, &["--port", "0", "--cores", "0"]);

    let mut client = Client::connect(addr);
    let hello = client.get("/hello/World");
    assert_eq!(hello.status, 200);
    assert_eq!(hello.text(), "Hello, World!");
    assert_eq!(
        hello.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let hello = client.get("/hello/J%C3%BCrgen");
    assert_eq!(hello.text(), "Hello, Jürgen!");

    client.send("POST /upper HTTP/1.1\r\nHost: t\r\nContent-Length: 12\r\n\r\nmake me loud");
    let upper = client.response();
    assert_eq!(upper.status, 200);
    assert_eq!(upper.text(), "MAKE ME LOUD");

    // One core (--cores 0): every /count is that core's.
    for expected in 1..=3 {
        assert_eq!(client.get("/count").text(), expected.to_string());
    }
    let fresh = Client::connect(addr).get("/count");
    assert_eq!(fresh.text(), "4");
    assert_eq!(client.get("/nope").status, 404);
    client.send("DELETE /count HTTP/1.1\r\nHost: t\r\n\r\n");
    let refused = client.response();
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("GET, HEAD, OPTIONS"));

    // SIGTERM drains and exits 0, like the percore binary.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = common::wait_child(&mut child.0, EXIT_WAIT, "exit after SIGTERM");
    assert!(status.success(), "{status}");
}

/// A program on the library that turns its default features off (`default-features =
/// false`, as `cargo build --no-default-features --lib` builds percore) builds without
/// plotters (the `plots` feature's), and its command line has no `report` subcommand; the
/// README's program is such a program too.
#[test]
fn a_program_without_default_features_builds_without_the_plots() {
    let dir = write_crate(
        "lean-example",
        &readme_program(),
        ", default-features = false",
    );
    let tree = cargo(&dir, &["tree", "--edges", "normal", "--prefix", "none"]);
    assert!(tree.contains("percore-httpd"), "{tree}");
    // plotters, plotters-backend, plotters-svg.
    assert!(
        !tree.lines().any(|line| line.starts_with("plotters")),
        "plotters is still a dependency:\n{tree}"
    );
    let binary = build(
        "lean-example",
        &readme_program(),
        ", default-features = false",
    );
    let output = common::output_within(Command::new(&binary).args(["report", "."]), EXIT_WAIT);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unexpected argument 'report'"), "{stderr}");
}

/// The README's handler that calls an upstream, built as printed and run with a
/// configuration naming a raw-byte backend: it answers from the backend, through one pooled
/// connection, and a backend's 404 is passed on.
#[test]
fn the_readme_client_program_calls_its_backend() {
    let backend = Backend::start(|request: &Request| {
        let line = request.line().to_string();
        let answer = match line.split(' ').nth(1) {
            Some("/users/7") => "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nAda".to_string(),
            _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
        };
        (answer.into_bytes(), false)
    });
    let binary = build(
        "readme-client",
        &program_under("\n### Calling upstreams from handlers\n"),
        "",
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-client");
    let config = dir.join("percore.toml");
    let toml = format!(
        "[[upstream]]\nname = \"users\"\nservers = [\"{}\"]\n",
        backend.addr
    );
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();
    let (mut child, addr) = start(
        &binary,
        &["--config", config, "--port", "0", "--cores", "0"],
    );

    let mut client = Client::connect(addr);
    for _ in 0..3 {
        let user = client.get("/user/7");
        assert_eq!(user.status, 200);
        assert_eq!(user.text(), "user 7 is Ada\n");
    }
    assert_eq!(client.get("/user/8").status, 404);
    let seen = backend.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].fields("accept"), ["text/plain"]);
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the calls shared one pooled connection"
    );
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = common::wait_child(&mut child.0, EXIT_WAIT, "exit after SIGTERM");
    assert!(status.success(), "{status}");
}

/// The README's WebSocket program, built as printed: two members of a room hear each other
/// and an announcement posted over HTTP; the async route echoes after its pause.
#[test]
fn the_readme_websocket_program_chats_and_echoes() {
    let binary = build("readme-websocket", &program_under("\n### WebSocket\n"), "");
    let (mut child, addr) = start(&binary, &["--port", "0", "--cores", "0"]);
    let mut ann = Raw::open_at(addr, "/chat/lobby/ann");
    let mut bob = Raw::open_at(addr, "/chat/lobby/bob");
    // Each joined on opening: a message from either reaches both.
    ann.text("hi");
    for member in [&mut ann, &mut bob] {
        assert_eq!(member.next_text(), "ann: hi");
    }
    let mut client = Client::connect(addr);
    client.send("POST /announce/lobby HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\ntea");
    let announced = client.response();
    assert_eq!(announced.text(), "announced\n");
    for member in [&mut ann, &mut bob] {
        assert_eq!(member.next_text(), "tea");
    }
    let mut slow = Raw::open_at(addr, "/slow-echo");
    slow.text("later");
    assert_eq!(slow.next_text(), "later");
    drop((ann, bob, slow, client));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = common::wait_child(&mut child.0, EXIT_WAIT, "exit after SIGTERM");
    assert!(status.success(), "{status}");
}

/// Reads from `stream` until `until` has come (or the stream ends); returns what came.
fn read_until(stream: &mut std::net::TcpStream, until: &str) -> String {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 65536];
    while !String::from_utf8_lossy(&seen).contains(until) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// The README's streamed-response program, built as printed: the export comes whole,
/// chunked, its trailer after the last chunk; the ticks start after the `Last-Event-ID`.
#[test]
fn the_readme_streaming_program_exports_and_ticks() {
    use std::io::Write;
    let binary = build(
        "readme-streaming",
        &program_under("\n### Streamed responses and Server-Sent Events\n"),
        "",
    );
    let (mut child, addr) = start(&binary, &["--port", "0", "--cores", "0"]);
    let mut export = std::net::TcpStream::connect(addr).unwrap();
    export
        .write_all(b"GET /export HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_until(&mut export, "\r\n0\r\nX-Rows: 100000\r\n\r\n");
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.contains("transfer-encoding: chunked\r\n")
            || text.contains("Transfer-Encoding: chunked\r\n")
    );
    assert!(
        text.contains("\n0,0\n") || text.contains("\r\n0,0\n"),
        "the first row"
    );
    assert!(text.contains("99999,199998\n"), "the last row");
    assert!(
        text.ends_with("\r\n0\r\nX-Rows: 100000\r\n\r\n"),
        "the trailer"
    );

    let mut ticks = std::net::TcpStream::connect(addr).unwrap();
    ticks
        .write_all(b"GET /ticks HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 41\r\n\r\n")
        .unwrap();
    let text = read_until(&mut ticks, "data: tick 42\n\n");
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains("id: 42\ndata: tick 42\n\n"), "{text}");
    drop((export, ticks));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = common::wait_child(&mut child.0, EXIT_WAIT, "exit after SIGTERM");
    assert!(status.success(), "{status}");
}
