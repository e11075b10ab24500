//! Async handlers: their futures run as glommio tasks on the core while their connection
//! waits (it answers nothing more meanwhile, so responses leave in request order); each
//! posts its answer back to the loop, which writes it as the connection's deferred response.

use std::future::Future;
use std::pin::Pin;

use super::background::{DeferredLog, TaskDone};
use super::conn::{Conn, Deferring, Phase};
use super::connections::Connections;
use super::outflow::OutflowEnd;
use super::turn::Turn;
use super::{Application, TaskAnswer};

impl<A: Application> Connections<A> {
    /// Runs an async handler's future as a glommio task; its answer comes back through
    /// [`Connections::finish_tasks`]. The connection answers nothing more until then.
    pub(super) fn spawn_task(
        &mut self,
        turn: &Turn<'_>,
        conn: &mut Conn,
        task: Pin<Box<dyn Future<Output = TaskAnswer>>>,
        log: Option<Box<DeferredLog>>,
    ) {
        conn.deferring = Deferring::Task;
        let key = conn.key;
        let read_at = turn.now.clock.instant(conn.read_at);
        let answered = async move {
            TaskDone {
                key,
                answer: task.await,
                read_at,
                log,
            }
        };
        self.background.run_handler(answered);
    }

    /// Writes the responses async handlers have finished; true if there were any.
    pub(super) fn finish_tasks(&mut self, turn: &mut Turn<'_>) -> bool {
        let done = self.background.take_answers();
        if done.is_empty() {
            return false;
        }
        for task in done {
            let Some(mut conn) = self.table.take(task.key) else {
                // The connection ended while its handler worked (a streamed body's
                // producer, already started, learns it).
                if let Some(body) = task.answer.body {
                    body.end(OutflowEnd::Gone);
                }
                continue;
            };
            conn.deferring = Deferring::Nothing;
            if conn.phase == Phase::Open {
                self.write_late(turn, &mut conn, task);
                self.pump(turn, &mut conn, &[]);
                self.flush(turn, &mut conn);
            } else if let Some(body) = task.answer.body {
                body.end(OutflowEnd::Gone);
            }
            self.settle(turn, conn);
        }
        true
    }

    /// Writes a finished task's answer as the connection's deferred response; a streamed
    /// body follows its head (`outflow_io`).
    fn write_late(&mut self, turn: &mut Turn<'_>, conn: &mut Conn, mut task: TaskDone) {
        self.buffers.writes.lend(&mut conn.out);
        let before = conn.out.len();
        let draining = !turn.serving();
        let TaskAnswer { write, body } = task.answer;
        let (status, failed, coded) = conn.session.answer_deferred(&mut conn.out, draining, write);
        let written = (conn.out.len() - before) as u64;
        let metrics = &turn.reporting.metrics;
        metrics.record_one(status.class(), false, Some(task.read_at));
        if failed {
            metrics.counters.borrow_mut().handler_panics += 1;
        }
        if let Some(coded) = coded {
            let mut counters = metrics.counters.borrow_mut();
            counters.coded_responses += 1;
            counters.coding_bytes_saved += coded.saved;
            if let Some(line) = task.log.as_mut() {
                line.coding = Some(coded.coding);
            }
        }
        match body {
            Some(body) if !failed => {
                self.adopt_outflow(turn, conn, body, (status, written), task.log)
            }
            _ => {
                if let Some(body) = body {
                    body.end(OutflowEnd::NoBody);
                }
                if let (Some(line), Some(log)) = (&task.log, turn.reporting.log.as_mut()) {
                    line.record(log, status, written, None);
                }
            }
        }
    }
}
