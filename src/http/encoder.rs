//! One core's compressors for whole bodies: gzip (raw deflate from flate2 on zlib-rs, framed
//! here), Brotli (Dropbox's rust-brotli) and Zstandard (the reference C library), each at its
//! level, coding a body into a caller's buffer.
//!
//! The deflate stream and the zstd context are made on first use and reset between bodies,
//! so that once warm (the coders made, the caller's buffer grown to its working size) a
//! gzip or zstd body costs no allocation. rust-brotli's encoder has no reset: a Brotli body
//! builds its encoder (ring buffer, hash tables) afresh and frees it after. Which coding a
//! body gets, and whether it is coded at all, is the caller's choice
//! ([`crate::http::coding`] ranks what a request accepts); this file only makes bytes.

use std::io::Write;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ResetDirective};

use super::coding::Coding;

/// The level of each coding, as `[compression]` sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    /// gzip: 1 (fastest) to 9 (smallest).
    pub gzip: u32,
    /// Brotli: 0 to 11.
    pub brotli: u32,
    /// Zstandard: 1 to 22.
    pub zstd: i32,
}

impl Default for Levels {
    fn default() -> Levels {
        Levels {
            gzip: 6,
            brotli: 4,
            zstd: 3,
        }
    }
}

/// Brotli's window: 4 MiB (`lgwin` 22, its encoder's default).
pub(crate) const BROTLI_WINDOW_BITS: u32 = 22;

/// The bytes rust-brotli's writer buffers between its coder and the output.
pub(crate) const BROTLI_BUFFER_BYTES: usize = 4096;

/// The deflate settings for a gzip level as zlib (and so nginx's `gzip_comp_level`) means
/// it. zlib-rs follows zlib-ng's table, one step off zlib's at the fast end: its level 1 is
/// zlib-ng's "quick" strategy (static Huffman codes, one hash probe; about 30 % larger
/// output on HTML), and its level 2 is zlib's level 1 exactly (greedy matching, good 4,
/// lazy 4, nice 8, chain 4). So level 1 asks zlib-rs for 2; from 2 up the two tables differ
/// only in how each level searches, not in what a level is for, and pass through.
pub(crate) fn deflate_settings(level: u32) -> Compression {
    Compression::new(if level == 1 { 2 } else { level })
}

/// The gzip member header (RFC 1952 section 2.3) percore writes: deflate, no name, no time,
/// `XFL` as the level says, the operating system unknown.
pub(crate) fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// The gzip member trailer: the CRC-32 and the length modulo 2^32 of the identity bytes.
pub(crate) fn gzip_trailer(crc: &Crc) -> [u8; 8] {
    let mut trailer = [0; 8];
    trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
    trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
    trailer
}

/// Runs `deflate` over `input` with `flush` into `out`'s spare room, growing `out` only when
/// it runs out of room. Returns false when the coder fails.
pub(crate) fn deflate_into(
    deflate: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> bool {
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(input.len() / 2 + 4096);
        }
        let before = deflate.total_in();
        let Ok(status) = deflate.compress_vec(input, out, flush) else {
            return false;
        };
        input = &input[(deflate.total_in() - before) as usize..];
        match status {
            Status::StreamEnd => return true,
            // Finishing goes on to the end of the stream.
            _ if flush == FlushCompress::Finish => {}
            // Everything taken and flushed: the coder stopped with room to spare.
            _ if input.is_empty() && out.len() < out.capacity() => return true,
            _ => {}
        }
    }
}

/// Codes `input` into `out` and flushes (or ends the frame, with `end`).
pub(crate) fn zstd_run(
    context: &mut CCtx<'static>,
    input: &[u8],
    out: &mut Vec<u8>,
    end: bool,
) -> bool {
    let mut input = InBuffer::around(input);
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(input.src.len() / 2 + 4096);
        }
        let mut output = OutBuffer::around_pos(out, out.len());
        let directive = match end {
            true => zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end,
            false => zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush,
        };
        let Ok(left) = context.compress_stream2(&mut output, &mut input, directive) else {
            return false;
        };
        if left == 0 && input.pos == input.src.len() {
            return true;
        }
    }
}

/// A core's coders for whole bodies, reused from one body to the next.
pub struct Encoder {
    levels: Levels,
    /// Raw deflate, for gzip: made on first use, reset before each body.
    deflate: Option<Compress>,
    crc: Crc,
    /// A zstd context with its level set: made on first use; each body is a fresh frame.
    zstd: Option<CCtx<'static>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("levels", &self.levels)
            .field("gzip_warm", &self.deflate.is_some())
            .field("zstd_warm", &self.zstd.is_some())
            .finish()
    }
}

impl Encoder {
    /// Coders at `levels`, none made yet.
    pub fn new(levels: Levels) -> Encoder {
        Encoder {
            levels,
            deflate: None,
            crc: Crc::new(),
            zstd: None,
        }
    }

    /// Appends `body` in `coding` to `out`. Returns false, with `out` as it was, when the
    /// coder failed (which coding into memory does not, short of a zstd context that cannot
    /// be made).
    pub fn compress(&mut self, coding: Coding, body: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        let done = match coding {
            Coding::Gzip => self.gzip(body, out),
            Coding::Br => self.brotli(body, out),
            Coding::Zstd => self.zstd(body, out),
        };
        if !done {
            out.truncate(start);
        }
        done
    }

    fn gzip(&mut self, body: &[u8], out: &mut Vec<u8>) -> bool {
        let level = self.levels.gzip;
        let deflate = self
            .deflate
            .get_or_insert_with(|| Compress::new(deflate_settings(level), false));
        deflate.reset();
        self.crc.reset();
        self.crc.update(body);
        out.extend_from_slice(&gzip_header(level));
        if !deflate_into(deflate, body, FlushCompress::Finish, out) {
            return false;
        }
        out.extend_from_slice(&gzip_trailer(&self.crc));
        true
    }

    fn brotli(&mut self, body: &[u8], out: &mut Vec<u8>) -> bool {
        let mut writer = brotli::CompressorWriter::new(
            &mut *out,
            BROTLI_BUFFER_BYTES,
            self.levels.brotli,
            BROTLI_WINDOW_BITS,
        );
        let written = writer.write_all(body).is_ok();
        // Taking the output back finishes the stream.
        writer.into_inner();
        written
    }

    fn zstd(&mut self, body: &[u8], out: &mut Vec<u8>) -> bool {
        if self.zstd.is_none() {
            let Some(mut context) = CCtx::try_create() else {
                return false;
            };
            if context
                .set_parameter(CParameter::CompressionLevel(self.levels.zstd))
                .is_err()
            {
                return false;
            }
            self.zstd = Some(context);
        }
        let Some(context) = self.zstd.as_mut() else {
            return false;
        };
        // A new frame, with the context's parameters kept and its length in the header.
        let ready = context.reset(ResetDirective::SessionOnly).is_ok()
            && context
                .set_pledged_src_size(Some(body.len() as u64))
                .is_ok();
        out.reserve(zstd::zstd_safe::compress_bound(body.len()));
        ready && zstd_run(context, body, out, true)
    }
}

/// Decodes `coded` with the crates' own decoders (for tests).
#[cfg(test)]
pub(crate) fn decode(coding: Coding, coded: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut decoded = Vec::new();
    match coding {
        Coding::Gzip => flate2::read::GzDecoder::new(coded)
            .read_to_end(&mut decoded)
            .map(drop),
        Coding::Br => brotli::Decompressor::new(coded, 4096)
            .read_to_end(&mut decoded)
            .map(drop),
        Coding::Zstd => zstd::stream::copy_decode(coded, &mut decoded),
    }
    .unwrap();
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_coding_round_trips_and_the_coders_are_reused() {
        let mut encoder = Encoder::new(Levels::default());
        let mut out = Vec::new();
        for round in 0..3 {
            for coding in Coding::ALL {
                let text = format!("<p>percore round {round}</p>\n").repeat(400 + round);
                out.clear();
                out.extend_from_slice(b"kept");
                assert!(encoder.compress(coding, text.as_bytes(), &mut out));
                assert_eq!(&out[..4], b"kept");
                assert!(out.len() < text.len() / 4, "{coding:?}");
                assert_eq!(decode(coding, &out[4..]), text.as_bytes(), "{coding:?}");
            }
        }
    }

    #[test]
    fn empty_and_incompressible_bodies_round_trip() {
        let mut encoder = Encoder::new(Levels {
            gzip: 1,
            brotli: 0,
            zstd: 1,
        });
        let mut noise = Vec::with_capacity(100_000);
        let mut x: u32 = 1;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x as u8);
        }
        for coding in Coding::ALL {
            for body in [&b""[..], &noise] {
                let mut out = Vec::new();
                assert!(encoder.compress(coding, body, &mut out));
                assert_eq!(decode(coding, &out), body, "{coding:?}");
            }
        }
    }

    #[test]
    fn the_gzip_header_names_the_level() {
        assert_eq!(gzip_header(1)[8], 4);
        assert_eq!(gzip_header(9)[8], 2);
        assert_eq!(gzip_header(6)[..4], [0x1f, 0x8b, 8, 0]);
    }
}
