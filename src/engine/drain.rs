//! Shutdown as a state of the core: stop accepting, let every connection finish its
//! exchange (the next response says `Connection: close`), give idle keep-alive connections
//! a grace period for the request their client may be sending, cut whatever is left at the
//! deadline, and leave the loop once no connection remains; then leave the core without
//! freeing anything the kernel still holds (`shard`'s `leave`).

use std::time::Duration;

use super::settings::Settings;

/// After the drain deadline cuts the remaining connections, how long their last sends get to
/// complete before the core stops anyway.
const CUT_GRACE_MS: u64 = 500;

/// When the core leaves: how long the kernel gets to give back every operation it holds,
/// once each is cancelled (cancelled sends and receives come back within microseconds).
pub(super) const EXIT_BOUND: Duration = Duration::from_secs(1);

/// Where the core is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Accepting and serving.
    Serving,
    /// No longer accepting; idle connections wait for their last request until
    /// `idle_until`, all are cut at `deadline`.
    Draining { deadline: u64, idle_until: u64 },
    /// The drain's deadline passed and every connection was cut; their last sends get until
    /// `until`.
    Cut { until: u64 },
    /// The core has left: nothing the kernel held is left in flight, or it was leaked, and
    /// every connection is closed.
    Left,
}

impl Lifecycle {
    /// A drain that begins at `now`: every connection's next response says
    /// `Connection: close` and ends it; an idle keep-alive connection waits
    /// `server.drain_idle_grace_ms` for that next request (closing it at once would reset a
    /// request already on its way); all of them are gone by `server.drain_timeout_ms`.
    pub(super) fn draining(now: u64, settings: &Settings) -> Lifecycle {
        Lifecycle::Draining {
            deadline: now + settings.drain_timeout_ms,
            idle_until: now + settings.drain_idle_grace_ms,
        }
    }

    /// The next drain deadline: the cut, or the end of the cut's grace.
    pub(super) fn deadline(self) -> Option<u64> {
        match self {
            Lifecycle::Serving | Lifecycle::Left => None,
            Lifecycle::Draining { deadline, .. } => Some(deadline),
            Lifecycle::Cut { until } => Some(until),
        }
    }

    /// At `now`, past a drain's deadline: the cut that follows (every connection left is to
    /// be cut).
    pub(super) fn cut_due(self, now: u64) -> Option<Lifecycle> {
        match self {
            Lifecycle::Draining { deadline, .. } if now >= deadline => Some(Lifecycle::Cut {
                until: deadline + CUT_GRACE_MS,
            }),
            _ => None,
        }
    }

    /// Whether a draining core is done at `now` with `open` connections: none left, or the
    /// cut's grace is over.
    pub(super) fn finished(self, open: usize, now: u64) -> bool {
        match self {
            Lifecycle::Serving => false,
            Lifecycle::Draining { .. } => open == 0,
            Lifecycle::Cut { until } => open == 0 || now >= until,
            Lifecycle::Left => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_cuts_at_its_deadline_and_ends_after_the_grace() {
        let life = Lifecycle::Draining {
            deadline: 1000,
            idle_until: 200,
        };
        assert_eq!(life.deadline(), Some(1000));
        assert!(!life.finished(3, 999));
        assert!(life.finished(0, 10));
        assert_eq!(life.cut_due(999), None);
        let cut = life.cut_due(1000).expect("the deadline passed");
        assert_eq!(cut, Lifecycle::Cut { until: 1500 });
        assert_eq!(cut.deadline(), Some(1500));
        assert!(!cut.finished(1, 1499));
        assert!(cut.finished(1, 1500));
        assert_eq!(cut.cut_due(5000), None);
        assert!(!Lifecycle::Serving.finished(0, u64::MAX));
        assert_eq!(Lifecycle::Serving.deadline(), None);
    }
}
