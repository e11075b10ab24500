//! A connection without sockets, shared by the property tests and the fuzz target: feeds
//! chunks to a session the way `conn` does and returns what it would have written.

use percore::config::Config;

#[path = "app.rs"]
mod app;
use percore::internals::Limits;
use percore::internals::Session;
use percore::internals::CONTINUE;

/// Feeds `chunks` one after another (unconsumed bytes carried over) and returns the written
/// output, normalised so that runs compare, and whether the session closed.
///
/// Normalised: Date values are blanked, and `100 Continue` interim responses are removed,
/// since whether one is sent depends on whether the body came with the head: the one
/// difference splitting may make.
pub fn replay(limits: Limits, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut session = Session::new();
    // The routes the binary has, and one that reads bodies, so that gathering them is covered.
    let app = app::app().post("/upper", |request, response, _| {
        response.body(&request.body().to_ascii_uppercase());
    });
    let mut service =
        percore::internals::session_service(app, &Config::default()).expect("the service builds");
    let mut buffered = Vec::new();
    let mut out = Vec::new();
    let mut written = Vec::new();
    for chunk in chunks {
        buffered.extend_from_slice(chunk);
        loop {
            let progress = session.process(&buffered, &mut out, &mut service, &limits, false);
            assert!(progress.consumed <= buffered.len());
            buffered.drain(..progress.consumed);
            written.append(&mut out);
            if session.is_closed() || progress.consumed == 0 || buffered.is_empty() {
                break;
            }
        }
        if session.is_closed() {
            break;
        }
    }
    while let Some(at) = written.windows(CONTINUE.len()).position(|w| w == CONTINUE) {
        written.drain(at..at + CONTINUE.len());
    }
    let mut i = 0;
    while let Some(at) = written[i..].windows(6).position(|w| w == b"Date: ") {
        let start = i + at + 6;
        written[start..start + 29].fill(b'#');
        i = start + 29;
    }
    (written, session.is_closed())
}
