//! Many readers, one peer: N threads (N = 1, 2, 4, 8) fetch distinct 1 MiB objects from one
//! peer at once, through `ZmqConnector` with same-host shared memory on (each get maps the
//! owner's memory), through `ZmqConnector` over TCP (shared memory off) and through raw
//! ZeroMQ (TCP), in the same run. Every reader reads every byte it fetched (the same
//! checksum as the single gets, compared with the object's).
//!
//! The objects live in a child process (this benchmark re-executed with
//! [`CHILD_ENV`] set): a `ZmqConnector` that put them, and a raw `ROUTER` socket served by
//! one thread that answers with the same buffers by reference (zero copy), on its own context
//! with as many I/O threads as the connector's (`ZmqConnector::io_threads`). Each reader
//! thread of the parent has its own client, as separate consumers would: a
//! `ZmqConnector::client` (one `DEALER` per thread; shared memory on or off) or a raw
//! `DEALER` socket (on one raw context per process, same I/O threads). Reader `r` reads only
//! its own objects.
//!
//! A round: every reader connects and warms up, then all start together (a barrier) and
//! make their share of [`GETS_PER_ROUND`] gets; the round's time runs from the barrier to the
//! last reader's end. Aggregate GB/s = bytes fetched and read / that time. The three sides'
//! rounds alternate (and which goes first), so the machine's noise falls on all alike; the
//! table shows medians and their ratios.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::raw::c_void;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Connector, Key, ZmqConnector, ZmqOptions};

use crate::checksum;

/// Set in the child process that owns the objects.
pub(crate) const CHILD_ENV: &str = "ZMQ_BENCH_READERS_PEER";

const OBJECT: usize = 1 << 20;
const READERS: [usize; 4] = [1, 2, 4, 8];
const MAX_READERS: usize = 8;
/// Distinct objects per reader.
const OBJECTS_PER_READER: usize = 8;
/// 1 MiB gets per round, split evenly over the readers (256 MiB per round).
const GETS_PER_ROUND: usize = 256;
const ROUNDS: usize = 5;

/// The child process: puts `MAX_READERS x OBJECTS_PER_READER` objects, serves them through
/// its `ZmqConnector` and a raw `ROUTER`, prints the endpoints and ids, and exits when its
/// standard input closes.
pub(crate) fn serve_peer() {
    let owner = ZmqConnector::new().expect("owner peer");
    let count = MAX_READERS * OBJECTS_PER_READER;
    let payloads: Vec<&'static [u8]> = (0..count)
        .map(|i| &*Box::leak(object(i).into_boxed_slice()))
        .collect();
    let ids: Vec<String> = payloads
        .iter()
        .map(|p| format!("{:x}", owner.put(Bytes::from_static(p)).expect("put").id()))
        .collect();

    let raw_context = raw_context();
    let mut router = raw_context.socket(zmq::ROUTER).expect("ROUTER socket");
    router.set_linger(0).expect("linger");
    router.bind("tcp://127.0.0.1:*").expect("bind");
    let raw_endpoint = router
        .get_last_endpoint()
        .expect("endpoint")
        .expect("utf-8");
    std::thread::spawn(move || loop {
        // [identity, 4-byte index] in; [identity, payload by reference] out.
        let Ok(identity) = router.recv_msg(0) else {
            return;
        };
        let Ok(request) = router.recv_msg(0) else {
            return;
        };
        let index = <[u8; 4]>::try_from(&request[..]).map_or(0, u32::from_le_bytes) as usize;
        let data = payloads[index % payloads.len()];
        if router.send(identity, zmq::SNDMORE).is_err() {
            continue;
        }
        let mut msg = zmq_sys::zmq_msg_t::default();
        // SAFETY: `data` is 'static and never written, so no free function is needed;
        // `msg` is initialised, sent (or closed) once, and `router` is owned by this thread.
        unsafe {
            zmq_sys::zmq_msg_init_data(
                &mut msg,
                data.as_ptr() as *mut c_void,
                data.len(),
                None,
                std::ptr::null_mut(),
            );
            zmq_sys::zmq_msg_send(&mut msg, router.as_mut_ptr(), 0);
            zmq_sys::zmq_msg_close(&mut msg);
        }
    });

    println!(
        "{} {raw_endpoint} {}",
        owner.endpoint().expect("endpoint"),
        ids.join(" ")
    );
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// The bytes of object `i`.
fn object(i: usize) -> Vec<u8> {
    vec![i as u8; OBJECT]
}

/// A context for the raw baseline with as many I/O threads as the connector's.
fn raw_context() -> zmq::Context {
    let context = zmq::Context::new();
    context
        .set_io_threads(ZmqConnector::io_threads() as i32)
        .expect("raw context I/O threads");
    context
}

struct Peer {
    child: Child,
    endpoint: String,
    raw_endpoint: String,
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
        let raw_endpoint = words.next().expect("raw endpoint");
        let ids = words
            .map(|w| u128::from_str_radix(&w, 16).expect("object id"))
            .collect();
        Peer {
            child,
            endpoint,
            raw_endpoint,
            ids,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// `ZmqConnector`, same-host shared memory on.
    Shm,
    /// `ZmqConnector`, shared memory off.
    Tcp,
    Raw,
}

const SIDES: [Side; 3] = [Side::Shm, Side::Tcp, Side::Raw];

/// One round with `readers` threads; returns the aggregate time.
fn round(
    peer: &Arc<Peer>,
    raw: &zmq::Context,
    side: Side,
    readers: usize,
    gets: usize,
) -> Duration {
    let barrier = Arc::new(Barrier::new(readers + 1));
    let threads: Vec<_> = (0..readers)
        .map(|reader| {
            let barrier = Arc::clone(&barrier);
            let peer = Arc::clone(peer);
            let raw = raw.clone();
            std::thread::spawn(move || {
                let objects: Vec<usize> = (0..OBJECTS_PER_READER)
                    .map(|i| reader * OBJECTS_PER_READER + i)
                    .collect();
                let expected: Vec<u64> = objects.iter().map(|&i| checksum(&object(i))).collect();
                let read = move |n: usize, data: &[u8]| {
                    assert_eq!(data.len(), OBJECT);
                    assert_eq!(
                        black_box(checksum(black_box(data))),
                        expected[n % expected.len()]
                    );
                };
                let mut client = None;
                let mut get: Box<dyn FnMut(usize)> = match side {
                    Side::Shm | Side::Tcp => {
                        let connector = ZmqConnector::client(
                            ZmqOptions::default().with_shared_memory(side == Side::Shm),
                        )
                        .expect("reader");
                        client = Some(connector.clone());
                        let keys: Vec<Key> = objects
                            .iter()
                            .map(|&i| {
                                Key::new("zmq", peer.ids[i]).with_peer(peer.endpoint.as_str())
                            })
                            .collect();
                        Box::new(move |n| {
                            let data = connector
                                .get(&keys[n % keys.len()])
                                .expect("remote get")
                                .expect("present");
                            read(n, &data);
                        })
                    }
                    Side::Raw => {
                        let socket = raw.socket(zmq::DEALER).expect("DEALER socket");
                        socket.set_linger(0).expect("linger");
                        socket.connect(&peer.raw_endpoint).expect("connect");
                        Box::new(move |n| {
                            let index = objects[n % objects.len()] as u32;
                            socket.send(&index.to_le_bytes()[..], 0).expect("raw send");
                            let reply = socket.recv_msg(0).expect("raw recv");
                            read(n, &reply);
                        })
                    }
                };
                // Connect and warm up before the clock starts (this also puts each object
                // in the owner's shared memory on its first same-host read).
                for n in 0..OBJECTS_PER_READER {
                    get(n);
                }
                barrier.wait();
                for n in 0..gets {
                    get(n);
                }
                // The shared memory side is what it says: every get was answered by mapping.
                if let Some(client) = client {
                    let want = if side == Side::Shm {
                        (OBJECTS_PER_READER + gets) as u64
                    } else {
                        0
                    };
                    assert_eq!(client.mapped_reads(), want, "gets answered by mapping");
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for thread in threads {
        thread.join().expect("reader thread");
    }
    started.elapsed()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Runs the case and prints its table.
pub(crate) fn run(quick: bool) {
    let peer = Arc::new(Peer::spawn());
    let raw = raw_context();
    let (rounds, gets_per_round) = if quick {
        (1, GETS_PER_ROUND / 8)
    } else {
        (ROUNDS, GETS_PER_ROUND)
    };
    println!();
    println!(
        "Many readers: N threads each fetching its own 1 MiB objects from one peer and reading every byte ({} libzmq I/O thread(s) per process, {} cores; {} x 1 MiB per round, median of {rounds} rounds)",
        ZmqConnector::io_threads(),
        std::thread::available_parallelism().map_or(1, usize::from),
        gets_per_round,
    );
    println!();
    println!("| readers | ZmqConnector, shared memory | ZmqConnector, TCP | raw zmq (TCP) | shared memory / raw | TCP / raw |");
    println!("|---|---|---|---|---|---|");
    for readers in READERS {
        let gets = gets_per_round.div_ceil(readers);
        let bytes = (gets * readers * OBJECT) as f64;
        let mut times: [Vec<Duration>; 3] = Default::default();
        for r in 0..rounds {
            for k in 0..SIDES.len() {
                let s = (r + k) % SIDES.len();
                times[s].push(round(&peer, &raw, SIDES[s], readers, gets));
            }
        }
        let [shm, tcp, raw_rate] = times.map(|mut t| bytes / median(&mut t).as_secs_f64() / 1e9);
        println!(
            "| {readers} | {shm:.2} GB/s | {tcp:.2} GB/s | {raw_rate:.2} GB/s | {:.2}x | {:.2}x |",
            shm / raw_rate,
            tcp / raw_rate
        );
    }
}
