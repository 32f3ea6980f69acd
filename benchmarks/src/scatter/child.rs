//! One process of one measured point: a Timely cluster member, a raw ZeroMQ peer, or an
//! iceoryx2 producer or receiver (`child/iceoryx.rs`).
//!
//! # The timed interval
//! Timely modes: every worker first completes an empty epoch 0 (so the cluster is connected
//! and the dataflow is built everywhere); then worker 0 of process 0 starts its clock,
//! produces every payload (in epochs of `batch` records, at most `window` epochs in flight)
//! and stops the clock when its probe shows that *every* worker's consumer has finished the
//! last epoch. Raw ZeroMQ: process 0 starts its clock once every receiver has answered a
//! hello over its data socket, and stops it when every receiver has reported that it read
//! its last payload. Payload creation (one copy of a template) is inside the interval in
//! every mode; process start, connection set-up and teardown are not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataflow_plugin::{AutoProxy, ProxyInPlace, ProxyRecords, Resolve};
use proxy_core::{register_store, Store, ZmqOptions};
use timely::dataflow::operators::vec::{Broadcast, Filter, Map};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};
use timely::worker::Worker;
use timely::ExchangeData;

use super::cli::ChildSpec;
use super::rss::peak_rss_kib;
use super::workloads::{index_of, Mode, Payloads, Workload, AUTO_THRESHOLD};

mod iceoryx;

/// The name of the store of the proxy and auto modes in every process.
pub const STORE_NAME: &str = "scatter-bench";

/// What one child reports to the parent, as one line on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildReport {
    /// The process index.
    pub process: usize,
    /// The timed interval (process 0 only).
    pub elapsed: Option<Duration>,
    /// Payload bytes read and verified by this process's consumers.
    pub bytes: u64,
    /// Payloads read and verified by this process's consumers.
    pub records: u64,
    /// Peak resident memory of the process, in KiB.
    pub peak_rss_kib: Option<u64>,
    /// Objects left in this process's store after the dataflow (store modes only).
    pub objects_left: Option<usize>,
}

const RESULT_PREFIX: &str = "SCATTER-RESULT";

impl ChildReport {
    /// The line the child prints.
    pub fn to_line(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        format!(
            "{RESULT_PREFIX} process={} elapsed_ns={} bytes={} records={} peak_rss_kib={} objects_left={}",
            self.process,
            opt(self.elapsed.map(|d| d.as_nanos() as u64)),
            self.bytes,
            self.records,
            opt(self.peak_rss_kib),
            opt(self.objects_left.map(|n| n as u64)),
        )
    }

    /// Parses a line made by [`to_line`](ChildReport::to_line); `None` for other lines.
    pub fn parse(line: &str) -> Option<Result<ChildReport, String>> {
        let rest = line.strip_prefix(RESULT_PREFIX)?;
        let field = |name: &str| -> Result<Option<u64>, String> {
            let text = rest
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .ok_or_else(|| format!("result line without {name}: {line}"))?;
            if text == "-" {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| format!("bad {name} in result line: {line}"))
        };
        let required = |name: &str| -> Result<u64, String> {
            field(name)?.ok_or_else(|| format!("result line without a value for {name}: {line}"))
        };
        let parsed = (|| {
            Ok(ChildReport {
                process: required("process")? as usize,
                elapsed: field("elapsed_ns")?.map(Duration::from_nanos),
                bytes: required("bytes")?,
                records: required("records")?,
                peak_rss_kib: field("peak_rss_kib")?,
                objects_left: field("objects_left")?.map(|n| n as usize),
            })
        })();
        Some(parsed)
    }
}

/// Reports a failure on stderr and ends the process at once with a non-zero status: a
/// corrupted payload or a broken peer must fail the point loudly, and must not leave the
/// other processes of the cluster waiting.
fn fail(message: &str) -> ! {
    eprintln!("scatter child: FAILED: {message}");
    std::process::exit(2)
}

/// Runs one child to completion and prints its report; the process's exit status.
pub fn main(spec: &ChildSpec) -> std::process::ExitCode {
    let deadline = spec.deadline;
    let process = spec.process;
    // A watchdog: whatever happens, the child does not outlive its deadline.
    let watchdog = std::thread::Builder::new()
        .name("scatter-watchdog".into())
        .spawn(move || {
            std::thread::sleep(deadline);
            eprintln!("scatter child {process}: FAILED: deadline of {deadline:?} passed");
            std::process::exit(124);
        });
    if let Err(e) = watchdog {
        fail(&format!("could not start the watchdog thread: {e}"));
    }
    match run(spec) {
        Ok(report) => {
            println!("{}", report.to_line());
            std::process::ExitCode::SUCCESS
        }
        Err(message) => fail(&message),
    }
}

fn run(spec: &ChildSpec) -> Result<ChildReport, String> {
    let payloads = Arc::new(Payloads::new(spec.size as usize));
    let tally = Arc::new(Tally::default());
    let store = if spec.mode.uses_store() {
        Some(make_store(spec)?)
    } else {
        None
    };
    let elapsed = match spec.mode {
        Mode::RawZmq => run_raw_zmq(spec, &payloads, &tally)?,
        Mode::Iceoryx2 => iceoryx::run(spec, &payloads, &tally)?,
        _ => run_timely(spec, &payloads, &tally, store.clone())?,
    };
    let records = tally.records.load(Ordering::Acquire);
    let expected = expected_records(spec);
    if records != expected {
        return Err(format!(
            "process {} verified {records} payloads, expected {expected}",
            spec.process
        ));
    }
    let objects_left = store.as_ref().and_then(|s| s.connector().object_count());
    Ok(ChildReport {
        process: spec.process,
        elapsed,
        bytes: tally.bytes.load(Ordering::Acquire),
        records,
        peak_rss_kib: peak_rss_kib(),
        objects_left,
    })
}

/// The store the proxy and auto modes put payloads into: one per process over its own
/// ZeroMQ peer (an embedded server: `put` stays in this process, `get` of another process's
/// key fetches from that peer), registered under [`STORE_NAME`] so that proxies arriving
/// from other processes find it, with the object cache off (`with_cache_size(0)`) so that memory
/// stays bounded by the objects in flight. The peer is configured from the environment
/// (`ZmqOptions::from_env`: `PROXYSTORE_ZMQ_INTERFACE`, `PROXYSTORE_SECRET_FILE`, ... as on
/// every machine of a hostfile cluster; loopback by default). Same-host shared memory is on
/// (unless `PROXYSTORE_ZMQ_SHM=0`) except in `proxy-tcp` mode, which turns it off.
///
/// In `proxy-inplace` mode the producing process makes room in its shared memory for the
/// payloads it can have in flight before the clock starts
/// ([`proxy_core::ZmqConnector::prewarm_shared_memory`]), as a producer that knows its object size would
/// (and as iceoryx2 makes its pool before the first sample): the window's epochs plus two,
/// whose slots the frontier has not released yet.
fn make_store(spec: &ChildSpec) -> Result<Store, String> {
    let options =
        ZmqOptions::from_env().map_err(|e| format!("the PROXYSTORE_ZMQ_* settings: {e}"))?;
    let options = if spec.mode == Mode::ProxyTcp {
        options.with_shared_memory(false)
    } else {
        options
    };
    let connector = options
        .build()
        .map_err(|e| format!("starting the zmq peer: {e}"))?;
    if spec.mode == Mode::ProxyInPlace && spec.process == 0 {
        let in_flight = spec
            .window
            .saturating_add(2)
            .saturating_mul(spec.batch_records)
            .min(spec.records);
        connector
            .prewarm_shared_memory(
                spec.size as usize,
                u32::try_from(in_flight).unwrap_or(u32::MAX),
            )
            .map_err(|e| format!("making room in shared memory: {e}"))?;
    }
    let store = Store::builder(STORE_NAME, connector)
        .with_cache_size(0)
        .build();
    register_store(&store).map_err(|e| format!("registering the store: {e}"))?;
    Ok(store)
}

/// Payloads this process's consumers must read.
fn expected_records(spec: &ChildSpec) -> u64 {
    let total = spec.total_workers() as u64;
    let first = (spec.process * spec.workers) as u64;
    (first..first + spec.workers as u64)
        .map(|worker| match spec.workload {
            Workload::Broadcast => spec.records,
            Workload::Scatter | Workload::Selective => {
                spec.records / total + u64::from(worker < spec.records % total)
            }
        })
        .sum()
}

/// What this process's consumers verified.
#[derive(Debug, Default)]
struct Tally {
    bytes: AtomicU64,
    records: AtomicU64,
}

/// A consumer's check of one payload: every byte through the checksum, and (when payloads
/// are routed to owners) that it reached its owner.
#[derive(Clone)]
struct Checker {
    payloads: Arc<Payloads>,
    tally: Arc<Tally>,
    worker: u64,
    workers: u64,
    owned_only: bool,
}

impl Checker {
    fn check(&self, data: &[u8]) {
        let index = self
            .payloads
            .verify(data)
            .unwrap_or_else(|e| fail(&format!("worker {}: {e}", self.worker)));
        if self.owned_only && index % self.workers != self.worker {
            fail(&format!(
                "worker {} received payload {index}, owned by worker {}",
                self.worker,
                index % self.workers
            ));
        }
        self.tally
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.tally.records.fetch_add(1, Ordering::Relaxed);
    }
}

/// Shared between the worker closures of one Timely process.
struct TimelyPoint {
    workload: Workload,
    mode: Mode,
    records: u64,
    batch: u64,
    window: u64,
    payloads: Arc<Payloads>,
    tally: Arc<Tally>,
    store: Option<Store>,
    elapsed: Mutex<Option<Duration>>,
}

fn run_timely(
    spec: &ChildSpec,
    payloads: &Arc<Payloads>,
    tally: &Arc<Tally>,
    store: Option<Store>,
) -> Result<Option<Duration>, String> {
    let point = Arc::new(TimelyPoint {
        workload: spec.workload,
        mode: spec.mode,
        records: spec.records,
        batch: spec.batch_records,
        window: spec.window,
        payloads: Arc::clone(payloads),
        tally: Arc::clone(tally),
        store,
        elapsed: Mutex::new(None),
    });
    let config = timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads: spec.workers,
            process: spec.process,
            addresses: spec.addresses.clone(),
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    };
    let shared = Arc::clone(&point);
    // Under the cluster watchdog (PROXYSTORE_CLUSTER_*): in hostfile mode, a machine that
    // never starts or goes silent ends the point at once, naming it.
    let options =
        dataflow_plugin::cluster::ClusterOptions::from_env().map_err(|e| e.to_string())?;
    let guards = dataflow_plugin::cluster::execute(config, options, move |worker| {
        run_worker(worker, &shared)
    })
    .map_err(|e| format!("starting timely: {e}"))?;
    for (i, result) in guards.join().into_iter().enumerate() {
        result.map_err(|e| format!("timely worker {i} failed: {e}"))?;
    }
    let elapsed = *point
        .elapsed
        .lock()
        .map_err(|_| "a worker panicked".to_string())?;
    Ok(elapsed)
}

fn run_worker(worker: &mut Worker, point: &TimelyPoint) {
    let me = worker.index() as u64;
    let workers = worker.peers() as u64;
    let checker = Checker {
        payloads: Arc::clone(&point.payloads),
        tally: Arc::clone(&point.tally),
        worker: me,
        workers,
        owned_only: point.workload != Workload::Broadcast,
    };
    let payloads = Arc::clone(&point.payloads);
    let owner = move |index: u64| index % workers == me;
    let elapsed = match point.mode {
        Mode::Native => drive(
            worker,
            point,
            move |i| payloads.make(i),
            |stream| {
                route_native(stream, point.workload, owner)
                    .inspect(move |d| checker.check(d))
                    .probe()
                    .0
            },
        ),
        Mode::NativeBytes => drive(
            worker,
            point,
            move |i| Bytes::from(payloads.make(i)),
            |stream| {
                route_native(stream, point.workload, owner)
                    .inspect(move |d| checker.check(d))
                    .probe()
                    .0
            },
        ),
        Mode::Proxy | Mode::ProxyTcp => {
            let store = store_of(point);
            drive(
                worker,
                point,
                move |i| Bytes::from(payloads.make(i)),
                |stream| {
                    route_stored(stream.proxy(&store), point.workload, owner)
                        .resolve()
                        .inspect(move |d| checker.check(d))
                        .probe()
                        .0
                },
            )
        }
        Mode::ProxyInPlace => {
            let store = store_of(point);
            let template = Arc::clone(&point.payloads);
            drive(
                worker,
                point,
                |i| i,
                |stream| {
                    let size = template.template().len();
                    let stored = stream.proxy_in_place(
                        &store,
                        move |_| size,
                        move |index, buffer| {
                            // The payload, as `Payloads::make` makes it, written in place.
                            buffer.copy_from_slice(template.template());
                            Payloads::stamp(index, buffer);
                        },
                    );
                    route_stored(stored, point.workload, owner)
                        .resolve()
                        .inspect(move |d| checker.check(d))
                        .probe()
                        .0
                },
            )
        }
        Mode::Auto => {
            let store = store_of(point);
            drive(
                worker,
                point,
                move |i| Bytes::from(payloads.make(i)),
                |stream| {
                    route_stored(
                        stream.auto_proxy(&store, AUTO_THRESHOLD),
                        point.workload,
                        owner,
                    )
                    .resolve()
                    .inspect(move |d| checker.check(d))
                    .probe()
                    .0
                },
            )
        }
        Mode::RawZmq | Mode::Iceoryx2 => fail("the baselines do not run timely"),
    };
    if let Some(elapsed) = elapsed {
        if let Ok(mut slot) = point.elapsed.lock() {
            *slot = Some(elapsed);
        }
    }
}

fn store_of(point: &TimelyPoint) -> Store {
    point
        .store
        .clone()
        .unwrap_or_else(|| fail("a store mode without a store"))
}

/// Native routing: the payloads themselves go through Timely's exchange.
fn route_native<'s, D>(
    stream: StreamVec<'s, u64, D>,
    workload: Workload,
    owner: impl Fn(u64) -> bool + 'static,
) -> StreamVec<'s, u64, D>
where
    D: ExchangeData + Clone + std::ops::Deref<Target = [u8]>,
{
    match workload {
        Workload::Scatter => stream.exchange(|d| index_of(d)),
        Workload::Broadcast => stream.broadcast(),
        Workload::Selective => stream.broadcast().filter(move |d| owner(index_of(d))),
    }
}

/// Routes stored records (proxies, or auto-proxied records) as the workload says. In
/// `selective`, the records (small: proxies) go to every worker with their payload's index,
/// and only the owner keeps them, so only the owner fetches the bytes.
fn route_stored<'s, R>(
    stream: StreamVec<'s, u64, R>,
    workload: Workload,
    owner: impl Fn(u64) -> bool + 'static,
) -> StreamVec<'s, u64, R>
where
    R: ExchangeData + Clone + std::ops::Deref<Target = Bytes>,
{
    match workload {
        Workload::Scatter => stream.exchange(|p| index_of(p)),
        Workload::Broadcast => stream.broadcast(),
        Workload::Selective => stream
            .map(|p| (index_of(&p), p))
            .broadcast()
            .filter(move |(i, _)| owner(*i))
            .map(|(_, p)| p),
    }
}

/// Builds the dataflow (`build` gets the producer's stream and returns the probe after the
/// consumers), synchronizes the cluster with an empty epoch, then produces every payload on
/// worker 0 and steps until all consumers are done. Returns the timed interval on worker 0.
fn drive<D, M, B>(worker: &mut Worker, point: &TimelyPoint, make: M, build: B) -> Option<Duration>
where
    D: Clone + 'static,
    M: Fn(u64) -> D,
    B: for<'s> FnOnce(StreamVec<'s, u64, D>) -> ProbeHandle<u64>,
{
    let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<D>>();
        (input, build(stream))
    });
    // Epoch 0 is empty: once every worker has passed it, the cluster is connected and the
    // dataflow exists everywhere.
    input.advance_to(1);
    while probe.less_than(&1) {
        park_step(worker);
    }
    let epochs = point.records.div_ceil(point.batch);
    let end = epochs + 1;
    let producer = worker.index() == 0;
    let started = Instant::now();
    if producer {
        let mut next = 0u64;
        for epoch in 1..=epochs {
            let last = (next + point.batch).min(point.records);
            for index in next..last {
                input.send(make(index));
            }
            next = last;
            input.advance_to(epoch + 1);
            worker.step();
            // At most `window` epochs in flight: memory stays bounded in every mode.
            let oldest = (epoch + 1).saturating_sub(point.window);
            while probe.less_than(&oldest) {
                park_step(worker);
            }
        }
    } else {
        input.advance_to(end);
    }
    while probe.less_than(&end) {
        park_step(worker);
    }
    producer.then(|| started.elapsed())
}

/// One scheduling step that parks the thread when there is nothing to do, until Timely's
/// network threads or an activation (such as `resolve`'s fetch threads finishing) wake it.
///
/// A spinning `step()` loop would keep one core per worker busy doing nothing, and on a
/// small machine take it from the threads that move the bytes (ZeroMQ I/O, fetches,
/// Timely's own network threads).
fn park_step(worker: &mut Worker) {
    worker.step_or_park(None);
}

/// raw-zmq: process 0 pushes each payload to the PULL socket of the worker that reads it
/// (payloads for its own workers are read in place); every other process runs one receiver
/// thread per worker.
fn run_raw_zmq(
    spec: &ChildSpec,
    payloads: &Arc<Payloads>,
    tally: &Arc<Tally>,
) -> Result<Option<Duration>, String> {
    let total = spec.total_workers();
    // On one host the parent hands out free loopback ports; in hostfile mode they come from
    // the hostfile's addresses (`raw_endpoint`).
    if !spec.zmq_ports.is_empty() && spec.zmq_ports.len() != total + 1 {
        return Err(format!(
            "raw-zmq needs {} ports, got {}",
            total + 1,
            spec.zmq_ports.len()
        ));
    }
    for slot in 0..=total {
        raw_endpoint(spec, slot)?;
    }
    let context = zmq::Context::new();
    // Bound memory like the timely modes: about `window` epochs queued per socket.
    let hwm = (spec.batch_records * spec.window).clamp(4, 1000) as i32;
    if spec.process == 0 {
        raw_producer(spec, &context, payloads, tally, hwm).map(Some)
    } else {
        let first = spec.process * spec.workers;
        let receivers: Vec<_> = (first..first + spec.workers)
            .map(|worker| {
                let context = context.clone();
                let spec = spec.clone();
                let checker = Checker {
                    payloads: Arc::clone(payloads),
                    tally: Arc::clone(tally),
                    worker: worker as u64,
                    workers: total as u64,
                    owned_only: spec.workload != Workload::Broadcast,
                };
                std::thread::Builder::new()
                    .name(format!("raw-zmq-receiver-{worker}"))
                    .spawn(move || raw_receiver(&spec, &context, worker, &checker, hwm))
                    .map_err(|e| format!("starting receiver thread: {e}"))
            })
            .collect::<Result<_, _>>()?;
        for receiver in receivers {
            receiver
                .join()
                .map_err(|_| "a receiver thread panicked".to_string())??;
        }
        Ok(None)
    }
}

fn zmq_error(what: &str) -> impl Fn(zmq::Error) -> String + '_ {
    move |e| format!("raw-zmq: {what}: {e}")
}

/// Ports above a host's timely port where raw-zmq's sockets listen in hostfile mode: the
/// producer's control socket at `+ RAW_PORT_OFFSET`, worker `w`'s data socket at
/// `+ RAW_PORT_OFFSET + 1 + (w - the process's first worker)`.
const RAW_PORT_OFFSET: u16 = 1000;

/// The endpoint of raw-zmq socket `slot`: worker `slot`'s data socket, or the producer's
/// control socket for `slot == total workers`. On one host, a loopback port from the
/// parent; in hostfile mode, the host of the process that binds it (from the hostfile) and a
/// port derived from that process's timely port.
fn raw_endpoint(spec: &ChildSpec, slot: usize) -> Result<String, String> {
    if !spec.zmq_ports.is_empty() {
        return spec
            .zmq_ports
            .get(slot)
            .map(|port| format!("tcp://127.0.0.1:{port}"))
            .ok_or_else(|| format!("raw-zmq: no port for socket {slot}"));
    }
    let total = spec.total_workers();
    let (process, offset) = if slot >= total {
        (0, 0)
    } else {
        let process = slot / spec.workers;
        (process, 1 + slot - process * spec.workers)
    };
    let address = spec
        .addresses
        .get(process)
        .ok_or_else(|| format!("raw-zmq: no address for process {process}"))?;
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("raw-zmq: {address:?} is not host:port"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .and_then(|p| p.checked_add(RAW_PORT_OFFSET))
        .and_then(|p| p.checked_add(u16::try_from(offset).ok()?))
        .ok_or_else(|| format!("raw-zmq: no port {RAW_PORT_OFFSET}+ above {address:?}"))?;
    Ok(format!("tcp://{host}:{port}"))
}

fn timeout_ms(spec: &ChildSpec) -> i32 {
    i32::try_from(spec.deadline.as_millis()).unwrap_or(i32::MAX)
}

fn raw_producer(
    spec: &ChildSpec,
    context: &zmq::Context,
    payloads: &Payloads,
    tally: &Arc<Tally>,
    hwm: i32,
) -> Result<Duration, String> {
    let total = spec.total_workers();
    let local = spec.workers;
    let control = context
        .socket(zmq::PULL)
        .map_err(zmq_error("control socket"))?;
    control
        .set_rcvtimeo(timeout_ms(spec))
        .map_err(zmq_error("control timeout"))?;
    control
        .bind(&raw_endpoint(spec, total)?)
        .map_err(zmq_error("bind control socket"))?;
    let mut sockets = Vec::new();
    for worker in local..total {
        let socket = context
            .socket(zmq::PUSH)
            .map_err(zmq_error("data socket"))?;
        socket
            .set_sndhwm(hwm)
            .map_err(zmq_error("send high-water mark"))?;
        socket.set_linger(1000).map_err(zmq_error("linger"))?;
        socket
            .connect(&raw_endpoint(spec, worker)?)
            .map_err(zmq_error("connect data socket"))?;
        // A one-byte hello: the receiver answers on the control socket once it arrives,
        // so the clock starts on established connections.
        socket
            .send(&[1u8][..], 0)
            .map_err(zmq_error("send hello"))?;
        sockets.push(socket);
    }
    let await_all = |what: &str| -> Result<(), String> {
        for _ in local..total {
            control
                .recv_msg(0)
                .map_err(zmq_error(&format!("waiting for {what}")))?;
        }
        Ok(())
    };
    await_all("receivers to be ready")?;

    let checkers: Vec<Checker> = (0..local)
        .map(|worker| Checker {
            payloads: Arc::new(payloads.clone()),
            tally: Arc::clone(tally),
            worker: worker as u64,
            workers: total as u64,
            owned_only: spec.workload != Workload::Broadcast,
        })
        .collect();
    let started = Instant::now();
    for index in 0..spec.records {
        let data = payloads.make(index);
        match spec.workload {
            Workload::Scatter | Workload::Selective => {
                let dest = (index % total as u64) as usize;
                if dest < local {
                    checkers[dest].check(&data);
                } else {
                    sockets[dest - local]
                        .send(zmq::Message::from(data), 0)
                        .map_err(zmq_error("send payload"))?;
                }
            }
            Workload::Broadcast => {
                for checker in &checkers {
                    checker.check(&data);
                }
                if let Some((last, others)) = sockets.split_last() {
                    for socket in others {
                        socket
                            .send(&data[..], 0)
                            .map_err(zmq_error("send payload"))?;
                    }
                    last.send(zmq::Message::from(data), 0)
                        .map_err(zmq_error("send payload"))?;
                }
            }
        }
    }
    for socket in &sockets {
        socket
            .send(&[][..], 0)
            .map_err(zmq_error("send end marker"))?;
    }
    await_all("receivers to finish")?;
    Ok(started.elapsed())
}

fn raw_receiver(
    spec: &ChildSpec,
    context: &zmq::Context,
    worker: usize,
    checker: &Checker,
    hwm: i32,
) -> Result<(), String> {
    let data = context
        .socket(zmq::PULL)
        .map_err(zmq_error("data socket"))?;
    data.set_rcvhwm(hwm)
        .map_err(zmq_error("receive high-water mark"))?;
    data.set_rcvtimeo(timeout_ms(spec))
        .map_err(zmq_error("receive timeout"))?;
    data.bind(&raw_endpoint(spec, worker)?)
        .map_err(zmq_error("bind data socket"))?;
    let control = context
        .socket(zmq::PUSH)
        .map_err(zmq_error("control socket"))?;
    control.set_linger(1000).map_err(zmq_error("linger"))?;
    control
        .connect(&raw_endpoint(spec, spec.total_workers())?)
        .map_err(zmq_error("connect control socket"))?;
    loop {
        let message = data.recv_msg(0).map_err(zmq_error("receive payload"))?;
        match message.len() {
            0 => break,
            1 => control
                .send(&b"ready"[..], 0)
                .map_err(zmq_error("send ready"))?,
            _ => checker.check(&message),
        }
    }
    control
        .send(&b"done"[..], 0)
        .map_err(zmq_error("send done"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let report = ChildReport {
            process: 1,
            elapsed: Some(Duration::from_nanos(123_456)),
            bytes: 1 << 30,
            records: 1024,
            peak_rss_kib: Some(4096),
            objects_left: None,
        };
        let parsed = ChildReport::parse(&report.to_line());
        assert_eq!(parsed, Some(Ok(report)));
        assert_eq!(ChildReport::parse("something else"), None);
        assert!(matches!(
            ChildReport::parse("SCATTER-RESULT process=x"),
            Some(Err(_))
        ));
    }

    #[test]
    fn expected_records_split_round_robin() {
        let mut spec = ChildSpec {
            workload: Workload::Scatter,
            mode: Mode::Native,
            size: 1024,
            records: 10,
            batch_records: 4,
            window: 2,
            workers: 2,
            process: 0,
            addresses: vec!["a".into(), "b".into()],
            zmq_ports: Vec::new(),
            deadline: Duration::from_secs(1),
        };
        // Workers 0..4 get 3, 3, 2, 2 of 10 records.
        assert_eq!(expected_records(&spec), 6);
        spec.process = 1;
        assert_eq!(expected_records(&spec), 4);
        spec.workload = Workload::Broadcast;
        assert_eq!(expected_records(&spec), 20);
    }
}
