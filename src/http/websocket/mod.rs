//! WebSocket (RFC 6455) without I/O: the opening handshake (`handshake`), frames
//! (`frame`), a client's frames read into messages with every rule checked (`decoder`),
//! UTF-8 checked as text arrives (`utf8`), and permessage-deflate (RFC 7692): its
//! negotiation (`extension`) and its messages compressed and inflated (`deflate`). The engine carries the bytes; what a connection
//! does with each message is the application's.

pub mod decoder;
pub mod deflate;
pub mod extension;
pub mod frame;
pub mod handshake;
pub mod utf8;

#[cfg(test)]
mod tests;
