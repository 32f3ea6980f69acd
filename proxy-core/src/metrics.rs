//! Counters of a store: per operation, and per key for the most recently used keys.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::key::Key;

/// How many keys a store's metrics follow unless
/// [`StoreBuilder::with_metrics_keys`](crate::StoreBuilder::with_metrics_keys) says otherwise:
/// the per-key view keeps the most recently used keys and forgets the least recently used one
/// when a new key comes, so a long run does not grow it without limit.
pub const DEFAULT_METRICS_KEYS: usize = 1024;

/// The operations a store counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Get,
    Exists,
    Evict,
    Future,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Lock-free totals of one operation (store-wide).
#[derive(Debug)]
struct Counter {
    count: AtomicU64,
    bytes: AtomicU64,
    nanos: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    last: AtomicU64,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            count: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            nanos: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            last: AtomicU64::new(0),
        }
    }
}

impl Counter {
    fn add(&self, bytes: u64, nanos: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.min.fetch_min(nanos, Ordering::Relaxed);
        self.max.fetch_max(nanos, Ordering::Relaxed);
        self.last.store(nanos, Ordering::Relaxed);
    }

    fn snapshot(&self) -> OpStats {
        let count = self.count.load(Ordering::Relaxed);
        OpStats {
            count,
            bytes: self.bytes.load(Ordering::Relaxed),
            time: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
            min: if count == 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(self.min.load(Ordering::Relaxed))
            },
            max: Duration::from_nanos(self.max.load(Ordering::Relaxed)),
            last: Duration::from_nanos(self.last.load(Ordering::Relaxed)),
        }
    }
}

impl OpStats {
    /// Adds one operation of `bytes` bytes that took `time`.
    fn add(&mut self, bytes: u64, time: Duration) {
        self.min = if self.count == 0 {
            time
        } else {
            self.min.min(time)
        };
        self.max = self.max.max(time);
        self.last = time;
        self.count += 1;
        self.bytes += bytes;
        self.time += time;
    }
}

/// Live counters, shared by the clones of one store.
#[derive(Debug)]
pub(crate) struct Metrics {
    put: Counter,
    get: Counter,
    exists: Counter,
    evict: Counter,
    future: Counter,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    exists_cache_hits: AtomicU64,
    /// `None` when the per-key view is off (capacity 0).
    keys: Option<Mutex<LruCache<Key, KeyMetrics>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(DEFAULT_METRICS_KEYS)
    }
}

impl Metrics {
    /// Counters following at most `keys` keys individually (0: none).
    pub(crate) fn new(keys: usize) -> Self {
        Metrics {
            put: Counter::default(),
            get: Counter::default(),
            exists: Counter::default(),
            evict: Counter::default(),
            future: Counter::default(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            exists_cache_hits: AtomicU64::new(0),
            keys: NonZeroUsize::new(keys).map(|n| Mutex::new(LruCache::new(n))),
        }
    }

    fn counter(&self, op: Op) -> &Counter {
        match op {
            Op::Put => &self.put,
            Op::Get => &self.get,
            Op::Exists => &self.exists,
            Op::Evict => &self.evict,
            Op::Future => &self.future,
        }
    }

    /// Runs `update` on the per-key entry of `key`, making it if needed.
    fn with_key(&self, key: &Key, update: impl FnOnce(&mut KeyMetrics)) {
        let Some(keys) = &self.keys else {
            return;
        };
        // Every update completes or does nothing, so a poisoned lock is still consistent.
        let mut keys = keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        update(keys.get_or_insert_mut(key.clone(), KeyMetrics::default));
    }

    /// One operation on `keys` (a batch when there are several): counted once store-wide, and
    /// for each key with its share of the bytes and of the time.
    pub(crate) fn record_keys(&self, op: Op, keys: &[Key], bytes: usize, started: Instant) {
        let elapsed = started.elapsed();
        self.counter(op).add(bytes as u64, nanos(elapsed));
        let Some(share) = u32::try_from(keys.len()).ok().filter(|n| *n > 0) else {
            return;
        };
        let time = elapsed / share;
        let bytes = bytes as u64 / u64::from(share);
        for key in keys {
            self.with_key(key, |entry| entry.stats_mut(op).add(bytes, time));
        }
    }

    /// A typed get looked in the cache for `key`.
    pub(crate) fn cache(&self, key: &Key, hit: bool) {
        let counter = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if hit {
            self.with_key(key, |entry| entry.cache_hits += 1);
        }
    }

    /// An `exists` was answered from the cache for `key`.
    pub(crate) fn exists_cached(&self, key: &Key) {
        self.exists_cache_hits.fetch_add(1, Ordering::Relaxed);
        self.with_key(key, |entry| entry.exists_cache_hits += 1);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let keys = match &self.keys {
            Some(keys) => keys
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .map(|(key, entry)| (key.clone(), entry.clone()))
                .collect(),
            None => HashMap::new(),
        };
        MetricsSnapshot {
            put: self.put.snapshot(),
            get: self.get.snapshot(),
            exists: self.exists.snapshot(),
            evict: self.evict.snapshot(),
            future: self.future.snapshot(),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
            exists_cache_hits: self.exists_cache_hits.load(Ordering::Relaxed),
            keys,
        }
    }
}

/// Totals for one kind of operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpStats {
    /// How many operations ran (successful or not).
    pub count: u64,
    /// Payload bytes moved (encoded sizes).
    pub bytes: u64,
    /// Time spent in them, codec included.
    pub time: Duration,
    /// The shortest of them (zero when none ran).
    pub min: Duration,
    /// The longest of them.
    pub max: Duration,
    /// The most recent one.
    pub last: Duration,
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

/// The operations on one key ([`MetricsSnapshot::key`]).
///
/// A batch operation gives each of its keys an equal share of its bytes and its time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyMetrics {
    /// The put that stored the object (a proxy's or a batch's put included).
    pub put: OpStats,
    /// Gets that reached the connector.
    pub get: OpStats,
    /// Existence checks that reached the connector.
    pub exists: OpStats,
    /// Evictions.
    pub evict: OpStats,
    /// The reservation of this key by [`Store::future`](crate::Store::future) (ProxyStore's
    /// `store.future` timing); its value's set counts as [`put`](Self::put).
    pub future: OpStats,
    /// Typed gets answered from the cache.
    pub cache_hits: u64,
    /// Existence checks answered from the cache.
    pub exists_cache_hits: u64,
}

impl KeyMetrics {
    fn stats_mut(&mut self, op: Op) -> &mut OpStats {
        match op {
            Op::Put => &mut self.put,
            Op::Get => &mut self.get,
            Op::Exists => &mut self.exists,
            Op::Evict => &mut self.evict,
            Op::Future => &mut self.future,
        }
    }
}

/// A copy of a store's counters at one moment ([`Store::metrics`](crate::Store::metrics)).
///
/// The store-wide fields count every operation. The per-key view ([`keys`](Self::keys))
/// follows only the most recently used keys (at most
/// [`DEFAULT_METRICS_KEYS`] unless the store was built with another bound), so a key that was
/// not used for a long time may be missing from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Puts, including those made by `proxy` and `proxy_batch`.
    pub put: OpStats,
    /// Gets that reached the connector (cache misses), including proxy resolves.
    pub get: OpStats,
    /// Existence checks that reached the connector.
    pub exists: OpStats,
    /// Evictions.
    pub evict: OpStats,
    /// Keys reserved by [`Store::future`](crate::Store::future).
    pub future: OpStats,
    /// Gets answered from the cache.
    pub cache_hits: u64,
    /// Gets that had to go to the connector.
    pub cache_misses: u64,
    /// Existence checks answered from the cache.
    pub exists_cache_hits: u64,
    /// Per key, for the most recently used keys.
    pub keys: HashMap<Key, KeyMetrics>,
}

impl MetricsSnapshot {
    /// The counters of one key, if the store still follows it.
    pub fn key(&self, key: &Key) -> Option<&KeyMetrics> {
        self.keys.get(key)
    }
}
