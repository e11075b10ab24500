//! The WebSocket benchmark's second anchor: Deno's fastwebsockets echoing each text or
//! binary message as it came (its `FragmentCollector`, auto pong and auto close, one write
//! per message, as its echo example does) on a single-threaded tokio runtime, for
//! benches/load.sh to pin to the server's CPU beside percore's `/ws/echo`. The opening
//! handshake is read by hand (fastwebsockets leaves it to hyper, which this bench does not
//! bring in); the accept key is tungstenite's. No permessage-deflate (fastwebsockets has
//! none).
//!
//! `cargo bench --bench ws_anchor_fastwebsockets -- PORT`

use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        // `cargo test --all-targets` runs this target without arguments: it checks the
        // handshake's reading of a request, then has nothing to serve.
        assert_eq!(
            key_of(b"GET / HTTP/1.1\r\nsec-websocket-key: abc==\r\n\r\n"),
            Some("abc==")
        );
        println!("usage: cargo bench --bench ws_anchor_fastwebsockets -- PORT");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the port");
        println!("fastwebsockets echo on 127.0.0.1:{port}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = serve(stream).await;
            });
        }
    });
}

/// The handshake, then the echo until the client closes.
async fn serve(mut stream: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let key = key_of(&head).ok_or("no Sec-WebSocket-Key")?;
    let accept = derive_accept_key(key.as_bytes());
    stream
        .write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut ws = WebSocket::after_handshake(stream, Role::Server);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// The `Sec-WebSocket-Key` of a request head.
fn key_of(head: &[u8]) -> Option<&str> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim())
    })
}
