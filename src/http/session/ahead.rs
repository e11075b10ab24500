//! What a session does ahead of its turn: answering a pipelined request the service queues
//! while earlier deferred answers are still due, and a request whose body is still
//! arriving, answered at its head and its body handed on as it comes.

use super::*;

/// Whether a chunked body ends within `input` (checked, not kept).
pub(super) fn chunked_within(input: &[u8], limits: &Limits) -> bool {
    let mut decoder = ChunkedDecoder::new(limits.max_body_bytes, limits.max_head_bytes);
    decoder.feed(input, None).is_ok() && decoder.is_done()
}

impl Session {
    /// Whether the complete request at the start of `input` may be answered while deferred
    /// responses are still due: the session is between requests, fewer than
    /// [`MAX_DEFERRED`] are due, the request has no body, and the service queues it.
    pub(super) fn queues_next<S: Service>(
        &self,
        input: &[u8],
        service: &mut S,
        limits: &Limits,
    ) -> bool {
        let due = 1 + usize::from(self.queued);
        if self.state != State::Head || due >= MAX_DEFERRED {
            return false;
        }
        let mut scanned = 0;
        let Ok(Some(head)) = parse_head(input, &mut scanned, limits) else {
            return false;
        };
        if !matches!(head.framing, Framing::Empty) {
            return false;
        }
        let request = RawRequest::whole(&head, &input[..head.len], &[]);
        service.queues(&request)
    }

    /// The next queued deferred response is due: `framing`, handed out with its
    /// [`Deferral`], is how [`Session::answer_deferred`] will write it.
    pub fn take_turn(&mut self, framing: DeferredFraming) {
        if self.queued > 0 && self.deferred_framing.is_none() {
            self.queued -= 1;
            self.deferred_framing = Some(framing);
        }
    }

    /// A request answered at its head is still reading its body ([`Service::streams_body`]).
    pub fn is_streaming(&self) -> bool {
        self.state == State::Body && self.held.as_ref().is_some_and(|h| h.streams)
    }

    /// Moves the bytes of a streamed body read so far (decoded, for a chunked one) to the
    /// end of `into`.
    pub fn take_streamed(&mut self, into: &mut Vec<u8>) {
        if let Some(held) = self.held.as_mut().filter(|h| h.streams) {
            into.extend_from_slice(&held.bytes);
            held.bytes.clear();
        }
    }
}
