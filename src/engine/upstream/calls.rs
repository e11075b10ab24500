//! The core's tasks' calls to upstreams (posted through `outbound`), carried on links from
//! the same per-core pools as the proxy's relays: sent (again, once, when a failure before
//! any response byte makes that safe, by the proxy's own rule), the response head read as
//! `http::upstream_head` reads it, the body decoded (length, chunked, or until the close)
//! into the call's slot for its task. A task that does not take its body stops the link's
//! reads past [`CALL_HIGH_WATER`]; a task that gives up on its call has its link closed.

use std::rc::Rc;

use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use super::link::Link;
use super::outbound::{CallBody, CallSlot, CallStage, CallState, UpstreamError, CALL_HIGH_WATER};
use super::relay::MAX_UPSTREAM_HEAD;
use crate::http::chunked::ChunkedDecoder;
use crate::http::upstream_head::{parse_upstream_head, BodyFraming};

/// What bytes from the server did to a call.
enum Took {
    More,
    /// The response is complete; the connection may carry another.
    Done {
        reusable: bool,
    },
    Failed(UpstreamError),
}

impl<A: Application> Connections<A> {
    /// Takes what the core's tasks posted since the last turn: new calls go out, the links
    /// of calls given up are closed, paused links whose task took its bytes read again.
    /// Returns whether there was anything.
    pub(in crate::engine) fn take_calls(&mut self, turn: &mut Turn<'_>) -> bool {
        let [posted, dropped, resumed] = self.upstreams.door.take();
        let mut any = !(posted.is_empty() && dropped.is_empty() && resumed.is_empty());
        any |= self.take_streams(turn);
        for slot in posted {
            if slot.0.borrow().abandoned {
                continue;
            }
            let counters = &turn.reporting.metrics.counters;
            counters.borrow_mut().upstream_requests += 1;
            self.call_go(turn, slot, None);
        }
        for slot in dropped {
            if let Some(mut link) = self.link_of_call(&slot) {
                link.call = None;
                self.detach(turn, &mut link);
                self.settle_link(turn, link);
            }
            slot.0.borrow_mut().link = None;
        }
        for slot in resumed {
            if let Some(mut link) = self.link_of_call(&slot) {
                if link.paused {
                    link.paused = false;
                    self.arm_link_recv(turn, &mut link);
                }
                self.upstreams.links.put(link);
            }
        }
        any
    }

    /// The link carrying the call of `slot`, taken from the table.
    fn link_of_call(&mut self, slot: &Rc<CallSlot>) -> Option<Box<Link>> {
        let key = slot.0.borrow().link?;
        let link = self.upstreams.links.take(key)?;
        if link
            .call
            .as_ref()
            .is_some_and(|call| Rc::ptr_eq(call, slot))
        {
            return Some(link);
        }
        self.upstreams.links.put(link);
        None
    }

    /// Sends the call: on a pooled connection to the next server (not `avoid`, if another
    /// is up), or a new one.
    fn call_go(&mut self, turn: &mut Turn<'_>, slot: Rc<CallSlot>, avoid: Option<usize>) {
        let now = turn.now.ms;
        let mut call = slot.0.borrow_mut();
        call.tries += 1;
        let upstream = call.upstream;
        let Some(server) = self.upstreams.groups[upstream].choose(now, avoid) else {
            drop(call);
            return self.call_failed(turn, &slot, UpstreamError::Unavailable);
        };
        call.server = server;
        self.upstreams.groups[upstream].set_busy(server, true);
        self.count_server(turn, upstream, server, |c| c.requests += 1);
        if let Some(mut link) = self.pooled_link(turn, upstream, server) {
            call.link = Some(link.key);
            call.reused = true;
            call.sent_at = turn.now.reaped_at;
            self.send_request(turn, &mut link, &call.request);
            drop(call);
            link.call = Some(slot);
            return self.upstreams.links.put(link);
        }
        match self.open_link(turn, upstream, server) {
            Some(mut link) => {
                call.link = Some(link.key);
                call.reused = false;
                drop(call);
                link.call = Some(slot);
                self.upstreams.links.put(link);
            }
            None => {
                drop(call);
                self.upstreams.groups[upstream].set_busy(server, false);
                self.server_failed(turn, upstream, server);
                self.call_retry_or_fail(turn, &slot, true);
            }
        }
    }

    /// The call's link failed before any response byte: the call goes again (once) when
    /// that cannot make it happen twice, otherwise it fails.
    fn call_retry_or_fail(&mut self, turn: &mut Turn<'_>, slot: &Rc<CallSlot>, nothing_sent: bool) {
        let mut call = slot.0.borrow_mut();
        call.link = None;
        let again =
            call.tries < 2 && !call.abandoned && (nothing_sent || call.reused || call.idempotent);
        if !again {
            drop(call);
            return self.call_failed(turn, slot, UpstreamError::Unavailable);
        }
        let avoid = (!call.reused).then_some(call.server);
        let (upstream, server) = (call.upstream, call.server);
        drop(call);
        self.count_server(turn, upstream, server, |c| c.retries += 1);
        let counters = &turn.reporting.metrics.counters;
        counters.borrow_mut().upstream_retries += 1;
        self.call_go(turn, slot.clone(), avoid);
    }

    /// The call ends without a (complete) response.
    fn call_failed(&mut self, turn: &mut Turn<'_>, slot: &Rc<CallSlot>, error: UpstreamError) {
        let counters = &turn.reporting.metrics.counters;
        counters.borrow_mut().upstream_failures += 1;
        slot.fail(error);
    }

    /// The link's connect completed: the call's request goes out.
    pub(super) fn call_connected(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        let Some(slot) = link.call.clone() else {
            return;
        };
        let mut call = slot.0.borrow_mut();
        call.sent_at = turn.now.reaped_at;
        self.send_request(turn, link, &call.request);
    }

    /// The link failed before any response byte (its connect, or its send).
    pub(super) fn call_link_failed(&mut self, turn: &mut Turn<'_>, link: &mut Link, connect: bool) {
        let Some(slot) = link.call.take() else {
            return;
        };
        self.detach(turn, link);
        self.call_retry_or_fail(turn, &slot, connect);
    }

    /// Bytes of the call's response.
    pub(super) fn call_data(&mut self, turn: &mut Turn<'_>, link: &mut Link, data: &[u8]) {
        let Some(slot) = link.call.clone() else {
            return;
        };
        let took = self.feed_call(turn, link, &slot, data);
        self.call_outcome(turn, link, &slot, took);
    }

    /// The server closed the link, or it failed, while it carried the call.
    pub(super) fn call_ended(&mut self, turn: &mut Turn<'_>, link: &mut Link) {
        let Some(slot) = link.call.clone() else {
            return;
        };
        // Nothing of a response came: the server may have closed a pooled connection as
        // the request went out.
        let waiting = matches!(slot.0.borrow().stage, CallStage::Waiting);
        if waiting && link.input.is_empty() {
            return self.call_link_failed(turn, link, false);
        }
        let took = match &slot.0.borrow().stage {
            CallStage::Body(body) if body.framing == BodyFraming::UntilClose => {
                Took::Done { reusable: false }
            }
            CallStage::Body(_) => Took::Failed(UpstreamError::Truncated),
            _ => Took::Failed(UpstreamError::BadResponse),
        };
        self.call_outcome(turn, link, &slot, took);
    }

    /// Reads the response's bytes into the call's slot.
    fn feed_call(
        &mut self,
        turn: &mut Turn<'_>,
        link: &mut Link,
        slot: &Rc<CallSlot>,
        data: &[u8],
    ) -> Took {
        let mut call = slot.0.borrow_mut();
        if let CallStage::Body(_) = call.stage {
            return call_body(&mut call, data);
        }
        // The head, gathered in the link until it is whole; interim (1xx) heads skipped.
        link.input.extend_from_slice(data);
        loop {
            let head = match parse_upstream_head(&link.input, call.head_request, MAX_UPSTREAM_HEAD)
            {
                Ok(Some(head)) => head,
                Ok(None) => return Took::More,
                Err(_) => return Took::Failed(UpstreamError::BadResponse),
            };
            if head.status == 101 {
                return Took::Failed(UpstreamError::BadResponse);
            }
            if (100..200).contains(&head.status) {
                link.input.drain(..head.len);
                continue;
            }
            self.server_answered(turn, link.group, link.server, head.status);
            let waited = turn.now.reaped_at.saturating_duration_since(call.sent_at);
            turn.reporting.metrics.record_upstream(waited);
            let rest = link.input.split_off(head.len);
            call.status = head.status;
            call.head = std::mem::take(&mut link.input);
            call.stage = CallStage::Body(CallBody {
                framing: head.framing,
                left: match head.framing {
                    BodyFraming::Length(n) => n,
                    _ => 0,
                },
                chunks: ChunkedDecoder::new(u64::MAX, MAX_UPSTREAM_HEAD),
                reusable: head.reusable,
            });
            return call_body(&mut call, &rest);
        }
    }

    /// Acts on what the bytes did: the task is woken; a link whose task has a body's worth
    /// to take stops reading; a complete response gives the link back to its pool.
    fn call_outcome(
        &mut self,
        turn: &mut Turn<'_>,
        link: &mut Link,
        slot: &Rc<CallSlot>,
        took: Took,
    ) {
        match took {
            Took::More => {
                let mut call = slot.0.borrow_mut();
                if call.body.len() >= CALL_HIGH_WATER {
                    call.paused = true;
                    link.paused = true;
                    self.cancel_link_recv(turn, link);
                }
                drop(call);
                slot.wake();
            }
            Took::Done { reusable } => {
                let mut call = slot.0.borrow_mut();
                call.stage = CallStage::Done;
                call.link = None;
                drop(call);
                link.call = None;
                let keep = reusable && !link.ended;
                self.release_link(turn, link, keep);
                slot.wake();
            }
            Took::Failed(error) => {
                link.call = None;
                self.detach(turn, link);
                self.call_failed(turn, slot, error);
            }
        }
    }
}

/// Body bytes of a call's response, decoded into its slot.
fn call_body(call: &mut CallState, data: &[u8]) -> Took {
    let CallStage::Body(body) = &mut call.stage else {
        return Took::Failed(UpstreamError::BadResponse);
    };
    let reusable = body.reusable;
    match body.framing {
        BodyFraming::None => Took::Done {
            reusable: reusable && data.is_empty(),
        },
        BodyFraming::Length(_) => {
            let take = (body.left as usize).min(data.len());
            call.body.extend_from_slice(&data[..take]);
            body.left -= take as u64;
            match body.left {
                0 => Took::Done {
                    reusable: reusable && take == data.len(),
                },
                _ => Took::More,
            }
        }
        BodyFraming::Chunked => match body.chunks.feed(data, Some(&mut call.body)) {
            Ok(used) if body.chunks.is_done() => Took::Done {
                reusable: reusable && used == data.len(),
            },
            Ok(_) => Took::More,
            Err(_) => Took::Failed(UpstreamError::BadResponse),
        },
        BodyFraming::UntilClose => {
            call.body.extend_from_slice(data);
            Took::More
        }
    }
}
