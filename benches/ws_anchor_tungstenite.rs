//! The WebSocket benchmark's anchor: tokio-tungstenite's echo server (each text or binary
//! message sent back as it came, one flush per message, as its examples do) on a
//! single-threaded tokio runtime, for benches/load.sh to pin to the server's CPU beside
//! percore's `/ws/echo`. No permessage-deflate (tungstenite does not offer it by default).
//!
//! `cargo bench --bench ws_anchor_tungstenite -- PORT`

use futures_util::{SinkExt, StreamExt};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        // `cargo test --all-targets` runs this target without arguments: nothing to serve.
        println!("usage: cargo bench --bench ws_anchor_tungstenite -- PORT");
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
        println!("tokio-tungstenite echo on 127.0.0.1:{port}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        if socket.send(message).await.is_err() {
                            break;
                        }
                    } else if message.is_close() {
                        break;
                    }
                }
            });
        }
    });
}
