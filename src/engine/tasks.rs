//! Async handlers: their futures run as glommio tasks on the core while their connection
//! waits (it answers nothing more meanwhile, so responses leave in request order); each
//! posts its answer back to the loop, which writes it as the connection's deferred response.

use std::future::Future;
use std::pin::Pin;

use super::background::{DeferredLog, TaskDone};
use super::conn::{Conn, Deferring, Phase};
use super::shard::Shard;
use super::{Application, DeferredResponse};

impl<A: Application> Shard<A> {
    /// Runs an async handler's future as a glommio task; its answer comes back through
    /// `tasks_done`. The connection answers nothing more until then.
    pub(super) fn spawn_task(
        &mut self,
        conn: &mut Conn,
        task: Pin<Box<dyn Future<Output = DeferredResponse>>>,
        log: Option<Box<DeferredLog>>,
    ) {
        conn.deferring = Deferring::Task;
        self.background.tasks += 1;
        let key = conn.key;
        let read_at = self.now.clock.instant(conn.read_at);
        let answered = async move {
            TaskDone {
                key,
                answer: task.await,
                read_at,
                log,
            }
        };
        self.background
            .tasks_done
            .spawn(&self.parking.wake, answered);
    }

    /// Writes the responses async handlers have finished; true if there were any.
    pub(super) fn finish_tasks(&mut self) -> bool {
        let done = self.background.tasks_done.take();
        if done.is_empty() {
            return false;
        }
        for task in done {
            self.background.tasks -= 1;
            let Some(mut conn) = self.table.take(task.key) else {
                // The connection ended while its handler worked.
                continue;
            };
            conn.deferring = Deferring::Nothing;
            if conn.phase == Phase::Open {
                self.write_late(&mut conn, task);
                self.pump(&mut conn, &[]);
                self.flush(&mut conn);
            }
            self.settle(conn);
        }
        true
    }

    /// Writes a finished task's answer as the connection's deferred response.
    fn write_late(&mut self, conn: &mut Conn, task: TaskDone) {
        self.buffers.writes.lend(&mut conn.out);
        let before = conn.out.len();
        let draining = !self.is_serving();
        let (status, failed) = conn
            .session
            .answer_deferred(&mut conn.out, draining, task.answer);
        if let (Some(line), Some(log)) = (&task.log, self.reporting.log.as_mut()) {
            line.record(log, status, (conn.out.len() - before) as u64);
        }
        let metrics = &self.reporting.metrics;
        metrics.record_one(status.class(), false, Some(task.read_at));
        if failed {
            metrics.counters.borrow_mut().handler_panics += 1;
        }
    }
}
