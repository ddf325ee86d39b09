//! Offset gaps: a partition's records must arrive contiguously, or the offsets of the ones that
//! did not arrive would be committed past them. Some brokers answer a fetch from the middle of a
//! record batch with the next batch (tansu does after a pause purges librdkafka's prefetch), so
//! a missing offset is never skipped: the partition is sought back, first to the missing offset,
//! then sixteen times further each attempt, until the record before the gap shows up again. Only
//! then is a gap accepted as real (compacted topics, transaction markers).

use rustc_hash::FxHashMap;

use crate::offsets::{Generation, OffsetTracker, Track};

/// How far the first seek back goes when records are missing; each further attempt goes
/// sixteen times further.
const FIRST_STEP: i64 = 1;

/// A gap being repaired on one partition.
#[derive(Debug, Clone, Copy)]
struct Gap {
    /// The first missing offset.
    expected: i64,
    /// How far before it the last seek went.
    step: i64,
    /// The record just before `expected` was seen again since the last seek: if the next one is
    /// still past `expected`, the gap is real.
    saw_previous: bool,
}

/// What to do with a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Take it; it is now held under this assignment generation.
    Take(Generation),
    /// Already held or delivered (it came again after a seek back): drop it.
    Skip,
    /// Records before it are missing: drop it and seek the partition to this offset.
    SeekTo(i64),
}

/// The gaps being repaired, per partition.
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    open: FxHashMap<i32, Gap>,
}

impl Gaps {
    /// Tracks `offset` of `partition` in `tracker` and says what to do with the message.
    pub(crate) fn track(
        &mut self,
        tracker: &mut OffsetTracker,
        partition: i32,
        offset: i64,
    ) -> Step {
        let confirmed = self.open.get(&partition).is_some_and(|g| g.saw_previous);
        match tracker.track(partition, offset, confirmed) {
            Track::Tracked(generation) => {
                if let Some(gap) = self.open.remove(&partition) {
                    if offset > gap.expected {
                        tracing::warn!(partition, from = gap.expected, to = offset,
                            "offsets absent from the log (compacted topic or transaction markers); continuing after them");
                    } else {
                        tracing::info!(partition, offset, "offset gap repaired, no record skipped");
                    }
                }
                Step::Take(generation)
            }
            Track::Duplicate => {
                if let Some(gap) = self.open.get_mut(&partition) {
                    if offset == gap.expected - 1 {
                        gap.saw_previous = true;
                    }
                }
                Step::Skip
            }
            Track::Gap { expected } => {
                let gap = self.open.entry(partition).or_insert(Gap {
                    expected,
                    step: 0,
                    saw_previous: false,
                });
                if gap.expected != expected {
                    *gap = Gap {
                        expected,
                        step: 0,
                        saw_previous: false,
                    };
                }
                gap.step = if gap.step == 0 {
                    FIRST_STEP
                } else {
                    gap.step.saturating_mul(16)
                };
                gap.saw_previous = false;
                if gap.step == FIRST_STEP {
                    tracing::warn!(
                        partition,
                        expected,
                        got = offset,
                        "records missing from the fetch: seeking back so none is skipped"
                    );
                    // Seek to the missing record itself first; duplicates up to it are skipped.
                    Step::SeekTo(expected)
                } else {
                    Step::SeekTo((expected - gap.step).max(0))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_seeks_back_further_each_time_until_the_previous_record_shows() {
        let mut tracker = OffsetTracker::new();
        tracker.assign(0);
        let mut gaps = Gaps::default();
        assert!(matches!(gaps.track(&mut tracker, 0, 10), Step::Take(_)));
        assert_eq!(gaps.track(&mut tracker, 0, 100), Step::SeekTo(11));
        assert_eq!(
            gaps.track(&mut tracker, 0, 100),
            Step::SeekTo(0),
            "16 back, floored"
        );
        // The record before the gap arrives again, then the next is still past it: real gap.
        assert_eq!(gaps.track(&mut tracker, 0, 10), Step::Skip);
        assert!(matches!(gaps.track(&mut tracker, 0, 100), Step::Take(_)));
        assert!(matches!(gaps.track(&mut tracker, 0, 101), Step::Take(_)));
    }

    #[test]
    fn a_repaired_gap_takes_the_missing_record() {
        let mut tracker = OffsetTracker::new();
        tracker.assign(1);
        let mut gaps = Gaps::default();
        assert!(matches!(gaps.track(&mut tracker, 1, 5), Step::Take(_)));
        assert_eq!(gaps.track(&mut tracker, 1, 8), Step::SeekTo(6));
        assert!(matches!(gaps.track(&mut tracker, 1, 6), Step::Take(_)));
        assert!(matches!(gaps.track(&mut tracker, 1, 7), Step::Take(_)));
    }
}
