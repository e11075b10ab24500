//! The opening handshake (RFC 6455 §4.2): whether a request asks for a WebSocket, whether
//! it asks properly, and the `101` that accepts it (the key's hash, the subprotocol
//! chosen). A request that is not an upgrade to `websocket` is an ordinary request; one
//! that is, but breaks a rule, is refused with the status the RFC names.

use aws_lc_rs::digest;

use super::super::fields::{head_fields, list_items};
use super::super::head::{Framing, Version};
use super::super::request::RawRequest;
use super::super::status::Status;
use super::extension::{self, Deflate};

/// The GUID RFC 6455 appends to the client's key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only version RFC 6455 speaks.
pub const VERSION: &[u8] = b"13";

/// A valid opening handshake: the client's key and the subprotocols it offers.
#[derive(Clone, Copy, Debug)]
pub struct Opening<'a> {
    /// `Sec-WebSocket-Key`, as sent.
    pub key: &'a [u8],
    request: RawRequest<'a>,
}

/// Why an upgrade to `websocket` is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not `GET` (405).
    Method,
    /// A version other than 13 (426, with `Sec-WebSocket-Version: 13`).
    Version,
    /// Something else is wrong: not HTTP/1.1, a body, no `Connection: upgrade`, a key that
    /// is not 16 bytes in base64 (400).
    Bad(&'static str),
}

impl Refusal {
    /// The status the refusal is answered with.
    pub fn status(self) -> Status {
        match self {
            Refusal::Method => Status::METHOD_NOT_ALLOWED,
            Refusal::Version => Status::UPGRADE_REQUIRED,
            Refusal::Bad(_) => Status::BAD_REQUEST,
        }
    }
}

/// Whether `request` asks to switch to WebSocket (`Upgrade: websocket`, in any case).
pub fn asks_websocket(request: &RawRequest<'_>) -> bool {
    request
        .headers(b"upgrade")
        .flat_map(list_items)
        .any(|item| item.eq_ignore_ascii_case(b"websocket"))
}

/// Checks an upgrade to WebSocket (`asks_websocket` said yes).
pub fn check<'a>(request: &RawRequest<'a>) -> Result<Opening<'a>, Refusal> {
    if request.method() != b"GET" {
        return Err(Refusal::Method);
    }
    if request.head.version != Version::Http11 {
        return Err(Refusal::Bad("a WebSocket handshake is HTTP/1.1"));
    }
    if !matches!(request.head.framing, Framing::Empty) {
        return Err(Refusal::Bad("a WebSocket handshake has no body"));
    }
    let upgrade_named = head_fields(request.bytes)
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
        .any(|(_, value)| list_items(value).any(|o| o.eq_ignore_ascii_case(b"upgrade")));
    if !upgrade_named {
        return Err(Refusal::Bad("Connection does not name upgrade"));
    }
    if request.header(b"sec-websocket-version") != Some(VERSION) {
        return Err(Refusal::Version);
    }
    let key = request
        .header(b"sec-websocket-key")
        .filter(|key| is_valid_key(key))
        .ok_or(Refusal::Bad("Sec-WebSocket-Key is not 16 bytes in base64"))?;
    Ok(Opening {
        key,
        request: *request,
    })
}

impl<'a> Opening<'a> {
    /// The subprotocols the client offers, in its order.
    pub fn protocols(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.request
            .headers(b"sec-websocket-protocol")
            .flat_map(list_items)
            .filter(|item| !item.is_empty())
    }

    /// The first of `ours` (the server's preference) that the client offers.
    pub fn choose<'p>(&self, ours: &[&'p str]) -> Option<&'p str> {
        ours.iter()
            .copied()
            .find(|ours| self.protocols().any(|theirs| theirs == ours.as_bytes()))
    }

    /// The first permessage-deflate offer percore takes (see `extension`), if any.
    pub fn deflate(&self) -> Option<Deflate> {
        extension::accept(
            self.request
                .headers(b"sec-websocket-extensions")
                .flat_map(list_items),
        )
    }

    /// The `Sec-WebSocket-Accept` value for this key.
    pub fn accept(&self) -> [u8; 28] {
        accept_key(self.key)
    }
}

/// `Sec-WebSocket-Accept` for `key`: base64 of SHA-1 of the key and the GUID.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut context = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(GUID);
    let hash = context.finish();
    let mut out = [0u8; 28];
    base64(hash.as_ref(), &mut out);
    out
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 (with padding) of `bytes` into `out`, which is exactly long enough.
fn base64(bytes: &[u8], out: &mut [u8]) {
    for (group, place) in bytes.chunks(3).zip(out.chunks_mut(4)) {
        let n = group.len();
        let word = u32::from(group[0]) << 16
            | u32::from(*group.get(1).unwrap_or(&0)) << 8
            | u32::from(*group.get(2).unwrap_or(&0));
        for (i, digit) in place.iter_mut().enumerate() {
            *digit = if i <= n {
                ALPHABET[(word >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            };
        }
    }
}

/// Whether `key` is 16 bytes in base64: 22 digits and `==`, the last digit carrying no
/// bits past the sixteenth byte.
pub fn is_valid_key(key: &[u8]) -> bool {
    let [digits @ .., b'=', b'='] = key else {
        return false;
    };
    digits.len() == 22
        && digits.iter().all(|d| ALPHABET.contains(d))
        && ALPHABET
            .iter()
            .position(|a| a == &digits[21])
            .is_some_and(|value| value & 0x0F == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_gets_its_accept_value() {
        // RFC 6455 §1.3.
        let accept = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(&accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
    }

    #[test]
    fn keys_that_are_not_sixteen_bytes_are_refused() {
        for key in [
            &b""[..],
            b"dGhlIHNhbXBsZSBub25jZQ",    // no padding
            b"dGhlIHNhbXBsZSBub25jZQ=",   // one =
            b"dGhlIHNhbXBsZSBub25jZQ===", // too long
            b"dGhlIHNhbXBsZSBub25jZR==",  // bits past the sixteenth byte
            b"dGhlIHNhbXBsZSBub2!jZQ==",  // not base64
            b"c2hvcnQ=",                  // 5 bytes
        ] {
            assert!(!is_valid_key(key), "{}", String::from_utf8_lossy(key));
        }
    }
}
