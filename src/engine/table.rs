//! The core's connection tables: records found by index, a generation per slot so a late
//! completion never reaches a reused slot, lowest free slot first so the table can shrink
//! back after a burst. Client connections (`Conn`) live in one, upstream connections
//! (`upstream::Link`) in another of the same kind.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::conn::Conn;
use super::token::Key;

/// Generations are 24 bits wide in `user_data` (see `token`).
const GENERATION_MASK: u32 = 0xff_ffff;

/// A record a table keeps: it knows its own key.
pub(super) trait Record {
    fn key(&self) -> Key;
}

impl Record for Conn {
    fn key(&self) -> Key {
        self.key
    }
}

/// The table. A record is taken out while an event is handled (so the core can be borrowed
/// beside it) and put back, or released when the connection is gone.
pub(super) struct Table<R = Conn> {
    slots: Vec<Option<Box<R>>>,
    generations: Vec<u32>,
    /// Free indices below `slots.len()`, lowest first.
    free: BinaryHeap<Reverse<u32>>,
    /// Where a slot made after a shrink starts its generations: above every generation a
    /// slot at that index ever had, so that no completion still in flight for a forgotten
    /// slot can match its successor.
    next_generation: u32,
    open: usize,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            generations: Vec::new(),
            free: BinaryHeap::new(),
            next_generation: 0,
            open: 0,
        }
    }
}

impl<R: Record> Table<R> {
    /// Records in the table.
    pub(super) fn open(&self) -> usize {
        self.open
    }

    /// Slots, used or not: how far the per-slot arrays beside the table must reach.
    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// A key for a new record (put it with [`Table::put`]).
    pub(super) fn new_key(&mut self) -> Key {
        self.open += 1;
        match self.free.pop() {
            Some(Reverse(index)) => Key {
                index,
                generation: self.generations[index as usize],
            },
            None => {
                self.slots.push(None);
                self.generations.push(self.next_generation);
                Key {
                    index: (self.slots.len() - 1) as u32,
                    generation: self.next_generation,
                }
            }
        }
    }

    /// The key of the record at `index`, if there is one in the table.
    pub(super) fn key_at(&self, index: u32) -> Option<Key> {
        let i = index as usize;
        self.slots.get(i)?.as_ref()?;
        Some(Key {
            index,
            generation: self.generations[i],
        })
    }

    /// Takes the record `key` names out of the table, if it is still there.
    pub(super) fn take(&mut self, key: Key) -> Option<Box<R>> {
        let index = key.index as usize;
        if self.generations.get(index) != Some(&key.generation) {
            return None;
        }
        self.slots[index].take()
    }

    /// Puts a record (back) in its slot.
    pub(super) fn put(&mut self, record: Box<R>) {
        let index = record.key().index as usize;
        self.slots[index] = Some(record);
    }

    /// The record `key` names, left in place.
    pub(super) fn peek(&self, key: Key) -> Option<&R> {
        let index = key.index as usize;
        if self.generations.get(index) != Some(&key.generation) {
            return None;
        }
        self.slots[index].as_deref()
    }

    /// Forgets a record that was taken out; late completions naming it are then ignored.
    pub(super) fn release(&mut self, key: Key) {
        let index = key.index as usize;
        let generation = (self.generations[index] + 1) & GENERATION_MASK;
        self.generations[index] = generation;
        self.next_generation = self.next_generation.max(generation);
        self.slots[index] = None;
        self.free.push(Reverse(key.index));
        self.open -= 1;
    }

    /// The key of every record in the table now.
    pub(super) fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_some())
            .map(|(index, _)| Key {
                index: index as u32,
                generation: self.generations[index],
            })
            .collect()
    }

    /// Gives back the memory of free slots past the last record, once a burst has passed
    /// (fewer than a quarter of the slots in use). Returns whether it shrank.
    pub(super) fn shrink(&mut self) -> bool {
        if self.slots.len() <= 64 || self.open >= self.slots.len() / 4 {
            return false;
        }
        // The slots past the last record are the free ones at the end.
        let mut free: Vec<u32> = self.free.drain().map(|Reverse(i)| i).collect();
        free.sort_unstable();
        let mut used = self.slots.len();
        while used > 0 && free.last() == Some(&(used as u32 - 1)) {
            free.pop();
            used -= 1;
        }
        self.free = free.into_iter().map(Reverse).collect();
        if used == self.slots.len() {
            return false;
        }
        // A forgotten slot's generation must not come back: start above all of them.
        let highest = self.generations[used..].iter().copied().max().unwrap_or(0);
        self.next_generation = self.next_generation.max(highest + 1) & GENERATION_MASK;
        self.slots.truncate(used);
        self.slots.shrink_to_fit();
        self.generations.truncate(used);
        self.generations.shrink_to_fit();
        self.free.shrink_to_fit();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_lowest_first_with_a_new_generation() {
        let mut table: Table = Table::default();
        let keys: Vec<Key> = (0..3).map(|_| table.new_key()).collect();
        assert_eq!(keys.iter().map(|k| k.index).collect::<Vec<_>>(), [0, 1, 2]);
        table.release(keys[2]);
        table.release(keys[0]);
        let again = table.new_key();
        assert_eq!(again.index, 0);
        assert_ne!(again.generation, keys[0].generation);
        assert!(table.take(keys[0]).is_none());
        assert_eq!(table.open(), 2);
    }

    #[test]
    fn a_table_shrinks_after_a_burst_and_never_repeats_a_generation() {
        let mut table: Table = Table::default();
        let keys: Vec<Key> = (0..1000).map(|_| table.new_key()).collect();
        for key in &keys[10..] {
            table.release(*key);
        }
        assert!(table.shrink());
        assert_eq!(table.capacity(), 10);
        let new = table.new_key();
        assert_eq!(new.index, 10);
        assert!(new.generation > keys[10].generation);
        assert!(
            table.take(keys[10]).is_none(),
            "a stale key must not reach the new slot"
        );
    }
}
