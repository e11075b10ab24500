//! Compression of handlers' bodies on the fly: one core's [`Compressor`] decides, for a
//! response a handler made, whether its body goes out coded (the request accepts a coding
//! offered, the type is one of `compression.types`, the body is at least `min_bytes`, no
//! `Content-Encoding` was set, the handler did not opt out, the status has a body, the
//! request is not a `HEAD`), and codes a whole body with the core's reused coders into a
//! buffer it keeps. A streamed body gets a coder of its own ([`StreamCoder`]), which codes
//! and flushes each part its producer sends.
//!
//! A response whose body could have been coded for another request says `Vary:
//! Accept-Encoding`, coded or not. Static files are the files layer's business (they are
//! cached coded); this file serves `Response` and `Reply`.

use std::cell::RefCell;
use std::rc::Rc;

use crate::config::CompressionConfig;
use crate::files::CodingPolicy;
use crate::http::coding::{Coding, Ranked};
use crate::http::encoder::Encoder;
use crate::http::request::RawRequest;
use crate::http::response::ResponseWriter;
use crate::http::status::Status;
use crate::http::stream_coder::StreamCoder;

/// The field a response that could have been coded otherwise carries.
pub(crate) const VARY: (&str, &str) = ("Vary", "Accept-Encoding");

/// A coded body's buffer that grew past this is freed after its response rather than kept
/// for the core's next one.
const CODED_KEEP_BYTES: usize = 1 << 20;

/// A core's compressor, shared by its service and its async handlers' answers.
pub(crate) type SharedCompressor = Rc<RefCell<Compressor>>;

/// How a handler's body goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// As it is, with no word about codings: it could not have been coded for any request.
    Untouched,
    /// As it is, with `Vary: Accept-Encoding`: another request could have had it coded.
    Identity,
    /// Coded, with `Content-Encoding` and `Vary`.
    Coded(Coding),
}

/// What a handler's response says of its body, for the choice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Traits<'a> {
    pub(crate) status: Status,
    /// Its `Content-Type`, if it has one.
    pub(crate) content_type: Option<&'a str>,
    /// The handler set `Content-Encoding` itself, or opted out of compression.
    pub(crate) exempt: bool,
    /// The body's length; none for a streamed body.
    pub(crate) len: Option<usize>,
}

/// One core's compression of handlers' bodies.
#[derive(Debug)]
pub(crate) struct Compressor {
    policy: CodingPolicy,
    encoder: Encoder,
    /// The coded body, before it goes behind its head.
    coded: Vec<u8>,
}

impl Compressor {
    /// As `settings` say.
    pub(crate) fn new(settings: &CompressionConfig) -> Compressor {
        Compressor::with(CodingPolicy::new(settings))
    }

    /// Nothing coded.
    pub(crate) fn off() -> Compressor {
        Compressor::with(CodingPolicy::off())
    }

    fn with(policy: CodingPolicy) -> Compressor {
        Compressor {
            encoder: Encoder::new(policy.levels()),
            policy,
            coded: Vec::new(),
        }
    }

    /// Shared by the core's service and its tasks.
    pub(crate) fn shared(self) -> SharedCompressor {
        Rc::new(RefCell::new(self))
    }

    /// The codings offered that `request` accepts, best first (none when compression is off).
    pub(crate) fn ranked(&self, request: &RawRequest<'_>) -> Ranked {
        self.policy.ranked(request)
    }

    /// How a body with `traits` goes out to a request that accepts `ranked` (asked only when
    /// the body could be coded at all), `head_only` for a `HEAD`.
    pub(crate) fn choose(
        &self,
        traits: Traits<'_>,
        head_only: bool,
        ranked: impl FnOnce() -> Ranked,
    ) -> Choice {
        if !self.policy.enabled() {
            return Choice::Untouched;
        }
        let codable = !traits.exempt
            && !traits.status.has_no_body()
            && traits.status != Status::PARTIAL_CONTENT
            && traits
                .len
                .is_none_or(|len| len as u64 >= self.policy.min_bytes())
            && traits
                .content_type
                .is_some_and(|t| self.policy.compresses(t));
        if !codable {
            return Choice::Untouched;
        }
        if head_only {
            // Not coded (the length is not known without coding the body), but varies.
            return Choice::Identity;
        }
        match ranked().as_slice().first() {
            Some(&coding) => Choice::Coded(coding),
            None => Choice::Identity,
        }
    }

    /// Writes the head (`status`, `reason`, `content_type` if it goes with the head) and the
    /// whole `body` as `choice` says. A coded body no shorter than the body goes out as it
    /// is.
    pub(crate) fn send_whole(
        &mut self,
        writer: &mut ResponseWriter,
        choice: Choice,
        head: (Status, Option<&[u8]>, Option<&str>),
        body: &[u8],
    ) {
        let (status, reason, content_type) = head;
        let identity: &[(&str, &str)] = match choice {
            Choice::Untouched => &[],
            Choice::Identity => &[VARY],
            Choice::Coded(coding) => {
                self.coded.clear();
                let done = self.encoder.compress(coding, body, &mut self.coded);
                if done && self.coded.len() < body.len() {
                    let encoding = ("Content-Encoding", coding.token());
                    let fields = [encoding, VARY];
                    let len = self.coded.len() as u64;
                    writer.send_head_as(status, reason, content_type, &fields, len);
                    writer.out().extend_from_slice(&self.coded);
                    writer.mark_coded(coding.token(), (body.len() - self.coded.len()) as u64);
                    if self.coded.capacity() > CODED_KEEP_BYTES {
                        self.coded = Vec::new();
                    }
                    return;
                }
                &[VARY]
            }
        };
        writer.send_head_as(status, reason, content_type, identity, body.len() as u64);
        if writer.body_wanted() {
            writer.out().extend_from_slice(body);
        }
    }

    /// A coder for a streamed body in `coding` (none if one cannot be made: the body then
    /// goes out as it is).
    pub(crate) fn stream_coder(&self, coding: Coding) -> Option<StreamCoder> {
        StreamCoder::new(coding, self.policy.levels())
    }
}
