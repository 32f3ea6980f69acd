//! iceoryx2: the same payloads over iceoryx2 publish-subscribe, zero-copy shared memory
//! between the processes of one host, no Timely: the state of the art for same-host IPC,
//! beside which the proxy modes are measured.
//!
//! Process 0 is the producer. For each payload it loans a chunk of its publisher's shared
//! memory, writes the payload into it (one copy of the template, as every mode creates its
//! payloads) and publishes it: for `scatter` and `selective` to the service of the worker
//! that reads it (one service per remote worker), for `broadcast` to one service that every
//! remote worker subscribes to (one chunk, read by all). Payloads for process 0's own workers
//! are read in place, as in `raw-zmq`. Every other process runs one receiver thread per
//! worker, which reads every byte of each sample (the same checker as every mode) before
//! releasing it.
//!
//! Flow control: a receiver's queue holds at most about `window` epochs of payloads (as
//! `raw-zmq`'s high-water mark), and a publisher whose receiver's queue is full waits
//! (`RetryUntilDelivered`, no overflow). A one-byte sample ends each stream.
//!
//! Connecting first: a subscriber's side of a connection is attached only when it first
//! receives, and iceoryx2 drops (silently) a sample sent into a full queue whose receiver is
//! not attached yet, so a producer that started as soon as the subscribers existed lost
//! payloads at small sizes (32,281 of 32,768 verified at 64 KiB). The producer therefore
//! sends two-byte hello samples until every receiver has reported, on the control service,
//! that it received one (so it is attached), and only then starts.
//!
//! The timed interval: process 0 starts its clock once every receiver is connected, and
//! stops it when every receiver has reported, on the control service (one `u64` per
//! receiver), that it read its end marker. Receivers wait for the producer to
//! leave the control service before they exit, so their reports stay readable.
//!
//! Services are named after the point's first Timely port, unique among concurrent points.
//! iceoryx2 keeps its state in shared memory and under `/tmp/iceoryx2`; a clean exit removes a
//! point's services, a killed child can leave them behind (iceoryx2 reclaims dead nodes'
//! resources when a later node asks for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSub;

use super::super::cli::ChildSpec;
use super::super::workloads::{Payloads, Workload};
use super::{Checker, Tally};

/// How long a waiting loop sleeps between looks, once spinning and yielding found nothing.
const NAP: Duration = Duration::from_micros(20);

/// The length of a hello sample (a payload is at least 8 bytes, an end marker 1).
const HELLO_LEN: usize = 2;

/// Set in a control report that says "connected" rather than "done".
const READY: u64 = 1 << 63;

/// How long the producer waits between rounds of hello samples.
const HELLO_INTERVAL: Duration = Duration::from_millis(1);

fn ice_error<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("iceoryx2: {what}: {e:?}")
}

/// A name unique to this point (its first Timely address's port) plus `suffix`.
fn service_name(spec: &ChildSpec, suffix: &str) -> Result<ServiceName, String> {
    let port = spec
        .addresses
        .first()
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or("0");
    let name = format!("proxystore-scatter/{port}/{suffix}");
    ServiceName::new(&name).map_err(ice_error("service name"))
}

/// Samples a receiver's queue holds: about `window` epochs, as `raw-zmq`'s high-water mark.
fn queue(spec: &ChildSpec) -> usize {
    (spec.batch_records * spec.window).clamp(4, 1000) as usize
}

/// The data service `suffix` with `subscribers` subscribers; every process opens it with
/// exactly these settings (iceoryx2 refuses to open a service with other ones).
fn data_service(
    node: &Node<ipc::Service>,
    spec: &ChildSpec,
    suffix: &str,
    subscribers: usize,
) -> Result<PubSub<ipc::Service, [u8], ()>, String> {
    node.service_builder(&service_name(spec, suffix)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(subscribers.max(1))
        .subscriber_max_buffer_size(queue(spec))
        .subscriber_max_borrowed_samples(2)
        .history_size(0)
        .enable_safe_overflow(false)
        .open_or_create()
        .map_err(ice_error("open the data service"))
}

/// The control service: receivers publish their worker number there once done.
fn control_service(
    node: &Node<ipc::Service>,
    spec: &ChildSpec,
) -> Result<PubSub<ipc::Service, u64, ()>, String> {
    let total = spec.total_workers();
    node.service_builder(&service_name(spec, "done")?)
        .publish_subscribe::<u64>()
        .max_publishers(total.max(1))
        .max_subscribers(1)
        // A "connected" and a "done" report per receiver.
        .subscriber_max_buffer_size(2 * total.max(1))
        .history_size(0)
        .enable_safe_overflow(false)
        .open_or_create()
        .map_err(ice_error("open the control service"))
}

fn node() -> Result<Node<ipc::Service>, String> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(ice_error("create a node"))
}

/// What one look of a waiting loop found.
enum Look {
    /// What was waited for happened.
    Done,
    /// Something arrived, more is expected: look again at once.
    Progress,
    /// Nothing yet.
    Idle,
}

/// Looks with `look` until it is [`Look::Done`]; after nothing arrived for a while it
/// yields, then naps between looks (two cores are shared with the producer); fails at the
/// point's deadline.
fn wait_for(
    spec: &ChildSpec,
    what: &str,
    mut look: impl FnMut() -> Result<Look, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + spec.deadline;
    let mut idle = 0u32;
    loop {
        match look()? {
            Look::Done => return Ok(()),
            Look::Progress => idle = 0,
            Look::Idle => idle += 1,
        }
        if idle < 64 {
            std::hint::spin_loop();
        } else if idle < 256 {
            std::thread::yield_now();
        } else {
            if Instant::now() > deadline {
                return Err(format!("iceoryx2: timed out waiting for {what}"));
            }
            std::thread::sleep(NAP);
        }
    }
}

/// [`Look::Done`] when `done`, else [`Look::Idle`].
fn done_if(done: bool) -> Look {
    if done {
        Look::Done
    } else {
        Look::Idle
    }
}

/// Runs this process's part of an iceoryx2 point; process 0 returns the timed interval.
pub(super) fn run(
    spec: &ChildSpec,
    payloads: &Arc<Payloads>,
    tally: &Arc<Tally>,
) -> Result<Option<Duration>, String> {
    let total = spec.total_workers();
    let checker = |worker: usize| Checker {
        payloads: Arc::clone(payloads),
        tally: Arc::clone(tally),
        worker: worker as u64,
        workers: total as u64,
        owned_only: spec.workload != Workload::Broadcast,
    };
    if spec.process == 0 {
        return produce(
            spec,
            payloads,
            &(0..spec.workers).map(checker).collect::<Vec<_>>(),
        )
        .map(Some);
    }
    let first = spec.process * spec.workers;
    let receivers: Vec<_> = (first..first + spec.workers)
        .map(|worker| {
            let spec = spec.clone();
            let checker = checker(worker);
            std::thread::Builder::new()
                .name(format!("iceoryx2-receiver-{worker}"))
                .spawn(move || receive(&spec, worker, &checker))
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

/// The data service (and its subscriber count) worker `worker` reads from.
fn service_of(spec: &ChildSpec, worker: usize) -> (String, usize) {
    let remote = spec.total_workers() - spec.workers;
    match spec.workload {
        Workload::Broadcast => ("all".to_string(), remote),
        Workload::Scatter | Workload::Selective => (format!("worker-{worker}"), 1),
    }
}

/// Counts the receivers' reports waiting on the control service: "connected" ones into
/// `ready`, "done" ones into `finished`.
fn tally_reports(
    done: &Subscriber<ipc::Service, u64, ()>,
    ready: &mut usize,
    finished: &mut usize,
) -> Result<(), String> {
    while let Some(report) = done.receive().map_err(ice_error("receive a report"))? {
        if *report.payload() & READY != 0 {
            *ready += 1;
        } else {
            *finished += 1;
        }
    }
    Ok(())
}

fn produce(spec: &ChildSpec, payloads: &Payloads, local: &[Checker]) -> Result<Duration, String> {
    let total = spec.total_workers();
    let node = node()?;
    let control = control_service(&node, spec)?;
    let done = control
        .subscriber_builder()
        .create()
        .map_err(ice_error("control subscriber"))?;
    // One publisher per data service: per remote worker, or one for all (broadcast).
    let targets: Vec<usize> = match spec.workload {
        Workload::Broadcast if total > spec.workers => vec![spec.workers],
        Workload::Broadcast => Vec::new(),
        Workload::Scatter | Workload::Selective => (spec.workers..total).collect(),
    };
    let mut services = Vec::new();
    let mut publishers: Vec<Publisher<ipc::Service, [u8], ()>> = Vec::new();
    for &worker in &targets {
        let (suffix, subscribers) = service_of(spec, worker);
        let service = data_service(&node, spec, &suffix, subscribers)?;
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(payloads.size())
            .allocation_strategy(AllocationStrategy::Static)
            .max_loaned_samples(2)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(ice_error("publisher"))?;
        services.push((service, subscribers));
        publishers.push(publisher);
    }
    wait_for(spec, "the receivers to subscribe", || {
        Ok(done_if(services.iter().all(|(service, n)| {
            service.dynamic_config().number_of_subscribers() >= *n
        })))
    })?;

    // Hello samples until every receiver is attached (see the module docs).
    let remote = total - spec.workers;
    let mut ready = 0;
    let mut finished = 0;
    let mut next_hello = Instant::now();
    wait_for(spec, "the receivers to connect", || {
        if Instant::now() >= next_hello {
            for publisher in &publishers {
                let hello = publisher
                    .loan_slice_uninit(HELLO_LEN)
                    .map_err(ice_error("loan a hello sample"))?;
                hello
                    .write_from_slice(&[0; HELLO_LEN])
                    .send()
                    .map_err(ice_error("send a hello sample"))?;
            }
            next_hello = Instant::now() + HELLO_INTERVAL;
        }
        tally_reports(&done, &mut ready, &mut finished)?;
        Ok(done_if(ready >= remote))
    })?;

    let send = |publisher: &Publisher<ipc::Service, [u8], ()>, index: u64| {
        let sample = publisher
            .loan_slice_uninit(payloads.size())
            .map_err(ice_error("loan a sample"))?;
        let mut sample = sample.write_from_slice(payloads.template());
        Payloads::stamp(index, sample.payload_mut());
        sample.send().map_err(ice_error("send a payload"))
    };
    let started = Instant::now();
    for index in 0..spec.records {
        match spec.workload {
            Workload::Scatter | Workload::Selective => {
                let dest = (index % total as u64) as usize;
                if dest < spec.workers {
                    local[dest].check(&payloads.make(index));
                } else {
                    send(&publishers[dest - spec.workers], index)?;
                }
            }
            Workload::Broadcast => {
                if !local.is_empty() {
                    let data = payloads.make(index);
                    for checker in local {
                        checker.check(&data);
                    }
                }
                for publisher in &publishers {
                    send(publisher, index)?;
                }
            }
        }
    }
    for publisher in &publishers {
        let end = publisher
            .loan_slice_uninit(1)
            .map_err(ice_error("loan the end marker"))?;
        end.write_from_slice(&[0])
            .send()
            .map_err(ice_error("send the end marker"))?;
    }
    wait_for(spec, "the receivers to finish", || {
        tally_reports(&done, &mut ready, &mut finished)?;
        Ok(done_if(finished >= remote))
    })?;
    Ok(started.elapsed())
}

fn receive(spec: &ChildSpec, worker: usize, checker: &Checker) -> Result<(), String> {
    let node = node()?;
    let (suffix, subscribers) = service_of(spec, worker);
    let service = data_service(&node, spec, &suffix, subscribers)?;
    let subscriber = service
        .subscriber_builder()
        .buffer_size(queue(spec))
        .create()
        .map_err(ice_error("subscriber"))?;
    let control = control_service(&node, spec)?;
    let report = control
        .publisher_builder()
        .create()
        .map_err(ice_error("control publisher"))?;
    let mut connected = false;
    wait_for(spec, "payloads", || {
        let mut look = Look::Idle;
        while let Some(sample) = subscriber.receive().map_err(ice_error("receive"))? {
            match sample.payload().len() {
                1 => return Ok(Look::Done),
                HELLO_LEN => {
                    if !connected {
                        report
                            .send_copy(worker as u64 | READY)
                            .map_err(ice_error("send the connected report"))?;
                        connected = true;
                    }
                }
                _ => checker.check(sample.payload()),
            }
            look = Look::Progress;
        }
        Ok(look)
    })?;
    report
        .send_copy(worker as u64)
        .map_err(ice_error("send the report"))?;
    // The report lives in this process's shared memory until the producer has read it.
    wait_for(spec, "the producer to leave", || {
        Ok(done_if(
            control.dynamic_config().number_of_subscribers() == 0,
        ))
    })
}
