//! The run's clock: milliseconds since the run started, for the timeline of its leaves
//! (`SessionTiming`). A resumed run's clock counts on from the run's first start.
//!
//! Its readings are observations only: they are journaled beside a leaf's result for the
//! views, and must never reach the script or decide anything.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct RunClock {
    origin: Instant,
}

impl RunClock {
    /// A clock that reads `elapsed` now: zero for a fresh run, the time since the run's first
    /// start for a resumed one.
    pub fn already_at(elapsed: Duration) -> Self {
        let now = Instant::now();
        RunClock { origin: now.checked_sub(elapsed).unwrap_or(now) }
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.at_ms(Instant::now())
    }

    pub fn at_ms(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }
}

impl Default for RunClock {
    fn default() -> Self {
        RunClock::already_at(Duration::ZERO)
    }
}
