//! HTTP/1.1 without I/O and without configuration: request heads, chunked bodies, status
//! codes, responses, HTTP dates, content codings (their negotiation, the coders of whole and
//! streamed bodies, request bodies decoded within a limit), protocol errors, the
//! per-connection session that ties them together, and the two sides of a reverse proxy's
//! exchange (a request as forwarded, an upstream's response head). It is given plain limits
//! ([`request::Limits`]) and asks a [`session::Service`] to answer each request; it knows
//! nothing of sockets, routes or files.

pub mod chunk_out;
pub mod chunked;
pub mod coding;
pub mod date;
pub mod decoder;
pub mod encoder;
pub mod error;
pub(crate) mod fields;
pub mod forward;
mod head;
mod head_end;
pub mod request;
pub mod response;
mod service;
pub mod session;
pub mod status;
pub mod stream_coder;
mod target;
pub mod upstream_head;
pub mod websocket;

pub(crate) use fields::is_tchar;
