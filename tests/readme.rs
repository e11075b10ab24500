//! The README's "Write your own handlers" program, built as printed in a crate of its own
//! (depending on this checkout, offline, from the same lock file) and run with percore's flags:
//! its three routes must answer as the README says.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

mod common;

use common::Client;

/// The first ```rust block after the "Write your own handlers" heading.
fn readme_program() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("\n## Write your own handlers\n")
        .nth(1)
        .expect("README has a \"Write your own handlers\" section");
    let block = section
        .split("```rust\n")
        .nth(1)
        .expect("the section has a rust block");
    block.split("\n```").next().unwrap().to_string()
}

/// Writes the crate and builds it; returns the binary.
fn build(program: &str) -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-example");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        "[package]\nname = \"readme-example\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
         [dependencies]\npercore = {{ package = \"percore-httpd\", path = {:?} }}\n\n\
         [workspace]\n",
        manifest_dir.display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), program).unwrap();
    // The same versions as percore's own build, which are in the local registry already.
    std::fs::copy(manifest_dir.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "the README program does not build:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.join("target/debug/readme-example")
}

/// Starts the program with `args` and reads its address from the start-up line.
fn start(binary: &Path, args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(binary)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the README program starts");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("a start-up line before exit")
            .expect("stderr is text");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split(' ').next().unwrap().parse().expect("an address");
        }
    };
    // Keep draining stderr so the program never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[test]
fn the_readme_program_builds_and_answers_as_printed() {
    let binary = build(&readme_program());
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
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
