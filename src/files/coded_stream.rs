//! Compression on the fly of static files too large for the core's cache: the file is read
//! a chunk at a time as any large file is (`static.chunk_bytes`), and each chunk is coded and
//! flushed before it goes out, so a transfer holds one coder and one chunk however large the
//! file. Its coded length is not known before the end: an HTTP/1.1 client gets the coded
//! bytes in the chunked transfer coding, an HTTP/1.0 client up to the connection's close.
//!
//! Only a whole file is coded this way: a request with a `Range` field gets the file itself,
//! so ranges keep meaning the bytes on disk, and the response says nothing of ranges. Its
//! `ETag` names the coding as a cached coded copy's does (the same bytes for the same
//! version of the file and the same level). What a file of the cache's size is coded to,
//! once and kept, is [`super::on_the_fly`]'s.

use std::os::fd::OwnedFd;

use super::conditional::respond_unsized;
use super::meta::{FileId, Meta};
use super::{FileBody, StaticFiles};
use crate::http::coding::{Coding, Ranked};
use crate::http::request::RawRequest;
use crate::http::response::ResponseWriter;
use crate::http::stream_coder::StreamCoder;

/// Room for a chunk's size line: eight hex digits (chunks are far smaller than 4 GiB) and
/// CRLF. RFC 9112 section 7.1's `chunk-size` is `1*HEXDIG`: leading zeros are allowed, so
/// the line is written in place once the chunk's length is known.
const SIZE_LINE: usize = 10;

/// The coder of one file's body, with its framing.
#[derive(Debug)]
pub struct FileCoder {
    coder: StreamCoder,
    /// Framed as chunks (HTTP/1.1); otherwise the body ends with the connection.
    chunked: bool,
    /// The bytes made so far, framing included: what the access log says was sent.
    made: u64,
}

impl FileCoder {
    /// Appends `identity` (the file's next bytes; `last`: its end) coded and framed to `out`,
    /// which it expects empty; `out` stays empty when nothing is to be sent yet. Returns
    /// false when the coder failed: the head promised a body that cannot be finished.
    pub fn code(&mut self, identity: &[u8], last: bool, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        if self.chunked {
            out.resize(start + SIZE_LINE, 0);
        }
        let data = out.len();
        if !self.coder.part(identity, out) || (last && !self.coder.finish(out)) {
            return false;
        }
        if !self.chunked {
            self.made += (out.len() - start) as u64;
            return true;
        }
        let len = out.len() - data;
        if len == 0 {
            out.truncate(start);
        } else {
            let line = format_size_line(len);
            out[start..data].copy_from_slice(&line);
            out.extend_from_slice(b"\r\n");
        }
        if last {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        self.made += (out.len() - start) as u64;
        true
    }

    /// The bytes of the body made so far, framing included.
    pub fn made(&self) -> u64 {
        self.made
    }
}

/// `len` as eight hex digits and CRLF.
fn format_size_line(len: usize) -> [u8; SIZE_LINE] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut line = [b'0'; SIZE_LINE];
    for (i, digit) in line[..8].iter_mut().enumerate() {
        *digit = HEX[(len >> (4 * (7 - i))) & 0xf];
    }
    line[8..].copy_from_slice(b"\r\n");
    line
}

/// The coding a whole file of `id`'s size is to be coded in as it is sent: one the request
/// accepts, for a file the cache will not hold (`static.cache_file_max_bytes`), of a type
/// and size compressed on the fly, asked for without `Range`.
pub(super) fn coding_for(
    files: &StaticFiles,
    ranked: &Ranked,
    id: &FileId,
    meta: &Meta,
    request: &RawRequest<'_>,
) -> Option<Coding> {
    if id.size <= files.cache_file_max || request.header(b"range").is_some() {
        return None;
    }
    let len = usize::try_from(id.size).unwrap_or(usize::MAX);
    files.coding.on_the_fly(ranked, meta.content_type, len)
}

/// Answers with the file `fd` (`id`, its coded `meta`) coded by `coded` as it is read: the
/// head (or the `304` or `412` its validators call for) now, the body for the engine to
/// read, code and send.
pub(super) fn send(
    files: &StaticFiles,
    fd: OwnedFd,
    id: &FileId,
    meta: &Meta,
    (coding, coder): (Coding, StreamCoder),
    request: &RawRequest<'_>,
    response: &mut ResponseWriter,
) -> Option<FileBody> {
    let chunked = respond_unsized(request, response, meta, coding)?;
    response.mark_coded(coding.token(), 0);
    Some(FileBody {
        fd,
        offset: 0,
        len: id.size,
        direct: files.directio != 0 && id.size >= files.directio,
        fill: None,
        coder: Some(Box::new(FileCoder {
            coder,
            chunked,
            made: 0,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::encoder::Levels;
    use std::io::Read;

    fn dechunk(mut body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = body.iter().position(|&b| b == b'\r').unwrap();
            let len = usize::from_str_radix(std::str::from_utf8(&body[..line]).unwrap(), 16);
            let len = len.unwrap();
            body = &body[line + 2..];
            if len == 0 {
                assert_eq!(body, b"\r\n");
                return out;
            }
            out.extend_from_slice(&body[..len]);
            assert_eq!(&body[len..len + 2], b"\r\n");
            body = &body[len + 2..];
        }
    }

    #[test]
    fn chunks_framed_in_place_decode_to_the_file() {
        let text: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {} of the file\n", i % 977).into_bytes())
            .collect();
        let coder = StreamCoder::new(Coding::Gzip, Levels::default()).unwrap();
        let mut coder = FileCoder {
            coder,
            chunked: true,
            made: 0,
        };
        let mut wire = Vec::new();
        let parts: Vec<&[u8]> = text.chunks(256 * 1024).collect();
        for (i, part) in parts.iter().enumerate() {
            let mut out = Vec::new();
            assert!(coder.code(part, i + 1 == parts.len(), &mut out));
            wire.extend_from_slice(&out);
        }
        assert_eq!(coder.made(), wire.len() as u64);
        let coded = dechunk(&wire);
        assert!(coded.len() < text.len() / 4);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&coded[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
    }

    #[test]
    fn the_size_line_is_eight_hex_digits() {
        assert_eq!(&format_size_line(0x3a07f), b"0003a07f\r\n");
    }
}
