//! The main job: one producer scatters large payloads to every worker of a cluster.
//!
//! Run without a hostfile, it starts the processes of a cluster on loopback itself (two of
//! one worker each by default, timely's cluster mode) and has worker 0 send 256 payloads of
//! 1 MiB round robin to all workers. Each payload is stored in the producing process's
//! embedded ZeroMQ peer (nothing to start by hand); only its proxy travels through the
//! dataflow, and the consumer fetches the bytes straight from the producer's peer, checksums
//! every byte, and the objects are evicted once every consumer is done. It prints a short
//! summary with the throughput.
//!
//! With a hostfile (`-h`, timely's own arguments `-n/-p/-w` like the other examples), it is
//! one process of a cluster across machines: start it on every machine with its own `-p`.
//! Its peer is configured from the `PROXYSTORE_ZMQ_*` / `PROXYSTORE_SECRET*` variables.
//! Started by Slurm (`srun`, no `-h`), it reads the cluster from `SLURM_PROCID`,
//! `SLURM_NTASKS` and `SLURM_JOB_NODELIST`.
//!
//! ```sh
//! cargo run --release --example scatter
//! cargo run --release --example scatter -- -n 3 -w 2 --count 512 --size-kib 4096
//! # machine i of a cluster (see the README, "Running across machines"):
//! PROXYSTORE_ZMQ_INTERFACE=10.0.0.1 cargo run --release --example scatter -- -h hosts.txt -p 0
//! ```

mod common;

use std::error::Error;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dataflow_plugin::{ProxyRecords, Resolve};
use proxy_core::{Connector, Proxy};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};

/// What to run, from the command line: timely's own `-w/-n/-p/-h` plus the payloads.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    version,
    disable_help_flag = true,
    about = "Scatter large payloads from worker 0 to every worker of a cluster",
    long_about = "Scatter large payloads from worker 0 to every worker of a cluster.\n\n\
        Without -h, starts the cluster's -n processes (default 2) on loopback itself. With \
        -h HOSTFILE, runs as process -p of the cluster the hostfile lists (one host:port \
        per line, the same file on every machine)."
)]
struct Params {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Worker threads per process
    #[arg(short = 'w', long = "workers", alias = "threads", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    workers: u64,
    /// Processes in the cluster [default: 2 without a hostfile, its line count with one]
    #[arg(short = 'n', long = "processes", value_parser = clap::value_parser!(u64).range(1..))]
    processes: Option<u64>,
    /// This process's index in the cluster (with -h)
    #[arg(short = 'p', long = "process", value_name = "IDX")]
    process: Option<u64>,
    /// Text file whose lines are the processes' timely addresses (host:port): run as
    /// process -p of that cluster
    #[arg(short = 'h', long = "hostfile", value_name = "FILE")]
    hostfile: Option<PathBuf>,
    /// Payloads to scatter
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    count: u64,
    /// Payload size in KiB
    #[arg(long = "size-kib", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    size_kib: u64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let _telemetry = common::init_logging();
    let params = <Params as clap::Parser>::parse();
    match &params.hostfile {
        Some(hostfile) => {
            let Some(process) = params.process else {
                return Err("-h needs -p: this process's index in the hostfile".into());
            };
            let hosts = read_hostfile(hostfile)?;
            let processes = params.processes.unwrap_or(hosts.len() as u64);
            if processes as usize > hosts.len() || process >= processes {
                return Err(format!(
                    "{}: {} processes with process index {process}, but the hostfile lists {}",
                    hostfile.display(),
                    processes,
                    hosts.len()
                )
                .into());
            }
            member(
                &params,
                process as usize,
                hosts[..processes as usize].to_vec(),
            )
        }
        None if params.process.is_some() => {
            Err("-p needs -h: the hostfile that lists the cluster's processes".into())
        }
        // Started by `srun`: one process of the job step's cluster, from SLURM_* variables.
        None => match dataflow_plugin::cluster::slurm_launch() {
            Some(launch) => {
                let launch = launch?;
                member(&params, launch.process, launch.addresses)
            }
            None => local_cluster(&params),
        },
    }
}

/// The non-empty lines of a hostfile (timely's format: `host:port` per line).
fn read_hostfile(path: &std::path::Path) -> Result<Vec<String>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the hostfile {}: {e}", path.display()))?;
    let hosts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if hosts.is_empty() {
        return Err(format!("the hostfile {} lists no host", path.display()).into());
    }
    Ok(hosts)
}

/// Starts the cluster's processes on loopback (copies of this program, each given the
/// hostfile and its index) and prints their summary.
fn local_cluster(params: &Params) -> Result<(), Box<dyn Error>> {
    let processes = params.processes.unwrap_or(2);
    let (dir, hostfile) = common::loopback_hostfile("scatter", processes as usize)?;

    println!(
        "scatter: {} payloads of {} KiB from worker 0 to {} workers ({} processes x {} workers)",
        params.count,
        params.size_kib,
        processes * params.workers,
        processes,
        params.workers
    );
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for process in 0..processes {
        let child = Command::new(&exe)
            .args(["-w", &params.workers.to_string()])
            .args(["-n", &processes.to_string()])
            .args(["-p", &process.to_string()])
            .args(["--count", &params.count.to_string()])
            .args(["--size-kib", &params.size_kib.to_string()])
            .arg("-h")
            .arg(&hostfile)
            .stdout(Stdio::piped())
            .spawn()?;
        children.push(child);
    }
    common::relay_cluster(children, "  ", &dir)
}

/// One process of the cluster listed by `hosts`.
fn member(params: &Params, process: usize, hosts: Vec<String>) -> Result<(), Box<dyn Error>> {
    let count = params.count;
    let size = usize::try_from(params.size_kib * 1024)?.max(8);
    let (connector, store) = common::embedded_store("scatter")?;
    let received = Arc::new(AtomicU64::new(0));
    let received_bytes = Arc::new(AtomicU64::new(0));
    let (r, rb) = (Arc::clone(&received), Arc::clone(&received_bytes));

    // Timed from when worker 0 starts producing (after the cluster has connected) until
    // every worker of every process has finished (the dataflow completes only then, because
    // the release of the stored payloads waits for all consumers).
    let started = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let start_mark = Arc::clone(&started);
    let config = timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads: params.workers as usize,
            process,
            addresses: hosts,
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    };
    // Under the cluster watchdog: a process that never joins or falls silent ends this one
    // with an error naming its host (PROXYSTORE_CLUSTER_* set the bounds).
    let options = dataflow_plugin::cluster::ClusterOptions::from_env()?;
    let guards = dataflow_plugin::cluster::execute(config, options, move |worker| {
        let index = worker.index();
        let peers = worker.peers() as u64;
        let store = store.clone();
        let (r, rb) = (Arc::clone(&r), Arc::clone(&rb));
        let mut next = 0u64;
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, payloads) = scope.new_input::<Vec<Bytes>>();
            let probe = payloads
                .proxy(&store)
                .map(move |proxy: Proxy<Bytes>| {
                    next += 1;
                    (next, proxy)
                })
                .exchange(move |(n, _)| n % peers) // round robin over all workers
                .map(|(_, proxy)| proxy)
                .resolve()
                .inspect(move |payload| {
                    let i = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
                    let sum = payload[8..]
                        .iter()
                        .fold(0u64, |s, &b| s.wrapping_add(u64::from(b)));
                    let expected = (payload.len() as u64 - 8) * (i % 251);
                    assert_eq!(sum, expected, "payload {i} corrupted");
                    r.fetch_add(1, Ordering::Relaxed);
                    rb.fetch_add(payload.len() as u64, Ordering::Relaxed);
                })
                .probe()
                .0;
            (input, probe)
        });
        if index == 0 {
            if let Ok(mut mark) = start_mark.lock() {
                *mark = Some(Instant::now());
            }
            for i in 0..count {
                let mut data = vec![(i % 251) as u8; size];
                data[..8].copy_from_slice(&i.to_le_bytes());
                input.send(Bytes::from(data));
                // Let the dataflow move what is produced while the next payload is made.
                input.flush();
                worker.step_or_park(None);
            }
        }
        input.advance_to(1);
        while probe.less_than(input.time()) {
            worker.step_or_park(None);
        }
    })?;
    for result in guards.join() {
        result?;
    }
    let elapsed = started
        .lock()
        .ok()
        .and_then(|mark| *mark)
        .map(|mark| mark.elapsed())
        .unwrap_or_default();
    let n = received.load(Ordering::Relaxed);
    let bytes = received_bytes.load(Ordering::Relaxed);
    println!(
        "process {process}: received {n} payloads ({:.1} MiB), every checksum verified; \
         {} read in place from another process's shared memory; objects left in its peer: {}",
        bytes as f64 / (1 << 20) as f64,
        connector.mapped_reads(),
        connector
            .object_count()
            .map_or("unknown".to_string(), |c| c.to_string())
    );
    if process == 0 {
        let total = count as f64 * size as f64;
        println!(
            "process 0: scattered {:.1} MiB in {:.3} s: {:.0} MB/s delivered (payloads fetched peer to peer: from shared \
             memory on one host, over ZeroMQ between hosts or with PROXYSTORE_ZMQ_SHM=0)",
            total / (1 << 20) as f64,
            elapsed.as_secs_f64(),
            total / elapsed.as_secs_f64() / 1e6
        );
    }
    Ok(())
}
