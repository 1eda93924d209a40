//! How many unparseable messages a source may have kept per hour.
//!
//! The raw bytes of a message that does not parse are stored (status `invalid`) so a technician
//! can see what the device sent. A broken or hostile device can produce thousands of those a
//! minute (the torture run's random-byte sender framed 3 000+ "messages" in 10 s), which would
//! fill the SD card and push real results out. Each source therefore has a token bucket: a
//! burst of [`INVALID_BURST`] kept invalid messages, refilled by one every
//! [`INVALID_REFILL`]. Beyond it an invalid message is refused like a failed commit (NAK /
//! `AR` / 4xx, nothing stored, logged): nothing that was acknowledged is affected, and a real
//! device's occasional bad message is still kept.

use crate::record::SourceId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Invalid messages a source may have stored at once before the budget applies.
pub const INVALID_BURST: u32 = 60;
/// One more invalid message may be stored after this long.
pub const INVALID_REFILL: Duration = Duration::from_secs(60);

/// One source's bucket (time passed in, so it is tested without a clock).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    last: Instant,
}

/// Budgets of every source.
#[derive(Debug, Default)]
pub struct InvalidBudget {
    buckets: HashMap<SourceId, Bucket>,
}

impl InvalidBudget {
    /// Take one token for `source`; `false` when its budget is spent.
    pub fn take(&mut self, source: &SourceId, now: Instant) -> bool {
        let b = self.buckets.entry(source.clone()).or_insert(Bucket {
            tokens: INVALID_BURST,
            last: now,
        });
        let refills = now.saturating_duration_since(b.last).as_secs() / INVALID_REFILL.as_secs();
        if refills > 0 {
            let refills = u32::try_from(refills).unwrap_or(u32::MAX);
            b.tokens = b.tokens.saturating_add(refills).min(INVALID_BURST);
            b.last += INVALID_REFILL * refills;
        }
        if b.tokens == 0 {
            return false;
        }
        b.tokens -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_kept_then_one_per_refill_period_per_source() {
        let mut budget = InvalidBudget::default();
        let t0 = Instant::now();
        let a = SourceId("junk".into());
        let b = SourceId("good".into());
        let kept = (0..100).filter(|_| budget.take(&a, t0)).count();
        assert_eq!(kept, INVALID_BURST as usize);
        // Another source is not affected.
        assert!(budget.take(&b, t0));
        // Half a period later: still nothing; a full period: exactly one more.
        assert!(!budget.take(&a, t0 + INVALID_REFILL / 2));
        assert!(budget.take(&a, t0 + INVALID_REFILL));
        assert!(!budget.take(&a, t0 + INVALID_REFILL));
        // After a long quiet time the bucket is full again, not more.
        let later = t0 + INVALID_REFILL * 1000;
        let kept = (0..100).filter(|_| budget.take(&a, later)).count();
        assert_eq!(kept, INVALID_BURST as usize);
    }
}
