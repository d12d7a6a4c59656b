//! Inputs whose markers are gone: every one of them was acknowledged (a
//! marker of inputs is deleted only once the consumer's ack floor passes
//! them), but a delivery of one that the server sent before that
//! acknowledgement arrived may still be on its way to some process, or in
//! its batches. Such a delivery must not be applied again, so its sequence
//! is kept for `keep` after the marker went: longer than any delivery may
//! live before its commit (see [`Store::commit`](super::Store::commit)).
//!
//! Kept as ranges of consecutive sequences (what is applied is nearly
//! every sequence of the stream, in order), each with when it last grew.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(super) struct Retired {
    /// First sequence → (last sequence, when the range last grew).
    ranges: BTreeMap<u64, (u64, Instant)>,
    keep: Duration,
}

impl Retired {
    pub(super) fn new(keep: Duration) -> Retired {
        Retired { ranges: BTreeMap::new(), keep }
    }

    pub(super) fn insert(&mut self, seq: u64, now: Instant) {
        let mut start = seq;
        if let Some((&first, &(last, _))) = self.ranges.range(..=seq).next_back() {
            if last >= seq {
                self.ranges.insert(first, (last, now));
                return;
            }
            if last + 1 == seq {
                start = first;
            }
        }
        let end = match self.ranges.remove(&(seq + 1)) {
            Some((last, _)) => last,
            None => seq,
        };
        self.ranges.insert(start, (end, now));
    }

    pub(super) fn contains(&self, seq: u64) -> bool {
        self.ranges.range(..=seq).next_back().is_some_and(|(_, (last, _))| *last >= seq)
    }

    pub(super) fn keep(&self) -> Duration {
        self.keep
    }

    /// Forgets the ranges that did not grow for `keep`.
    pub(super) fn prune(&mut self, now: Instant) {
        let keep = self.keep;
        self.ranges.retain(|_, (_, grew)| now.duration_since(*grew) < keep);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_merge_into_ranges_and_age_out() {
        let t0 = Instant::now();
        let mut retired = Retired::new(Duration::from_secs(10));
        for seq in [5, 7, 6, 9, 1, 2] {
            retired.insert(seq, t0);
        }
        assert_eq!(retired.len(), 3, "1-2, 5-7, 9");
        for seq in [1, 2, 5, 6, 7, 9] {
            assert!(retired.contains(seq), "{seq}");
        }
        for seq in [0, 3, 4, 8, 10] {
            assert!(!retired.contains(seq), "{seq}");
        }
        retired.insert(8, t0 + Duration::from_secs(8));
        assert_eq!(retired.len(), 2, "5-9 joined");
        retired.prune(t0 + Duration::from_secs(12));
        assert!(!retired.contains(1), "1-2 did not grow for 12 s");
        assert!(retired.contains(5) && retired.contains(9), "5-9 grew 4 s ago");
        retired.prune(t0 + Duration::from_secs(19));
        assert_eq!(retired.len(), 0);
    }
}
