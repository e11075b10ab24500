//! What the loop does with streamed responses (see `outflow`): adopts a body once its head
//! is written, takes its producer's bytes into the connection's output as room allows,
//! writes the last chunk when the producer finishes, and ends the body when the connection
//! ends. The requests pipelined behind a streamed response wait for it.

use std::rc::Rc;

use super::background::DeferredLog;
use super::conn::{Conn, Deferring};
use super::connections::Connections;
use super::outflow::{Outflow, OutflowEnd, OutflowSlot};
use super::turn::Turn;
use super::Application;
use crate::http::chunk_out::{push_chunk, push_last_chunk};
use crate::http::session::OUTPUT_HIGH_WATER;
use crate::http::status::Status;

impl<A: Application> Connections<A> {
    /// The head of `conn`'s response was written (`answered`: its status and its bytes) and
    /// its body is `slot`'s: the connection waits for it, or, when the response has no body,
    /// the producer is told so at once.
    pub(super) fn adopt_outflow(
        &mut self,
        turn: &mut Turn<'_>,
        conn: &mut Conn,
        slot: Rc<OutflowSlot>,
        answered: (Status, u64),
        log: Option<Box<DeferredLog>>,
    ) {
        let wanted = slot.0.borrow().wanted;
        if !wanted {
            slot.end(OutflowEnd::NoBody);
            if let (Some(line), Some(out)) = (&log, turn.reporting.log.as_mut()) {
                line.record(out, answered.0, answered.1, None);
            }
            return;
        }
        self.outflows.adopt(&slot, conn.key);
        conn.deferring = Deferring::Stream(Box::new(Outflow {
            slot,
            status: answered.0,
            bytes: answered.1,
            log,
        }));
        self.pull_outflow(turn, conn);
    }

    /// Takes the streamed bodies whose producers wrote or finished; true if there were any.
    pub(super) fn take_outflows(&mut self, turn: &mut Turn<'_>) -> bool {
        let mut stirred = std::mem::take(&mut self.stirred);
        self.outflows.take(&mut stirred);
        let any = !stirred.is_empty();
        for slot in stirred.drain(..) {
            let owner = {
                let mut state = slot.0.borrow_mut();
                state.stirred = false;
                state.owner.as_ref().map(|(key, _)| *key)
            };
            if let Some(mut conn) = owner.and_then(|key| self.table.take(key)) {
                self.pull_outflow(turn, &mut conn);
                self.settle(turn, conn);
            }
        }
        self.stirred = stirred;
        any
    }

    /// Moves the producer's pending bytes into the output while it is below the high-water
    /// mark (waking the producer), ends the response when the producer finished or failed,
    /// and sends what there is.
    pub(super) fn pull_outflow(&mut self, turn: &mut Turn<'_>, conn: &mut Conn) {
        let Deferring::Stream(flow) = &mut conn.deferring else {
            return;
        };
        let mut state = flow.slot.0.borrow_mut();
        state.finish_coding();
        let before = conn.out.len();
        let mut writer = None;
        if !state.pending.is_empty() && conn.out.len() < OUTPUT_HIGH_WATER {
            self.buffers.writes.lend(&mut conn.out);
            if state.chunked {
                push_chunk(&mut conn.out, &state.pending);
            } else {
                conn.out.extend_from_slice(&state.pending);
            }
            state.pending.clear();
            writer = state.writer.take();
        }
        let done = state.pending.is_empty() && state.finished;
        if done && state.chunked {
            self.buffers.writes.lend(&mut conn.out);
            let trailers = &state.trailers;
            push_last_chunk(&mut conn.out, |out| {
                for (name, value) in trailers {
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b": ");
                    out.extend_from_slice(value.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            });
        }
        let failed = state.failed;
        drop(state);
        flow.bytes += (conn.out.len() - before) as u64;
        if let Some(writer) = writer {
            writer.wake();
        }
        if done || failed {
            if failed {
                // Cut short: what went out stays a response the client can tell is not
                // whole (no last chunk, or a close before the promised end).
                conn.session.abort();
            }
            self.end_outflow(turn, conn, OutflowEnd::Gone);
            if !failed {
                // The requests pipelined behind it are answered now.
                self.pump(turn, conn, &[]);
            }
        }
        self.flush(turn, conn);
    }

    /// The streamed response ends (finished, failed, or its connection gone): its producer
    /// is told (`why`), and the access log gets its line.
    pub(super) fn end_outflow(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, why: OutflowEnd) {
        let Deferring::Stream(flow) = std::mem::replace(&mut conn.deferring, Deferring::Nothing)
        else {
            return;
        };
        flow.slot.end(why);
        if let (Some(line), Some(log)) = (&flow.log, turn.reporting.log.as_mut()) {
            line.record(log, flow.status, flow.bytes, None);
        }
    }
}
