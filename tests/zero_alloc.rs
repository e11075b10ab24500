//! Steady keep-alive traffic allocates nothing on percore's request path: a counting global
//! allocator watches parse + route + encode of warm sessions.

use percore::config::Config;
use percore::internals::Limits;
use percore::internals::Session;

#[path = "common/counting.rs"]
mod counting;
use counting::this_threads_allocations as allocations;

#[path = "common/app.rs"]
mod app;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting(counting::count_this_thread);

#[test]
fn steady_keep_alive_requests_allocate_nothing() {
    let requests: [&[u8]; 5] = [
        b"GET /echo?name=Abcde HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /echo?name=J%C3%BCrgen HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"HEAD /echo?name=x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /nope HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST /upper/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    ];
    let pipelined = requests.concat().repeat(4);
    let mut session = Session::new();
    let limits = Limits::default();
    // The routes the binary has (its `/echo` decodes into the response buffer), and a user's
    // handler that reads its body and a path parameter, both through the public API.
    let app = app::app().post("/upper/{who}", |request, response, _| {
        let who = request.param("who").unwrap_or_default();
        let body = response.plain().body_mut();
        body.extend_from_slice(who.as_bytes());
        body.extend_from_slice(request.body());
        body.make_ascii_uppercase();
    });
    let mut context = percore::internals::session_service(app, &Config::default()).unwrap();
    let mut out = Vec::new();
    // Warm up: buffers grow to their working size.
    for _ in 0..10 {
        out.clear();
        session.process(&pipelined, &mut out, &mut context, &limits, false);
    }
    let before = allocations();
    let mut answered = 0;
    for _ in 0..1000 {
        out.clear();
        answered += session
            .process(&pipelined, &mut out, &mut context, &limits, false)
            .responses;
    }
    let allocated = allocations() - before;
    assert_eq!(answered, 20_000);
    assert_eq!(
        allocated, 0,
        "{allocated} allocations for {answered} requests"
    );
}
