//! The session's own tests: a stub service, no sockets.

use super::*;
use crate::http::response::TEXT_PLAIN;

/// A service for the session alone: `GET /echo?name=X` answers `Hi, X!`, `POST /upper`
/// its body in upper case, anything else 404 (and its body is not gathered).
struct Stub;

impl Service for Stub {
    type Deferred = ();

    fn wants_body(&mut self, request: &RawRequest<'_>) -> bool {
        request.path() == b"/upper"
    }

    fn call(&mut self, request: &RawRequest<'_>, response: &mut ResponseWriter) -> Option<()> {
        match (request.path(), request.query()) {
            (b"/echo", Some(query)) => {
                let name = query.strip_prefix(b"name=").unwrap_or_default();
                response.send(Status::OK, Some(TEXT_PLAIN), &[], &[b"Hi, ", name, b"!"]);
            }
            (b"/upper", _) => {
                let body = request.body.to_ascii_uppercase();
                response.send(Status::OK, None, &[], &[&body]);
            }
            _ => response.send_status(Status::NOT_FOUND, &[]),
        }
        None
    }
}

fn service() -> Stub {
    Stub
}

fn run(input: &[u8]) -> (String, Progress<()>, bool) {
    let mut session = Session::new();
    let mut out = Vec::new();
    let progress = session.process(input, &mut out, &mut service(), &Limits::default(), false);
    let text = String::from_utf8_lossy(&out).into_owned();
    (text, progress, session.is_closed())
}

#[test]
fn pipelined_requests_answered_in_order() {
    let input =
        b"GET /echo?name=a HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?name=b HTTP/1.1\r\nHost: x\r\n\r\n";
    let (text, progress, closed) = run(input);
    assert_eq!(progress.responses, 2);
    assert_eq!(progress.consumed, input.len());
    assert!(!closed);
    let a = text.find("Hi, a!").unwrap();
    let b = text.find("Hi, b!").unwrap();
    assert!(a < b);
}

#[test]
fn body_is_consumed_before_next_request() {
    let input = b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nGET /xGET /echo?name=z HTTP/1.1\r\nHost: x\r\n\r\n";
    let (text, progress, _) = run(input);
    assert_eq!(progress.responses, 2);
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
    assert!(text.ends_with("Hi, z!"));
}

#[test]
fn a_body_split_over_reads_is_gathered_whole() {
    let mut session = Session::new();
    let mut service = service();
    let mut out = Vec::new();
    let parts: [&[u8]; 4] = [
        b"POST /upper HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
        b"c\r\n2\r\nde\r\n0\r\n",
        b"\r\nPOST /upper HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfg",
        b"hij",
    ];
    for part in parts {
        let progress = session.process(part, &mut out, &mut service, &Limits::default(), false);
        assert_eq!(progress.consumed, part.len());
    }
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Content-Length: 5\r\n\r\nABCDE"), "{text}");
    assert!(text.ends_with("Content-Length: 5\r\n\r\nFGHIJ"), "{text}");
}

/// Found by fuzzing: a blank line split between its CR and LF was taken for the start of
/// a head, and the request after it was refused.
#[test]
fn blank_line_split_between_cr_and_lf_is_still_skipped() {
    let mut session = Session::new();
    let mut out = Vec::new();
    let mut service = service();
    let first = session.process(b"\r", &mut out, &mut service, &Limits::default(), false);
    assert_eq!(first.consumed, 0);
    let input = b"\r\n\r\nGET /echo?name=a HTTP/1.1\r\nHost: h\r\n\r\n";
    let progress = session.process(input, &mut out, &mut service, &Limits::default(), false);
    assert_eq!(progress.consumed, input.len());
    assert!(String::from_utf8(out).unwrap().ends_with("Hi, a!"));
}

#[test]
fn unreadable_file_response_becomes_a_500_after_the_earlier_ones() {
    let mut session = Session::new();
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
    let head = out.len();
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n");
    session.fail_file(&mut out, head);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 500 "));
    assert!(text.contains("Connection: close\r\n"));
    assert!(session.is_closed());
}

#[test]
fn a_malformed_body_is_answered_400_and_its_route_never_runs() {
    let mut session = Session::new();
    let mut out = Vec::new();
    let head = b"POST /upper HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let progress = session.process(head, &mut out, &mut service(), &Limits::default(), false);
    assert_eq!(progress.responses, 0);
    assert!(out.is_empty());
    let progress = session.process(
        b"zz\r\n",
        &mut out,
        &mut service(),
        &Limits::default(),
        false,
    );
    assert_eq!(progress.errors, 1);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1);
}

/// A service that defers `/q` requests (whole responses, written later) and queues them
/// behind one another; anything else it answers at once.
struct Queuing;

impl Service for Queuing {
    type Deferred = ();

    fn queues(&mut self, request: &RawRequest<'_>) -> bool {
        request.path() == b"/q"
    }

    fn call(&mut self, request: &RawRequest<'_>, response: &mut ResponseWriter) -> Option<()> {
        if request.path() == b"/q" {
            return Some(());
        }
        response.send(Status::OK, None, &[], &[b"now"]);
        None
    }
}

#[test]
fn queued_deferred_answers_go_out_in_order_and_the_rest_waits() {
    let mut session = Session::new();
    let mut out = Vec::new();
    let limits = Limits::default();
    let input = b"GET /q HTTP/1.1\r\nHost: x\r\n\r\nGET /q HTTP/1.1\r\nHost: x\r\n\r\n\
                  HEAD /q HTTP/1.1\r\nHost: x\r\n\r\nGET /now HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut pos = 0;
    let mut framings = Vec::new();
    // Each call hands one deferral back; queued ones are answered while earlier ones wait,
    // their framings handed out.
    loop {
        let progress = session.process(&input[pos..], &mut out, &mut Queuing, &limits, false);
        pos += progress.consumed;
        let Some(deferral) = progress.deferred else {
            break;
        };
        framings.push(deferral.queued);
    }
    assert_eq!(framings.len(), 3, "three /q requests answered");
    assert!(framings[0].is_none() && framings[1].is_some() && framings[2].is_some());
    assert!(out.is_empty(), "nothing answered ahead of them");
    assert!(
        input[pos..].starts_with(b"GET /now"),
        "the immediate one waits"
    );
    for (i, body) in [&b"first"[..], b"second", b"third"].into_iter().enumerate() {
        if let Some(framing) = framings[i] {
            session.take_turn(framing);
        }
        session.answer_deferred(&mut out, false, |w| w.send(Status::OK, None, &[], &[body]));
    }
    let progress = session.process(&input[pos..], &mut out, &mut Queuing, &limits, false);
    assert_eq!(progress.responses, 1);
    let text = String::from_utf8(out).unwrap();
    let order: Vec<usize> = ["first", "second", "now"]
        .iter()
        .map(|b| text.find(b).unwrap_or_else(|| panic!("{b} in {text}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    // The HEAD's deferred answer has no body, as its framing said.
    assert!(!text.contains("third"), "{text}");
}
