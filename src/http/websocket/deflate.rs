//! permessage-deflate's messages (RFC 7692 §7.2): a message compressed on its own (no
//! context taken over from the one before), its closing empty block's four bytes left off;
//! and a compressed message inflated within a limit on the inflated bytes, so that a small
//! message cannot become a large one in memory (a decompression bomb fails at the limit).
//!
//! One [`MessageDeflate`] serves a whole core: reset before each message, it keeps its
//! buffers and zlib state from one message to the next.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What ends every compressed message, left off on the wire.
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// Why a compressed message could not be inflated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the limit (1009).
    TooBig,
    /// It is not valid deflate data (1007, as RFC 7692 §8 says).
    Invalid,
}

/// A core's compressor and inflater for permessage-deflate.
pub struct MessageDeflate {
    compress: Compress,
    window_bits: u8,
    level: u32,
    inflate: Decompress,
}

impl std::fmt::Debug for MessageDeflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDeflate")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .finish()
    }
}

impl MessageDeflate {
    /// Compression at `level` (0–9) with a window of 2^15 bytes.
    pub fn new(level: u32) -> MessageDeflate {
        MessageDeflate {
            compress: Compress::new_with_window_bits(Compression::new(level), false, 15),
            window_bits: 15,
            level,
            inflate: Decompress::new_with_window_bits(false, 15),
        }
    }

    /// Appends `message` compressed with a window of at most 2^`window_bits` bytes (9–15)
    /// to `out`, without the closing four bytes.
    pub fn compress(&mut self, message: &[u8], window_bits: u8, out: &mut Vec<u8>) {
        if window_bits != self.window_bits {
            self.compress =
                Compress::new_with_window_bits(Compression::new(self.level), false, window_bits);
            self.window_bits = window_bits;
        } else {
            self.compress.reset();
        }
        let start = self.compress.total_in();
        out.reserve(message.len() / 2 + 64);
        loop {
            let done = (self.compress.total_in() - start) as usize;
            self.compress
                .compress_vec(&message[done..], out, FlushCompress::Sync)
                .expect("deflate with a valid state");
            let all_in = (self.compress.total_in() - start) as usize == message.len();
            // A sync flush is complete once it leaves room unused.
            if all_in && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }

    /// Appends the inflated `message` (as received, without the closing four bytes) to
    /// `out`, failing when it would pass `limit` bytes.
    pub fn inflate(
        &mut self,
        message: &[u8],
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        self.inflate.reset(false);
        let start = out.len();
        for input in [message, &TAIL[..]] {
            let base = self.inflate.total_in();
            loop {
                let used = (self.inflate.total_in() - base) as usize;
                if out.len() == out.capacity() {
                    let room = (limit + 1).saturating_sub(out.len() - start).min(64 * 1024);
                    if room == 0 {
                        return Err(InflateError::TooBig);
                    }
                    out.reserve_exact(room);
                }
                let status = self
                    .inflate
                    .decompress_vec(&input[used..], out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Invalid)?;
                if out.len() - start > limit {
                    return Err(InflateError::TooBig);
                }
                let used = (self.inflate.total_in() - base) as usize;
                match status {
                    Status::StreamEnd => break,
                    _ if used == input.len() && out.len() < out.capacity() => break,
                    Status::BufError if used == input.len() => break,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_as_they_went_one_by_one() {
        let mut codec = MessageDeflate::new(6);
        let greek = "κόσμε".repeat(50);
        let texts: [&[u8]; 4] = [b"", b"Hello", &[b'a'; 100_000], greek.as_bytes()];
        for bits in [15, 9] {
            for text in texts {
                let mut packed = Vec::new();
                codec.compress(text, bits, &mut packed);
                assert!(!packed.ends_with(&TAIL));
                let mut back = Vec::new();
                codec.inflate(&packed, 1 << 20, &mut back).unwrap();
                assert_eq!(back, text);
            }
        }
    }

    #[test]
    fn rfc_7692_examples_inflate() {
        // Section 7.2.3.1: "Hello" compressed, and again as a block with no compression.
        let mut codec = MessageDeflate::new(1);
        for packed in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ][..],
        ] {
            let mut out = Vec::new();
            codec.inflate(packed, 100, &mut out).unwrap();
            assert_eq!(out, b"Hello");
        }
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_invalid() {
        let mut codec = MessageDeflate::new(9);
        let mut bomb = Vec::new();
        codec.compress(&vec![0u8; 10 << 20], 15, &mut bomb);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let mut out = Vec::new();
        assert_eq!(
            codec.inflate(&bomb, 1 << 20, &mut out),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= (1 << 20) + 64 * 1024 + 1);
        let mut out = Vec::new();
        assert_eq!(
            codec.inflate(&[0xff, 0xff, 0xff, 0xff], 1000, &mut out),
            Err(InflateError::Invalid)
        );
    }
}
