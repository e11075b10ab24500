//! The memory a core's sessions hold for request bodies being gathered, kept within
//! `http.body_buffer_bytes_per_core`: the connection that takes the core past it is refused
//! (503) instead of the core growing.

/// Bytes of gathered bodies on one core, and their bound.
pub(super) struct BodyBudget {
    gathered: usize,
    limit: usize,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub(super) fn new(limit: usize) -> BodyBudget {
        BodyBudget { gathered: 0, limit }
    }

    /// A connection's gathered bytes went from `before` to `after`. Returns whether the core
    /// is now over its bound with this connection holding some (it is then to be refused).
    pub(super) fn update(&mut self, before: usize, after: usize) -> bool {
        self.gathered = self.gathered - before + after;
        after > 0 && self.gathered > self.limit
    }

    /// A connection let go of `bytes` (its body was dropped, or it closed).
    pub(super) fn release(&mut self, bytes: usize) {
        self.gathered -= bytes;
    }
}
