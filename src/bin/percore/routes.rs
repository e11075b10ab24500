//! The `percore` binary's routes, registered through the library's public API like any
//! user's: `GET /echo?name=X` → `Hi, X!` (the reference workload of the C server 80s), the
//! WebSocket echo at `/ws/echo` (the reference workload for WebSocket), the WebSocket rooms
//! at `/ws/room/{name}` (each message to every member, on every core), and the statistics,
//! metrics, health and static-file routes percore offers every app.

use percore::{App, Message, Request, Response, Status, WebSocket, WebSocketHandler};

/// The `percore` binary's app: `GET /echo`, the WebSockets `/ws/echo` and `/ws/room/{name}`,
/// `GET report.stats_path`, `GET report.metrics_path`, `GET report.health_path` and the
/// static files under `static.mount`, with no state of its own.
pub fn percore_app() -> App<()> {
    App::new(|_| Ok(()))
        .get("/echo", echo)
        .websocket("/ws/echo", &[], |_request, _protocol, _| WsEcho)
        .websocket("/ws/room/{name}", &[], |request, _protocol, _| WsRoom {
            room: request.param("name").unwrap_or_default().into_owned(),
        })
        .stats()
        .metrics()
        .health()
        .static_files()
}

/// Answers `GET /echo?name=X` with `Hi, X!`.
///
/// `X` is the first `name` parameter of the query, percent-decoded (`+` stays a plus: this
/// is a URI query, not a submitted form), straight into the core's response buffer, so
/// nothing is allocated. A missing parameter or a broken escape is a 400 on a connection
/// that stays open: the request itself was well framed.
pub fn echo<S>(request: &Request<'_>, response: &mut Response<'_>, _: &S) {
    let name = request.query_bytes().and_then(|query| {
        query
            .split(|&b| b == b'&')
            .find_map(|pair| pair.strip_prefix(b"name="))
    });
    let Some(name) = name else {
        response
            .status(Status::BAD_REQUEST)
            .text("missing query parameter: name\n");
        return;
    };
    response.plain();
    let body = response.body_mut();
    body.extend_from_slice(b"Hi, ");
    if percore::percent_decode(name, body).is_err() {
        response
            .status(Status::BAD_REQUEST)
            .text("invalid percent-encoding in name\n");
        return;
    }
    body.push(b'!');
}

/// `/ws/echo`: each message sent back as it came, text as text, binary as binary. A client
/// that does not read what it is sent (its queue past `websocket.max_send_queue_bytes`)
/// is closed with 1008.
pub struct WsEcho;

impl WebSocketHandler for WsEcho {
    fn on_message(&mut self, message: Message<'_>, socket: &mut WebSocket<'_>) {
        if socket.send(message).is_err() {
            socket.close(1008, "send queue full");
        }
    }
}

/// `/ws/room/{name}`: a connection joins the room `name` when it opens, and each message
/// it sends is published to the room: every member gets it, on whichever core it is, the
/// sender too.
pub struct WsRoom {
    room: String,
}

impl WebSocketHandler for WsRoom {
    fn on_open(&mut self, socket: &mut WebSocket<'_>) {
        socket.join(&self.room);
    }

    fn on_message(&mut self, message: Message<'_>, socket: &mut WebSocket<'_>) {
        socket.publish(&self.room, message);
    }
}
