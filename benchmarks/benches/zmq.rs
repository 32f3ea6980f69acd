//! Remote gets through `ZmqConnector` against a raw rust-zmq REQ/REP baseline, in one run,
//! over both paths a same-host reader can take, with every byte read.
//!
//! `cargo bench -p benchmarks --bench zmq` prints Markdown tables: for 1 KiB, 1 MiB and
//! 64 MiB, the median time of a remote get through a reader with same-host shared memory on
//! (the default: the reader maps the owner's memory) and through one with it off (TCP), the
//! raw REQ/REP fetch of the same size over TCP, throughputs and ratios, and a line with this
//! machine's own reference for that size measured in the same loop (a memcpy between two
//! warm buffers, and the checksum of one); then pipelined batches (64 x 1 KiB, 16 x 1 MiB)
//! against single gets, on both paths; then many readers (below).
//!
//! **Every get reads every byte it fetched**: the connector's gets, raw ZeroMQ's and the
//! batches' all go through the same [`checksum`] (its result through `black_box` and
//! compared with the object's), so no side is timed without touching its data. A shared
//! memory get that only mapped the owner's memory would otherwise look free; here it pays
//! for reading the bytes, as any user of the data does. The shared memory rows also assert
//! that every get of an object above the 64 KiB threshold was answered by mapping (1 KiB
//! objects stay below it and travel over TCP on both rows).
//!
//! The objects live in a child process (this benchmark re-executed with `ZMQ_BENCH_PEER`
//! set), as they would on another peer: a `ZmqConnector` that put them, and beside it a raw
//! `REP` socket that answers with the same buffers by reference (so the baseline is
//! zero-copy too). The parent fetches them with `ZmqConnector` clients that store nothing
//! and with a raw `REQ` socket.
//!
//! The page-fault column counts the fetching process's minor page faults per get: one fresh
//! receive buffer of 64 MiB is 16 384 of them, on both sides, and it is what bounds the
//! 64 MiB figure over TCP on this machine (the kernel zeroes and maps those pages on every
//! get); a mapped get faults only the first time it reads an object.
//!
//! The authenticated column fetches the same objects from a second `ZmqConnector` in the
//! child that requires a cluster secret, with a reader that has it: every request carries a
//! BLAKE3 proof that the peer checks, and every reply a proof bound to the request and to the
//! object's digest (computed once by the owner and kept with the object), which the reader
//! checks by hashing what it received over TCP (a descriptor's proof covers the descriptor,
//! not the bytes in shared memory).
//!
//! The sides alternate get by get (and which goes first) so that machine noise hits them
//! alike; compare the ratios, which come from the same run. Set `ZMQ_BENCH_QUICK=1` for a
//! short smoke run, `ZMQ_BENCH_NO_READERS=1` to leave out the many-readers part.
//!
//! Last, many readers: N = 1, 2, 4, 8 threads fetching distinct 1 MiB objects from one peer
//! at once, over shared memory and over TCP, aggregate GB/s against raw ZeroMQ with the same
//! N (`zmq_bench/many_readers.rs`).

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::raw::c_void;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Connector, Key, ZmqConnector, ZmqOptions};

#[path = "zmq_bench/many_readers.rs"]
mod many_readers;

const SIZES: [(usize, &str, usize); 3] = [
    (1 << 10, "1 KiB", 2000),
    (1 << 20, "1 MiB", 300),
    (64 << 20, "64 MiB", 12),
];
/// Objects of the small batch (1 KiB each).
const BATCH: usize = 64;
/// Objects of the large batch, and their size.
const BIG_BATCH: usize = 16;
const BIG_BATCH_SIZE: usize = 1 << 20;

/// Bytes copied or summed per sample of the reference line, at least (small sizes repeat).
const REFERENCE_BYTES: usize = 64 << 10;

/// Set in the child process that owns the objects.
const CHILD_ENV: &str = "ZMQ_BENCH_PEER";
/// The cluster secret of the authenticated peer (a benchmark, not a secret).
const SECRET: &str = "zmq benchmark cluster secret";

/// Reads every byte of `data` (eight at a time), so that a fetch is not timed without it.
/// The same function for every side: the connector's gets, raw ZeroMQ's, the batches, the
/// many readers and the reference line.
pub(crate) fn checksum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    let mut sum = 0u64;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        sum = sum.wrapping_add(u64::from_le_bytes(word));
    }
    chunks
        .remainder()
        .iter()
        .fold(sum, |sum, &b| sum.wrapping_add(u64::from(b)))
}

/// An object's bytes: a pattern (not all alike), which the checksums are compared with.
fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

fn payload(size: usize) -> &'static [u8] {
    Box::leak(pattern(size).into_boxed_slice())
}

/// The `i`th object of a batch.
fn batch_payload(i: usize, size: usize) -> Bytes {
    Bytes::from(vec![i as u8; size])
}

/// What the child's object of `size` bytes holds, to check a fetch against.
fn payload_of(size: usize) -> &'static [u8] {
    static ONE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let all = ONE.get_or_init(|| pattern(SIZES[SIZES.len() - 1].0));
    &all[..size]
}

/// The child process: puts the objects, serves them through its `ZmqConnector` and a raw
/// `REP` socket, prints where to find them, and exits when its standard input closes.
fn serve_peer() {
    let owner = ZmqConnector::new().expect("owner peer");
    let guarded = ZmqOptions::default()
        .with_secret(SECRET)
        .build()
        .expect("authenticated peer");
    let payloads: Vec<&'static [u8]> = SIZES.iter().map(|&(size, _, _)| payload(size)).collect();
    let guarded_ids: Vec<String> = payloads
        .iter()
        .map(|p| {
            let id = guarded.put(Bytes::from_static(p)).expect("put").id();
            format!("{id:x}")
        })
        .collect();
    let mut ids: Vec<u128> = payloads
        .iter()
        .map(|p| owner.put(Bytes::from_static(p)).expect("put").id())
        .collect();
    ids.extend((0..BATCH).map(|i| owner.put(batch_payload(i, 1 << 10)).expect("put").id()));
    ids.extend((0..BIG_BATCH).map(|i| {
        owner
            .put(batch_payload(i, BIG_BATCH_SIZE))
            .expect("put")
            .id()
    }));

    let context = zmq::Context::new();
    let mut rep = context.socket(zmq::REP).expect("REP socket");
    rep.set_linger(0).expect("linger");
    rep.bind("tcp://127.0.0.1:*").expect("bind");
    let raw_endpoint = rep.get_last_endpoint().expect("endpoint").expect("utf-8");
    std::thread::spawn(move || loop {
        let Ok(request) = rep.recv_msg(0) else { return };
        let index = request
            .first()
            .map_or(0, |&i| usize::from(i) % payloads.len());
        let data = payloads[index];
        let mut msg = zmq_sys::zmq_msg_t::default();
        // SAFETY: `data` is 'static and never written, so no free function is needed;
        // `msg` is initialised, sent (or closed) once, and `rep` is owned by this thread.
        unsafe {
            zmq_sys::zmq_msg_init_data(
                &mut msg,
                data.as_ptr() as *mut c_void,
                data.len(),
                None,
                std::ptr::null_mut(),
            );
            zmq_sys::zmq_msg_send(&mut msg, rep.as_mut_ptr(), 0);
            zmq_sys::zmq_msg_close(&mut msg);
        }
    });

    let ids: Vec<String> = ids.iter().map(|id| format!("{id:x}")).collect();
    println!(
        "{} {} {raw_endpoint} {} {}",
        owner.endpoint().expect("endpoint"),
        guarded.endpoint().expect("endpoint"),
        guarded_ids.join(" "),
        ids.join(" ")
    );
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The child process and what it printed.
struct Peer {
    child: Child,
    endpoint: String,
    guarded_endpoint: String,
    raw_endpoint: String,
    guarded_ids: Vec<u128>,
    ids: Vec<u128>,
}

impl Peer {
    fn spawn() -> Peer {
        let mut child = Command::new(std::env::current_exe().expect("benchmark binary"))
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the peer process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the peer's endpoints");
        let mut words = line.split_whitespace().map(str::to_string);
        let endpoint = words.next().expect("endpoint");
        let guarded_endpoint = words.next().expect("authenticated endpoint");
        let raw_endpoint = words.next().expect("raw endpoint");
        let mut ids: Vec<u128> = words
            .map(|w| u128::from_str_radix(&w, 16).expect("object id"))
            .collect();
        let guarded_ids = ids.drain(..SIZES.len()).collect();
        Peer {
            child,
            endpoint,
            guarded_endpoint,
            raw_endpoint,
            guarded_ids,
            ids,
        }
    }

    fn key(&self, index: usize) -> Key {
        Key::new("zmq", self.ids[index]).with_peer(self.endpoint.as_str())
    }

    fn guarded_key(&self, index: usize) -> Key {
        Key::new("zmq", self.guarded_ids[index]).with_peer(self.guarded_endpoint.as_str())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Minor page faults of this process so far: a receive buffer that the kernel must map
/// afresh shows here (16 384 per 64 MiB), and so does any copy into new memory.
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a `rusage`.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_minflt
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn gbps(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e9
}

fn fmt_time(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1.0 {
        format!("{:.0} ns", us * 1000.0)
    } else if us < 1000.0 {
        format!("{us:.1} us")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// How a reader fetches: same-host shared memory (the default) or TCP.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Shm,
    Tcp,
}

impl Path {
    const BOTH: [Path; 2] = [Path::Shm, Path::Tcp];

    /// A reader of this path: shared memory on (so it asks for descriptors) or off.
    fn reader(self, secret: Option<&str>) -> ZmqConnector {
        let options = ZmqOptions::default().with_shared_memory(self == Path::Shm);
        let options = match secret {
            Some(secret) => options.with_secret(secret),
            None => options,
        };
        ZmqConnector::client(options).expect("reader")
    }

    /// The row's label; `size` tells whether shared memory applies at all.
    fn label(self, size: usize) -> String {
        match self {
            Path::Shm if (size as u64) < SHM_MIN_SIZE => {
                "shared memory on (below its 64 KiB threshold: TCP)".to_string()
            }
            Path::Shm => "shared memory".to_string(),
            Path::Tcp => "TCP (shared memory off)".to_string(),
        }
    }
}

/// Smallest object a peer keeps in shared memory by default
/// (`ZmqOptions::with_shared_memory_min_size`).
const SHM_MIN_SIZE: u64 = 64 << 10;

/// Reads all of `data` and checks it against `expected` (what the object holds); the
/// checksum goes through `black_box`, so the read cannot be optimised away.
fn read_all(data: &[u8], size: usize, expected: u64) {
    assert_eq!(data.len(), size);
    assert_eq!(black_box(checksum(black_box(data))), expected);
}

/// One timed side of the single-get loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Raw,
    Plain(Path),
    Member(Path),
    Memcpy,
    Checksum,
}

const SIDES: [Side; 7] = [
    Side::Raw,
    Side::Plain(Path::Shm),
    Side::Plain(Path::Tcp),
    Side::Member(Path::Shm),
    Side::Member(Path::Tcp),
    Side::Memcpy,
    Side::Checksum,
];

/// Times and page faults of one side.
#[derive(Default)]
struct Samples {
    times: Vec<Duration>,
    faults: i64,
}

impl Samples {
    fn time(&mut self, f: impl FnOnce()) {
        let (faults, started) = (minor_faults(), Instant::now());
        f();
        self.times.push(started.elapsed());
        self.faults += minor_faults() - faults;
    }

    fn median(&mut self) -> Duration {
        median(&mut self.times)
    }

    fn faults_per_get(&self) -> i64 {
        self.faults / self.times.len().max(1) as i64
    }
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return serve_peer();
    }
    if std::env::var_os(many_readers::CHILD_ENV).is_some() {
        return many_readers::serve_peer();
    }
    let quick = std::env::var_os("ZMQ_BENCH_QUICK").is_some();
    let peer = Peer::spawn();
    let plain = Path::BOTH.map(|path| path.reader(None));
    let member = Path::BOTH.map(|path| path.reader(Some(SECRET)));
    let reader = |side: Side| match side {
        Side::Plain(path) => &plain[path as usize],
        Side::Member(path) => &member[path as usize],
        _ => unreachable!("not a connector side"),
    };
    let raw_context = zmq::Context::new();
    let req = raw_context.socket(zmq::REQ).expect("REQ socket");
    req.set_linger(0).expect("linger");
    req.connect(&peer.raw_endpoint).expect("connect");

    println!(
        "Remote gets from a peer in another process, every byte read (checksum), {} cores, load average {}",
        std::thread::available_parallelism().map_or(1, usize::from),
        load_average()
    );
    println!();
    println!("| size | path | ZmqConnector get (median) | connector throughput | raw zmq REQ/REP over TCP (median) | raw throughput | connector / raw | page faults per get (connector / raw) | authenticated get (median) | authenticated / plain |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut small_p50 = (Duration::ZERO, Duration::ZERO);
    for (index, &(size, label, iterations)) in SIZES.iter().enumerate() {
        let iterations = if quick {
            iterations / 10 + 1
        } else {
            iterations
        };
        let key = peer.key(index);
        let guarded_key = peer.guarded_key(index);
        let source = payload_of(size);
        let expected = checksum(source);
        let mut copy = vec![1u8; size];
        // The reference operations of small sizes are repeated within one sample (64 KiB in
        // all), so that the clock's own cost does not dominate them.
        let reference_reps = (REFERENCE_BYTES / size).max(1);
        let get = |side: Side| match side {
            Side::Raw => {
                req.send(&[index as u8][..], 0).expect("raw send");
                let reply = req.recv_msg(0).expect("raw recv");
                read_all(&reply, size, expected);
            }
            Side::Plain(_) | Side::Member(_) => {
                let key = if matches!(side, Side::Plain(_)) {
                    &key
                } else {
                    &guarded_key
                };
                let data = reader(side).get(key).expect("remote get").expect("present");
                read_all(&data, size, expected);
            }
            Side::Memcpy | Side::Checksum => unreachable!("not a get"),
        };
        // Warm up connections, allocators, caches and the owner's shared memory (objects
        // up to 16 MiB enter it on their first same-host read).
        for _ in 0..(iterations / 5 + 2) {
            for side in SIDES {
                if !matches!(side, Side::Memcpy | Side::Checksum) {
                    get(side);
                }
            }
        }
        let mapped_before = [plain[0].mapped_reads(), member[0].mapped_reads()];
        let mut samples: Vec<Samples> = SIDES.iter().map(|_| Samples::default()).collect();
        // Every side once per iteration, starting from a different one each time, so that
        // noise on this shared machine falls on all alike.
        for i in 0..iterations {
            for k in 0..SIDES.len() {
                let s = (i + k) % SIDES.len();
                match SIDES[s] {
                    Side::Memcpy => samples[s].time(|| {
                        for _ in 0..reference_reps {
                            black_box(&mut copy[..]).copy_from_slice(black_box(source));
                        }
                    }),
                    Side::Checksum => samples[s].time(|| {
                        for _ in 0..reference_reps {
                            black_box(checksum(black_box(source)));
                        }
                    }),
                    side => samples[s].time(|| get(side)),
                }
            }
        }
        assert_eq!(
            checksum(&copy),
            expected,
            "the timed memcpy copied the object"
        );
        // The shared memory rows are what they say: every get of an object above the
        // threshold was answered by mapping the owner's memory, none below it.
        let mapped = [
            plain[0].mapped_reads() - mapped_before[0],
            member[0].mapped_reads() - mapped_before[1],
        ];
        let want = if size as u64 >= SHM_MIN_SIZE {
            iterations as u64
        } else {
            0
        };
        assert_eq!(mapped, [want, want], "{label}: gets answered by mapping");

        let raw = samples[0].median();
        let raw_faults = samples[0].faults_per_get();
        for path in Path::BOTH {
            let s = SIDES
                .iter()
                .position(|&x| x == Side::Plain(path))
                .expect("side");
            let m = SIDES
                .iter()
                .position(|&x| x == Side::Member(path))
                .expect("side");
            let connector = samples[s].median();
            let authenticated = samples[m].median();
            if size == 1 << 10 && path == Path::Tcp {
                small_p50 = (
                    percentile(&mut samples[s].times, 0.5),
                    percentile(&mut samples[0].times, 0.5),
                );
            }
            println!(
                "| {label} | {} | {} | {:.2} GB/s | {} | {:.2} GB/s | {:.2}x | {} / {} | {} | {:.2}x |",
                path.label(size),
                fmt_time(connector),
                gbps(size, connector),
                fmt_time(raw),
                gbps(size, raw),
                raw.as_secs_f64() / connector.as_secs_f64(),
                samples[s].faults_per_get(),
                raw_faults,
                fmt_time(authenticated),
                authenticated.as_secs_f64() / connector.as_secs_f64(),
            );
        }
        let memcpy = samples[5].median() / reference_reps as u32;
        let sum = samples[6].median() / reference_reps as u32;
        println!(
            "| {label} | this machine: memcpy (warm buffers) / checksum of the object | memcpy {} | {:.2} GB/s | checksum {} | {:.2} GB/s | | | | |",
            fmt_time(memcpy),
            gbps(size, memcpy),
            fmt_time(sum),
            gbps(size, sum),
        );
    }
    println!();
    println!(
        "1 KiB p50 latency over TCP: connector {} vs raw {} ({:.2}x)",
        fmt_time(small_p50.0),
        fmt_time(small_p50.1),
        small_p50.0.as_secs_f64() / small_p50.1.as_secs_f64()
    );

    batches(&peer, &plain, quick);
    drop(peer);

    // `ZMQ_BENCH_NO_READERS=1` ends the run here (the gets above only).
    if std::env::var_os("ZMQ_BENCH_NO_READERS").is_none() {
        many_readers::run(quick);
    }
}

/// Pipelining: one `get_batch` of n objects against n single gets, both paths, every byte
/// read.
fn batches(peer: &Peer, readers: &[ZmqConnector; 2], quick: bool) {
    println!();
    println!("| batch | path | get_batch (median) | batch throughput | single gets, one after another (median) | single throughput | batch / single |");
    println!("|---|---|---|---|---|---|---|");
    for (first, count, size, label) in [
        (SIZES.len(), BATCH, 1 << 10, "1 KiB"),
        (SIZES.len() + BATCH, BIG_BATCH, BIG_BATCH_SIZE, "1 MiB"),
    ] {
        let keys: Vec<Key> = (first..first + count).map(|i| peer.key(i)).collect();
        let expected: Vec<u64> = (0..count)
            .map(|i| checksum(&batch_payload(i, size)))
            .collect();
        let check = |got: &[Option<Bytes>]| {
            assert_eq!(got.len(), count);
            for (data, &expected) in got.iter().zip(&expected) {
                read_all(data.as_deref().expect("present"), size, expected);
            }
        };
        let rounds = if quick { 5 } else { 100 };
        let mut times = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        for round in 0..rounds + 2 {
            for k in 0..4 {
                let case = (round + k) % 4;
                let (path, batched) = (case / 2, case % 2 == 0);
                let reader = &readers[path];
                let started = Instant::now();
                if batched {
                    check(&reader.get_batch(&keys).expect("get_batch"));
                } else {
                    let got: Vec<Option<Bytes>> = keys
                        .iter()
                        .map(|key| reader.get(key).expect("get"))
                        .collect();
                    check(&got);
                }
                // The first two rounds warm up (and fill the owner's shared memory).
                if round >= 2 {
                    times[path][usize::from(!batched)].push(started.elapsed());
                }
            }
        }
        for path in Path::BOTH {
            let [batch, single] = &mut times[path as usize];
            let (batch, single) = (median(batch), median(single));
            println!(
                "| {count} x {label} | {} | {} | {:.2} GB/s | {} | {:.2} GB/s | {:.1}x |",
                path.label(size),
                fmt_time(batch),
                gbps(count * size, batch),
                fmt_time(single),
                gbps(count * size, single),
                single.as_secs_f64() / batch.as_secs_f64()
            );
        }
    }
}

/// The 1-minute load average, to print beside the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
