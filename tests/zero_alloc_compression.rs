//! What a warm compressed handler response costs the heap, counted: a counting global
//! allocator watches a session answering keep-alive requests that accept gzip (then zstd)
//! with an HTML page a handler writes, coded on the fly by the core's reused coders. Once
//! the buffers and coders are warm, nothing may allocate: not the negotiation, the coding,
//! nor the framing. Brotli's encoder has no reset and is made per body: its allocations are
//! counted and shown (the README names them), not held to zero.

use percore::config::Config;
use percore::internals::{Limits, Session};
use percore::App;

#[path = "common/counting.rs"]
mod counting;
use counting::this_threads_allocations as allocations;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting(counting::count_this_thread);

/// An 8 KiB page of varied HTML.
fn page() -> &'static [u8] {
    let text: String = (0..200)
        .map(|n| format!("<li class=\"item-{n}\"><a href=\"/things/{n}\">Thing {n}</a></li>\n"))
        .collect();
    Box::leak(text.into_bytes().into_boxed_slice())
}

/// Answers `rounds` batches of 8 pipelined requests accepting `coding`; returns the
/// allocations made while answering, the responses, and the output of the last batch.
fn answer(coding: &str, rounds: usize, warm: usize) -> (u64, u64, Vec<u8>) {
    let page = page();
    let app = App::new(|_| Ok(())).get("/page", move |_, response, _| {
        response
            .content_type("text/html; charset=utf-8")
            .unwrap()
            .body_static(page);
    });
    let config = Config::default();
    let mut context = percore::internals::session_service(app, &config).unwrap();
    let request =
        format!("GET /page HTTP/1.1\r\nHost: h\r\nAccept-Encoding: {coding}\r\n\r\n").repeat(8);
    let mut session = Session::new();
    let limits = Limits::default();
    let mut out = Vec::new();
    for _ in 0..warm {
        out.clear();
        session.process(request.as_bytes(), &mut out, &mut context, &limits, false);
    }
    let before = allocations();
    let mut answered = 0;
    for _ in 0..rounds {
        out.clear();
        let progress = session.process(request.as_bytes(), &mut out, &mut context, &limits, false);
        answered += u64::from(progress.responses);
        assert_eq!(progress.coded, 8, "{coding}: every response coded");
    }
    (allocations() - before, answered, out)
}

#[test]
fn a_warm_compressed_response_allocates_nothing_in_gzip_and_zstd() {
    for coding in ["gzip", "zstd"] {
        let (allocated, answered, out) = answer(coding, 500, 20);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(&format!("\r\nContent-Encoding: {coding}\r\n")),
            "{text}"
        );
        assert_eq!(answered, 4000);
        assert_eq!(
            allocated, 0,
            "{coding}: {allocated} allocations for {answered} responses"
        );
    }
    // Brotli: counted, not held to zero (its encoder is made per body).
    let (allocated, answered, _) = answer("br", 50, 5);
    eprintln!("br: {allocated} allocations for {answered} responses");
    assert!(allocated > 0, "br allocates per body: the README says so");
}
