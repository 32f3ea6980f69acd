//! The dataflow operators across real processes in timely's cluster mode, on loopback.
//!
//! The test re-executes its own binary: the `child` test (ignored unless run on purpose)
//! plays one timely process, configured through environment variables.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataflow_plugin::{ProxyRecords, Resolve};
use proxy_core::testing::free_loopback_port;
use proxy_core::{register_store, Connector, ConnectorConfig, Key, Proxy, Store, ZmqConnector};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};

const RECORDS: u64 = 32;
const LEN: usize = 256 * 1024;

/// Clusters run one at a time: their ports are picked before the processes bind them.
static ONE_CLUSTER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn record(i: u64) -> Vec<u8> {
    let mut data = vec![(i * 7 % 256) as u8; LEN];
    data[..8].copy_from_slice(&i.to_le_bytes());
    data
}

/// The connector each process stores into, by name.
fn connector(kind: &str, dir: &Path) -> std::sync::Arc<dyn Connector> {
    match kind {
        "file" => ConnectorConfig::File {
            dir: dir.to_path_buf(),
            clear_on_close: false,
            recycled_files: None,
        }
        .build()
        .expect("file connector"),
        // Each process runs its own embedded peer; consumers fetch from the producer's peer.
        "zmq" => std::sync::Arc::new(ZmqConnector::new().expect("zmq connector")),
        other => panic!("unknown connector kind {other}"),
    }
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `processes` copies of this test binary as one timely cluster, waits for them,
/// and returns each one's report file.
fn run_cluster(kind: &str, processes: usize) -> (tempfile::TempDir, Vec<String>) {
    run_cluster_cached(kind, processes, 0)
}

/// Like [`run_cluster`], with stores that cache `cache_size` decoded objects.
fn run_cluster_cached(
    kind: &str,
    processes: usize,
    cache_size: usize,
) -> (tempfile::TempDir, Vec<String>) {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let store_dir = dir.path().join("objects");
    std::fs::create_dir_all(&store_dir).expect("store dir");
    let addresses: Vec<String> = (0..processes)
        .map(|_| format!("127.0.0.1:{}", free_loopback_port()))
        .collect();
    let exe = std::env::current_exe().expect("test binary");
    let mut children = Children(Vec::new());
    for process in 0..processes {
        let child = Command::new(&exe)
            .args([
                "--exact",
                "child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MP_PROCESS", process.to_string())
            .env("MP_ADDRESSES", addresses.join(","))
            .env("MP_KIND", kind)
            .env("MP_CACHE", cache_size.to_string())
            .env("MP_STORE_DIR", &store_dir)
            .env("MP_REPORT", report_path(dir.path(), process))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child process");
        children.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for (process, child) in children.0.iter_mut().enumerate() {
        loop {
            match child.try_wait().expect("wait") {
                Some(status) => {
                    assert!(status.success(), "process {process} failed: {status}");
                    break;
                }
                None if Instant::now() > deadline => panic!("process {process} hung"),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    let reports = (0..processes)
        .map(|p| std::fs::read_to_string(report_path(dir.path(), p)).expect("report"))
        .collect();
    (dir, reports)
}

fn report_path(dir: &Path, process: usize) -> PathBuf {
    dir.join(format!("report-{process}.txt"))
}

/// Parses the `seen` lines of the reports into sorted record ids, checking `left` lines.
fn seen_records(reports: &[String]) -> Vec<u64> {
    let mut seen = Vec::new();
    for report in reports {
        for line in report.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("seen") => seen.push(words.next().and_then(|w| w.parse().ok()).expect("id")),
                Some("left") => assert_eq!(words.next(), Some("0"), "objects left: {line}"),
                Some("fetched-remote") => {}
                Some("cached") => assert_eq!(
                    words.next(),
                    Some("0"),
                    "released objects still cached: {line}"
                ),
                _ => panic!("unexpected report line {line:?}"),
            }
        }
    }
    seen.sort();
    seen
}

#[test]
fn two_processes_file_store_every_record_once() {
    let (dir, reports) = run_cluster("file", 2);
    assert_eq!(seen_records(&reports), (0..RECORDS).collect::<Vec<_>>());
    assert!(
        reports[1].lines().any(|l| l.starts_with("seen")),
        "process 1 received records"
    );
    let left = std::fs::read_dir(dir.path().join("objects"))
        .expect("read")
        .count();
    assert_eq!(left, 0, "objects left in the file store");
}

#[test]
fn two_processes_zmq_peers_every_record_once_and_nothing_left() {
    let (_dir, reports) = run_cluster("zmq", 2);
    assert_eq!(seen_records(&reports), (0..RECORDS).collect::<Vec<_>>());
    assert!(
        reports[1].lines().any(|l| l.starts_with("seen")),
        "process 1 received records"
    );
    for (process, report) in reports.iter().enumerate() {
        assert!(
            report.lines().any(|l| l == "left 0"),
            "process {process} reports no leftovers: {report}"
        );
    }
}

#[test]
fn two_processes_with_caching_stores_leave_no_released_object_in_any_cache() {
    for kind in ["zmq", "file"] {
        let (_dir, reports) = run_cluster_cached(kind, 2, 16);
        assert_eq!(seen_records(&reports), (0..RECORDS).collect::<Vec<_>>());
        for (process, report) in reports.iter().enumerate() {
            let line = report.lines().find(|l| l.starts_with("cached"));
            assert_eq!(line, Some("cached 0"), "{kind} process {process}: {report}");
        }
        // Some records crossed processes, so some consumer did fetch (and cache) objects.
        assert!(
            reports
                .iter()
                .any(|r| r.lines().any(|l| l == "fetched-remote yes")),
            "{kind}: no record crossed processes: {reports:?}"
        );
    }
}

#[test]
fn three_processes_zmq_peers_every_record_once() {
    let (_dir, reports) = run_cluster("zmq", 3);
    assert_eq!(seen_records(&reports), (0..RECORDS).collect::<Vec<_>>());
}

/// One process of the cluster; does nothing unless started by `run_cluster`.
#[test]
#[ignore = "started by the multi-process tests"]
fn child() {
    let Ok(process) = std::env::var("MP_PROCESS") else {
        return;
    };
    let process: usize = process.parse().expect("MP_PROCESS");
    let addresses: Vec<String> = std::env::var("MP_ADDRESSES")
        .expect("MP_ADDRESSES")
        .split(',')
        .map(String::from)
        .collect();
    let kind = std::env::var("MP_KIND").expect("MP_KIND");
    let store_dir = PathBuf::from(std::env::var("MP_STORE_DIR").expect("MP_STORE_DIR"));
    let report = PathBuf::from(std::env::var("MP_REPORT").expect("MP_REPORT"));

    let connector = connector(&kind, &store_dir);
    let cache_size: usize = std::env::var("MP_CACHE")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let store = Store::builder_arc("multiprocess", connector.clone())
        .with_cache_size(cache_size)
        .build();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Key, bool)>::new()));
    let received_sink = received.clone();
    let own_store = store.clone();
    register_store(&store).expect("register");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();

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
    timely::execute(config, move |worker| {
        let store = store.clone();
        let sink = sink.clone();
        let received = received_sink.clone();
        let index = worker.index();
        let (mut input, probe) = worker.dataflow::<u64, _, _>(move |scope| {
            let (input, stream) = scope.new_input::<Vec<Vec<u8>>>();
            let probe = stream
                .proxy(&store)
                .exchange(|p| Proxy::key(p).id() as u64)
                .inspect(move |p| {
                    // A proxy that crossed processes arrives unresolved.
                    let remote = !Proxy::is_resolved(p);
                    received
                        .lock()
                        .expect("lock")
                        .push((Proxy::key(p).clone(), remote));
                })
                .resolve()
                .inspect(move |data| {
                    let i = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
                    assert!(*data == record(i), "record {i} corrupted");
                    sink.lock().expect("lock").push(format!("seen {i}"));
                })
                .probe()
                .0;
            (input, probe)
        });
        if index == 0 {
            for i in 0..RECORDS {
                input.send(record(i));
            }
        }
        input.advance_to(1);
        while probe.less_than(input.time()) {
            worker.step_or_park(Some(std::time::Duration::from_millis(100)));
        }
    })
    .expect("execute")
    .join()
    .into_iter()
    .for_each(|r| r.expect("worker failed"));

    let mut lines = lines.lock().expect("lock").clone();
    let received = received.lock().expect("lock").clone();
    let cached = received
        .iter()
        .filter(|(key, _)| own_store.is_cached(key))
        .count();
    lines.push(format!("cached {cached}"));
    let remote = received.iter().any(|(_, remote)| *remote);
    lines.push(format!(
        "fetched-remote {}",
        if remote { "yes" } else { "no" }
    ));
    if kind != "file" {
        // Each peer holds the objects it put; after the dataflow none may be left.
        lines.push(format!(
            "left {}",
            connector.object_count().unwrap_or(usize::MAX)
        ));
    }
    std::fs::write(&report, lines.join("\n") + "\n").expect("write report");
}
