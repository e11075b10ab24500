//! What each upstream server did, counted on the core's metrics as it happens (see
//! `metrics::ServerCounts`): the places that pick a server, open or reuse a connection,
//! see a failure or a response head call these.

use super::super::connections::Connections;
use super::super::turn::Turn;
use super::super::Application;
use crate::metrics::ServerCounts;

impl<A: Application> Connections<A> {
    /// Counts something server `server` of upstream `group` did.
    pub(super) fn count_server(
        &self,
        turn: &Turn<'_>,
        group: usize,
        server: usize,
        count: impl FnOnce(&mut ServerCounts),
    ) {
        let slot = self.upstreams.groups[group].slot(server);
        turn.reporting.metrics.count_server(slot, count);
    }

    /// Server `server` of upstream `group` failed (refused, reset, timed out): counted, and
    /// taken out of the rotation when that makes `max_fails`.
    pub(super) fn server_failed(&mut self, turn: &Turn<'_>, group: usize, server: usize) {
        let down = self.upstreams.groups[group].failed(server, turn.now.ms);
        self.count_server(turn, group, server, |c| {
            c.failures += 1;
            c.marked_down += u64::from(down);
        });
    }

    /// Server `server` of upstream `group` answered with `status`: its failures are
    /// forgotten, its response counted.
    pub(super) fn server_answered(
        &mut self,
        turn: &Turn<'_>,
        group: usize,
        server: usize,
        status: u16,
    ) {
        self.upstreams.groups[group].answered(server);
        let class = usize::from(status / 100).min(5);
        self.count_server(turn, group, server, |c| c.responses[class] += 1);
    }
}
