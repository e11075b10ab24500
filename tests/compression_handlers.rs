//! Handlers' responses compressed on the fly over real sockets: a synchronous `Response`'s
//! and an async `Reply`'s whole bodies in gzip, Brotli and Zstandard as the request
//! accepts, with `Vary` and the coded length; bodies left alone (small, another type,
//! `Content-Encoding` already set, `no_compression`, HEAD, 204, compression off); streamed
//! bodies and event streams coded chunk by chunk, each chunk decoded as it arrives (by
//! flate2 and by curl); the counters and the access log naming the coding.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::coded::decode;
use common::serve::{serve, serve_with};
use common::{have_tool, require, Client, Response};
use percore::glommio;
use percore::{App, Event, Reply, Status};

/// A page long enough to shrink: varied HTML.
fn page() -> String {
    (0..300)
        .map(|n| format!("<li class=\"item-{n}\"><a href=\"/things/{n}\">Thing {n}</a></li>\n"))
        .collect()
}

/// An app with sync and async routes whose bodies may be compressed, and some that may not.
fn app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/page", |_, response, _| {
            response
                .content_type("text/html; charset=utf-8")
                .unwrap()
                .body(page().as_bytes());
        })
        .get("/text", |_, response, _| {
            response.text(&page());
        })
        .get("/small", |_, response, _| {
            response.text("short\n");
        })
        .get("/png", |_, response, _| {
            response
                .content_type("image/png")
                .unwrap()
                .body(page().as_bytes());
        })
        .get("/coded", |_, response, _| {
            response
                .content_type("text/plain")
                .unwrap()
                .header("Content-Encoding", "identity-ish")
                .unwrap()
                .body(page().as_bytes());
        })
        .get("/secret", |_, response, _| {
            response.no_compression().text(&page());
        })
        .get("/empty", |_, response, _| {
            response
                .status(Status::NO_CONTENT)
                .content_type("text/plain")
                .unwrap();
        })
        .get_async("/async", |_, _| async {
            Reply::bytes(page())
                .header("Content-Type", "text/html")
                .unwrap()
        })
        .get_async("/async-secret", |_, _| async {
            Reply::text(page()).no_compression()
        })
}

#[test]
fn a_handlers_body_goes_out_in_the_coding_the_request_prefers() {
    let running = serve(app());
    let mut client = running.client();
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("zstd;q=0.5, gzip", "gzip"),
    ] {
        for target in ["/page", "/text", "/async"] {
            let field = format!("Accept-Encoding: {accept}");
            let response = client.request("GET", target, &[&field]);
            assert_eq!(response.status, 200);
            assert_eq!(
                response.header("content-encoding"),
                Some(coding),
                "{target} {accept}"
            );
            assert_eq!(response.header("vary"), Some("Accept-Encoding"));
            assert!(response.body.len() < page().len() / 3, "{target} {coding}");
            assert_eq!(decode(coding, &response.body), page().as_bytes());
        }
    }
}

#[test]
fn bodies_that_could_have_been_coded_vary_and_others_are_left_alone() {
    let running = serve(app());
    let mut client = running.client();
    // Could have been coded: identity with Vary.
    for target in ["/page", "/async"] {
        for fields in [
            &[][..],
            &["Accept-Encoding: identity"],
            &["Accept-Encoding: gzip;q=0"],
        ] {
            let response = client.request("GET", target, fields);
            assert_eq!(response.header("content-encoding"), None, "{target}");
            assert_eq!(response.header("vary"), Some("Accept-Encoding"));
            assert_eq!(response.body, page().as_bytes());
        }
    }
    // HEAD: the identity length, and Vary.
    let head = client.request("HEAD", "/page", &["Accept-Encoding: gzip"]);
    assert_eq!(head.header("content-encoding"), None);
    assert_eq!(head.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        head.header("content-length"),
        Some(&*page().len().to_string())
    );
    // Never coded: no Vary either.
    for target in ["/small", "/png", "/secret", "/async-secret", "/empty"] {
        let response = client.request("GET", target, &["Accept-Encoding: gzip"]);
        assert_eq!(response.header("content-encoding"), None, "{target}");
        assert_eq!(response.header("vary"), None, "{target}");
    }
    let own = client.request("GET", "/coded", &["Accept-Encoding: gzip"]);
    assert_eq!(own.header("content-encoding"), Some("identity-ish"));
    assert_eq!(own.body, page().as_bytes());
}

#[test]
fn compression_off_sends_every_body_as_it_is() {
    let running = serve_with(app(), |config| config.compression.enabled = false);
    let mut client = running.client();
    for target in ["/page", "/async"] {
        let response = client.request("GET", target, &["Accept-Encoding: gzip"]);
        assert_eq!(response.header("content-encoding"), None);
        assert_eq!(response.header("vary"), None);
        assert_eq!(response.body, page().as_bytes());
    }
}

#[test]
fn the_counters_and_the_access_log_name_a_handlers_coding() {
    let dir = common::TempDir::new("compression-handlers");
    let log = dir.0.join("access.log");
    let log_path = log.clone();
    let app = app().stats();
    let running = serve_with(app, move |config| config.log.access = log_path);
    let mut client = running.client();
    for target in ["/page", "/async"] {
        let response = client.request("GET", target, &["Accept-Encoding: gzip"]);
        assert_eq!(response.header("content-encoding"), Some("gzip"));
    }
    common::wait_for(
        "/stats counts two coded responses",
        Duration::from_secs(10),
        || {
            let stats = client.request("GET", "/stats", &[]);
            let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
            match stats["total"]["compression"]["coded_responses"].as_u64() {
                Some(2) => Ok(()),
                _ => Err(stats),
            }
        },
    );
    drop(client);
    running.stop();
    let text = std::fs::read_to_string(&log).expect("the access log");
    for target in ["/page", "/async"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("GET {target} ")))
            .unwrap_or_else(|| panic!("{target} logged: {text}"));
        assert!(line.ends_with(" coding=gzip"), "{line}");
    }
}

/// Waits on the server's side until `count` reaches `at_least`, for at most 10 s.
async fn until_count(count: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) < at_least && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

/// The parts a streamed body sends, one at a time.
fn part(i: usize) -> String {
    format!("part {i}: {}\n", "streamed text ".repeat(20 + i))
}

/// A streamed body and an event stream, each sending its next part only once the client
/// said it decoded the last (`acked`).
fn streaming_app(acked: Arc<AtomicUsize>) -> App<()> {
    let events_acked = acked.clone();
    App::new(|_| Ok(()))
        .get_async("/stream", move |_, _| {
            let acked = acked.clone();
            async move {
                Reply::stream(move |mut body| async move {
                    for i in 0..4 {
                        body.send(part(i)).await?;
                        until_count(&acked, i + 1).await;
                    }
                    Ok(())
                })
                .header("Content-Type", "text/plain")
                .unwrap()
            }
        })
        .get_async("/events", move |_, _| {
            let acked = events_acked.clone();
            async move {
                Reply::events(move |mut events| async move {
                    for i in 0..4 {
                        events.send(&Event::new(format!("event {i}"))).await?;
                        until_count(&acked, i + 1).await;
                    }
                    Ok(())
                })
            }
        })
}

#[test]
fn a_streamed_body_is_coded_chunk_by_chunk_and_each_chunk_decodes_as_it_arrives() {
    for coding in ["gzip", "zstd", "br"] {
        let acked = Arc::new(AtomicUsize::new(0));
        let running = serve(streaming_app(acked.clone()));
        let mut chunks = Client::connect(running.addr).reading_within(Duration::from_secs(10));
        let request =
            format!("GET /stream HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n");
        chunks.stream.write_all(request.as_bytes()).unwrap();
        let head = chunks.head();
        assert!(
            head.contains(&format!("\r\nContent-Encoding: {coding}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nVary: Accept-Encoding\r\n"), "{head}");
        assert!(
            head.contains("\r\nTransfer-Encoding: chunked\r\n"),
            "{head}"
        );
        assert!(!head.contains("Content-Length"), "{head}");
        let mut wire = Vec::new();
        let mut expected = String::new();
        for i in 0..4 {
            wire.extend(chunks.chunk().expect("a chunk per part"));
            expected.push_str(&part(i));
            // Everything sent so far decodes from the chunks so far, before the next is made.
            assert_eq!(
                decode_prefix(coding, &wire),
                expected.as_bytes(),
                "{coding} {i}"
            );
            acked.store(i + 1, Ordering::SeqCst);
        }
        while let Some(data) = chunks.chunk() {
            wire.extend(data);
        }
        assert_eq!(
            decode(coding, &wire),
            expected.as_bytes(),
            "{coding}: the whole stream"
        );
    }
}

/// Decodes as much of an unfinished coded stream as is there.
fn decode_prefix(coding: &str, coded: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    let mut buf = [0u8; 4096];
    let mut reader: Box<dyn Read + '_> = match coding {
        "gzip" => Box::new(flate2::read::GzDecoder::new(coded)),
        "br" => Box::new(brotli::Decompressor::new(coded, 4096)),
        "zstd" => Box::new(zstd::stream::read::Decoder::new(coded).unwrap()),
        other => panic!("no decoder for {other}"),
    };
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        decoded.extend_from_slice(&buf[..n]);
    }
    decoded
}

/// curl (`--compressed --no-buffer`) decodes each event of a gzip event stream as it
/// arrives: the next event is made only once curl has printed the last.
#[test]
fn curl_decodes_each_event_of_a_compressed_event_stream_as_it_arrives() {
    if !require(have_tool("curl", &["--version"]), "curl is not installed") {
        return;
    }
    for coding in ["gzip", "br", "zstd"] {
        let acked = Arc::new(AtomicUsize::new(0));
        let running = serve(streaming_app(acked.clone()));
        let url = format!("http://{}/events", running.addr);
        let field = format!("Accept-Encoding: {coding}");
        let dir = common::TempDir::new("compression-events");
        let head_path = dir.0.join("head");
        let mut curl = common::KillOnDrop(
            Command::new("curl")
                .args(["-sS", "--compressed", "--no-buffer", "--max-time", "20"])
                .arg("-D")
                .arg(&head_path)
                .args(["-H", &field, &url])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(curl.0.stdout.take().unwrap()).lines();
        for i in 0..4 {
            let line = loop {
                let line = lines.next().expect("curl prints every event").unwrap();
                if !line.is_empty() {
                    break line;
                }
            };
            assert_eq!(line, format!("data: event {i}"), "{coding}");
            acked.store(i + 1, Ordering::SeqCst);
        }
        // The head was written before the first event was printed.
        let head = std::fs::read_to_string(&head_path)
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            head.contains(&format!("content-encoding: {coding}")),
            "{head}"
        );
        drop(curl);
    }
}

/// `POST /len` answers the length of the body its handler got, and the body's first line.
fn body_app(decode: bool) -> App<()> {
    let app = App::new(|_| Ok(()))
        .post("/len", |request, response, _| {
            let body = request.body();
            let first = body.split(|&b| b == b'\n').next().unwrap_or(b"");
            let text = format!("{} {}\n", body.len(), String::from_utf8_lossy(first));
            response.text(&text);
        })
        .post_async("/async-len", |request, _| async move {
            Reply::text(format!("{}\n", request.body().len()))
        });
    match decode {
        true => app.decode_request_bodies(),
        false => app,
    }
}

fn post(client: &mut Client, target: &str, coding: &str, body: &[u8]) -> Response {
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Encoding: {coding}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.send(head);
    client.send(body);
    client.response()
}

fn coded(coding: &str, body: &[u8]) -> Vec<u8> {
    match coding {
        "gzip" => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(body).unwrap();
            encoder.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
            writer.write_all(body).unwrap();
            drop(writer);
            out
        }
        "zstd" => zstd::bulk::compress(body, 3).unwrap(),
        other => panic!("no coder for {other}"),
    }
}

#[test]
fn a_coded_request_body_is_decoded_for_an_app_that_asks_within_the_decoded_limit() {
    let running = serve_with(body_app(true), |config| {
        config.http.max_body_bytes = 100_000
    });
    let mut client = running.client();
    let body = format!("first line\n{}", "payload ".repeat(10_000));
    for coding in ["gzip", "x-gzip", "br", "zstd"] {
        let sent = coded(coding.trim_start_matches("x-"), body.as_bytes());
        let response = post(&mut client, "/len", coding, &sent);
        assert_eq!(response.status, 200, "{coding}: {}", response.text());
        assert_eq!(response.text(), format!("{} first line\n", body.len()));
        let response = post(&mut client, "/async-len", coding, &sent);
        assert_eq!(
            response.text(),
            format!("{}\n", body.len()),
            "{coding} async"
        );
    }
    // identity is no coding.
    let response = post(&mut client, "/len", "identity", b"plain\n");
    assert_eq!(response.text(), "6 plain\n");
    // A bomb: 10 MiB of zeros in a few KiB, past the decoded limit.
    for coding in ["gzip", "br", "zstd"] {
        let bomb = coded(coding, &vec![0u8; 10 << 20]);
        assert!(bomb.len() < 100_000);
        let response = post(&mut client, "/len", coding, &bomb);
        assert_eq!(response.status, 413, "{coding}");
    }
    // Not valid in its coding: 400. Another coding: 415, naming those taken.
    let response = post(&mut client, "/len", "gzip", b"not gzip at all");
    assert_eq!(response.status, 400);
    let mut client = running.client();
    let response = post(&mut client, "/len", "deflate", b"x");
    assert_eq!(response.status, 415);
    assert_eq!(response.header("accept-encoding"), Some("gzip, br, zstd"));
}

#[test]
fn a_coded_request_body_to_an_app_that_did_not_ask_is_refused_with_415() {
    let running = serve(body_app(false));
    let mut client = running.client();
    let sent = coded("gzip", b"hello\n");
    for target in ["/len", "/async-len"] {
        let response = post(&mut client, target, "gzip", &sent);
        assert_eq!(response.status, 415, "{target}");
        assert_eq!(response.header("accept-encoding"), Some("identity"));
    }
    let response = post(&mut client, "/len", "identity", b"plain\n");
    assert_eq!(response.text(), "6 plain\n");
}
