//! A client's frames read into messages (RFC 6455 §5–7): masked frames unmasked, fragments
//! gathered, control frames answered between them, and every rule a client can break
//! turned into the close code the connection fails with: 1002 for the protocol (an unmasked
//! frame, a reserved bit or opcode, a control frame fragmented or over 125 bytes, a
//! continuation with nothing to continue, a bad close payload), 1007 for text that is not
//! UTF-8 (found at the byte that breaks it), 1009 for a message over the limit.
//!
//! The decoder holds one message's bytes (reused from message to message) and one control
//! frame's; it reads from whatever piece of input it is given, split anywhere.

use super::frame::{opcode, unmask_into, FrameHead, MAX_CONTROL, MAX_HEAD};
use super::utf8::Utf8Check;

/// What the client sent: a whole message or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A text message (valid UTF-8).
    Text(&'a [u8]),
    /// A binary message.
    Binary(&'a [u8]),
    /// A message compressed with permessage-deflate (RSV1 on its first frame): its bytes as
    /// they came, for the caller to inflate (and, for text, to check as UTF-8 then).
    Compressed {
        /// A text message (else binary).
        text: bool,
        /// The compressed bytes, without the four that end the deflate block.
        bytes: &'a [u8],
    },
    /// A ping and its payload (answered with a pong by the caller).
    Ping(&'a [u8]),
    /// A pong and its payload.
    Pong(&'a [u8]),
    /// A close frame: its code (none for an empty payload) and reason.
    Close(Option<u16>, &'a str),
}

/// The connection fails: the close code and a reason to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The close code: 1002, 1007 or 1009.
    pub code: u16,
    /// The close frame's reason.
    pub reason: &'static str,
}

/// A protocol error: 1002.
const fn protocol(reason: &'static str) -> Failure {
    Failure { code: 1002, reason }
}

/// Close codes a peer may send (RFC 6455 §7.4 and the IANA registry): not 1004–1006 or 1015
/// (never sent on the wire), nothing below 1000 or in the unassigned ranges.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Reads a client's frames into messages.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// RSV1 may mark a message as compressed (permessage-deflate was agreed).
    deflate: bool,
    /// The head of the frame being read, gathered when split.
    head: [u8; MAX_HEAD],
    head_have: usize,
    /// The frame being read: its head, and how many payload bytes have come.
    frame: Option<FrameHead>,
    done: u64,
    /// The message being gathered: its opcode (text or binary), whether it is compressed.
    message: Option<(u8, bool)>,
    bytes: Vec<u8>,
    utf8: Utf8Check,
    control: Vec<u8>,
    /// A message or control frame was handed out: its bytes are dropped at the next read.
    delivered: bool,
}

impl Decoder {
    /// A decoder refusing messages over `max_message` bytes; `deflate`: RSV1 is allowed on a
    /// message's first frame.
    pub fn new(max_message: usize, deflate: bool) -> Decoder {
        Decoder {
            max_message,
            deflate,
            head: [0; MAX_HEAD],
            head_have: 0,
            frame: None,
            done: 0,
            message: None,
            bytes: Vec::new(),
            utf8: Utf8Check::default(),
            control: Vec::new(),
            delivered: false,
        }
    }

    /// Whether it has a buffer to gather messages in.
    pub fn has_buffer(&self) -> bool {
        self.bytes.capacity() > 0
    }

    /// Gives the decoder a buffer to gather messages in (emptied), in place of one without
    /// capacity: the caller lends one from a pool before reading (see `has_buffer`) and
    /// takes it back when idle (`take_idle`).
    pub fn lend(&mut self, mut buffer: Vec<u8>) {
        debug_assert!(!self.has_buffer(), "a buffer is lent over one held");
        buffer.clear();
        self.bytes = buffer;
    }

    /// Its buffers, when it holds nothing of a message or frame under way (an idle
    /// connection keeps none): the message buffer is returned for the caller's pool, the
    /// control frame's is freed.
    pub fn take_idle(&mut self) -> Option<Vec<u8>> {
        if self.message.is_some() || self.frame.is_some() || self.head_have > 0 {
            return None;
        }
        self.delivered = false;
        self.control = Vec::new();
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.clear();
        Some(bytes)
    }

    /// Reads from `input` (advancing it past what was used) up to the next message or
    /// control frame; `None` when `input` ran out first.
    pub fn next<'s>(&'s mut self, input: &mut &[u8]) -> Result<Option<Incoming<'s>>, Failure> {
        if self.delivered {
            self.delivered = false;
            // A control frame may have come between a message's fragments: those stay.
            if self.message.is_none() {
                self.bytes.clear();
            }
            self.control.clear();
        }
        loop {
            let head = match self.frame {
                Some(head) => head,
                None => match self.read_head(input)? {
                    Some(head) => head,
                    None => return Ok(None),
                },
            };
            let left = head.len - self.done;
            let take = (left.min(input.len() as u64)) as usize;
            let (piece, rest) = input.split_at(take);
            *input = rest;
            let key = head.mask.expect("client frames are masked");
            let offset = self.done;
            self.done += take as u64;
            if head.is_control() {
                unmask_into(&mut self.control, piece, key, offset);
            } else {
                let start = self.bytes.len();
                unmask_into(&mut self.bytes, piece, key, offset);
                if let Some((opcode::TEXT, false)) = self.message {
                    if self.utf8.feed(&self.bytes[start..]).is_err() {
                        return Err(Failure {
                            code: 1007,
                            reason: "text is not UTF-8",
                        });
                    }
                }
            }
            if self.done < head.len {
                return Ok(None);
            }
            // The frame is whole.
            self.frame = None;
            self.done = 0;
            if head.is_control() {
                self.delivered = true;
                return self.control_frame(head.opcode).map(Some);
            }
            if head.fin {
                let (kind, compressed) = self.message.take().expect("a message under way");
                if kind == opcode::TEXT && !compressed && !self.utf8.is_complete() {
                    return Err(Failure {
                        code: 1007,
                        reason: "text is not UTF-8",
                    });
                }
                self.delivered = true;
                let text = kind == opcode::TEXT;
                return Ok(Some(match (text, compressed) {
                    (_, true) => Incoming::Compressed {
                        text,
                        bytes: &self.bytes,
                    },
                    (true, false) => Incoming::Text(&self.bytes),
                    (false, false) => Incoming::Binary(&self.bytes),
                }));
            }
        }
    }

    /// Reads a frame head from `input` (gathering a split one) and checks it.
    fn read_head(&mut self, input: &mut &[u8]) -> Result<Option<FrameHead>, Failure> {
        let take = (MAX_HEAD - self.head_have).min(input.len());
        self.head[self.head_have..self.head_have + take].copy_from_slice(&input[..take]);
        let have = self.head_have + take;
        let parsed = FrameHead::parse(&self.head[..have])
            .map_err(|_| protocol("frame length out of range"))?;
        let Some(head) = parsed else {
            self.head_have = have;
            *input = &input[take..];
            return Ok(None);
        };
        // What of `input` belonged to the head.
        *input = &input[head.head_len - self.head_have..];
        self.head_have = 0;
        self.check(&head)?;
        self.frame = Some(head);
        self.done = 0;
        Ok(Some(head))
    }

    /// The rules a frame's head must keep.
    fn check(&mut self, head: &FrameHead) -> Result<(), Failure> {
        if head.mask.is_none() {
            return Err(protocol("client frames must be masked"));
        }
        if head.rsv23 {
            return Err(protocol("reserved bits set"));
        }
        if head.is_control() {
            if !matches!(head.opcode, opcode::CLOSE | opcode::PING | opcode::PONG) {
                return Err(protocol("reserved opcode"));
            }
            if !head.fin {
                return Err(protocol("fragmented control frame"));
            }
            if head.len > MAX_CONTROL as u64 {
                return Err(protocol("control frame over 125 bytes"));
            }
            if head.rsv1 {
                return Err(protocol("reserved bits set"));
            }
            return Ok(());
        }
        match (head.opcode, self.message) {
            (opcode::CONTINUATION, None) => return Err(protocol("nothing to continue")),
            (opcode::CONTINUATION, Some(_)) if head.rsv1 => {
                return Err(protocol("RSV1 on a continuation"))
            }
            (opcode::CONTINUATION, Some(_)) => {}
            (opcode::TEXT | opcode::BINARY, Some(_)) => {
                return Err(protocol("a new message inside a fragmented one"))
            }
            (opcode::TEXT | opcode::BINARY, None) => {
                if head.rsv1 && !self.deflate {
                    return Err(protocol("reserved bits set"));
                }
                self.message = Some((head.opcode, head.rsv1));
                self.utf8.reset();
            }
            _ => return Err(protocol("reserved opcode")),
        }
        if self.bytes.len() as u64 + head.len > self.max_message as u64 {
            return Err(Failure {
                code: 1009,
                reason: "message too big",
            });
        }
        Ok(())
    }

    /// A whole control frame, checked.
    fn control_frame(&self, kind: u8) -> Result<Incoming<'_>, Failure> {
        let payload = &self.control[..];
        Ok(match kind {
            opcode::PING => Incoming::Ping(payload),
            opcode::PONG => Incoming::Pong(payload),
            _ => match payload {
                [] => Incoming::Close(None, ""),
                [_] => return Err(protocol("a close payload of one byte")),
                [high, low, reason @ ..] => {
                    let code = u16::from_be_bytes([*high, *low]);
                    if !is_valid_close_code(code) {
                        return Err(protocol("invalid close code"));
                    }
                    let reason = std::str::from_utf8(reason).map_err(|_| Failure {
                        code: 1007,
                        reason: "close reason is not UTF-8",
                    })?;
                    Incoming::Close(Some(code), reason)
                }
            },
        })
    }
}
