//! What a completion is for: the `user_data` of every SQE the engine queues, and the key
//! that names a connection in it.
//!
//! The low 32 bits name the connection's slot in the table, the next 24 its generation (so a
//! completion that arrives after its connection closed and the slot was reused is ignored),
//! then three bits the operation, one bit the ring's own ([`super::ring::TRACKED`]: counted
//! in flight), and the top four, for receives, which arming of the receive it was (for an
//! upstream connection's operations: which operation, and its receive's arming).

/// A connection's place in the table, with the generation that tells a reused slot apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// Index in the table.
    pub(crate) index: u32,
    /// Generation of the record at that index.
    pub(crate) generation: u32,
}

/// The operation a completion finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// A multishot accept on listener `key.index`.
    Accept,
    /// A multishot receive.
    Recv,
    /// A send.
    Send,
    /// The poll on the stop socket: the server wants this core to drain.
    Stop,
    /// The ring timeout that bounds a park through glommio.
    Timer,
    /// Completions nobody waits for (cancels, closes).
    Ignore,
    /// An operation of an upstream connection (`key` names it in the links' table; the
    /// epoch bits say which: `upstream::LinkOp`).
    Upstream,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Accept => 1,
            Op::Recv => 2,
            Op::Send => 3,
            Op::Stop => 4,
            Op::Timer => 5,
            Op::Ignore => 6,
            Op::Upstream => 7,
        }
    }
}

/// No connection (for the operations that are not a connection's).
pub(super) const NO_KEY: Key = Key {
    index: 0,
    generation: 0,
};

/// The `user_data` of `op` on `key`; `epoch` tells the armings of a receive apart.
pub(super) fn token(op: Op, key: Key, epoch: u8) -> u64 {
    (op.code() | u64::from(epoch & 0xf) << 4) << 56
        | u64::from(key.generation & 0xff_ffff) << 32
        | u64::from(key.index)
}

/// Reads a `user_data` back.
pub(super) fn untoken(user_data: u64) -> (Op, Key, u8) {
    let op = match (user_data >> 56) & 0x7 {
        1 => Op::Accept,
        2 => Op::Recv,
        3 => Op::Send,
        4 => Op::Stop,
        5 => Op::Timer,
        7 => Op::Upstream,
        _ => Op::Ignore,
    };
    let key = Key {
        index: user_data as u32,
        generation: (user_data >> 32) as u32 & 0xff_ffff,
    };
    (op, key, (user_data >> 60) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let key = Key {
            index: 123_456,
            generation: 0xab_cdef,
        };
        for op in [
            Op::Accept,
            Op::Recv,
            Op::Send,
            Op::Stop,
            Op::Timer,
            Op::Ignore,
        ] {
            for epoch in [0, 7, 15] {
                let user_data = token(op, key, epoch);
                assert_eq!(user_data & super::super::ring::TRACKED, 0, "the ring's bit");
                assert_eq!(untoken(user_data), (op, key, epoch));
                let tracked = user_data | super::super::ring::TRACKED;
                assert_eq!(untoken(tracked), (op, key, epoch));
            }
        }
    }
}
