//! The handshake gate: how many TLS handshakes a core has under way, and the bound past
//! which its TLS listeners stop accepting (`tls.max_handshakes_per_core`), so that a flood
//! of ClientHellos costs bounded memory and waits in the kernel's queue.

/// The core's TLS handshakes under way, against their bound.
pub(super) struct HandshakeGate {
    under_way: usize,
    max: usize,
    /// The TLS listeners were stopped at the bound.
    paused: bool,
}

/// What the TLS listeners must do after a handshake began or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listening {
    /// Nothing changes.
    AsIs,
    /// The bound is reached: stop accepting.
    Pause,
    /// Room again: accept again.
    Resume,
}

impl HandshakeGate {
    pub(super) fn new(max: usize) -> HandshakeGate {
        HandshakeGate {
            under_way: 0,
            max,
            paused: false,
        }
    }

    /// A handshake begins.
    pub(super) fn begin(&mut self) -> Listening {
        self.under_way += 1;
        if self.under_way >= self.max && !self.paused {
            self.paused = true;
            return Listening::Pause;
        }
        Listening::AsIs
    }

    /// A handshake ended (done, failed, or its connection ended). The listeners resume once
    /// there is some room, so that they do not flap at the bound.
    pub(super) fn end(&mut self) -> Listening {
        self.under_way -= 1;
        if self.paused && self.under_way <= self.max * 3 / 4 {
            self.paused = false;
            return Listening::Resume;
        }
        Listening::AsIs
    }

    /// Whether the TLS listeners are held back at the bound.
    pub(super) fn paused(&self) -> bool {
        self.paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listeners_pause_at_the_bound_and_resume_with_room() {
        let mut gate = HandshakeGate::new(4);
        assert_eq!(gate.begin(), Listening::AsIs);
        assert_eq!(gate.begin(), Listening::AsIs);
        assert_eq!(gate.begin(), Listening::AsIs);
        assert_eq!(gate.begin(), Listening::Pause);
        assert!(gate.paused());
        assert_eq!(gate.end(), Listening::Resume, "3 under way of 4: room");
        assert_eq!(gate.begin(), Listening::Pause);
        assert_eq!(gate.end(), Listening::Resume);
        assert_eq!(gate.end(), Listening::AsIs);
        assert!(!gate.paused());
    }
}
