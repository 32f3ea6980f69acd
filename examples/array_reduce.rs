//! The Rust half of the Python example (`python/examples/array_reduce.py`): arrays that a
//! Python program stored with `proxystore_rs` are reduced by a Timely dataflow, and the
//! result goes back to Python.
//!
//! ```sh
//! # reduce: sum the f64 arrays named by the keys in FILE (one key's text per line) on a
//! # 2-process cluster, and store the sum on the peer at ENDPOINT (the Python program's):
//! cargo run --example array_reduce -- reduce --keys FILE --reply-to ENDPOINT
//! # futures across languages:
//! cargo run --example array_reduce -- future-wait        # prints `key K`, waits for a value
//! cargo run --example array_reduce -- future-set KEY     # sets a Python future's value
//! ```
//!
//! Arrays travel in `PodCodec`'s layout (`proxystore_rs.arrays` writes and reads the same),
//! so each worker reads a Python array in place as a `PodArray<f64>`: on one host straight
//! from the Python peer's shared memory, with no copy and no request once mapped. Each
//! process prints `mapped_reads N`: how many arrays it read that way.

mod common;

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use proxy_core::{
    Codec, Connector, Key, PodArray, PodCodec, Proxy, Store, ZmqConnector, ZmqOptions,
};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Exchange, Inspect, Probe, ToStream};

#[derive(Debug, clap::Parser)]
#[command(about = "Reduce Python arrays in a Timely dataflow; futures across languages")]
enum Cli {
    /// Sum the f64 arrays named by the keys in --keys on a cluster; store the sum on --reply-to
    Reduce {
        /// A file with one key's text per line
        #[arg(long)]
        keys: PathBuf,
        /// The endpoint of the peer that receives the result (tcp://host:port)
        #[arg(long)]
        reply_to: String,
        /// Processes in the cluster (started here on loopback)
        #[arg(short = 'n', long, default_value_t = 2)]
        processes: usize,
        /// This process's index (set for the processes this command starts)
        #[arg(short = 'p', long, requires = "hostfile")]
        process: Option<usize>,
        /// The cluster's hostfile (set for the processes this command starts)
        #[arg(long)]
        hostfile: Option<PathBuf>,
    },
    /// Make a future of a Vec<f64> (PodCodec), print `key K`, wait for its value, print its sum
    FutureWait,
    /// Set the future with key KEY (made by Python) to the f32 array [1.5, 2.5, 3.0]
    FutureSet {
        /// The future's key text
        key: String,
    },
}

fn main() -> Result<(), Box<dyn Error>> {
    let _telemetry = common::init_logging();
    match <Cli as clap::Parser>::parse() {
        Cli::Reduce {
            keys,
            reply_to,
            processes,
            process: Some(process),
            hostfile: Some(hostfile),
        } => member(&keys, &reply_to, processes, process, &hostfile),
        Cli::Reduce {
            keys,
            reply_to,
            processes,
            ..
        } => cluster(&keys, &reply_to, processes),
        Cli::FutureWait => future_wait(),
        Cli::FutureSet { key } => future_set(&key),
    }
}

/// Starts the cluster's processes on loopback and passes on what they print.
fn cluster(keys: &Path, reply_to: &str, processes: usize) -> Result<(), Box<dyn Error>> {
    let (dir, hostfile) = common::loopback_hostfile("array-reduce", processes)?;
    let exe = std::env::current_exe()?;
    let children = (0..processes)
        .map(|process| {
            Command::new(&exe)
                .arg("reduce")
                .arg("--keys")
                .arg(keys)
                .args(["--reply-to", reply_to])
                .args(["-n", &processes.to_string(), "-p", &process.to_string()])
                .arg("--hostfile")
                .arg(&hostfile)
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    common::relay_cluster(children, "", &dir)
}

/// One process: its workers read the arrays the keys name (spread over every worker),
/// sum them, and worker 0 stores the total on the reply peer.
fn member(
    keys: &Path,
    reply_to: &str,
    processes: usize,
    process: usize,
    hostfile: &Path,
) -> Result<(), Box<dyn Error>> {
    let keys: Vec<String> = std::fs::read_to_string(keys)
        .map_err(|e| format!("reading {}: {e}", keys.display()))?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect();
    for text in &keys {
        text.parse::<Key>()?;
    }
    // Reads any peer's objects; never serves (the results go to the reply peer).
    let reader = ZmqOptions::from_env()?.with_client_only().build()?;
    let store: Store<PodCodec> = Store::builder("array-reduce", reader.clone())
        .with_cache_size(0)
        .with_codec::<PodCodec>()
        .build();
    let total: Arc<Mutex<Option<Vec<f64>>>> = Arc::new(Mutex::new(None));
    let args = [
        "-w".to_string(),
        "1".to_string(),
        "-n".to_string(),
        processes.to_string(),
        "-p".to_string(),
        process.to_string(),
        "-h".to_string(),
        hostfile.to_string_lossy().into_owned(),
    ];
    let sink = Arc::clone(&total);
    let outcome = timely::execute_from_args(args.into_iter(), move |worker| {
        let index = worker.index();
        let keys = if index == 0 { keys.clone() } else { Vec::new() };
        let store = store.clone();
        let sink = Arc::clone(&sink);
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            keys.into_iter()
                .enumerate()
                .to_stream(scope)
                // Spread the keys over the workers; each reads its arrays in place.
                .exchange(|(i, _)| *i as u64)
                .map(move |(_, text)| -> Result<Vec<f64>, String> {
                    let key: Key = text.parse().map_err(|e| format!("{e}"))?;
                    let array = store
                        .get::<PodArray<f64>>(&key)
                        .map_err(|e| format!("{e}"))?
                        .ok_or_else(|| format!("no object under {key}"))?;
                    Ok(array.to_vec())
                })
                // Partial results meet at worker 0, which adds them up.
                .exchange(|_| 0)
                .inspect(move |part| {
                    let mut total = sink.lock().unwrap_or_else(|e| e.into_inner());
                    match part {
                        Ok(part) => add(total.get_or_insert_with(Vec::new), part),
                        Err(message) => eprintln!("array-reduce: {message}"),
                    }
                })
                .probe()
                .0
        });
        worker.step_while(|| !probe.done());
    });
    outcome.map_err(|e| format!("timely: {e}"))?;
    println!("mapped_reads {}", reader.mapped_reads());
    if process == 0 {
        let total = total
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let reply: Store<PodCodec> =
            Store::builder("array-reduce-result", ZmqConnector::remote(reply_to)?)
                .with_codec::<PodCodec>()
                .build();
        let proxy: Proxy<Vec<f64>, PodCodec> = reply.proxy_lazy(total)?;
        println!("result {}", Proxy::key(&proxy));
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// Adds `part` into `total` element by element (the longer length wins).
fn add(total: &mut Vec<f64>, part: &[f64]) {
    if total.len() < part.len() {
        total.resize(part.len(), 0.0);
    }
    for (t, p) in total.iter_mut().zip(part) {
        *t += p;
    }
}

/// A future made here, set by another program (Python), resolved here.
fn future_wait() -> Result<(), Box<dyn Error>> {
    let (_connector, store) = common::embedded_store("array-futures")?;
    let future = store.future_with::<Vec<f64>, PodCodec>()?;
    println!("key {}", future.key());
    std::io::stdout().flush()?;
    let proxy = future.proxy();
    Proxy::resolve(&proxy)?;
    let sum: f64 = proxy.iter().sum();
    println!("sum {sum}");
    std::io::stdout().flush()?;
    Ok(())
}

/// Sets a future another program (Python) made: its key names the peer that holds it.
fn future_set(text: &str) -> Result<(), Box<dyn Error>> {
    let key: Key = text.parse()?;
    let connector = ZmqOptions::from_env()?.with_client_only().build()?;
    let value = <PodCodec as Codec<Vec<f32>>>::encode(&vec![1.5f32, 2.5, 3.0])?;
    connector.put_at(&key, value)?;
    println!("set {key}");
    Ok(())
}
