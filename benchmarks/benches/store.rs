//! Criterion micro-benchmarks of proxy-core: connector and store put/get, proxy resolution
//! (uncached and cache hits), and the serde formats considered for the default codec.
//!
//! Run with `cargo bench -p benchmarks --bench store` (one group: append `-- local`,
//! `-- file`, `-- proxy` or `-- codec`). The results and the Python ProxyStore reference
//! figures are in `benchmarks/README.md`.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use proxy_core::{Connector, FileConnector, Key, LocalConnector, Proxy, Store};
use serde::{Deserialize, Serialize};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Payload sizes of the connector groups, with a label and how many puts to make before
/// evicting them again (so neither memory nor the disk fills up).
const SIZES: [(usize, &str, u64); 3] = [
    (KIB, "1KiB", 1000),
    (MIB, "1MiB", 16),
    (64 * MIB, "64MiB", 1),
];

fn payload(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

/// Fewer, shorter samples for the 64 MiB cases (each iteration takes milliseconds).
fn configure_for(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    len: usize,
) {
    group.throughput(Throughput::Bytes(len as u64));
    if len >= 64 * MIB {
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
    } else {
        group
            .sample_size(50)
            .sampling_mode(SamplingMode::Auto)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500));
    }
}

/// Times `put` alone: every `batch` puts, the stored objects are evicted outside the timing.
fn time_puts(iters: u64, batch: u64, put: impl Fn() -> Key, evict: impl Fn(&Key)) -> Duration {
    let mut total = Duration::ZERO;
    let mut keys = Vec::with_capacity(batch as usize);
    let mut left = iters;
    while left > 0 {
        let n = left.min(batch);
        let started = Instant::now();
        for _ in 0..n {
            keys.push(put());
        }
        total += started.elapsed();
        for key in keys.drain(..) {
            evict(&key);
        }
        left -= n;
    }
    total
}

/// `put` and `get` of raw `Bytes` through a connector, at every size.
fn connector_group(c: &mut Criterion, name: &str, connector: &dyn Connector) {
    let mut group = c.benchmark_group(name);
    for (len, label, batch) in SIZES {
        let data = payload(len);
        configure_for(&mut group, len);
        group.bench_function(BenchmarkId::new("put", label), |b| {
            b.iter_custom(|iters| {
                time_puts(
                    iters,
                    batch,
                    || connector.put(data.clone()).expect("put"),
                    |k| connector.evict(k).expect("evict"),
                )
            })
        });
        let key = connector.put(data.clone()).expect("put");
        group.bench_function(BenchmarkId::new("get", label), |b| {
            b.iter(|| {
                connector
                    .get(black_box(&key))
                    .expect("get")
                    .expect("stored")
            })
        });
        connector.evict(&key).expect("evict");
    }
    group.finish();
}

fn local(c: &mut Criterion) {
    let connector = LocalConnector::new();
    connector_group(c, "local", &connector);

    // The same through a `Store` with no cache (the Python reference used cache_size=0):
    // `Bytes` go through the codec's identity path, so a get shares the stored buffer.
    let store = Store::builder("bench-local", connector)
        .with_cache_size(0)
        .build();
    let mut group = c.benchmark_group("local");
    for (len, label, batch) in SIZES {
        let data = payload(len);
        configure_for(&mut group, len);
        let key = store.put(&data).expect("put");
        let back = store.get::<Bytes>(&key).expect("get").expect("stored");
        assert_eq!(
            back.as_ptr(),
            data.as_ptr(),
            "Store::get::<Bytes> copied {label}"
        );
        group.bench_function(BenchmarkId::new("store_put", label), |b| {
            b.iter_custom(|iters| {
                time_puts(
                    iters,
                    batch,
                    || store.put(&data).expect("put"),
                    |k| store.evict(k).expect("evict"),
                )
            })
        });
        group.bench_function(BenchmarkId::new("store_get", label), |b| {
            b.iter(|| {
                store
                    .get::<Bytes>(black_box(&key))
                    .expect("get")
                    .expect("stored")
            })
        });
        store.evict(&key).expect("evict");
    }
    group.finish();
}

fn file(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let connector = FileConnector::new(dir.path()).expect("file connector");
    connector_group(c, "file", &connector);
}

/// 1 KiB of numbers: what a small proxied record decodes to.
type Small = Vec<f64>;

fn proxy(c: &mut Criterion) {
    let mut group = c.benchmark_group("proxy");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));

    // Uncached: a fresh proxy to a stored object, resolved through a store with no cache.
    let uncached = Store::builder("bench-proxy-uncached", LocalConnector::new())
        .with_cache_size(0)
        .build();
    let bytes_key = uncached.put(&payload(KIB)).expect("put");
    group.bench_function("resolve_uncached/bytes_1KiB", |b| {
        b.iter(|| {
            let proxy: Proxy<Bytes> = uncached.proxy_from_key(bytes_key.clone());
            Proxy::resolve(&proxy).expect("resolve");
            proxy
        })
    });
    let small: Small = (0..KIB / 8).map(|i| i as f64).collect();
    let small_key = uncached.put(&small).expect("put");
    group.bench_function("resolve_uncached/vec_f64_1KiB", |b| {
        b.iter(|| {
            let proxy: Proxy<Small> = uncached.proxy_from_key(small_key.clone());
            Proxy::resolve(&proxy).expect("resolve");
            proxy
        })
    });

    // Cache hits: the decoded object is handed out again without touching the connector.
    let cached = Store::new("bench-proxy-cached", LocalConnector::new());
    let key = cached.put(&small).expect("put");
    let first = cached.get::<Small>(&key).expect("get").expect("stored");
    let again = cached.get::<Small>(&key).expect("get").expect("stored");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second get was not a cache hit"
    );
    group.bench_function("cache_hit/store_get", |b| {
        b.iter(|| {
            cached
                .get::<Small>(black_box(&key))
                .expect("get")
                .expect("stored")
        })
    });
    group.bench_function("cache_hit/resolve_fresh_proxy", |b| {
        b.iter(|| {
            let proxy: Proxy<Small> = cached.proxy_from_key(key.clone());
            Proxy::resolve(&proxy).expect("resolve");
            proxy
        })
    });
    let resolved: Proxy<Small> = cached.proxy_from_key(key.clone());
    Proxy::resolve(&resolved).expect("resolve");
    group.bench_function("cache_hit/deref_resolved", |b| {
        b.iter(|| black_box(&resolved).len())
    });
    group.finish();
}

/// A representative record for the codec comparison: numbers, text and pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    step: u32,
    offset: i64,
    label: String,
    values: Vec<f64>,
    pairs: Vec<(u32, f32)>,
}

fn record() -> Record {
    Record {
        id: 0x1234_5678_9abc,
        step: 42,
        offset: -7,
        label: "sensor-17/temperature".to_string(),
        values: (0..1000).map(|i| (i as f64).sqrt() * 1.5).collect(),
        pairs: (0..100).map(|i| (i * 3, i as f32 * 0.25)).collect(),
    }
}

type Encode = fn(&Record) -> Vec<u8>;
type Decode = fn(&[u8]) -> Record;

fn codec(c: &mut Criterion) {
    let formats: [(&str, Encode, Decode); 3] = [
        (
            "bincode",
            |r| bincode::serialize(r).expect("bincode encode"),
            |b| bincode::deserialize(b).expect("bincode decode"),
        ),
        (
            "postcard",
            |r| postcard::to_allocvec(r).expect("postcard encode"),
            |b| postcard::from_bytes(b).expect("postcard decode"),
        ),
        (
            "rmp_serde",
            |r| rmp_serde::to_vec(r).expect("rmp encode"),
            |b| rmp_serde::from_slice(b).expect("rmp decode"),
        ),
    ];
    let value = record();
    let mut group = c.benchmark_group("codec");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500));
    for (name, encode, decode) in formats {
        let encoded = encode(&value);
        assert_eq!(decode(&encoded), value, "{name} does not round trip");
        eprintln!(
            "codec/{name}: the record encodes to {} bytes",
            encoded.len()
        );
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| encode(black_box(&value)))
        });
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| decode(black_box(&encoded)))
        });
        group.bench_function(BenchmarkId::new("roundtrip", name), |b| {
            b.iter(|| decode(&encode(black_box(&value))))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().nresamples(20_000).without_plots();
    targets = local, file, proxy, codec
}
criterion_main!(benches);
