//! WebSocket (RFC 6455) without I/O: the opening handshake (`handshake`), frames
//! (`frame`), a client's frames read into messages with every rule checked (`decoder`), and
//! UTF-8 checked as text arrives (`utf8`). The engine carries the bytes; what a connection
//! does with each message is the application's.

pub mod decoder;
pub mod frame;
pub mod handshake;
pub mod utf8;

#[cfg(test)]
mod tests;
