//! A timely cluster whose processes run on separate simulated hosts: each process in its own
//! Linux network namespace, made by this test, with its own address on a bridge that only
//! these namespaces share (loopback is not shared). The proxies cross between namespaces
//! over ZeroMQ, to the addresses each process binds and advertises.
//!
//! The network: one "switch" namespace holding a bridge, and one namespace per host joined
//! to it by a veth pair, with address `10.231.0.(N+1)/24` on its `eth0`. Nothing is added
//! to the namespace the test runs in, and no traffic leaves the namespaces it made; they
//! are removed at the end, also when the test fails. Names carry the test's PID, so
//! parallel runs do not clash.
//!
//! Making namespaces needs root (CAP_NET_ADMIN) and `ip` (iproute2). Without them the tests
//! skip with one printed line, unless `PROXYSTORE_TESTS_REQUIRE_ALL=1` (set by `.ci/run`)
//! makes that a failure.
//!
//! The test re-executes its own binary inside each namespace: the `host_process` test
//! (ignored unless run on purpose) plays one timely process, configured through environment
//! variables (the `PROXYSTORE_ZMQ_*` ones, as a user would set them on each machine),
//! under the cluster watchdog (`dataflow_plugin::cluster::execute`).
//!
//! The fault tests run a 3-host cluster that never finishes on its own and strike host 2
//! (never started, link down, SIGSTOP); hosts 0 and 1 must end with the watchdog's exit
//! status and an error naming host 2, within a generous multiple of the short bounds they
//! set (heartbeat 200 ms x 5 misses, startup deadline 3 s). With
//! `PROXYSTORE_CLUSTER_WATCHDOG=off` they fail: plain timely hangs.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataflow_plugin::cluster::{self, ClusterOptions, EXIT_HOST_LOST, EXIT_NEVER_JOINED};
use dataflow_plugin::{ProxyRecords, Resolve};
use proxy_core::testing::require_or_skip;
use proxy_core::{register_store, Connector, Proxy, Store, ZmqOptions};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};

const RECORDS: u64 = 24;
/// The ZeroMQ peer's shared-memory threshold (`PROXYSTORE_ZMQ_SHM_MIN_SIZE`'s default):
/// objects of at least this size are kept in shared memory.
const SHM_MIN: usize = 64 * 1024;

/// The size of record `i`: below, at and well above the shared-memory threshold in turn.
fn record_len(i: u64) -> usize {
    match i % 3 {
        0 => SHM_MIN - 1,
        1 => SHM_MIN,
        _ => 1 << 20,
    }
}
/// Timely's port on every simulated host (each namespace has its own ports).
const TIMELY_PORT: u16 = 2101;
/// The ports the ZeroMQ peer of host `index` may bind: a range of its own, so that even the
/// loopback mistake below gives every peer a different endpoint. (When every host binds
/// 127.0.0.1 on the same port, other hosts' keys look like this host's own: see the README.)
fn zmq_ports(index: usize) -> (u16, u16) {
    let first = 7000 + 10 * index as u16;
    (first, first + 9)
}
/// How long a whole cluster may take before the test calls it a hang.
const DEADLINE: Duration = Duration::from_secs(60);

fn record(i: u64) -> Vec<u8> {
    let mut data = vec![(i * 13 % 251) as u8; record_len(i)];
    data[..8].copy_from_slice(&i.to_le_bytes());
    data
}

/// The address of simulated host `index`.
fn host_address(index: usize) -> String {
    format!("10.231.0.{}", index + 1)
}

/// Runs `ip` with `args`; `Err` with its error output if it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let output: Output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run `ip` (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The namespaces of one simulated network; dropping it deletes them (and with them the
/// bridge and the veth pairs).
struct Network {
    switch: String,
    hosts: Vec<String>,
}

const PREFIX: &str = "pstest";

impl Network {
    /// `hosts` namespaces joined by a bridge in a switch namespace, named after this
    /// process and `case`.
    fn create(case: &str, hosts: usize) -> Result<Network, String> {
        remove_stale_namespaces();
        let base = format!("{PREFIX}-{}-{case}", std::process::id());
        let mut network = Network {
            switch: format!("{base}-sw"),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &network.switch])?;
        let sw = network.switch.clone();
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for index in 0..hosts {
            let host = format!("{base}-h{index}");
            ip(&["netns", "add", &host])?;
            network.hosts.push(host.clone());
            let port = format!("p{index}");
            ip(&[
                "link", "add", "eth0", "netns", &host, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            let address = format!("{}/24", host_address(index));
            ip(&["-n", &host, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for name in self.hosts.iter().chain(std::iter::once(&self.switch)) {
            if let Err(e) = ip(&["netns", "delete", name]) {
                // Not `eprintln!`: the harness would swallow it for a passing test.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "multihost: could not remove {name}: {e}");
            }
        }
    }
}

/// Deletes namespaces left by earlier runs that were killed before they could clean up
/// (their PID no longer exists).
fn remove_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists();
        if !alive {
            let _ = ip(&["netns", "delete", name]);
        }
    }
}

/// The network for a test, or `None` (after printing a skip line) when this machine cannot
/// make namespaces.
fn network_or_skip(case: &str, hosts: usize) -> Option<Network> {
    require_or_skip(
        "the multi-host tests (tests/multihost.rs)",
        "run them as root with iproute2 installed: sudo -E cargo test --test multihost",
        Network::create(case, hosts),
    )
}

/// The processes started, by host index; killed on drop (also when stopped).
struct Children(Vec<(usize, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How one cluster run ended.
struct Run {
    /// Each process's exit success, report and error output.
    processes: Vec<(bool, String, String)>,
    elapsed: Duration,
}

/// Starts one timely process on each host of `network` listed in `hosts`, each inside its
/// namespace with `env` (plus its own `PROXYSTORE_ZMQ_INTERFACE` if `bind_own_address`);
/// their reports and error output go to `dir`.
fn start_hosts(
    network: &Network,
    hosts: &[usize],
    bind_own_address: bool,
    env: &[(&str, &str)],
    dir: &Path,
) -> Children {
    start_hosts_as(network, hosts, bind_own_address, env, dir, false)
}

/// [`start_hosts`], the processes told where they stand as `srun` tells them (`slurm`: only
/// `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_JOB_NODELIST` and the timely port variable), or
/// by the test's own variables.
fn start_hosts_as(
    network: &Network,
    hosts: &[usize],
    bind_own_address: bool,
    env: &[(&str, &str)],
    dir: &Path,
    slurm: bool,
) -> Children {
    let processes = network.hosts.len();
    let addresses: Vec<String> = (0..processes)
        .map(|i| format!("{}:{TIMELY_PORT}", host_address(i)))
        .collect();
    let exe = std::env::current_exe().expect("test binary");
    let mut children = Children(Vec::new());
    for &process in hosts {
        let namespace = &network.hosts[process];
        let stderr = File::create(stderr_path(dir, process)).expect("stderr file");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", namespace])
            .arg(&exe)
            .args([
                "--exact",
                "host_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MH_REPORT", report_path(dir, process))
            // The same secret on every process of the cluster.
            .env("PROXYSTORE_SECRET", "multihost-test-secret-4f1c9a")
            .env("PROXYSTORE_ZMQ_PORT", {
                let (first, last) = zmq_ports(process);
                format!("{first}-{last}")
            })
            .env_remove("PROXYSTORE_ZMQ_INTERFACE")
            .env_remove("PROXYSTORE_ZMQ_ADVERTISE")
            .env_remove("MH_MODE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        if bind_own_address {
            command.env("PROXYSTORE_ZMQ_INTERFACE", host_address(process));
        }
        for variable in ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_JOB_NODELIST"]
            .iter()
            .chain(&["SLURM_STEP_NODELIST", "SLURM_TASKS_PER_NODE"])
            .chain(&["SLURM_STEP_TASKS_PER_NODE", "MH_SLURM", "MH_PROCESS"])
        {
            command.env_remove(variable);
        }
        if slurm {
            command
                .env("MH_SLURM", "1")
                .env("SLURM_PROCID", process.to_string())
                .env("SLURM_NTASKS", processes.to_string())
                // Compressed, as Slurm writes it: 10.231.0.[1-3].
                .env("SLURM_JOB_NODELIST", format!("10.231.0.[1-{processes}]"))
                .env("PROXYSTORE_TIMELY_PORT", TIMELY_PORT.to_string());
        } else {
            command
                .env("MH_PROCESS", process.to_string())
                .env("MH_ADDRESSES", addresses.join(","));
        }
        children.0.push((
            process,
            command.spawn().expect("start a process in its namespace"),
        ));
    }
    children
}

/// Starts one timely process per host of `network` (see [`start_hosts`]) and waits for
/// all. When one fails the others are stopped.
fn run_cluster(network: &Network, bind_own_address: bool, env: &[(&str, &str)]) -> Run {
    run_cluster_as(network, bind_own_address, env, false)
}

/// [`run_cluster`], launched as under Slurm if `slurm` (see [`start_hosts_as`]).
fn run_cluster_as(
    network: &Network,
    bind_own_address: bool,
    env: &[(&str, &str)],
    slurm: bool,
) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let processes = network.hosts.len();
    let started = Instant::now();
    let all: Vec<usize> = (0..processes).collect();
    let mut children = start_hosts_as(network, &all, bind_own_address, env, dir.path(), slurm);
    let mut status: Vec<Option<bool>> = vec![None; processes];
    while status.iter().any(Option::is_none) {
        assert!(
            started.elapsed() < DEADLINE,
            "the cluster hung: no result after {DEADLINE:?} (done: {status:?})"
        );
        for (process, child) in children.0.iter_mut() {
            if status[*process].is_none() {
                if let Some(exit) = child.try_wait().expect("wait") {
                    status[*process] = Some(exit.success());
                }
            }
        }
        if status.contains(&Some(false)) {
            break; // the others may wait forever for the failed one
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    drop(children);
    Run {
        processes: (0..processes)
            .map(|p| {
                (
                    status[p] == Some(true),
                    std::fs::read_to_string(report_path(dir.path(), p)).unwrap_or_default(),
                    std::fs::read_to_string(stderr_path(dir.path(), p)).unwrap_or_default(),
                )
            })
            .collect(),
        elapsed,
    }
}

fn report_path(dir: &Path, process: usize) -> PathBuf {
    dir.join(format!("report-{process}.txt"))
}

fn stderr_path(dir: &Path, process: usize) -> PathBuf {
    dir.join(format!("stderr-{process}.txt"))
}

/// The words after `tag` on each line of `report` that starts with it.
fn tagged<'a>(report: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    report
        .lines()
        .filter_map(move |line| line.strip_prefix(tag)?.strip_prefix(' '))
}

/// A cluster on `hosts` hosts with same-host shared memory on or off
/// (`PROXYSTORE_ZMQ_SHM`). Namespaces share one kernel, so with it on, the records at or
/// above the threshold that cross hosts are mapped from shared memory; with it off, every
/// cross-host read goes over TCP, which the connector's counter shows (no mapped read).
fn cluster_across_hosts(case: &str, hosts: usize, shared_memory: bool) {
    cluster_across_hosts_as(case, hosts, shared_memory, false);
}

/// [`cluster_across_hosts`], launched as under Slurm if `slurm`.
fn cluster_across_hosts_as(case: &str, hosts: usize, shared_memory: bool, slurm: bool) {
    let Some(network) = network_or_skip(case, hosts) else {
        return;
    };
    let shm = if shared_memory { "1" } else { "0" };
    let run = run_cluster_as(&network, true, &[("PROXYSTORE_ZMQ_SHM", shm)], slurm);
    for (process, (ok, report, stderr)) in run.processes.iter().enumerate() {
        assert!(ok, "process {process} failed:\n{stderr}\nreport:\n{report}");
    }
    let mut seen: Vec<u64> = Vec::new();
    let mut crossed = false;
    for (process, (_, report, _)) in run.processes.iter().enumerate() {
        let own = format!("tcp://{}:", host_address(process));
        // The keys a process writes name its own namespace's address, in the port range.
        let made: Vec<&str> = tagged(report, "made-on").collect();
        assert!(!made.is_empty(), "process {process} made no proxies");
        for peer in &made {
            assert!(peer.starts_with(&own), "process {process} wrote {peer}");
            let port: u16 = peer[own.len()..].parse().expect("port");
            let (first, last) = zmq_ports(process);
            assert!((first..=last).contains(&port), "{peer}");
        }
        for peer in tagged(report, "received-from") {
            crossed |= !peer.starts_with(&own);
        }
        seen.extend(tagged(report, "seen").map(|id| id.parse::<u64>().expect("id")));
        let left: Vec<&str> = tagged(report, "left").collect();
        assert_eq!(left, ["0"], "process {process} ends with objects: {report}");
    }
    assert!(crossed, "no proxy crossed between hosts");
    let count = |tag: &str| -> Vec<u64> {
        run.processes
            .iter()
            .map(|(_, report, _)| {
                tagged(report, tag)
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no {tag} in {report}"))
            })
            .collect()
    };
    let (mapped, small, big) = (
        count("mapped"),
        count("crossed-small"),
        count("crossed-big"),
    );
    assert!(
        small.iter().sum::<u64>() > 0 && big.iter().sum::<u64>() > 0,
        "records on both sides of the threshold cross hosts: small {small:?}, big {big:?}"
    );
    if shared_memory {
        // Every large record from another host mapped, no small one.
        assert_eq!(
            mapped, big,
            "mapped reads against large records read from other hosts"
        );
    } else {
        assert!(
            mapped.iter().all(|&m| m == 0),
            "with PROXYSTORE_ZMQ_SHM=0 every read crosses TCP, but some were mapped: {mapped:?}"
        );
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..RECORDS).collect::<Vec<_>>(),
        "every record exactly once"
    );
    assert!(run.elapsed < DEADLINE);
}

#[test]
fn two_hosts_over_tcp_every_record_once_and_every_peer_empty() {
    cluster_across_hosts("two-tcp", 2, false);
}

#[test]
fn two_hosts_with_shared_memory_every_record_once_and_every_peer_empty() {
    cluster_across_hosts("two-shm", 2, true);
}

#[test]
fn three_hosts_over_tcp_every_record_once_and_every_peer_empty() {
    cluster_across_hosts("three-tcp", 3, false);
}

#[test]
fn three_hosts_with_shared_memory_every_record_once_and_every_peer_empty() {
    cluster_across_hosts("three-shm", 3, true);
}

#[test]
fn three_hosts_launched_as_by_slurm_with_only_its_variables() {
    cluster_across_hosts_as("slurm", 3, false, true);
}

#[test]
fn binding_loopback_by_mistake_fails_naming_the_address_with_a_hint() {
    let Some(network) = network_or_skip("loop", 2) else {
        return;
    };
    // Nobody sets PROXYSTORE_ZMQ_INTERFACE: every peer binds (and advertises) 127.0.0.1 of
    // its own namespace, which the other host cannot reach.
    let run = run_cluster(&network, false, &[("PROXYSTORE_ZMQ_TIMEOUT", "1s")]);
    let failed: Vec<&String> = run
        .processes
        .iter()
        .filter(|(ok, _, _)| !ok)
        .map(|(_, _, stderr)| stderr)
        .collect();
    assert!(
        !failed.is_empty(),
        "keys naming loopback crossed hosts without an error"
    );
    assert!(
        failed.iter().any(|stderr| {
            stderr.contains("peer tcp://127.0.0.1:7")
                && stderr.contains("loopback address")
                && stderr.contains("PROXYSTORE_ZMQ_INTERFACE")
        }),
        "no failure names the loopback peer with a hint: {failed:#?}"
    );
    assert!(
        run.elapsed < Duration::from_secs(30),
        "took {:?}",
        run.elapsed
    );
}

/// What happens to the victim host in a fault test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// It is never started.
    NeverStarts,
    /// Its link goes down (`ip link set eth0 down` in its namespace) once the cluster runs.
    LinkDown,
    /// It is stopped (SIGSTOP) once the cluster runs.
    Stopped,
}

/// Heartbeat settings of the fault tests: a host is lost after 5 x 200 ms of silence.
const FAULT_HEARTBEAT: &str = "200ms";
const FAULT_MISSES: &str = "5";
/// The startup deadline of the never-starts case.
const FAULT_STARTUP: Duration = Duration::from_secs(3);

/// Three hosts run a cluster that never finishes on its own; `fault` strikes host 2. Hosts 0
/// and 1 must end with the watchdog's exit status and an error naming host 2, within
/// `bound` of the fault (the bound is generous: this machine may be busy).
fn cluster_fault(case: &str, fault: Fault) {
    let Some(network) = network_or_skip(case, 3) else {
        return;
    };
    let victim = 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let startup = format!("{}ms", FAULT_STARTUP.as_millis());
    let env = [
        ("MH_MODE", "forever"),
        ("PROXYSTORE_CLUSTER_HEARTBEAT", FAULT_HEARTBEAT),
        ("PROXYSTORE_CLUSTER_MISSES", FAULT_MISSES),
        (
            "PROXYSTORE_CLUSTER_STARTUP",
            if fault == Fault::NeverStarts {
                startup.as_str()
            } else {
                "60s"
            },
        ),
    ];
    let hosts: Vec<usize> = match fault {
        Fault::NeverStarts => vec![0, 1],
        _ => vec![0, 1, 2],
    };
    let mut children = start_hosts(&network, &hosts, true, &env, dir.path());
    let started = Instant::now();
    if fault != Fault::NeverStarts {
        // Wait until every process is past timely's connection phase.
        while !hosts.iter().all(|&p| {
            report_path(dir.path(), p)
                .with_extension("connected")
                .exists()
        }) {
            assert!(
                started.elapsed() < DEADLINE,
                "the cluster did not connect within {DEADLINE:?}"
            );
            for (process, child) in children.0.iter_mut() {
                if let Some(exit) = child.try_wait().expect("wait") {
                    let stderr = std::fs::read_to_string(stderr_path(dir.path(), *process));
                    panic!("process {process} ended before the fault ({exit}): {stderr:?}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let struck = Instant::now();
    match fault {
        Fault::NeverStarts => {}
        Fault::LinkDown => {
            ip(&["-n", &network.hosts[victim], "link", "set", "eth0", "down"]).expect("link down")
        }
        Fault::Stopped => {
            let pid = children
                .0
                .iter()
                .find(|(p, _)| *p == victim)
                .map(|(_, child)| child.id())
                .expect("victim");
            // The shell's `kill` builtin: no dependency on procps' /bin/kill.
            let ok = Command::new("sh")
                .args(["-c", &format!("kill -STOP {pid}")])
                .status()
                .expect("sh -c 'kill -STOP'")
                .success();
            assert!(ok, "could not stop the victim");
        }
    }
    // The bound the watchdog promises, with room for a busy machine: the startup deadline,
    // or the silence bound (1 s); the test allows 5 s more plus five times the bound.
    let promised = match fault {
        Fault::NeverStarts => FAULT_STARTUP,
        _ => Duration::from_secs(1),
    };
    let allowed = promised * 6 + Duration::from_secs(5);
    let expected_code = match fault {
        Fault::NeverStarts => EXIT_NEVER_JOINED,
        _ => EXIT_HOST_LOST,
    };
    let mut ended: Vec<Option<(Option<i32>, Duration)>> = vec![None; 2];
    while ended.iter().any(Option::is_none) {
        for (process, child) in children.0.iter_mut().filter(|(p, _)| *p < 2) {
            if ended[*process].is_none() {
                if let Some(exit) = child.try_wait().expect("wait") {
                    ended[*process] = Some((exit.code(), struck.elapsed()));
                }
            }
        }
        if struck.elapsed() > allowed {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(children);
    let victim_address = format!("{}:{TIMELY_PORT}", host_address(victim));
    for (process, end) in ended.iter().enumerate() {
        let stderr = std::fs::read_to_string(stderr_path(dir.path(), process)).unwrap_or_default();
        let Some((code, after)) = end else {
            panic!(
                "{fault:?}: process {process} still ran {allowed:?} after the fault (a hang); \
                 its error output:\n{stderr}"
            );
        };
        assert_eq!(
            *code,
            Some(expected_code),
            "{fault:?}: process {process} ended after {after:?} with {code:?}:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("process {victim} ({victim_address})")),
            "{fault:?}: process {process}'s error does not name host {victim} ({victim_address}):\n{stderr}"
        );
        // Not `eprintln!`: the harness would swallow it for a passing test.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "multihost {fault:?}: process {process} ended {after:?} after the fault (promised {promised:?})"
        );
    }
}

#[test]
fn a_host_that_never_starts_ends_the_others_naming_it() {
    cluster_fault("never", Fault::NeverStarts);
}

#[test]
fn a_host_whose_link_goes_down_ends_the_others_naming_it() {
    cluster_fault("down", Fault::LinkDown);
}

#[test]
fn a_stopped_host_ends_the_others_naming_it() {
    cluster_fault("stop", Fault::Stopped);
}

/// One process of a cluster; does nothing unless started by `run_cluster`.
#[test]
#[ignore = "started by the multi-host tests inside a network namespace"]
fn host_process() {
    let Ok(report) = std::env::var("MH_REPORT") else {
        return;
    };
    let report = PathBuf::from(report);
    // Launched as under Slurm (only SLURM_* variables say where it stands), or with the
    // process index and addresses given.
    let slurm = std::env::var_os("MH_SLURM").is_some();
    let (process, processes) = if slurm {
        let launch = cluster::slurm_launch()
            .expect("SLURM_PROCID and SLURM_NTASKS set")
            .expect("valid SLURM_* variables");
        (launch.process, launch.addresses.len() as u64)
    } else {
        let process: usize = std::env::var("MH_PROCESS")
            .expect("MH_PROCESS")
            .parse()
            .expect("MH_PROCESS");
        let processes = std::env::var("MH_ADDRESSES")
            .expect("MH_ADDRESSES")
            .split(',')
            .count() as u64;
        (process, processes)
    };

    // What a user writes on every machine: settings from the environment.
    let zmq = ZmqOptions::from_env()
        .expect("PROXYSTORE_ZMQ_* variables")
        .build()
        .expect("zmq peer");
    let connector: Arc<dyn Connector> = Arc::new(zmq.clone());
    // Records read from another host, at least the shared-memory threshold or smaller.
    let crossed = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let crossed_sink = crossed.clone();
    let store = Store::builder_arc("multihost", connector.clone())
        .with_cache_size(0)
        .build();
    register_store(&store).expect("register");
    let lines = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let sink = lines.clone();

    let forever = std::env::var("MH_MODE").is_ok_and(|m| m == "forever");
    let connected = report.with_extension("connected");
    // Under the cluster watchdog, as the examples run (bounds from PROXYSTORE_CLUSTER_*).
    let options = ClusterOptions::from_env().expect("PROXYSTORE_CLUSTER_* variables");
    let work = move |worker: &mut timely::worker::Worker| {
        // Timely's connection phase is over: every process has joined.
        std::fs::write(&connected, "").expect("write the connected mark");
        if forever {
            // A cluster that runs until something happens to it (the fault tests).
            loop {
                worker.step_or_park(Some(Duration::from_millis(100)));
            }
        }
        let store = store.clone();
        let (made, received, seen) = (sink.clone(), sink.clone(), sink.clone());
        let crossed = crossed_sink.clone();
        let (mut input, probe) = worker.dataflow::<u64, _, _>(move |scope| {
            let (input, stream) = scope.new_input::<Vec<Vec<u8>>>();
            let probe = stream
                .proxy(&store)
                .inspect(move |p| {
                    let peer = Proxy::key(p).peer().unwrap_or("(none)");
                    made.lock().expect("lock").insert(format!("made-on {peer}"));
                })
                .exchange(|p| Proxy::key(p).id() as u64)
                .inspect(move |p| {
                    let peer = Proxy::key(p).peer().unwrap_or("(none)");
                    received
                        .lock()
                        .expect("lock")
                        .insert(format!("received-from {peer}"));
                })
                .resolve()
                .inspect(move |data| {
                    let i = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
                    assert!(*data == record(i), "record {i} corrupted");
                    if i % processes != process as u64 {
                        let big = usize::from(data.len() >= SHM_MIN);
                        crossed[big].fetch_add(1, Ordering::Relaxed);
                    }
                    let fresh = seen.lock().expect("lock").insert(format!("seen {i}"));
                    assert!(fresh, "record {i} arrived twice");
                })
                .probe()
                .0;
            (input, probe)
        });
        // Every host produces its share, so proxies cross in every direction.
        for i in (0..RECORDS).filter(|i| i % processes == process as u64) {
            input.send(record(i));
        }
        input.advance_to(1);
        while probe.less_than(input.time()) {
            worker.step_or_park(Some(Duration::from_millis(100)));
        }
    };
    let guards = if slurm {
        // What `srun ./my_dataflow` runs: no -n/-p/-h, the cluster from SLURM_* variables.
        cluster::execute_from_args(["-w".to_string(), "1".to_string()], options, work)
    } else {
        let addresses: Vec<String> = std::env::var("MH_ADDRESSES")
            .expect("MH_ADDRESSES")
            .split(',')
            .map(String::from)
            .collect();
        let config = timely::Config {
            communication: timely::CommunicationConfig::Cluster {
                threads: 1,
                process,
                addresses,
                report: false,
                zerocopy: false,
            },
            worker: timely::WorkerConfig::default(),
        };
        cluster::execute(config, options, work)
    };
    guards
        .expect("execute")
        .join()
        .into_iter()
        .for_each(|r| r.expect("worker failed"));

    let mut lines: Vec<String> = lines.lock().expect("lock").iter().cloned().collect();
    lines.push(format!(
        "left {}",
        connector.object_count().unwrap_or(usize::MAX)
    ));
    lines.push(format!("mapped {}", zmq.mapped_reads()));
    lines.push(format!(
        "crossed-small {}",
        crossed[0].load(Ordering::Relaxed)
    ));
    lines.push(format!(
        "crossed-big {}",
        crossed[1].load(Ordering::Relaxed)
    ));
    std::fs::write(&report, lines.join("\n") + "\n").expect("write report");
}
