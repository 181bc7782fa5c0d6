//! How long a sync keeps trying after transient failures, and how long it waits between tries.
//!
//! A Redshift reboot, a failover, a resize or a maintenance window makes a cluster unreachable
//! for minutes, not seconds; a sync that gave up after its fifth try (about a minute) would end
//! with an error and start over later from its last checkpoint, while one that waits resumes
//! where it stood. So retries are bounded by time (`retry_timeout_s`), not by count, and the
//! budget starts over whenever rows arrive again: it bounds a stretch without progress, not the
//! sync. Waits grow exponentially to [`MAX_DELAY`] and are jittered, so the tables of an Update
//! (and the Updates of many connectors) that failed together do not retry in lockstep.

use std::time::{Duration, Instant};

/// The first wait.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest wait: how late a sync at most notices that the cluster is back.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The retries of one piece of work (a connect, a table's scan).
#[derive(Debug)]
pub struct Retry {
    budget: Duration,
    /// When the current run of failures began; `None` while things work.
    failing_since: Option<Instant>,
    attempts: u32,
}

impl Retry {
    pub fn new(budget: Duration) -> Self {
        Retry {
            budget,
            failing_since: None,
            attempts: 0,
        }
    }

    /// After a transient failure: how long to wait before the next try, or `None` once the
    /// failures have lasted the whole budget. The last wait is cut short to end at the budget's
    /// end, so one final try always happens there.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let remaining = self.budget.checked_sub(now - since)?;
        if remaining.is_zero() {
            return None;
        }
        self.attempts += 1;
        Some(jittered(backoff(self.attempts)).min(remaining))
    }

    /// Tries so far in the current run of failures.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Progress was made (rows arrived, a session opened): the next failure starts a new run
    /// with the whole budget.
    pub fn renew(&mut self) {
        self.failing_since = None;
        self.attempts = 0;
    }
}

/// `FIRST_DELAY · 2^(attempt-1)`, at most [`MAX_DELAY`].
fn backoff(attempt: u32) -> Duration {
    FIRST_DELAY
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_DELAY)
}

/// A uniformly random wait between half of `delay` and all of it ("equal jitter"): spread
/// enough to break lockstep, never so short that it hammers a cluster that is coming up.
fn jittered(delay: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    // Without randomness (never on Linux) the wait is simply not jittered.
    let fraction = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    };
    delay.mul_f64(0.5 + 0.5 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_cap_within_their_jitter() {
        for attempt in 1..=10 {
            let full = backoff(attempt);
            assert_eq!(
                full,
                Duration::from_secs(1 << (attempt - 1)).min(MAX_DELAY),
                "attempt {attempt}"
            );
            for _ in 0..100 {
                let wait = jittered(full);
                assert!(wait >= full / 2 && wait <= full, "{wait:?} of {full:?}");
            }
        }
        assert_eq!(backoff(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn waits_are_not_in_lockstep() {
        let waits: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| jittered(MAX_DELAY)).collect();
        assert!(waits.len() > 10, "{waits:?}");
    }

    #[test]
    fn the_budget_bounds_a_run_of_failures_and_progress_renews_it() {
        let mut retry = Retry::new(Duration::from_millis(300));
        assert!(retry.next_delay().unwrap() <= Duration::from_secs(1));
        assert_eq!(retry.attempts(), 1);
        std::thread::sleep(Duration::from_millis(150));
        // The wait is cut to what is left of the budget.
        let wait = retry.next_delay().unwrap();
        assert!(wait <= Duration::from_millis(150), "{wait:?}");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(retry.next_delay(), None, "the budget is spent");

        retry.renew();
        assert_eq!(retry.attempts(), 0);
        assert!(
            retry.next_delay().is_some(),
            "a new run has the whole budget"
        );
    }

    #[test]
    fn a_zero_budget_never_retries() {
        assert_eq!(Retry::new(Duration::ZERO).next_delay(), None);
    }
}
