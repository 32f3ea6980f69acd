//! `RedisConnector` put and get against a local `redis-server` that the bench starts itself.
//!
//! `cargo bench -p benchmarks --bench redis`. Reference (Python ProxyStore 1.1.0, same
//! machine): 1 KiB get 151 us, 1 MiB get 2.5 ms, 64 MiB get 163 MB/s.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use proxy_core::testing::RedisServer;
use proxy_core::{Connector, RedisConnector};

const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (1 << 20, "1MiB"), (64 << 20, "64MiB")];

fn redis_put_get(c: &mut Criterion) {
    let server = RedisServer::start();
    let connector = RedisConnector::new(server.url()).expect("connect to the bench's redis-server");

    for (size, label) in SIZES {
        let data = Bytes::from(vec![0xa5u8; size]);
        let mut group = c.benchmark_group("redis");
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 64 << 20 {
            // Ten samples of one operation each: about ten seconds per benchmark.
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(5));
        }

        group.bench_function(BenchmarkId::new("put", label), |b| {
            // Time the put only; evict each object afterwards so the server does not fill up.
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    let key = connector.put(data.clone()).expect("put");
                    spent += started.elapsed();
                    connector.evict(&key).expect("evict");
                }
                spent
            })
        });

        let key = connector.put(data.clone()).expect("put");
        group.bench_function(BenchmarkId::new("get", label), |b| {
            b.iter(|| {
                let object = connector.get(&key).expect("get").expect("object present");
                assert_eq!(object.len(), size);
                object
            })
        });
        connector.evict(&key).expect("evict");
        group.finish();
    }
}

/// The group lives in a private module: `criterion_group!` makes an undocumented `pub fn`.
mod group {
    criterion::criterion_group!(benches, super::redis_put_get);
}

criterion_main!(group::benches);
