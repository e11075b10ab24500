//! What the protocol asks of whoever answers requests ([`Service`]), and what a session tells
//! its caller after each call ([`Progress`]).

use super::request::RawRequest;
use super::response::{Persistence, ResponseWriter};
use super::status::Status;

/// The application behind a session: answers one complete request at a time.
pub trait Service {
    /// What the service leaves for the caller to finish: the bytes of a file behind a head
    /// already written, or a whole response still being made.
    type Deferred;

    /// Whether the body of `request` (whose head alone is given, with an empty body) is to
    /// be gathered for [`Service::call`]; when not, it is read and dropped. Asked only for a
    /// body that did not arrive with its head.
    fn wants_body(&mut self, _request: &RawRequest<'_>) -> bool {
        true
    }

    /// Whether `request`, whose body did not come with its head, is to be answered now, at
    /// its head, its body following as it arrives (`Session::take_streamed`) rather than
    /// gathered first: a proxied request, whose body goes upstream as it comes. When the
    /// session streams it, `call` gets the request with an empty body.
    fn streams_body(&mut self, _request: &RawRequest<'_>) -> bool {
        false
    }

    /// Whether `request` (complete, with no body) would be answered by a whole deferred
    /// response that may be started while an earlier deferred one is still being made (a
    /// proxied `GET`, sent upstream behind the one before it). The session then answers it
    /// rather than waiting, and its response follows the earlier ones in order.
    fn queues(&mut self, _request: &RawRequest<'_>) -> bool {
        false
    }

    /// Answers `request` into `response`. Returns a deferred part when the answer is not
    /// all written: with a head written ([`ResponseWriter::sent`] set) the deferred part is
    /// the body it promises; with none, it is the whole response, which the caller writes
    /// later through `Session::answer_deferred`.
    fn call(
        &mut self,
        request: &RawRequest<'_>,
        response: &mut ResponseWriter,
    ) -> Option<Self::Deferred>;
}

/// What one call to `Session::process` did; `D` is its service's deferred part.
#[derive(Debug)]
pub struct Progress<D> {
    /// Input bytes used; the caller drops them from its buffer.
    pub consumed: usize,
    /// Responses completed (final responses, not `100 Continue`, nor a deferred one still to
    /// come).
    pub responses: u32,
    /// Of those, how many were errors that end the connection.
    pub errors: u32,
    /// Of those, how many the service failed to make (a handler panicked).
    pub failures: u32,
    /// Of those, how many had their body from a cache of small files.
    pub cache_hits: u32,
    /// Of those, how many had their body in a content coding.
    pub coded: u32,
    /// Body bytes those codings saved.
    pub coding_saved: u64,
    /// Final responses by status class: index 1 for 1xx … 5 for 5xx.
    pub by_class: [u32; 6],
    /// The status of the error response that ended the connection, if one did.
    pub error: Option<Status>,
    /// What the service left to finish after the last response it answered: the session
    /// answers nothing more until the caller has dealt with it.
    pub deferred: Option<Deferral<D>>,
}

impl<D> Default for Progress<D> {
    fn default() -> Progress<D> {
        Progress {
            consumed: 0,
            responses: 0,
            errors: 0,
            failures: 0,
            cache_hits: 0,
            coded: 0,
            coding_saved: 0,
            by_class: [0; 6],
            error: None,
            deferred: None,
        }
    }
}

/// What a service left to finish ([`Service::call`]), handed back by `Session::process`
/// rather than kept in the session: a connection between requests keeps nothing of it.
#[derive(Debug)]
pub struct Deferral<D> {
    /// The service's deferred part.
    pub what: D,
    /// Where the head of the response it completes starts in the output buffer (a file's
    /// body follows it). A service that wrote no head deferred a whole response, to be
    /// written with `Session::answer_deferred`.
    pub head: usize,
    /// For a whole response queued behind another still due ([`Service::queues`]): how it is
    /// to be written, for the caller to give back (`Session::take_turn`) when its turn comes.
    pub queued: Option<DeferredFraming>,
}

/// How a deferred response is to be written, as decided when its request was answered.
/// That of a queued one ([`Service::queues`]) is handed to the caller, who gives it back
/// when its turn comes (`Session::take_turn`).
#[derive(Clone, Copy, Debug)]
pub struct DeferredFraming {
    pub(super) head_only: bool,
    pub(super) http10: bool,
    pub(super) persistence: Persistence,
}
