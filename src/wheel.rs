//! A core's coarse deadlines: one timing wheel for all its connections, checked once per loop
//! turn, instead of a timer object per connection.
//!
//! Each connection has one deadline at a time (the driver decides which: keep-alive, head,
//! body, write, linger). Pushing it later, as every keep-alive request does, costs nothing
//! here: the connection stays in the slot of the earlier deadline and, when that slot comes
//! round, is found not yet due and moved to its real one. Only an earlier deadline inserts.
//! Slots are [`TICK_MS`] wide, so a deadline fires up to one tick late, never early.

use std::time::Instant;

/// Width of one slot, in milliseconds: the precision of every timeout.
pub const TICK_MS: u64 = 10;

/// Slots in the wheel; a deadline further away than this many ticks is parked in the last
/// one and moved on when it comes round.
const SLOTS: usize = 4096;

/// A connection's place in the table, with the generation that tells a reused slot apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// Index in the connection table.
    pub index: u32,
    /// Generation of the record at that index.
    pub generation: u32,
}

/// Milliseconds since the core started, from one monotonic clock read.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose zero is `start` (the server's start, so that all cores agree).
    pub fn since(start: Instant) -> Clock {
        Clock { start }
    }

    /// Milliseconds since start.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

/// The wheel: slot `t % SLOTS` holds the connections whose earliest known deadline falls in
/// tick `t`.
pub struct Wheel {
    slots: Vec<Vec<(Key, u64)>>,
    /// One bit per slot, set while the slot holds entries: finding the next due tick reads
    /// at most `SLOTS / 64` words.
    occupied: Vec<u64>,
    /// The next tick to fire.
    cursor: u64,
    /// Entries queued, stale ones included.
    len: usize,
}

impl Wheel {
    /// An empty wheel starting at tick 0.
    pub fn new() -> Wheel {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: vec![0; SLOTS / 64],
            cursor: 0,
            len: 0,
        }
    }

    /// The tick a deadline at `ms` fires in: the first tick that starts at or after it.
    pub fn tick_of(ms: u64) -> u64 {
        ms.div_ceil(TICK_MS)
    }

    /// Queues `key` to be looked at in tick `tick` (clamped to the wheel's reach); returns the
    /// tick it was queued for.
    pub fn insert(&mut self, key: Key, tick: u64) -> u64 {
        let tick = tick.clamp(self.cursor, self.cursor + SLOTS as u64 - 1);
        let slot = (tick % SLOTS as u64) as usize;
        self.slots[slot].push((key, tick));
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
        tick
    }

    /// Moves every entry of the ticks up to `now_ms` into `due` (as `(key, tick)`), oldest
    /// tick first. Entries are not checked here: the caller compares each with its record.
    pub fn advance(&mut self, now_ms: u64, due: &mut Vec<(Key, u64)>) {
        let now_tick = now_ms / TICK_MS;
        while self.cursor <= now_tick && self.len > 0 {
            let index = (self.cursor % SLOTS as u64) as usize;
            let slot = &mut self.slots[index];
            let before = due.len();
            // Entries for a later round of the wheel stay.
            let cursor = self.cursor;
            slot.retain(|&(key, tick)| {
                if tick == cursor {
                    due.push((key, tick));
                    false
                } else {
                    true
                }
            });
            if slot.is_empty() {
                self.occupied[index / 64] &= !(1 << (index % 64));
            }
            self.len -= due.len() - before;
            self.cursor += 1;
        }
        if self.len == 0 {
            self.cursor = self.cursor.max(now_tick + 1);
        }
    }

    /// Milliseconds (since start) of the earliest tick holding an entry, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        // Every entry lies within one turn of the wheel from the cursor: the first occupied
        // slot at or after the cursor's, wrapping round, is the earliest.
        let start = (self.cursor % SLOTS as u64) as usize;
        let words = SLOTS / 64;
        (0..=words).find_map(|step| {
            let word = (start / 64 + step) % words;
            let mut bits = self.occupied[word];
            if step == 0 {
                bits &= !0u64 << (start % 64);
            } else if step == words {
                bits &= !(!0u64 << (start % 64));
            }
            (bits != 0).then(|| {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                let ahead = (slot + SLOTS - start) % SLOTS;
                (self.cursor + ahead as u64) * TICK_MS
            })
        })
    }
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32) -> Key {
        Key {
            index,
            generation: 0,
        }
    }

    #[test]
    fn entries_fire_in_their_tick_and_not_before() {
        let mut wheel = Wheel::new();
        wheel.insert(key(1), Wheel::tick_of(25));
        wheel.insert(key(2), Wheel::tick_of(5));
        let mut due = Vec::new();
        wheel.advance(9, &mut due);
        assert!(due.is_empty());
        assert_eq!(wheel.next_due_ms(), Some(10));
        wheel.advance(10, &mut due);
        assert_eq!(due, vec![(key(2), 1)]);
        due.clear();
        wheel.advance(29, &mut due);
        assert!(due.is_empty());
        wheel.advance(30, &mut due);
        assert_eq!(due, vec![(key(1), 3)]);
        assert_eq!(wheel.next_due_ms(), None);
    }

    #[test]
    fn the_next_due_tick_is_found_across_the_wrap() {
        let mut wheel = Wheel::new();
        let mut due = Vec::new();
        wheel.advance((SLOTS as u64 - 10) * TICK_MS, &mut due);
        // The cursor is near the end of the slots: one entry before the wrap, one after.
        wheel.insert(key(1), SLOTS as u64 + 5);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 + 5) * TICK_MS));
        wheel.insert(key(2), SLOTS as u64 - 3);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 - 3) * TICK_MS));
        wheel.advance((SLOTS as u64 - 3) * TICK_MS, &mut due);
        assert_eq!(due, vec![(key(2), SLOTS as u64 - 3)]);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 + 5) * TICK_MS));
    }

    #[test]
    fn far_deadlines_are_clamped_to_the_reach_and_come_round() {
        let mut wheel = Wheel::new();
        let queued = wheel.insert(key(7), 10 * SLOTS as u64);
        assert_eq!(queued, SLOTS as u64 - 1);
        let mut due = Vec::new();
        wheel.advance(queued * TICK_MS, &mut due);
        assert_eq!(due, vec![(key(7), queued)]);
    }
}
