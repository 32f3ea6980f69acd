//! How a proxy of a future waits for its value ([`Polling`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// How a proxy of a [`StoreFuture`](crate::StoreFuture) waits for its value: ProxyStore's `polling_interval`,
/// `polling_backoff_factor`, `polling_interval_limit` and `polling_timeout`.
///
/// The first check is immediate; after each miss the proxy sleeps `interval`, then
/// `interval × backoff`, and so on, each sleep capped at `max_interval`, until the value
/// is there or `timeout` has passed since the first check. The policy travels with the
/// proxy, so a proxy resolved in another process waits the same way.
///
/// Defaults: first sleep 1 ms, backoff ×2, sleeps of at most 100 ms, timeout 10 minutes
/// (`with_timeout(None)` waits forever).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Polling {
    /// The first sleep after a miss.
    pub interval: Duration,
    /// The factor each sleep grows by (at least 1).
    pub backoff: f64,
    /// The longest sleep.
    pub max_interval: Duration,
    /// How long to wait in all; `None`: forever.
    pub timeout: Option<Duration>,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            interval: Duration::from_millis(1),
            backoff: 2.0,
            max_interval: Duration::from_millis(100),
            timeout: Some(Duration::from_secs(600)),
        }
    }
}

impl Polling {
    /// The first sleep after a miss (0 is taken as 1 µs, so a wait never spins).
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The factor each sleep grows by; values below 1 (or not a number) are taken as 1.
    #[must_use]
    pub fn with_backoff(mut self, factor: f64) -> Self {
        self.backoff = factor;
        self
    }

    /// The longest sleep between two checks.
    #[must_use]
    pub fn with_max_interval(mut self, max_interval: Duration) -> Self {
        self.max_interval = max_interval;
        self
    }

    /// How long a resolve waits in all before failing with [`Error::NotSet`](crate::Error::NotSet); `None` waits
    /// forever.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The sleeps this policy makes, in order (endless; the caller checks the timeout).
    /// Hostile values from a deserialized proxy are clamped, never trusted to be sane.
    pub(crate) fn sleeps(&self) -> impl Iterator<Item = Duration> {
        let floor = Duration::from_micros(1);
        let max = self.max_interval.max(floor);
        let first = self.interval.clamp(floor, max);
        let factor = if self.backoff.is_finite() && self.backoff >= 1.0 {
            self.backoff
        } else {
            1.0
        };
        std::iter::successors(Some(first), move |previous| {
            Some(previous.mul_f64(factor.min(1e6)).clamp(floor, max))
        })
    }

    /// Calls `check` until it returns `Some`, sleeping between misses as this policy says.
    /// `Ok(None)` when the timeout ran out first, with how long it waited.
    pub(crate) fn wait<V>(
        &self,
        mut check: impl FnMut() -> Result<Option<V>>,
    ) -> Result<std::result::Result<V, Duration>> {
        let started = Instant::now();
        let mut sleeps = self.sleeps();
        loop {
            if let Some(value) = check()? {
                return Ok(Ok(value));
            }
            let waited = started.elapsed();
            let mut sleep = sleeps.next().unwrap_or(self.max_interval);
            if let Some(timeout) = self.timeout {
                if waited >= timeout {
                    return Ok(Err(waited));
                }
                sleep = sleep.min(timeout - waited);
            }
            std::thread::sleep(sleep);
        }
    }
}
