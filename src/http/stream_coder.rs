//! One streamed body's compressor: each part a producer sends is coded and flushed at once
//! (deflate's sync flush, Brotli's flush, a zstd block ended), so that a client decodes
//! every part as it arrives, an event of an event stream included; the end of the body
//! finishes the stream (the gzip trailer, Brotli's last block, the zstd frame's end).
//!
//! Unlike [`super::encoder::Encoder`], whose coders a core reuses between whole bodies, a
//! stream's coder lives as long as its body and is made for it: streams interleave on a
//! core, each with its own window. Framing the coded bytes (chunks) is the caller's.

use std::io::Write;

use flate2::{Compress, Crc, FlushCompress};
use zstd::zstd_safe::{CCtx, CParameter};

use super::coding::Coding;
use super::encoder::{deflate_into, deflate_settings, gzip_header, gzip_trailer, zstd_run, Levels};
use super::encoder::{BROTLI_BUFFER_BYTES, BROTLI_WINDOW_BITS};

/// The coder of one streamed body.
pub struct StreamCoder(Kind);

enum Kind {
    Gzip {
        deflate: Box<Compress>,
        level: u32,
        crc: Crc,
        /// The gzip header went out (with the first part).
        opened: bool,
    },
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(CCtx<'static>),
    /// Finished, or failed: takes nothing more.
    Done,
}

impl std::fmt::Debug for StreamCoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Gzip { .. } => "StreamCoder(gzip)",
            Kind::Br(_) => "StreamCoder(br)",
            Kind::Zstd(_) => "StreamCoder(zstd)",
            Kind::Done => "StreamCoder(done)",
        })
    }
}

impl StreamCoder {
    /// A coder for a body in `coding` at its level in `levels`; none if a zstd context cannot
    /// be made.
    pub fn new(coding: Coding, levels: Levels) -> Option<StreamCoder> {
        let kind = match coding {
            Coding::Gzip => Kind::Gzip {
                deflate: Box::new(Compress::new(deflate_settings(levels.gzip), false)),
                level: levels.gzip,
                crc: Crc::new(),
                opened: false,
            },
            Coding::Br => Kind::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER_BYTES,
                levels.brotli,
                BROTLI_WINDOW_BITS,
            ))),
            Coding::Zstd => {
                let mut context = CCtx::try_create()?;
                context
                    .set_parameter(CParameter::CompressionLevel(levels.zstd))
                    .ok()?;
                Kind::Zstd(context)
            }
        };
        Some(StreamCoder(kind))
    }

    /// Appends `part` coded and flushed to `out`: everything given so far decodes from what
    /// was appended. Returns false when the coder failed (or was finished); it then takes
    /// nothing more.
    pub fn part(&mut self, part: &[u8], out: &mut Vec<u8>) -> bool {
        let done = match &mut self.0 {
            Kind::Gzip {
                deflate,
                level,
                crc,
                opened,
            } => {
                if !*opened {
                    out.extend_from_slice(&gzip_header(*level));
                    *opened = true;
                }
                crc.update(part);
                deflate_into(deflate, part, FlushCompress::Sync, out)
            }
            Kind::Br(writer) => {
                let done = writer.write_all(part).is_ok() && writer.flush().is_ok();
                out.append(writer.get_mut());
                done
            }
            Kind::Zstd(context) => zstd_run(context, part, out, false),
            Kind::Done => false,
        };
        if !done {
            self.0 = Kind::Done;
        }
        done
    }

    /// Appends the end of the coded stream to `out`. Returns false when the coder had failed
    /// (or was finished already).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        match std::mem::replace(&mut self.0, Kind::Done) {
            Kind::Gzip {
                mut deflate,
                level,
                crc,
                opened,
            } => {
                if !opened {
                    out.extend_from_slice(&gzip_header(level));
                }
                let done = deflate_into(&mut deflate, &[], FlushCompress::Finish, out);
                out.extend_from_slice(&gzip_trailer(&crc));
                done
            }
            Kind::Br(writer) => {
                out.extend_from_slice(&writer.into_inner());
                true
            }
            Kind::Zstd(mut context) => zstd_run(&mut context, &[], out, true),
            Kind::Done => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn every_part_decodes_as_it_arrives_and_the_end_finishes() {
        for coding in Coding::ALL {
            let mut coder = StreamCoder::new(coding, Levels::default()).unwrap();
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for i in 0..5 {
                let part = format!("data: event {i} {}\n\n", "x".repeat(i * 50));
                sent.extend_from_slice(part.as_bytes());
                assert!(coder.part(part.as_bytes(), &mut wire), "{coding:?}");
                // What arrived so far decodes to everything sent so far.
                assert_eq!(decode_prefix(coding, &wire), sent, "{coding:?} part {i}");
            }
            assert!(coder.finish(&mut wire));
            assert_eq!(crate::http::encoder::decode(coding, &wire), sent);
            assert!(!coder.part(b"late", &mut wire));
        }
    }

    /// Decodes as much of an unfinished stream as is there.
    fn decode_prefix(coding: Coding, coded: &[u8]) -> Vec<u8> {
        let mut decoded = Vec::new();
        let mut buf = [0u8; 4096];
        match coding {
            Coding::Gzip => {
                let mut reader = flate2::read::GzDecoder::new(coded);
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    decoded.extend_from_slice(&buf[..n]);
                }
            }
            Coding::Br => {
                let mut reader = brotli::Decompressor::new(coded, 4096);
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    decoded.extend_from_slice(&buf[..n]);
                }
            }
            Coding::Zstd => {
                let mut reader = zstd::stream::read::Decoder::new(coded).unwrap();
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    decoded.extend_from_slice(&buf[..n]);
                }
            }
        }
        decoded
    }
}
