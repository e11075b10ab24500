//! HTTP/1.1 without I/O: request heads, chunked bodies, responses, errors, and the
//! per-connection session that ties them together.

pub mod chunked;
pub mod date;
pub mod error;
pub mod request;
pub mod response;
pub mod session;
