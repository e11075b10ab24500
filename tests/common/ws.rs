//! A raw WebSocket client for tests: the opening handshake, masked frames of any shape
//! (polite or not), and the server's frames read back whole.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub fn handshake(extra: &str) -> String {
    handshake_at("/ws", extra)
}

/// The opening handshake for `path`, with `extra` header lines.
pub fn handshake_at(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A raw client: writes bytes, reads the server's head and frames.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes the handshake.
    pub fn open(addr: SocketAddr) -> Raw {
        Raw::open_at(addr, "/ws")
    }

    /// Connects and completes the handshake on `path`.
    pub fn open_at(addr: SocketAddr, path: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.write(handshake_at(path, "").as_bytes());
        let head = raw.head();
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{head}"
        );
        raw
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    pub fn head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return String::from_utf8(self.buf.drain(..i + 4).collect()).unwrap();
            }
            assert!(self.fill() > 0, "closed before a head");
        }
    }

    /// Sends a masked text message.
    pub fn text(&mut self, text: &str) {
        self.write(&frame(true, 0x1, text.as_bytes()));
    }

    /// The next frame, which must be a text message: its text.
    pub fn next_text(&mut self) -> String {
        let (fin, op, payload) = self.frame();
        assert!(fin && op == 0x1, "a text message, not {op:#x}: {payload:?}");
        String::from_utf8(payload).unwrap()
    }

    /// The next frame: `(fin, RSV bits and opcode, payload)`; servers never mask.
    pub fn frame(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            assert!(self.fill() > 0, "closed before a frame: {:?}", self.buf);
        }
    }

    /// The close frame's code, then the server's close of the connection.
    pub fn closed_with(&mut self) -> u16 {
        let (_, op, payload) = self.frame();
        assert_eq!(op, 0x8, "a close frame: {payload:?}");
        let code = u16::from_be_bytes([payload[0], payload[1]]);
        self.expect_close("nothing after the close frame");
        code
    }

    /// Reads until the server closes the connection, which must send nothing more
    /// (`what` says what was expected).
    pub fn expect_close(&mut self, what: &str) {
        while self.fill() > 0 {}
        assert!(self.buf.is_empty(), "{what}: {:?}", self.buf);
    }
}

/// A server frame: `(fin, opcode, payload)`.
pub type Frame = (bool, u8, Vec<u8>);

pub fn parse_server_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    assert_eq!(b1 & 0x80, 0, "server frames are not masked");
    let (len, at) = match b1 & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().unwrap()) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    // The opcode with the RSV bits (0x41: a compressed text message).
    Some(((b0 & 0x80 != 0, b0 & 0x7F, payload), at + len))
}

/// A client frame, masked.
pub fn frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![(u8::from(fin) << 7) | op];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A Python with the `websockets` package: the checkout's `.venv` (made by `.ci/run`), or
/// the system's.
pub fn python_with_websockets() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    [venv, PathBuf::from("python3")].into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import websockets.sync.client"])
            .output()
            .is_ok_and(|out| out.status.success())
    })
}
