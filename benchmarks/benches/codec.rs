//! Criterion benchmarks of the codecs on plain numeric arrays: `PodCodec` against
//! `DefaultCodec` (bincode), encoding and decoding a `Vec<f64>` of 1 KiB, 1 MiB and 64 MiB,
//! side by side in one run.
//!
//! Run with `cargo bench -p benchmarks --bench codec` (append `-- 64MiB` for one size, or
//! `-- pod` for one codec). The results are in `benchmarks/README.md`.
//!
//! Benchmarks, per size (`codec_f64/<bench>/<size>`):
//! - `default_encode`, `pod_encode`: `Codec::encode(&Vec<f64>)`;
//! - `pod_encode_owned`: `Codec::encode_owned(Vec<f64>)` of a vector with spare capacity for
//!   the trailer (the buffer is moved, not copied; the clone that makes each input is not
//!   timed);
//! - `default_decode`, `pod_decode_vec`: decoding to `Vec<f64>`;
//! - `pod_decode_array`: decoding to `PodArray<f64>` (a view of the bytes: no copy).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use proxy_core::{Codec, DefaultCodec, PodArray, PodCodec};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

const SIZES: [(usize, &str); 3] = [(KIB, "1KiB"), (MIB, "1MiB"), (64 * MIB, "64MiB")];

/// `bytes / 8` numbers, with room for `PodCodec`'s trailer (as a producer that knows it
/// will store the vector would allocate it).
fn values(bytes: usize) -> Vec<f64> {
    let n = bytes / std::mem::size_of::<f64>();
    let mut v = Vec::with_capacity(n + PodCodec::TRAILER_LEN / std::mem::size_of::<f64>());
    v.extend((0..n).map(|i| i as f64 * 0.25));
    v
}

fn codec_f64(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec_f64");
    for (len, label) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        if len >= 64 * MIB {
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
        } else {
            group
                .sample_size(30)
                .sampling_mode(SamplingMode::Auto)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1));
        }
        // Inputs made ahead of a batch of timed calls, bounded in memory.
        let batch = match len {
            l if l >= 64 * MIB => BatchSize::PerIteration,
            l if l >= MIB => BatchSize::LargeInput,
            _ => BatchSize::SmallInput,
        };
        let input = values(len);
        let default_bytes: Bytes =
            <DefaultCodec as Codec<Vec<f64>>>::encode(&input).expect("default encode");
        let pod_bytes: Bytes = <PodCodec as Codec<Vec<f64>>>::encode(&input).expect("pod encode");
        // Once, outside the timing: both decode to the input, and the view is in place.
        let check: Vec<f64> = DefaultCodec::decode(default_bytes.clone()).expect("decode");
        assert_eq!(check, input);
        let view: PodArray<f64> = PodCodec::decode(pod_bytes.clone()).expect("decode");
        assert!(view.is_view() && view[..] == input[..]);

        group.bench_with_input(BenchmarkId::new("default_encode", label), &input, |b, v| {
            b.iter(|| <DefaultCodec as Codec<Vec<f64>>>::encode(black_box(v)).expect("encode"))
        });
        group.bench_with_input(BenchmarkId::new("pod_encode", label), &input, |b, v| {
            b.iter(|| <PodCodec as Codec<Vec<f64>>>::encode(black_box(v)).expect("encode"))
        });
        group.bench_with_input(
            BenchmarkId::new("pod_encode_owned", label),
            &input,
            |b, v| {
                b.iter_batched(
                    || {
                        let mut owned = Vec::with_capacity(v.capacity());
                        owned.extend_from_slice(v);
                        owned
                    },
                    |owned| <PodCodec as Codec<Vec<f64>>>::encode_owned(owned).expect("encode"),
                    batch,
                )
            },
        );
        group.bench_with_input(
            BenchmarkId::new("default_decode", label),
            &default_bytes,
            |b, bytes| {
                b.iter(|| {
                    let v: Vec<f64> =
                        DefaultCodec::decode(black_box(bytes.clone())).expect("decode");
                    v
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("pod_decode_vec", label),
            &pod_bytes,
            |b, bytes| {
                b.iter(|| {
                    let v: Vec<f64> = PodCodec::decode(black_box(bytes.clone())).expect("decode");
                    v
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("pod_decode_array", label),
            &pod_bytes,
            |b, bytes| {
                b.iter(|| {
                    let v: PodArray<f64> =
                        PodCodec::decode(black_box(bytes.clone())).expect("decode");
                    v
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, codec_f64);
criterion_main!(benches);
