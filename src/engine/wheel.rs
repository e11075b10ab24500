//! A core's coarse deadlines: one timing wheel for all its connections, checked once per loop
//! turn, instead of a timer object per connection.
//!
//! Each connection has one deadline at a time (the engine decides which: keep-alive, head,
//! body, write, linger). The wheel links connections by their table index into one list per
//! slot, with the links in an array beside the table: queueing, moving and removing are a few
//! index writes, nothing is allocated per connection, and a closed connection leaves nothing
//! behind. Pushing a deadline later, as every keep-alive request does, costs nothing: the
//! connection stays in the slot of the earlier deadline and, when that slot comes round, is
//! found not yet due and queued again for its real one. Only an earlier deadline moves it.
//! Slots are [`TICK_MS`] wide, so a deadline fires up to one tick late, never early.

use std::time::{Duration, Instant};

/// Width of one slot, in milliseconds: the precision of every timeout.
pub(crate) const TICK_MS: u64 = 10;

/// Slots in the wheel; a deadline further away than this many ticks is queued in the last
/// one within reach and queued again when it comes round.
const SLOTS: usize = 4096;

/// No index: the end of a list.
const NIL: u32 = u32::MAX;

/// Not queued.
const UNQUEUED: u32 = u32::MAX;

/// Milliseconds since the server started, from one monotonic clock read.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose zero is `start` (the server's start, so that all cores agree).
    pub(super) fn since(start: Instant) -> Clock {
        Clock { start }
    }

    /// Milliseconds since start.
    pub(super) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// `at` as nanoseconds since start: an instant in 8 bytes rather than an `Instant`'s 16,
    /// for records that keep one (584 years of range, no precision lost).
    pub(super) fn stamp(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// The instant a [`Clock::stamp`] stands for.
    pub(super) fn instant(&self, stamp: u64) -> Instant {
        self.start + Duration::from_nanos(stamp)
    }
}

/// Where one connection sits in the wheel: 12 bytes per table slot.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    /// The slot it is queued in, or [`UNQUEUED`]. Its tick follows: every queued tick lies
    /// within one turn of the wheel from the cursor (see [`Wheel::tick_in`]).
    slot: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    slot: UNQUEUED,
};

/// The wheel: slot `t % SLOTS` lists the connections whose earliest known deadline falls in
/// tick `t`. Every queued tick lies within one turn of the wheel from the cursor, so a slot
/// holds one tick's connections only.
pub(super) struct Wheel {
    heads: Vec<u32>,
    /// One bit per slot, set while the slot holds entries: finding the next due tick reads
    /// at most `SLOTS / 64` words.
    occupied: Vec<u64>,
    /// One link per table slot.
    links: Vec<Link>,
    /// The next tick to fire.
    cursor: u64,
    /// Connections queued.
    len: usize,
    /// Connections found due by the last [`Wheel::advance`], handed out by
    /// [`Wheel::next_due`] (capacity kept).
    due: Vec<u32>,
}

impl Wheel {
    /// An empty wheel starting at tick 0.
    pub(super) fn new() -> Wheel {
        Wheel {
            heads: vec![NIL; SLOTS],
            occupied: vec![0; SLOTS / 64],
            links: Vec::new(),
            cursor: 0,
            len: 0,
            due: Vec::new(),
        }
    }

    /// The tick a deadline at `ms` fires in: the first tick that starts at or after it.
    pub(super) fn tick_of(ms: u64) -> u64 {
        ms.div_ceil(TICK_MS)
    }

    /// Makes room for table indices below `capacity`, or gives back the room of those at
    /// and above it (which must not be queued).
    pub(super) fn fit(&mut self, capacity: usize) {
        if self.links.len() < capacity {
            self.links.resize(capacity, UNLINKED);
        } else if self.links.len() > capacity {
            debug_assert!(self.links[capacity..].iter().all(|l| l.slot == UNQUEUED));
            self.links.truncate(capacity);
            self.links.shrink_to_fit();
        }
    }

    /// Makes sure connection `index` is looked at no later than tick `tick` (clamped to the
    /// wheel's reach): queued there unless it already is for that tick or an earlier one.
    pub(super) fn schedule(&mut self, index: u32, tick: u64) {
        if self.links.len() <= index as usize {
            self.fit(index as usize + 1);
        }
        let tick = tick.clamp(self.cursor, self.cursor + SLOTS as u64 - 1);
        let queued = self.links[index as usize].slot;
        if queued != UNQUEUED && self.tick_in(queued) <= tick {
            return;
        }
        self.remove(index);
        let slot = (tick % SLOTS as u64) as usize;
        let head = self.heads[slot];
        self.links[index as usize] = Link {
            prev: NIL,
            next: head,
            slot: slot as u32,
        };
        if head != NIL {
            self.links[head as usize].prev = index;
        }
        self.heads[slot] = index;
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
    }

    /// Takes connection `index` out of the wheel, if it is in.
    pub(super) fn remove(&mut self, index: u32) {
        let Some(&link) = self.links.get(index as usize) else {
            return;
        };
        if link.slot == UNQUEUED {
            return;
        }
        if link.prev != NIL {
            self.links[link.prev as usize].next = link.next;
        } else {
            let slot = link.slot as usize;
            self.heads[slot] = link.next;
            if link.next == NIL {
                self.occupied[slot / 64] &= !(1 << (slot % 64));
            }
        }
        if link.next != NIL {
            self.links[link.next as usize].prev = link.prev;
        }
        self.links[index as usize] = UNLINKED;
        self.len -= 1;
    }

    /// Takes every connection of the ticks up to `now_ms` off the wheel, to be handed out
    /// by [`Wheel::next_due`], oldest tick first. The caller compares each with its real
    /// deadline (and may queue it again meanwhile).
    pub(super) fn advance(&mut self, now_ms: u64) {
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        self.advance_into(now_ms, &mut due);
        due.reverse();
        self.due = due;
    }

    /// The next connection [`Wheel::advance`] found due.
    pub(super) fn next_due(&mut self) -> Option<u32> {
        self.due.pop()
    }

    /// Moves every connection of the ticks up to `now_ms` into `due`, oldest tick first.
    fn advance_into(&mut self, now_ms: u64, due: &mut Vec<u32>) {
        let now_tick = now_ms / TICK_MS;
        while self.cursor <= now_tick && self.len > 0 {
            let slot = (self.cursor % SLOTS as u64) as usize;
            let mut index = std::mem::replace(&mut self.heads[slot], NIL);
            self.occupied[slot / 64] &= !(1 << (slot % 64));
            while index != NIL {
                let link = std::mem::replace(&mut self.links[index as usize], UNLINKED);
                debug_assert_eq!(u64::from(link.slot), self.cursor % SLOTS as u64);
                due.push(index);
                self.len -= 1;
                index = link.next;
            }
            self.cursor += 1;
        }
        if self.len == 0 {
            self.cursor = self.cursor.max(now_tick + 1);
        }
    }

    /// The tick of the connections queued in `slot`: the one at or after the cursor (every
    /// queued tick lies in `cursor .. cursor + SLOTS`: `schedule` clamps to it, and `advance`
    /// empties a slot before the cursor passes it).
    fn tick_in(&self, slot: u32) -> u64 {
        let ahead = (slot as usize + SLOTS - (self.cursor % SLOTS as u64) as usize) % SLOTS;
        self.cursor + ahead as u64
    }

    /// Milliseconds (since start) of the earliest tick holding a connection, if any.
    pub(super) fn next_due_ms(&self) -> Option<u64> {
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

    /// Connections queued.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fire_in_their_tick_and_not_before() {
        let mut wheel = Wheel::new();
        wheel.schedule(1, Wheel::tick_of(25));
        wheel.schedule(2, Wheel::tick_of(5));
        let mut due = Vec::new();
        wheel.advance_into(9, &mut due);
        assert!(due.is_empty());
        assert_eq!(wheel.next_due_ms(), Some(10));
        wheel.advance_into(10, &mut due);
        assert_eq!(due, vec![2]);
        due.clear();
        wheel.advance_into(29, &mut due);
        assert!(due.is_empty());
        wheel.advance_into(30, &mut due);
        assert_eq!(due, vec![1]);
        assert_eq!(wheel.next_due_ms(), None);
    }

    #[test]
    fn a_later_deadline_stays_put_and_an_earlier_one_moves() {
        let mut wheel = Wheel::new();
        wheel.schedule(3, 10);
        wheel.schedule(3, 50);
        assert_eq!(wheel.next_due_ms(), Some(100));
        wheel.schedule(3, 4);
        assert_eq!(wheel.next_due_ms(), Some(40));
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn a_removed_connection_leaves_nothing_behind() {
        let mut wheel = Wheel::new();
        for index in 0..100 {
            wheel.schedule(index, 7 + u64::from(index % 3));
        }
        for index in (0..100).filter(|i| i % 2 == 0) {
            wheel.remove(index);
        }
        assert_eq!(wheel.len(), 50);
        let mut due = Vec::new();
        wheel.advance_into(10 * TICK_MS, &mut due);
        due.sort_unstable();
        assert_eq!(due, (0..100).filter(|i| i % 2 == 1).collect::<Vec<_>>());
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_due_ms(), None);
    }

    #[test]
    fn the_next_due_tick_is_found_across_the_wrap() {
        let mut wheel = Wheel::new();
        let mut due = Vec::new();
        wheel.advance_into((SLOTS as u64 - 10) * TICK_MS, &mut due);
        // The cursor is near the end of the slots: one entry before the wrap, one after.
        wheel.schedule(1, SLOTS as u64 + 5);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 + 5) * TICK_MS));
        wheel.schedule(2, SLOTS as u64 - 3);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 - 3) * TICK_MS));
        wheel.advance_into((SLOTS as u64 - 3) * TICK_MS, &mut due);
        assert_eq!(due, vec![2]);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 + 5) * TICK_MS));
    }

    #[test]
    fn a_queued_tick_is_read_back_from_its_slot_across_the_wrap() {
        assert_eq!(std::mem::size_of::<Link>(), 12);
        let mut wheel = Wheel::new();
        let mut due = Vec::new();
        wheel.advance_into((SLOTS as u64 - 2) * TICK_MS, &mut due);
        // Queued past the wrap: slot 3, tick SLOTS + 3.
        wheel.schedule(4, SLOTS as u64 + 3);
        wheel.schedule(4, SLOTS as u64 + 9);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 + 3) * TICK_MS));
        wheel.schedule(4, SLOTS as u64 - 1);
        assert_eq!(wheel.next_due_ms(), Some((SLOTS as u64 - 1) * TICK_MS));
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn far_deadlines_are_clamped_to_the_reach_and_come_round() {
        let mut wheel = Wheel::new();
        wheel.schedule(7, 10 * SLOTS as u64);
        let reach = SLOTS as u64 - 1;
        assert_eq!(wheel.next_due_ms(), Some(reach * TICK_MS));
        let mut due = Vec::new();
        wheel.advance_into(reach * TICK_MS, &mut due);
        assert_eq!(due, vec![7]);
    }
}
