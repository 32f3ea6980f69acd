//! Per-operation counters of a store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The operations a store counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Get,
    Exists,
    Evict,
}

#[derive(Debug, Default)]
struct Counter {
    count: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
}

impl Counter {
    fn snapshot(&self) -> OpStats {
        OpStats {
            count: self.count.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            time: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }
}

/// Live counters, shared by the clones of one store.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    put: Counter,
    get: Counter,
    exists: Counter,
    evict: Counter,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl Metrics {
    pub(crate) fn record(&self, op: Op, bytes: usize, started: Instant) {
        let counter = match op {
            Op::Put => &self.put,
            Op::Get => &self.get,
            Op::Exists => &self.exists,
            Op::Evict => &self.evict,
        };
        counter.count.fetch_add(1, Ordering::Relaxed);
        counter.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn cache(&self, hit: bool) {
        let counter = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            put: self.put.snapshot(),
            get: self.get.snapshot(),
            exists: self.exists.snapshot(),
            evict: self.evict.snapshot(),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
        }
    }
}

/// Totals for one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// How many operations ran (successful or not).
    pub count: u64,
    /// Payload bytes moved (encoded sizes).
    pub bytes: u64,
    /// Time spent in them, codec included.
    pub time: Duration,
}

impl OpStats {
    /// Mean time per operation, or zero when none ran.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.time / u32::try_from(self.count).unwrap_or(u32::MAX)
        }
    }
}

/// A copy of a store's counters at one moment ([`Store::metrics`](crate::Store::metrics)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Puts, including those made by `proxy` and `proxy_batch`.
    pub put: OpStats,
    /// Gets that reached the connector (cache misses), including proxy resolves.
    pub get: OpStats,
    /// Existence checks.
    pub exists: OpStats,
    /// Evictions.
    pub evict: OpStats,
    /// Gets answered from the cache.
    pub cache_hits: u64,
    /// Gets that had to go to the connector.
    pub cache_misses: u64,
}
