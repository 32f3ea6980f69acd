//! The parent: runs every point as a fresh cluster of child processes, with a deadline.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::child::ChildReport;
use super::cli::{ChildSpec, Options};
use super::workloads::{Mode, Workload};

/// One measurement: a workload, a mode, a payload size and a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The workload.
    pub workload: Workload,
    /// The mode.
    pub mode: Mode,
    /// Payload size in bytes.
    pub size: u64,
    /// Payloads produced.
    pub records: u64,
    /// The repetition (from 0).
    pub rep: usize,
}

/// What a successful point measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The timed interval, as measured by process 0.
    pub elapsed: Duration,
    /// Payload bytes read and verified by all consumers.
    pub delivered_bytes: u64,
    /// Peak resident memory of each process, in KiB, by process index.
    pub peak_rss_kib: Vec<Option<u64>>,
    /// Objects left in the stores after the dataflow, summed over processes (store modes).
    pub objects_left: Option<usize>,
}

impl Measured {
    /// Delivered payload bytes per second, in MB/s (10^6 bytes per second).
    pub fn mb_per_s(&self) -> f64 {
        self.delivered_bytes as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    /// The largest peak resident memory of any process, in MiB.
    pub fn max_rss_mib(&self) -> Option<f64> {
        self.peak_rss_kib
            .iter()
            .flatten()
            .max()
            .map(|&kib| kib as f64 / 1024.0)
    }
}

/// A point and what became of it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The point.
    pub point: Point,
    /// Its measurement, or why it failed.
    pub result: Result<Measured, String>,
}

/// `n` distinct free loopback ports below the ephemeral range (see
/// [`free_loopback_ports`](proxy_core::testing::free_loopback_ports)).
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    proxy_core::testing::free_loopback_ports(n).map_err(|e| e.to_string())
}

/// The children of one point; killed on drop unless they have exited.
struct Cluster {
    children: Vec<Child>,
    stdout: Vec<Option<JoinHandle<String>>>,
    stderr: Vec<Option<JoinHandle<String>>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> Option<JoinHandle<String>> {
    std::thread::Builder::new()
        .name("scatter-pipe".into())
        .spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
        .ok()
}

fn collect(handle: &mut Option<JoinHandle<String>>) -> String {
    handle
        .take()
        .and_then(|h| h.join().ok())
        .unwrap_or_default()
}

/// The last few lines of a child's stderr, for failure messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// The deadline of a point: `--timeout`, or 30 s plus 10 MB/s of delivered bytes.
fn deadline(options: &Options, point: &Point) -> Duration {
    options.timeout.unwrap_or_else(|| {
        let delivered = point.workload.delivered_bytes(
            point.records,
            point.size,
            options.total_workers() as u64,
        );
        Duration::from_secs(30) + Duration::from_secs_f64(delivered as f64 / 10e6)
    })
}

/// Runs one point: starts its processes, waits for them (killing them all if one fails or
/// the deadline passes), and checks and combines their reports.
pub fn run_point(options: &Options, exe: &Path, point: Point) -> Outcome {
    let result = run_point_inner(options, exe, &point);
    Outcome { point, result }
}

fn run_point_inner(options: &Options, exe: &Path, point: &Point) -> Result<Measured, String> {
    let processes = options.processes;
    let total = options.total_workers();
    // Hostfile mode: the cluster's addresses from the hostfile, and only this machine's
    // process started here (the other machines start theirs).
    let (addresses, local, zmq_ports) = match &options.hostfile {
        Some(hostfile) => {
            if point.mode.local_only() {
                return Err(format!(
                    "{} runs on one host only, not in hostfile mode",
                    point.mode
                ));
            }
            (
                hostfile.addresses.clone(),
                vec![hostfile.process],
                Vec::new(),
            )
        }
        None => {
            let ports = free_ports(processes + total + 1)?;
            let addresses: Vec<String> = ports[..processes]
                .iter()
                .map(|p| format!("127.0.0.1:{p}"))
                .collect();
            let zmq_ports = if point.mode == Mode::RawZmq {
                ports[processes..].to_vec()
            } else {
                Vec::new()
            };
            (addresses, (0..processes).collect(), zmq_ports)
        }
    };
    let limit = deadline(options, point);
    let batch_records = (options.batch_bytes / point.size).max(1);
    let mut cluster = Cluster {
        children: Vec::new(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    for &process in &local {
        let spec = ChildSpec {
            workload: point.workload,
            mode: point.mode,
            size: point.size,
            records: point.records,
            batch_records,
            window: options.window,
            workers: options.workers,
            process,
            addresses: addresses.clone(),
            zmq_ports: zmq_ports.clone(),
            deadline: limit,
        };
        let mut child = Command::new(exe)
            .args(spec.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting child process {process} ({}): {e}", exe.display()))?;
        cluster.stdout.push(child.stdout.take().and_then(drain));
        cluster.stderr.push(child.stderr.take().and_then(drain));
        cluster.children.push(child);
    }

    // The children enforce the deadline themselves; the parent waits a little longer and
    // then kills them, so that a stuck child can never hang the run.
    let kill_at = Instant::now() + limit + Duration::from_secs(5);
    let mut exited = vec![false; local.len()];
    while exited.iter().any(|e| !e) {
        for (slot, child) in cluster.children.iter_mut().enumerate() {
            let process = local[slot];
            if exited[slot] {
                continue;
            }
            match child.try_wait() {
                Ok(Some(status)) if status.success() => exited[slot] = true,
                Ok(Some(status)) => {
                    let stderr = collect_after_kill(&mut cluster, slot);
                    return Err(format!(
                        "process {process} failed ({status}): {}",
                        tail(&stderr)
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for process {process}: {e}")),
            }
        }
        if Instant::now() > kill_at {
            let stuck: Vec<usize> = (0..local.len())
                .filter(|&slot| !exited[slot])
                .map(|slot| local[slot])
                .collect();
            return Err(format!(
                "timed out after {limit:?}; processes {stuck:?} killed"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }

    let mut reports = Vec::new();
    for (slot, &process) in local.iter().enumerate() {
        let stdout = collect(&mut cluster.stdout[slot]);
        let report = stdout
            .lines()
            .find_map(ChildReport::parse)
            .ok_or_else(|| format!("process {process} printed no result"))??;
        if report.process != process {
            return Err(format!("process {process} reported as {}", report.process));
        }
        reports.push(report);
    }
    let expected = point
        .workload
        .delivered_bytes(point.records, point.size, total as u64);
    let (elapsed, delivered_bytes) = match reports.first() {
        Some(first) if first.process == 0 => (
            first
                .elapsed
                .ok_or_else(|| "process 0 reported no elapsed time".to_string())?,
            if local.len() == processes {
                reports.iter().map(|r| r.bytes).sum()
            } else {
                // Hostfile mode: every other process checked its own share (a child that
                // verified fewer payloads than its share fails, and with it the point).
                expected
            },
        ),
        // Hostfile mode on another machine: its share verified; process 0 measures.
        _ => (Duration::ZERO, expected),
    };
    if delivered_bytes != expected {
        return Err(format!(
            "consumers verified {delivered_bytes} bytes, expected {expected}"
        ));
    }
    let objects_left = if point.mode.uses_store() {
        reports
            .iter()
            .map(|r| r.objects_left)
            .sum::<Option<usize>>()
    } else {
        None
    };
    Ok(Measured {
        elapsed,
        delivered_bytes,
        peak_rss_kib: reports.iter().map(|r| r.peak_rss_kib).collect(),
        objects_left,
    })
}

/// Kills every child of the cluster and returns the stderr of the one in `slot`.
fn collect_after_kill(cluster: &mut Cluster, slot: usize) -> String {
    for child in &mut cluster.children {
        let _ = child.kill();
        let _ = child.wait();
    }
    collect(&mut cluster.stderr[slot])
}
