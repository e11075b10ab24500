//! Static files too large for the core's cache, compressed on the fly as they are read:
//! several chunks of a file coded and framed one by one, fetched by curl over HTTP/1.1
//! (chunked) and HTTP/1.0 (up to the close) in each coding and decoded by the Rust decoders;
//! HEAD, `304` on the coded `ETag`, a `Range` request answered from the bytes on disk, and a
//! keep-alive connection that goes on after a coded body.

mod common;

use std::process::Command;

use common::coded::decode;
use common::{Client, TempDir, TestServer};

/// Text with the variety of a real page, `len` bytes: lines drawn by a fixed generator.
fn page(len: usize) -> Vec<u8> {
    let words = [
        "percore", "serves", "<li>", "</li>", "files", "from", "its", "ring", "and",
    ];
    let mut state = 0x9e37_79b9_u32;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.extend_from_slice(words[(state % 9) as usize].as_bytes());
        out.push(if state.is_multiple_of(11) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}

/// A site with `big.html`, five 256 KiB chunks and a piece, past the cache's 64 KiB.
fn site() -> (TempDir, Vec<u8>) {
    let dir = TempDir::new("compression-large");
    let html = page(5 * 256 * 1024 + 1234);
    dir.write("root/big.html", &html);
    (dir, html)
}

fn serve(dir: &TempDir) -> TestServer {
    let root = dir.0.join("root");
    TestServer::with(move |config| config.static_files.root = root)
}

/// curl's head and body (dechunked, not decoded) of `url` asked for in `coding`.
fn curl(url: &str, coding: &str, extra: &[&str], dir: &TempDir) -> (String, Vec<u8>) {
    let headers = dir.0.join("headers.txt");
    let accept = format!("Accept-Encoding: {coding}");
    let output = common::output_within(
        Command::new("curl")
            .args(["-s", "-H", &accept])
            .args(extra)
            .arg("-D")
            .arg(&headers)
            .arg(url),
        common::EXIT_WAIT,
    );
    assert!(output.status.success(), "{output:?}");
    let head = std::fs::read_to_string(&headers).unwrap();
    (head.to_ascii_lowercase(), output.stdout)
}

#[test]
fn a_file_too_large_for_the_cache_is_coded_chunk_by_chunk_in_each_coding() {
    if !common::require(
        common::have_tool("curl", &["--version"]),
        "curl is not installed",
    ) {
        return;
    }
    let (dir, html) = site();
    let server = serve(&dir);
    let url = format!("http://{}/big.html", server.addr);
    for coding in ["gzip", "br", "zstd"] {
        let (head, body) = curl(&url, coding, &[], &dir);
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains(&format!("content-encoding: {coding}\r\n")),
            "{head}"
        );
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(head.contains("vary: accept-encoding\r\n"), "{head}");
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(!head.contains("accept-ranges"), "{head}");
        assert!(
            body.len() < html.len() / 2,
            "{coding}: {} bytes",
            body.len()
        );
        assert!(
            decode(coding, &body) == html,
            "{coding}: the body decodes to the file"
        );

        // HTTP/1.0: no chunks, the body ends with the connection.
        let (head, body) = curl(&url, coding, &["-0"], &dir);
        assert!(
            head.contains(&format!("content-encoding: {coding}\r\n")),
            "{head}"
        );
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert!(decode(coding, &body) == html, "{coding} over HTTP/1.0");
    }
    // Without Accept-Encoding, the file itself with its length.
    let (head, body) = curl(&url, "identity", &[], &dir);
    assert!(
        head.contains(&format!("content-length: {}\r\n", html.len())),
        "{head}"
    );
    assert!(body == html);
}

#[test]
fn head_validators_ranges_and_keep_alive_around_a_coded_large_file() {
    let (dir, html) = site();
    let server = serve(&dir);
    let mut client = Client::connect(server.addr);
    let head = "HEAD /big.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n";
    client.send(head);
    let response = client.head_response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    let etag = response.header("etag").unwrap().to_string();
    assert!(
        etag.contains("gzip"),
        "the coded ETag names its coding: {etag}"
    );

    // The same ETag again: 304, with Vary and the ETag.
    let request = format!(
        "GET /big.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nIf-None-Match: {etag}\r\n\r\n"
    );
    client.send(request);
    let response = client.response();
    assert_eq!(response.status, 304);
    assert_eq!(response.header("etag"), Some(etag.as_str()));
    assert_eq!(response.header("vary"), Some("Accept-Encoding"));

    // A range means the bytes on disk: the file itself, whatever the request accepts.
    let request = "GET /big.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nRange: bytes=1000-1999\r\n\r\n";
    client.send(request);
    let response = client.response();
    assert_eq!(response.status, 206);
    assert_eq!(response.header("content-encoding"), None);
    assert!(response.body == html[1000..2000]);

    // A whole coded body in chunks, then the connection answers again.
    client.send("GET /big.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let response = client.head_response();
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    let (coded, _) = client.rest();
    assert!(decode("gzip", &coded) == html);
    let response = client.get("/big.html");
    assert_eq!(response.status, 200);
    assert!(response.body == html);
}

/// The bytes of a logged response: the field after the status, behind the request line.
fn logged_bytes(line: &str) -> u64 {
    let after = line
        .split("HTTP/1.1\" ")
        .nth(1)
        .expect("a combined log line");
    let mut fields = after.split_whitespace();
    assert_eq!(fields.next(), Some("200"), "{line}");
    fields.next().unwrap().parse().unwrap()
}

#[test]
fn the_access_log_gives_the_coded_bytes_sent() {
    let (dir, _html) = site();
    let log = dir.0.join("access.log");
    let root = dir.0.join("root");
    let log_path = log.clone();
    let mut server = TestServer::with(move |config| {
        config.static_files.root = root;
        config.log.access = log_path;
    });
    let mut client = server.client();
    client.send("GET /big.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    client.head_response();
    let coded = client.rest().0.len() as u64;
    // A client that leaves after the head: its line is written all the same.
    let mut leaving = server.client();
    leaving.send("GET /big.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    leaving.head_response();
    drop(leaving);
    let text = common::wait_for(
        "the access log has both lines",
        std::time::Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match text.lines().filter(|l| l.contains("/big.html")).count() {
                2 => Ok(text),
                _ => Err(text),
            }
        },
    );
    drop(client);
    server.stop();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("/big.html")).collect();
    for line in &lines {
        assert!(line.ends_with(" coding=gzip"), "{line}");
    }
    // The head, the coded body and its chunks' framing: a few hundred bytes over the body.
    let bytes = logged_bytes(lines[0]);
    assert!(
        bytes > coded && bytes < coded + 1024,
        "{bytes} logged, {coded} coded: {text}"
    );
    assert!(logged_bytes(lines[1]) <= bytes, "{text}");
}
