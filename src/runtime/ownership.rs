//! Which slots this process probes now: every one, except in cluster mode, where the state
//! owner gives up and takes slots as members come and go, and the probing thread reads it at
//! each due time.
//!
//! Why a count of changes beside the flag: the probing thread reads ownership only at a slot's
//! due times. A slot given up and taken back between two of them reads "mine" both times, yet
//! another member probed it in between and the state owner has taken it over anew. The probing
//! loop must then treat its next outcomes as the first after a start (see
//! [`super::probing::Handoff`]), which only a count of changes shows.

use std::sync::atomic::{AtomicU32, Ordering};

/// Per slot: bit 0 whether it is ours, the bits above how many times that changed (wrapping).
#[derive(Debug)]
pub struct Ownership {
    slots: Box<[AtomicU32]>,
}

impl Ownership {
    /// `slots` slots, all ours or none.
    pub fn new(slots: usize, mine: bool) -> Ownership {
        Ownership { slots: (0..slots).map(|_| AtomicU32::new(u32::from(mine))).collect() }
    }

    /// Whether this process probes `slot` now.
    pub fn is_mine(&self, slot: usize) -> bool {
        self.slots[slot].load(Ordering::Relaxed) & 1 == 1
    }

    /// Makes `slot` ours or not; returns whether it was. Only the state owner writes, so a
    /// load and a store do not race with another writer.
    pub fn set(&self, slot: usize, mine: bool) -> bool {
        let now = self.slots[slot].load(Ordering::Relaxed);
        let was = now & 1 == 1;
        if was != mine {
            let changes = (now >> 1).wrapping_add(1);
            self.slots[slot].store(changes << 1 | u32::from(mine), Ordering::Relaxed);
        }
        was
    }

    /// A number that differs after `slot` was given up or taken since it was last read.
    pub fn changes(&self, slot: usize) -> u32 {
        self.slots[slot].load(Ordering::Relaxed) >> 1
    }

    /// How many slots there are.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_given_up_and_taken_back_reads_mine_but_counts_two_changes() {
        let ownership = Ownership::new(2, true);
        assert!(ownership.is_mine(0) && ownership.is_mine(1));
        let before = ownership.changes(0);
        assert!(ownership.set(0, false), "it was mine");
        assert!(!ownership.is_mine(0));
        assert!(!ownership.set(0, true), "it was not");
        assert!(ownership.is_mine(0));
        assert_eq!(ownership.changes(0), before.wrapping_add(2));
        assert_eq!(ownership.changes(1), 0, "the other slot did not change");
        assert!(ownership.set(0, true), "setting what is already so changes nothing");
        assert_eq!(ownership.changes(0), before.wrapping_add(2));
        let none = Ownership::new(1, false);
        assert!(!none.is_mine(0));
        assert_eq!(none.len(), 1);
    }
}
