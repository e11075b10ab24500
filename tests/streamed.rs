//! Streamed responses over real sockets: a body an async handler writes over time
//! (`Reply::stream`), sent chunked as it comes (raw to an HTTP/1.0 client, the connection
//! closing at its end), with trailers; a slow reader holding its producer back; requests
//! pipelined behind a stream waiting for it; a producer that fails or whose client leaves;
//! the drain ending streams; and Server-Sent Events (`Reply::events`), read by curl too.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::{serve, serve_with, Running};
use common::{have_tool, output_within, require, small_window_client, wait_until, Client};
use percore::glommio;
use percore::{App, BodyClosed, Event, Reply};

/// Waits on the server's side (in a producer) until `flag` is set, for at most 10 s.
async fn until_set(flag: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

/// A client reading responses piece by piece, its reads failing after 10 s.
fn chunked_client(running: &Running) -> Client {
    Client::connect(running.addr).reading_within(Duration::from_secs(10))
}

#[test]
fn a_streamed_body_goes_out_as_it_is_written_then_the_connection_goes_on() {
    let go = Arc::new(AtomicBool::new(false));
    let flag = go.clone();
    let running = serve(
        App::new(|_| Ok(()))
            .get("/echo", common::app::echo)
            .get_async("/feed", move |_request, _| {
                let flag = flag.clone();
                async move {
                    Reply::stream(move |mut body| async move {
                        body.send("first\n").await?;
                        until_set(&flag).await;
                        body.send("second\n").await?;
                        body.send(vec![b'x'; 100_000]).await?;
                        body.trailer("X-Checksum", "abc")?;
                        assert!(body.trailer("Content-Length", "1").is_err());
                        assert!(body.trailer("Host", "h").is_err());
                        Ok(())
                    })
                    .header("Content-Type", "text/plain")
                    .unwrap()
                }
            }),
    );
    let mut client = chunked_client(&running);
    client.send("GET /feed HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Transfer-Encoding: chunked\r\n"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    // The first part arrives while the producer still waits.
    assert_eq!(client.chunk().unwrap(), b"first\n");
    go.store(true, Ordering::SeqCst);
    let (body, trailer) = client.rest();
    assert_eq!(&body[..7], b"second\n");
    assert_eq!(body.len(), 7 + 100_000);
    assert!(body[7..].iter().all(|&b| b == b'x'));
    assert_eq!(trailer, "X-Checksum: abc\r\n\r\n");
    // The same connection answers the next request.
    client.send("GET /echo?name=next HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head();
    assert!(head.contains("Content-Length: 9\r\n"), "{head}");
    assert_eq!(client.until(b"!"), b"Hi, next!");
}

/// A producer writing `parts` parts of `part` bytes, each numbered, counting what it wrote
/// and how it ended.
fn counting_app(
    parts: usize,
    part: usize,
    written: Arc<AtomicUsize>,
    ended: Arc<Mutex<String>>,
) -> App<()> {
    App::new(|_| Ok(()))
        .get("/echo", common::app::echo)
        .get_async("/big", move |_request, _| {
            let (written, ended) = (written.clone(), ended.clone());
            async move {
                Reply::stream(move |mut body| async move {
                    for i in 0..parts {
                        let mut bytes = vec![b'a' + (i % 26) as u8; part];
                        bytes[0] = b'#';
                        if let Err(closed) = body.send(bytes).await {
                            *ended.lock().unwrap() = format!("{closed:?}");
                            return Err(closed.into());
                        }
                        written.fetch_add(part, Ordering::SeqCst);
                    }
                    *ended.lock().unwrap() = "finished".into();
                    Ok(())
                })
            }
        })
}

#[test]
fn a_slow_reader_holds_its_producer_back_and_then_gets_every_byte() {
    let (parts, part) = (512, 16 * 1024);
    let written = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(Mutex::new(String::new()));
    let running = serve(counting_app(parts, part, written.clone(), ended.clone()));
    let mut client = small_window_client(running.addr);
    client.send("GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    // The producer stops while nobody reads: its count stays put for 300 ms.
    let mut last = (usize::MAX, Instant::now());
    wait_until(
        "the producer waits for the reader",
        Duration::from_secs(10),
        || {
            let now = written.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() > Duration::from_millis(300)
        },
    );
    let held = written.load(Ordering::SeqCst);
    eprintln!("the producer stopped after {held} bytes");
    assert!(
        held < parts * part / 2,
        "{held} of {} bytes made while the client read nothing",
        parts * part
    );
    // Reading it all: every part, in order, then the end.
    let stream = client.stream.try_clone().unwrap();
    let mut chunks = Client::over(stream).reading_within(Duration::from_secs(10));
    let head = chunks.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (body, _) = chunks.rest();
    assert_eq!(body.len(), parts * part);
    for (i, piece) in body.chunks(part).enumerate() {
        assert_eq!(piece[0], b'#');
        assert!(
            piece[1..].iter().all(|&b| b == b'a' + (i % 26) as u8),
            "part {i}"
        );
    }
    assert_eq!(*ended.lock().unwrap(), "finished");
}

#[test]
fn pipelined_requests_behind_a_stream_wait_for_it_in_order() {
    let running = serve(counting_app(40, 1000, Arc::default(), Arc::default()));
    let mut client = chunked_client(&running);
    client.send(
        "GET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?name=a HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?name=b HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    for name in ["a", "b"] {
        let head = client.head();
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        let (body, _) = client.rest();
        assert_eq!(body.len(), 40_000);
        let head = client.head();
        assert!(head.contains("Content-Length: 6\r\n"), "{head}");
        assert_eq!(client.until(b"!"), format!("Hi, {name}!").as_bytes());
    }
}

#[test]
fn http_1_0_gets_the_body_raw_to_the_close_and_head_gets_none() {
    let ended = Arc::new(Mutex::new(String::new()));
    let running = serve(counting_app(3, 10, Arc::default(), ended.clone()));
    let mut client = chunked_client(&running);
    client.send("GET /big HTTP/1.0\r\n\r\n");
    let all = String::from_utf8(client.read_to_close()).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert_eq!(body, "#aaaaaaaaa#bbbbbbbbb#ccccccccc");
    // HEAD: the head alone, and the producer is told there is no body.
    let mut client = chunked_client(&running);
    client
        .send("HEAD /big HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?name=h HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let next = client.head();
    assert!(
        next.starts_with("HTTP/1.1 200"),
        "the next response follows at once: {next}"
    );
    wait_until(
        "the HEAD's producer hears of it",
        Duration::from_secs(5),
        || *ended.lock().unwrap() == format!("{:?}", BodyClosed::NoBody),
    );
}

#[test]
fn a_failing_producer_cuts_its_response_and_a_vanished_client_stops_its_producer() {
    let ended = Arc::new(Mutex::new(String::new()));
    let seen = ended.clone();
    let running = serve(
        App::new(|_| Ok(()))
            .get_async("/fails", |_request, _| async move {
                Reply::stream(|mut body| async move {
                    body.send("partial").await?;
                    Err("the database went away".into())
                })
            })
            .get_async("/forever", move |_request, _| {
                let seen = seen.clone();
                async move {
                    Reply::stream(move |mut body| async move {
                        loop {
                            if let Err(closed) = body.send("tick\n").await {
                                *seen.lock().unwrap() = format!("{closed:?}");
                                return Ok(());
                            }
                            glommio::timer::sleep(Duration::from_millis(5)).await;
                        }
                    })
                }
            }),
    );
    let mut client = chunked_client(&running);
    client.send("GET /fails HTTP/1.1\r\nHost: t\r\n\r\n");
    let all = String::from_utf8(client.read_to_close()).unwrap();
    assert!(all.contains("Transfer-Encoding: chunked"), "{all}");
    assert!(
        all.ends_with("7\r\npartial\r\n"),
        "no last chunk, then the close: {all:?}"
    );

    let mut client = chunked_client(&running);
    client.send("GET /forever HTTP/1.1\r\nHost: t\r\n\r\n");
    client.head();
    assert_eq!(client.chunk().unwrap(), b"tick\n");
    drop(client);
    wait_until(
        "the producer learns its client left",
        Duration::from_secs(10),
        || *ended.lock().unwrap() == format!("{:?}", BodyClosed::Gone),
    );
}

#[test]
fn the_drain_ends_a_stream_that_never_ends() {
    let running = serve_with(
        App::new(|_| Ok(())).get_async("/forever", |_request, _| async move {
            Reply::stream(|mut body| async move {
                loop {
                    body.send("tick\n").await?;
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
            })
        }),
        |config| config.server.drain_timeout_ms = 500,
    );
    let mut client = chunked_client(&running);
    client.send("GET /forever HTTP/1.1\r\nHost: t\r\n\r\n");
    client.head();
    assert_eq!(client.chunk().unwrap(), b"tick\n");
    let began = Instant::now();
    running.stop();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "the stream held the drain for {:?}",
        began.elapsed()
    );
    client.read_to_close();
}

fn events_app() -> App<()> {
    App::new(|_| Ok(())).get_async("/events", |request, _| {
        let after: u32 = request
            .view()
            .last_event_id()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        async move {
            Reply::events(move |mut events| async move {
                events.keep_alive(Some(Duration::from_millis(50)));
                for id in after + 1..=after + 2 {
                    let event = Event::new(format!("line one\nline {id}"))
                        .id(&id.to_string())?
                        .event("count")?;
                    events.send(&event).await?;
                }
                // Quiet for a while: keep-alive comments go out meanwhile.
                glommio::timer::sleep(Duration::from_millis(300)).await;
                events.comment("bye\r\nnow").await?;
                Ok(())
            })
        }
    })
}

#[test]
fn server_sent_events_with_ids_keep_alives_and_last_event_id() {
    let running = serve(events_app());
    let mut client = chunked_client(&running);
    client.send("GET /events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 41\r\n\r\n");
    let head = client.head();
    assert!(
        head.contains("Content-Type: text/event-stream\r\n"),
        "{head}"
    );
    assert!(head.contains("Cache-Control: no-cache\r\n"), "{head}");
    let (body, _) = client.rest();
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.starts_with(
            "id: 42\nevent: count\ndata: line one\ndata: line 42\n\n\
             id: 43\nevent: count\ndata: line one\ndata: line 43\n\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(":\n\n"),
        "a keep-alive comment in the quiet: {text:?}"
    );
    assert!(text.ends_with(": byenow\n\n"), "{text:?}");
}

#[test]
fn an_event_streams_producer_is_dropped_when_its_client_leaves() {
    /// Set when the producer's future is dropped.
    struct Dropped(Arc<AtomicBool>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let running = serve(
        App::new(|_| Ok(())).get_async("/quiet", move |_request, _| {
            let flag = flag.clone();
            async move {
                Reply::events(move |mut events| async move {
                    let _guard = Dropped(flag);
                    events.keep_alive(Some(Duration::from_millis(20)));
                    events.send(&Event::new("hello")).await?;
                    // Waits on something that never comes.
                    glommio::timer::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                })
            }
        }),
    );
    let mut client = chunked_client(&running);
    client.send("GET /quiet HTTP/1.1\r\nHost: t\r\n\r\n");
    client.head();
    assert_eq!(client.chunk().unwrap(), b"data: hello\n\n");
    drop(client);
    wait_until("the producer is dropped", Duration::from_secs(10), || {
        dropped.load(Ordering::SeqCst)
    });
}

#[test]
fn curl_reads_a_stream_and_its_events() {
    if !require(have_tool("curl", &["--version"]), "curl is not installed") {
        return;
    }
    let running = serve(events_app());
    let url = format!("http://{}/events", running.addr);
    let out = output_within(
        Command::new("curl").args(["-sS", "-N", "--max-time", "10", &url]),
        Duration::from_secs(15),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("id: 1\nevent: count\ndata: line one\ndata: line 1\n\n"),
        "{text}"
    );
    assert!(text.ends_with(": byenow\n\n"), "{text:?}");
}
