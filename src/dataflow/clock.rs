//! The engine clock that temporal filters (`WHERE t > mz_now() - INTERVAL '1 hour'`,
//! [`super::temporal`]) are maintained against.
//!
//! Time is microseconds since the Unix epoch (UTC). Each commit reads the clock once and
//! carries the reading ([`super::operator::Deltas::now`]), so every operator of every view
//! sees the same instant for one commit, and the clock never goes back (a wall clock that
//! steps back is held at the last reading). Between commits the dataflow ticks: every
//! [`GRANULARITY`] it checks whether a view has a row due to enter or leave, and if so
//! commits nothing but the new time ([`super::Dataflow::tick`]). A row therefore enters or
//! leaves a view within one granularity after its time, or at the first commit after it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the dataflow checks for temporal events between commits.
pub const GRANULARITY: Duration = Duration::from_secs(1);

/// No frozen time: the clock follows the wall clock.
const LIVE: i64 = i64::MIN;

/// A monotonic clock, live or frozen (tests).
#[derive(Debug)]
pub struct Clock {
    last: AtomicI64,
    frozen: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { last: AtomicI64::new(i64::MIN), frozen: AtomicI64::new(LIVE) }
    }
}

impl Clock {
    /// The current time in microseconds since the epoch, never earlier than a previous reading.
    pub fn now(&self) -> i64 {
        let t = match self.frozen.load(Ordering::Relaxed) {
            LIVE => wall_micros(),
            frozen => frozen,
        };
        self.last.fetch_max(t, Ordering::Relaxed).max(t)
    }

    /// Stops the clock at `micros` (`None`: follows the wall clock again). For tests that
    /// control time: it may set the clock back (an engine opened in a test reads the wall
    /// clock until then).
    pub fn freeze(&self, micros: Option<i64>) {
        self.frozen.store(micros.unwrap_or(LIVE), Ordering::Relaxed);
        self.last.store(micros.unwrap_or(i64::MIN), Ordering::Relaxed);
    }
}

/// The wall clock in microseconds since the epoch.
pub fn wall_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_monotonic_unless_a_test_sets_it() {
        let clock = Clock::default();
        clock.freeze(Some(2_000));
        assert_eq!(clock.now(), 2_000);
        clock.freeze(None);
        let live = clock.now();
        assert!(live > 1_600_000_000_000_000, "live again: the wall clock");
        clock.freeze(Some(1_000));
        assert_eq!(clock.now(), 1_000, "a test may set the clock back");
        clock.freeze(None);
        assert!(clock.now() > 1_600_000_000_000_000, "live again: the wall clock");
    }
}
