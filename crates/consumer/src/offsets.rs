//! Per-partition contiguous delivery watermarks (DESIGN.md, "Delivery semantics"): a
//! partition's offset may be stored for commit only up to the first record that is not yet in
//! Loki or the dead-letter topic, however the batches holding later records complete.
//!
//! Each partition tracks one flag per offset from its watermark to the newest offset received
//! (a ring of booleans, so the cost is a byte per record held). Gaps in the offsets (compacted or
//! transactional topics) count as done. A partition's tracker belongs to one assignment
//! *generation*: acknowledgements for a partition that was revoked (and maybe re-assigned) since
//! are ignored, so a late ack can never move a new owner's offsets.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Identifies one assignment of one partition to this consumer.
pub(crate) type Generation = u64;

/// The watermark state of one partition.
#[derive(Debug)]
struct Partition {
    generation: Generation,
    /// Offset of `done[0]`; also the next offset to commit (everything before is delivered).
    base: i64,
    done: VecDeque<bool>,
    /// Whether any record was received since the assignment.
    started: bool,
}

/// What [`OffsetTracker::track`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Track {
    /// The record is now held; its partition's generation.
    Tracked(Generation),
    /// Offsets between the last one received and this one never arrived: the caller must
    /// seek back to `expected` (never silently skip them) unless the gap is confirmed.
    Gap {
        /// The first missing offset.
        expected: i64,
    },
    /// An offset already held or delivered (after a seek back): skip it.
    Duplicate,
}

impl Partition {
    /// The offset after the newest one received, once anything was received.
    fn next_expected(&self) -> Option<i64> {
        self.started.then_some(self.base + self.done.len() as i64)
    }

    fn track(&mut self, offset: i64, accept_gap: bool) -> Track {
        let end = self.base + self.done.len() as i64;
        if !self.started {
            // The first record after an assignment starts where the group's committed offset
            // (or auto.offset.reset) put the fetcher: nothing to hold before it.
            self.started = true;
            self.base = offset;
        } else if offset > end {
            if !accept_gap {
                return Track::Gap { expected: end };
            }
            // A confirmed gap (compacted offsets, transaction markers): nothing to hold there.
            for _ in end..offset {
                self.done.push_back(true);
            }
        } else if offset < end {
            // Redelivered after a seek back; already tracked.
            return Track::Duplicate;
        }
        self.done.push_back(false);
        Track::Tracked(self.generation)
    }

    fn complete(&mut self, offset: i64) {
        let i = offset - self.base;
        if i < 0 {
            return;
        }
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| self.done.get_mut(i)) {
            *slot = true;
        }
    }

    /// Pops delivered offsets from the front; returns the new next-to-commit offset if it moved.
    fn advance(&mut self) -> Option<i64> {
        let before = self.base;
        while self.done.front() == Some(&true) {
            self.done.pop_front();
            self.base += 1;
        }
        (self.base != before).then_some(self.base)
    }
}

/// Watermarks of every assigned partition.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    partitions: FxHashMap<i32, Partition>,
    next_generation: Generation,
}

impl OffsetTracker {
    /// An empty tracker.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Starts tracking a newly assigned partition; returns its generation.
    pub(crate) fn assign(&mut self, partition: i32) -> Generation {
        self.next_generation += 1;
        let generation = self.next_generation;
        self.partitions.insert(
            partition,
            Partition {
                generation,
                base: 0,
                done: VecDeque::new(),
                started: false,
            },
        );
        generation
    }

    /// Sets where a newly assigned partition's first record must be (its committed offset):
    /// a first record past it is then a gap, not a silent start further on.
    pub(crate) fn start_at(&mut self, partition: i32, offset: i64) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            if !p.started {
                p.started = true;
                p.base = offset;
            }
        }
    }

    /// Forgets a revoked partition; acks for it are ignored from now on.
    pub(crate) fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Records that `offset` was received and is now held. Offsets arrive in order per
    /// partition; a jump forward is reported as a [`Track::Gap`] unless `accept_gap`.
    pub(crate) fn track(&mut self, partition: i32, offset: i64, accept_gap: bool) -> Track {
        if !self.partitions.contains_key(&partition) {
            self.assign(partition);
        }
        match self.partitions.get_mut(&partition) {
            Some(p) => p.track(offset, accept_gap),
            None => Track::Duplicate,
        }
    }

    /// Per assigned partition, the offset after the newest one received (where fetching must
    /// continue), for partitions that received anything.
    pub(crate) fn positions(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(k, p)| p.next_expected().map(|o| (*k, o)))
            .collect()
    }

    /// Marks offsets delivered; returns the partitions whose next-to-commit offset moved, with
    /// that offset. Offsets of another generation are ignored.
    pub(crate) fn complete<I>(&mut self, offsets: I) -> Vec<(i32, i64)>
    where
        I: IntoIterator<Item = (i32, Generation, i64)>,
    {
        let mut touched: Vec<i32> = Vec::new();
        for (partition, generation, offset) in offsets {
            if let Some(p) = self.partitions.get_mut(&partition) {
                if p.generation == generation {
                    p.complete(offset);
                    if !touched.contains(&partition) {
                        touched.push(partition);
                    }
                }
            }
        }
        touched
            .into_iter()
            .filter_map(|part| {
                self.partitions
                    .get_mut(&part)
                    .and_then(Partition::advance)
                    .map(|o| (part, o))
            })
            .collect()
    }

    /// Records held (received, not yet delivered) per partition.
    #[cfg(test)]
    fn held(&self) -> Vec<(i32, usize)> {
        self.partitions
            .iter()
            .map(|(k, p)| (*k, p.done.iter().filter(|d| !**d).count()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_moves_only_over_contiguous_deliveries() {
        let mut t = OffsetTracker::new();
        let g = t.assign(0);
        for o in 10..15 {
            assert_eq!(t.track(0, o, false), Track::Tracked(g));
        }
        assert_eq!(t.complete([(0, g, 12), (0, g, 13)]), vec![]);
        assert_eq!(t.complete([(0, g, 10)]), vec![(0, 11)]);
        assert_eq!(t.complete([(0, g, 11)]), vec![(0, 14)]);
        assert_eq!(t.complete([(0, g, 14)]), vec![(0, 15)]);
    }

    #[test]
    fn a_gap_is_reported_until_confirmed_and_then_does_not_block_the_watermark() {
        let mut t = OffsetTracker::new();
        let g = t.assign(1);
        t.track(1, 0, false);
        assert_eq!(t.track(1, 5, false), Track::Gap { expected: 1 });
        assert_eq!(t.positions(), vec![(1, 1)]);
        assert_eq!(t.track(1, 5, true), Track::Tracked(g));
        assert_eq!(t.complete([(1, g, 0)]), vec![(1, 5)]);
        assert_eq!(t.complete([(1, g, 5)]), vec![(1, 6)]);
    }

    #[test]
    fn acks_from_an_earlier_generation_are_ignored() {
        let mut t = OffsetTracker::new();
        let old = t.assign(2);
        t.track(2, 0, false);
        t.revoke(2);
        let new = t.assign(2);
        assert_ne!(old, new);
        t.track(2, 0, false);
        assert_eq!(t.complete([(2, old, 0)]), vec![]);
        assert_eq!(t.complete([(2, new, 0)]), vec![(2, 1)]);
    }

    #[test]
    fn partitions_advance_independently() {
        let mut t = OffsetTracker::new();
        let a = t.assign(0);
        let b = t.assign(1);
        t.track(0, 0, false);
        t.track(0, 1, false);
        t.track(1, 7, false);
        let mut moved = t.complete([(0, a, 1), (1, b, 7)]);
        moved.sort_unstable();
        assert_eq!(moved, vec![(1, 8)]);
        let mut held = t.held();
        held.sort_unstable();
        assert_eq!(held, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn duplicate_and_unknown_acks_change_nothing() {
        let mut t = OffsetTracker::new();
        let g = t.assign(0);
        t.track(0, 0, false);
        assert_eq!(t.complete([(0, g, 0)]), vec![(0, 1)]);
        assert_eq!(t.complete([(0, g, 0), (0, g, 99), (5, g, 0)]), vec![]);
    }

    #[test]
    fn redelivered_offsets_are_not_tracked_twice() {
        let mut t = OffsetTracker::new();
        let g = t.assign(0);
        t.track(0, 3, false);
        assert_eq!(t.track(0, 3, false), Track::Duplicate);
        assert_eq!(t.held(), vec![(0, 1)]);
        assert_eq!(t.complete([(0, g, 3)]), vec![(0, 4)]);
    }

    #[test]
    fn a_first_record_past_the_committed_offset_is_a_gap() {
        let mut t = OffsetTracker::new();
        let g = t.assign(0);
        t.start_at(0, 10);
        assert_eq!(t.track(0, 12, false), Track::Gap { expected: 10 });
        assert_eq!(t.track(0, 10, false), Track::Tracked(g));
        assert_eq!(t.complete([(0, g, 10)]), vec![(0, 11)]);
    }
}
