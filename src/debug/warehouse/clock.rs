//! The `_fivetran_synced` clock: strictly increasing, in microseconds.
//!
//! TRUNCATE soft-deletes the rows synced *before* it (`_fivetran_synced < T`). Wall-clock time
//! cannot decide "before": many operations land in the same microsecond, and the clock may step
//! back between runs. So every operation gets its own tick, `max(now, last + 1µs)`, and the last
//! tick is saved with each commit so the next run starts after it.

use chrono::{DateTime, TimeDelta, Utc};

#[derive(Debug, Clone)]
pub struct SyncClock {
    last: DateTime<Utc>,
}

impl SyncClock {
    /// A clock whose first tick is after `last` (the last tick a previous run committed).
    pub fn after(last: Option<DateTime<Utc>>) -> Self {
        Self {
            last: last.unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }

    /// The next tick: now, or one microsecond after the previous tick if now is not later.
    pub fn tick(&mut self) -> DateTime<Utc> {
        let now = truncate_to_micros(Utc::now());
        self.last = if now > self.last {
            now
        } else {
            self.last + TimeDelta::microseconds(1)
        };
        self.last
    }

    pub fn last(&self) -> DateTime<Utc> {
        self.last
    }
}

fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let micros = at.timestamp_micros();
    DateTime::from_timestamp_micros(micros).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_strictly_increase() {
        let mut clock = SyncClock::after(None);
        let mut previous = clock.tick();
        for _ in 0..10_000 {
            let next = clock.tick();
            assert!(next > previous);
            previous = next;
        }
    }

    #[test]
    fn starts_after_a_future_last_tick() {
        let future = Utc::now() + TimeDelta::hours(1);
        let mut clock = SyncClock::after(Some(future));
        assert_eq!(clock.tick(), future + TimeDelta::microseconds(1));
    }
}
