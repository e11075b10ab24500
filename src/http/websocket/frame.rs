//! WebSocket frames (RFC 6455 §5.2): a frame's head read from a client's bytes, the mask
//! applied, and a server frame's head written (servers never mask).

/// The opcodes RFC 6455 defines; any other is refused.
pub mod opcode {
    /// A fragment after a message's first.
    pub const CONTINUATION: u8 = 0x0;
    /// A text message's first frame.
    pub const TEXT: u8 = 0x1;
    /// A binary message's first frame.
    pub const BINARY: u8 = 0x2;
    /// The close handshake.
    pub const CLOSE: u8 = 0x8;
    /// A ping.
    pub const PING: u8 = 0x9;
    /// A pong.
    pub const PONG: u8 = 0xA;
}

/// The longest frame head: two bytes, an eight-byte length, a four-byte mask.
pub const MAX_HEAD: usize = 14;

/// The largest payload of a control frame.
pub const MAX_CONTROL: usize = 125;

/// A frame's head, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    /// The message's last frame.
    pub fin: bool,
    /// RSV1 (a compressed message's first frame, with permessage-deflate).
    pub rsv1: bool,
    /// RSV2 or RSV3: no extension percore speaks uses them.
    pub rsv23: bool,
    /// What the frame carries (`opcode`).
    pub opcode: u8,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload's length.
    pub len: u64,
    /// The head's own length in bytes.
    pub head_len: usize,
}

/// Why a frame head is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// A 64-bit length with its most significant bit set.
    LengthTooLong,
}

impl FrameHead {
    /// Reads a frame head from the start of `bytes`: `None` while it is not all there.
    pub fn parse(bytes: &[u8]) -> Result<Option<FrameHead>, HeadError> {
        let [b0, b1, ..] = *bytes else {
            return Ok(None);
        };
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 => {
                let Some(ext) = bytes.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([ext[0], ext[1]])), 4)
            }
            127 => {
                let Some(ext) = bytes.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(ext.try_into().expect("eight bytes"));
                if len >> 63 != 0 {
                    return Err(HeadError::LengthTooLong);
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let mask = if masked {
            let Some(key) = bytes.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some(key.try_into().expect("four bytes"))
        } else {
            None
        };
        Ok(Some(FrameHead {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv23: b0 & 0x30 != 0,
            opcode: b0 & 0x0F,
            mask,
            len,
            head_len: at,
        }))
    }

    /// A control frame (close, ping, pong, or a reserved control opcode).
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Appends `payload` unmasked with `key`, `offset` bytes into the frame's payload (the
/// mask's phase), to `out`.
pub fn unmask_into(out: &mut Vec<u8>, payload: &[u8], key: [u8; 4], offset: u64) {
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], key, offset);
}

/// Unmasks `bytes` in place, `offset` bytes into the frame's payload.
pub fn unmask(bytes: &mut [u8], key: [u8; 4], offset: u64) {
    let phase = (offset % 4) as usize;
    let key = [
        key[phase],
        key[(phase + 1) % 4],
        key[(phase + 2) % 4],
        key[(phase + 3) % 4],
    ];
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = bytes.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let value = u64::from_ne_bytes((&*chunk).try_into().expect("eight bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Appends a server frame's head (unmasked) for a payload of `len` bytes.
pub fn write_head(out: &mut Vec<u8>, opcode: u8, fin: bool, rsv1: bool, len: usize) {
    let b0 = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | (opcode & 0x0F);
    out.push(b0);
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends a whole server frame.
pub fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    write_head(out, opcode, true, false, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit a control frame, on a
/// character boundary).
pub fn write_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    write_head(out, opcode::CLOSE, true, false, 2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_of_every_length_form_read_back() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 33] {
            let mut out = Vec::new();
            write_head(&mut out, opcode::BINARY, true, false, len);
            let head = FrameHead::parse(&out).unwrap().unwrap();
            assert_eq!(head.len, len as u64);
            assert_eq!(head.head_len, out.len());
            assert!(head.fin && !head.rsv1 && head.mask.is_none());
            // Any prefix is not yet a head.
            for cut in 0..out.len() {
                assert_eq!(FrameHead::parse(&out[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn a_masked_head_and_its_payload_unmask_at_any_phase() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        // RFC 6455 §5.7: a masked "Hello".
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let head = FrameHead::parse(&frame).unwrap().unwrap();
        assert_eq!(
            (head.opcode, head.len, head.mask),
            (opcode::TEXT, 5, Some(key))
        );
        let payload = &frame[head.head_len..];
        for split in 0..=payload.len() {
            let mut out = Vec::new();
            unmask_into(&mut out, &payload[..split], key, 0);
            unmask_into(&mut out, &payload[split..], key, split as u64);
            assert_eq!(out, b"Hello");
        }
        let long: Vec<u8> = (0..100u8).collect();
        let mut masked = long.clone();
        unmask(&mut masked, key, 0);
        let mut back = Vec::new();
        unmask_into(&mut back, &masked[..13], key, 0);
        unmask_into(&mut back, &masked[13..], key, 13);
        assert_eq!(back, long);
    }

    #[test]
    fn a_length_with_its_top_bit_set_is_refused() {
        let mut frame = vec![0x82, 0xFF];
        frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
        frame.extend_from_slice(&[0; 4]);
        assert_eq!(FrameHead::parse(&frame), Err(HeadError::LengthTooLong));
    }

    #[test]
    fn a_close_reason_is_cut_on_a_character_boundary() {
        let mut out = Vec::new();
        write_close(&mut out, 1000, &"é".repeat(100));
        let head = FrameHead::parse(&out).unwrap().unwrap();
        assert!(head.len as usize <= MAX_CONTROL);
        assert!(std::str::from_utf8(&out[head.head_len + 2..]).is_ok());
    }
}
