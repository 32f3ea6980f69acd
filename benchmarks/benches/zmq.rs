//! Remote gets through `ZmqConnector` against a raw rust-zmq REQ/REP baseline, in one run.
//!
//! `cargo bench -p benchmarks --bench zmq` prints a Markdown table: for 1 KiB, 1 MiB and
//! 64 MiB, the median time of a remote get and of a raw REQ/REP fetch of the same size, their
//! throughputs and ratio; and a pipelined batch of 64 x 1 KiB against 64 single gets.
//!
//! The objects live in a child process (this benchmark re-executed with `ZMQ_BENCH_PEER`
//! set), as they would on another peer: a `ZmqConnector` that put them, and beside it a raw
//! `REP` socket that answers with the same buffers by reference (so the baseline is
//! zero-copy too). The parent fetches over TCP loopback with a `ZmqConnector` that stores
//! nothing and with a raw `REQ` socket.
//!
//! The last column counts the fetching process's minor page faults per get: one fresh
//! receive buffer of 64 MiB is 16 384 of them, on both sides, and it is what bounds the
//! 64 MiB figure on this machine (the kernel zeroes and maps those pages on every get).
//!
//! The authenticated column fetches the same objects from a second `ZmqConnector` in the
//! child that requires a cluster secret, with a reader that has it: every request carries a
//! BLAKE3 proof that the peer checks, and every reply a proof bound to the request and to the
//! object's digest (computed once by the owner and kept with the object), which the reader
//! checks by hashing what it received.
//!
//! Every get goes over TCP (the readers turn same-host shared memory off) and every side
//! reads every byte it fetched (a checksum), so that no side is timed without touching its
//! data.
//!
//! The sides alternate get by get so that machine noise hits them alike; compare the
//! ratios, which come from the same run. Set `ZMQ_BENCH_QUICK=1` for a short smoke run,
//! `ZMQ_BENCH_NO_READERS=1` to leave out the many-readers part.
//!
//! Last, many readers: N = 1, 2, 4, 8 threads fetching distinct 1 MiB objects from one peer
//! at once, aggregate GB/s against raw ZeroMQ with the same N (`zmq_bench/many_readers.rs`).

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
const BATCH: usize = 64;

/// Set in the child process that owns the objects.
const CHILD_ENV: &str = "ZMQ_BENCH_PEER";
/// The cluster secret of the authenticated peer (a benchmark, not a secret).
const SECRET: &str = "zmq benchmark cluster secret";

/// Reads every byte of `data` (eight at a time), so that a fetch is not timed without it.
fn checksum(data: &[u8]) -> u64 {
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

fn payload(size: usize) -> &'static [u8] {
    Box::leak(vec![0xabu8; size].into_boxed_slice())
}

/// What the child's object of `size` bytes holds, to check a fetch against.
fn payload_of(size: usize) -> &'static [u8] {
    static ONE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let all = ONE.get_or_init(|| vec![0xabu8; SIZES[SIZES.len() - 1].0]);
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
    ids.extend((0..BATCH).map(|i| {
        owner
            .put(Bytes::from(vec![i as u8; 1 << 10]))
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
    if us < 1000.0 {
        format!("{us:.1} us")
    } else {
        format!("{:.2} ms", us / 1000.0)
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
    // Over TCP: without shared memory the readers never ask for descriptors.
    let reader =
        ZmqConnector::client(ZmqOptions::default().with_shared_memory(false)).expect("reader");
    let member = ZmqConnector::client(
        ZmqOptions::default()
            .with_secret(SECRET)
            .with_shared_memory(false),
    )
    .expect("member reader");
    let raw_context = zmq::Context::new();
    let req = raw_context.socket(zmq::REQ).expect("REQ socket");
    req.set_linger(0).expect("linger");
    req.connect(&peer.raw_endpoint).expect("connect");

    println!("| size | ZmqConnector remote get (median) | raw zmq REQ/REP (median) | connector throughput | raw throughput | connector / raw | page faults per get (connector / raw) | authenticated get (median) | authenticated / plain |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut small_p50 = (Duration::ZERO, Duration::ZERO);
    for (index, &(size, label, iterations)) in SIZES.iter().enumerate() {
        let iterations = if quick {
            iterations / 10 + 1
        } else {
            iterations
        };
        let key = peer.key(index);
        let guarded_key = peer.guarded_key(index);
        let expected = checksum(payload_of(size));
        let raw_get = || {
            req.send(&[index as u8][..], 0).expect("raw send");
            let reply = req.recv_msg(0).expect("raw recv");
            assert_eq!(reply.len(), size);
            assert_eq!(checksum(&reply), expected);
        };
        let connector_get = || {
            let data = reader.get(&key).expect("remote get").expect("present");
            assert_eq!(data.len(), size);
            assert_eq!(checksum(&data), expected);
        };
        let member_get = || {
            let data = member
                .get(&guarded_key)
                .expect("authenticated get")
                .expect("present");
            assert_eq!(data.len(), size);
            assert_eq!(checksum(&data), expected);
        };
        // Warm up connections, allocators and caches.
        for _ in 0..(iterations / 5 + 2) {
            raw_get();
            connector_get();
            member_get();
        }
        // Alternate the two sides get by get (and which goes first), so that noise on this
        // shared machine falls on both alike.
        let (mut raw_times, mut connector_times) = (Vec::new(), Vec::new());
        let mut member_times = Vec::new();
        let (mut raw_faults, mut connector_faults) = (0, 0);
        for i in 0..iterations {
            let mut time_raw = || {
                let (faults, t) = (minor_faults(), Instant::now());
                raw_get();
                raw_times.push(t.elapsed());
                raw_faults += minor_faults() - faults;
            };
            let mut time_connector = || {
                let (faults, t) = (minor_faults(), Instant::now());
                connector_get();
                connector_times.push(t.elapsed());
                connector_faults += minor_faults() - faults;
            };
            let mut time_member = || {
                let t = Instant::now();
                member_get();
                member_times.push(t.elapsed());
            };
            match i % 3 {
                0 => {
                    time_raw();
                    time_connector();
                    time_member();
                }
                1 => {
                    time_member();
                    time_raw();
                    time_connector();
                }
                _ => {
                    time_connector();
                    time_member();
                    time_raw();
                }
            }
        }
        let raw_median = median(&mut raw_times);
        let connector_median = median(&mut connector_times);
        let member_median = median(&mut member_times);
        if size == 1 << 10 {
            small_p50 = (
                percentile(&mut connector_times, 0.5),
                percentile(&mut raw_times, 0.5),
            );
        }
        println!(
            "| {label} | {} | {} | {:.2} GB/s | {:.2} GB/s | {:.2}x | {} / {} | {} | {:.2}x |",
            fmt_time(connector_median),
            fmt_time(raw_median),
            gbps(size, connector_median),
            gbps(size, raw_median),
            gbps(size, connector_median) / gbps(size, raw_median),
            connector_faults / iterations as i64,
            raw_faults / iterations as i64,
            fmt_time(member_median),
            member_median.as_secs_f64() / connector_median.as_secs_f64(),
        );
    }
    println!();
    println!(
        "1 KiB p50 latency: connector {} vs raw {} ({:.2}x)",
        fmt_time(small_p50.0),
        fmt_time(small_p50.1),
        small_p50.0.as_secs_f64() / small_p50.1.as_secs_f64()
    );

    // Pipelining: one batch of BATCH small objects against BATCH single gets.
    let keys: Vec<Key> = (SIZES.len()..SIZES.len() + BATCH)
        .map(|i| peer.key(i))
        .collect();
    let rounds = if quick { 5 } else { 100 };
    let (mut batch_times, mut serial_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let got = reader.get_batch(&keys).expect("get_batch");
        batch_times.push(t.elapsed());
        assert!(got.iter().all(Option::is_some));
        let t = Instant::now();
        for key in &keys {
            reader.get(key).expect("get").expect("present");
        }
        serial_times.push(t.elapsed());
    }
    let (batch, serial) = (median(&mut batch_times), median(&mut serial_times));
    println!(
        "{BATCH} x 1 KiB: get_batch {} vs {BATCH} single gets {} ({:.1}x faster)",
        fmt_time(batch),
        fmt_time(serial),
        serial.as_secs_f64() / batch.as_secs_f64()
    );

    drop(peer);

    // `ZMQ_BENCH_NO_READERS=1` ends the run here (the gets above only).
    if std::env::var_os("ZMQ_BENCH_NO_READERS").is_none() {
        many_readers::run(quick);
    }
}
