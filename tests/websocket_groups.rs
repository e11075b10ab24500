//! WebSocket groups and async WebSocket handlers over real sockets: a message published on
//! one core reaches the group's members on both cores (the other core's through a message
//! between the cores), from a handler or from an HTTP route; members leave, and a closed
//! connection is out of its groups. Async handlers answer after awaiting a timer, close
//! when their task returns (1011 when it panics), see the client's close code, and are held
//! by the send queue's bound when the client reads slowly.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::{serve, serve_with};
use common::ws::{frame, python_with_websockets, Raw};
use common::{output_within, require, Percore};
use percore::config::CoreSpec;
use percore::internals::usable_cores;
use percore::{App, Groups, Message, Setup, WebSocket, WebSocketHandler};

/// A core's state: its index, and its groups to publish to from HTTP routes.
struct Core {
    index: usize,
    groups: Groups,
}

/// "core?" answers the core's index; "join g", "leave g", "pub g text" do so.
struct Chat {
    core: usize,
}

impl WebSocketHandler for Chat {
    fn on_open(&mut self, socket: &mut WebSocket<'_>) {
        socket.text("welcome").unwrap();
    }

    fn on_message(&mut self, message: Message<'_>, socket: &mut WebSocket<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("core?"), None, None) => socket.text(&format!("core {}", self.core)).unwrap(),
            (Some("join"), Some(group), None) => socket.join(group),
            (Some("leave"), Some(group), None) => socket.leave(group),
            (Some("pub"), Some(group), Some(text)) => socket.publish(group, Message::Text(text)),
            _ => socket.text("?").unwrap(),
        }
    }
}

/// A handler whose `on_open` panics.
struct Boom;

impl WebSocketHandler for Boom {
    fn on_open(&mut self, _: &mut WebSocket<'_>) {
        panic!("on_open fails");
    }

    fn on_message(&mut self, _: Message<'_>, _: &mut WebSocket<'_>) {}
}

fn chat_app() -> App<Core> {
    App::new(|setup: &Setup<'_>| {
        Ok(Core {
            index: setup.index,
            groups: setup.groups(),
        })
    })
    .websocket("/chat", &[], |_, _, core: &Core| Chat { core: core.index })
    .websocket("/boom", &[], |_, _, _| Boom)
    .get("/say/{group}/{text}", |request, response, core: &Core| {
        let group = request.param("group").unwrap_or_default();
        let text = request.param("text").unwrap_or_default();
        core.groups.publish(&group, Message::Text(&text));
        response.text("said\n");
    })
}

/// Opens a connection to the chat and reads its greeting.
fn open_chat(addr: std::net::SocketAddr) -> Raw {
    let mut raw = Raw::open_at(addr, "/chat");
    assert_eq!(raw.next_text(), "welcome");
    raw
}

/// Asks which core a connection is on.
fn core_of(raw: &mut Raw) -> usize {
    raw.text("core?");
    let answer = raw.next_text();
    answer.strip_prefix("core ").unwrap().parse().unwrap()
}

/// Joins `group`, then asks which core: the answer comes after the join took effect.
fn join(raw: &mut Raw, group: &str) -> usize {
    raw.text(&format!("join {group}"));
    core_of(raw)
}

#[test]
fn a_publish_reaches_the_groups_members_on_both_cores() {
    let usable = usable_cores();
    if !common::require(
        usable.len() >= 2,
        &format!("needs two usable cores, this process may use {usable:?}"),
    ) {
        return;
    }
    let running = serve_with(chat_app(), |c| c.server.cores = CoreSpec::First(2));
    // Connections until each core holds two members (the kernel spreads them by hash).
    let mut members: [Vec<Raw>; 2] = [Vec::new(), Vec::new()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while members.iter().any(|m| m.len() < 2) {
        assert!(
            Instant::now() < deadline,
            "connections never reached both cores"
        );
        let mut raw = open_chat(running.addr);
        let core = join(&mut raw, "room");
        members[core].push(raw);
    }
    let mut outsider = open_chat(running.addr);
    core_of(&mut outsider);

    // From a member on each core: every member gets it, the publisher too.
    for from in 0..2 {
        let said = format!("hello from core {from}");
        members[from][0].text(&format!("pub room {said}"));
        for member in members.iter_mut().flatten() {
            assert_eq!(member.next_text(), said);
        }
    }
    // From an HTTP route on whichever core answers it.
    let mut client = running.client();
    assert_eq!(client.get("/say/room/posted").text(), "said\n");
    for member in members.iter_mut().flatten() {
        assert_eq!(member.next_text(), "posted");
    }
    // A member that left, and one that closed, get nothing more; the outsider never did.
    let mut leaver = members[1].pop().unwrap();
    leaver.text("leave room");
    assert_eq!(core_of(&mut leaver), 1);
    let mut closer = members[0].pop().unwrap();
    closer.write(&frame(true, 0x8, &1000u16.to_be_bytes()));
    assert_eq!(closer.closed_with(), 1000);
    members[0][0].text("pub room after");
    for member in members.iter_mut().flatten() {
        assert_eq!(member.next_text(), "after");
    }
    for raw in [&mut leaver, &mut outsider] {
        // The next frame is the answer to this question, not the publish.
        raw.text("core?");
        assert!(raw.next_text().starts_with("core "));
    }
    // The clients leave (else the drain would wait for their close handshakes).
    drop((members, leaver, outsider, closer, client));
    let summary = running.stop();
    let counters = summary.merged_counters();
    assert_eq!(counters.websocket_published, 4, "{counters:?}");
    assert_eq!(counters.websocket_publish_dropped, 0, "{counters:?}");
}

#[test]
fn a_group_on_one_core_gets_its_messages_in_order() {
    let running = serve(chat_app());
    let mut a = open_chat(running.addr);
    let mut b = open_chat(running.addr);
    join(&mut a, "g");
    join(&mut b, "g");
    // Joining twice keeps one membership: each message comes once.
    join(&mut b, "g");
    for i in 0..50 {
        a.text(&format!("pub g {i}"));
    }
    for raw in [&mut a, &mut b] {
        for i in 0..50 {
            assert_eq!(raw.next_text(), i.to_string());
        }
    }
    // A group nobody joined reaches nobody.
    a.text("pub other x");
    a.text("core?");
    assert_eq!(a.next_text(), "core 0");
}

#[test]
fn a_panic_in_on_open_ends_that_connection_with_1011_and_the_core_goes_on() {
    let running = serve(chat_app());
    let mut boom = Raw::open_at(running.addr, "/boom");
    let (_, op, payload) = boom.frame();
    assert_eq!((op, &payload[..2]), (0x8, &1011u16.to_be_bytes()[..]));
    let mut chat = open_chat(running.addr);
    assert_eq!(core_of(&mut chat), 0);
    drop((boom, chat));
    let summary = running.stop();
    assert_eq!(summary.merged_counters().handler_panics, 1);
}

/// What the async handlers saw, for the test to check.
type Seen = Arc<Mutex<Vec<String>>>;

fn async_app(seen: Seen) -> App<()> {
    App::new(|_| Ok(())).websocket_async("/later", &[], move |_, _, _, mut socket| {
        let seen = seen.clone();
        async move {
            while let Some(message) = socket.recv().await {
                match message.as_message() {
                    Message::Text("bye") => return,
                    Message::Text("panic") => panic!("the task fails"),
                    Message::Text("close") => socket.close(4001, "asked"),
                    Message::Text("flood") => {
                        let chunk = vec![7u8; 64 * 1024];
                        let mut most = 0;
                        for _ in 0..64 {
                            socket.binary(&chunk).await.unwrap();
                            most = most.max(socket.queued());
                        }
                        socket.drained().await;
                        seen.lock().unwrap().push(format!("most queued {most}"));
                        socket.text("flooded").await.unwrap();
                    }
                    Message::Text("join") => socket.join("all"),
                    Message::Text(text) if text.starts_with("pub ") => {
                        socket.publish("all", Message::Text(&text[4..]));
                    }
                    message => {
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                        socket.send(message).await.unwrap();
                    }
                }
            }
            let code = socket.close_code();
            seen.lock().unwrap().push(format!("ended {code:?}"));
        }
    })
}

/// Python's `websockets` in rooms of the binary's `/ws/room/{name}`: eight members of
/// "lobby" and one of "attic"; what one member sends, every lobby member gets (itself too),
/// text and binary, and the attic nothing.
const PY_ROOMS: &str = r#"
import sys
from websockets.sync.client import connect
base = sys.argv[1]
lobby = [connect(base + "/ws/room/lobby", open_timeout=10) for _ in range(8)]
attic = connect(base + "/ws/room/attic", open_timeout=10)
lobby[0].send("héllo")
assert all(ws.recv(timeout=10) == "héllo" for ws in lobby)
lobby[5].send(b"\x00\x01")
assert all(ws.recv(timeout=10) == b"\x00\x01" for ws in lobby)
attic.send("alone")
assert attic.recv(timeout=10) == "alone"
for ws in lobby + [attic]:
    ws.close()
print("ok")
"#;

#[test]
fn pythons_websockets_clients_share_the_binarys_rooms() {
    let python = python_with_websockets();
    if !require(
        python.is_some(),
        "no Python with websockets (.ci/run makes .venv)",
    ) {
        return;
    }
    let cores = if usable_cores().len() >= 2 {
        "0-1"
    } else {
        "0"
    };
    let mut percore = Percore::spawn(&["--port", "0", "--cores", cores, "--root", ""]);
    let base = format!("ws://{}", percore.addr);
    let mut command = std::process::Command::new(python.unwrap());
    command.args(["-c", PY_ROOMS, &base]);
    let out = output_within(&mut command, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    percore.stop_with(libc::SIGTERM);
}

/// Waits (with a deadline) until `seen` holds `line`.
fn wait_for(seen: &Seen, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.lock().unwrap().iter().any(|l| l == line) {
        assert!(
            Instant::now() < deadline,
            "never saw {line:?}: {:?}",
            seen.lock().unwrap()
        );
        std::thread::yield_now();
    }
}

#[test]
fn an_async_handler_answers_after_awaiting_and_sees_the_close() {
    let seen = Seen::default();
    let running = serve(async_app(seen.clone()));
    let mut raw = Raw::open_at(running.addr, "/later");
    for i in 0..20 {
        raw.text(&format!("m{i}"));
    }
    raw.write(&frame(true, 0x2, b"\x00\xff"));
    for i in 0..20 {
        assert_eq!(raw.next_text(), format!("m{i}"));
    }
    assert_eq!(raw.frame(), (true, 0x2, vec![0, 0xff]));
    // The client closes: the task's recv ends, and it sees the code.
    raw.write(&frame(true, 0x8, b"\x0f\xa0bye"));
    assert_eq!(raw.closed_with(), 4000);
    wait_for(&seen, "ended Some((Some(4000), \"bye\"))");

    // The task returns: its connection closes with 1000; a panic closes with 1011.
    for (ask, code) in [("bye", 1000u16), ("panic", 1011)] {
        let mut raw = Raw::open_at(running.addr, "/later");
        raw.text(ask);
        let (_, op, payload) = raw.frame();
        assert_eq!((op, &payload[..2]), (0x8, &code.to_be_bytes()[..]), "{ask}");
        raw.write(&frame(true, 0x8, &code.to_be_bytes()));
        raw.expect_close("nothing after the close");
    }
    // The task closes with its own code, and hears the client's answer.
    let mut raw = Raw::open_at(running.addr, "/later");
    raw.text("close");
    let (_, op, payload) = raw.frame();
    assert_eq!((op, &payload[..2]), (0x8, &4001u16.to_be_bytes()[..]));
    raw.write(&frame(true, 0x8, &4001u16.to_be_bytes()));
    raw.expect_close("nothing after the close");
    wait_for(&seen, "ended Some((Some(4001), \"\"))");
}

#[test]
fn an_async_handlers_sends_wait_for_a_slow_reader() {
    let seen = Seen::default();
    let max_queue = 256 * 1024;
    let running = serve_with(async_app(seen.clone()), |c| {
        c.websocket.max_send_queue_bytes = max_queue;
    });
    let mut raw = Raw::open_at(running.addr, "/later");
    raw.text("flood");
    // Read the 4 MiB slowly enough that the task must wait on the bound.
    for _ in 0..64 {
        let (fin, op, payload) = raw.frame();
        assert!(fin && op == 0x2 && payload.len() == 64 * 1024);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(raw.next_text(), "flooded");
    let seen = seen.lock().unwrap();
    let most: usize = seen[0]
        .strip_prefix("most queued ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        most <= max_queue + 64 * 1024 + 16,
        "{most} bytes queued past the bound"
    );
}

#[test]
fn async_handlers_join_groups_and_publish() {
    let running = serve(async_app(Seen::default()));
    let mut a = Raw::open_at(running.addr, "/later");
    let mut b = Raw::open_at(running.addr, "/later");
    for raw in [&mut a, &mut b] {
        raw.text("join");
        // The echo after the join: the join took effect.
        raw.text("ready");
        assert_eq!(raw.next_text(), "ready");
    }
    a.text("pub news");
    assert_eq!(a.next_text(), "news");
    assert_eq!(b.next_text(), "news");
}
