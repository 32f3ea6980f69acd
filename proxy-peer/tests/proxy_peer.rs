//! The standalone `proxy-peer` binary: serves objects stored on it, shuts down on signals.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_core::{Connector, Error, ZmqConnector, ZmqOptions};

mod common;
use common::{start_peer, PEER};

/// Starts `proxy-peer` with `args`; by default it must bind loopback.
fn start(args: &[&str]) -> (Child, String) {
    let (child, endpoint) = start_peer(args);
    assert!(
        endpoint.starts_with("tcp://127.0.0.1:"),
        "printed {endpoint:?}"
    );
    (child, endpoint)
}

fn signal(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
}

/// Waits for `child` to exit, at most `limit`; returns whether it exited with status 0.
fn exits_cleanly(child: &mut Child, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("proxy-peer did not exit within {limit:?}");
}

#[test]
fn serves_objects_put_on_it_and_stops_on_sigterm() {
    let (mut child, endpoint) = start(&["--port", "0", "--timeout", "2"]);
    let client = ZmqConnector::client(ZmqOptions::default().with_timeout(Duration::from_secs(2)))
        .expect("client");

    let small = client
        .put_to(&endpoint, Bytes::from_static(b"served"))
        .expect("put_to the peer");
    let big = Bytes::from((0..(4u32 << 20)).map(|i| i as u8).collect::<Vec<u8>>());
    let large = client
        .put_to(&endpoint, big.clone())
        .expect("put_to the peer");
    assert_eq!(small.peer(), Some(endpoint.as_str()));
    assert!(client.exists(&small).expect("exists"));
    assert_eq!(
        client.get(&small).expect("get"),
        Some(Bytes::from_static(b"served"))
    );
    assert!(client.get(&large).expect("get").expect("present") == big);
    let both = client
        .get_batch(&[large.clone(), small.clone()])
        .expect("get_batch");
    assert_eq!(both[1], Some(Bytes::from_static(b"served")));
    client.evict(&small).expect("evict");
    assert!(!client.exists(&small).expect("exists"));
    // The client itself stored nothing and started no server.
    assert_eq!(client.endpoint(), None);

    signal(&child, libc::SIGTERM);
    assert!(
        exits_cleanly(&mut child, Duration::from_secs(5)),
        "nonzero exit after SIGTERM"
    );
    let reader =
        ZmqConnector::client(ZmqOptions::default().with_timeout(Duration::from_millis(200)))
            .expect("client");
    assert!(
        matches!(reader.get(&large), Err(Error::Timeout { .. })),
        "still served after exit"
    );
}

#[test]
fn stops_on_sigint() {
    let (mut child, _endpoint) = start(&[]);
    signal(&child, libc::SIGINT);
    assert!(
        exits_cleanly(&mut child, Duration::from_secs(5)),
        "nonzero exit after SIGINT"
    );
}

#[test]
fn help_version_and_bad_arguments() {
    let help = Command::new(PEER)
        .arg("--help")
        .output()
        .expect("run proxy-peer");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--bind",
        "--address",
        "--port",
        "--timeout",
        "--max-message-size",
        "put",
        "get",
        "exists",
        "evict",
        "stats",
        "PROXYSTORE_ZMQ_PORT",
    ] {
        assert!(text.contains(flag), "help does not mention {flag}");
    }
    let version = Command::new(PEER)
        .arg("--version")
        .output()
        .expect("run proxy-peer");
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("proxy-peer {}", env!("CARGO_PKG_VERSION"))
    );
    let bad = Command::new(PEER)
        .args(["--port", "nope"])
        .output()
        .expect("run proxy-peer");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid port"));
}

/// Runs a client command of `proxy-peer`; returns its exit code and standard output.
fn client(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(PEER)
        .args(args)
        .arg("--timeout=2s")
        .stderr(Stdio::inherit())
        .output()
        .expect("run proxy-peer");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
    )
}

#[test]
fn client_commands_put_get_exists_evict() {
    let (mut child, endpoint) = start(&["--port=0"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("input.bin");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&input, &data).expect("write input");

    let (code, key) = client(&[
        "put",
        input.to_str().expect("utf-8 path"),
        &format!("--peer={endpoint}"),
    ]);
    assert_eq!(code, Some(0));
    // The key names the peer's endpoint and its incarnation (`@tcp://...#<16 hex>`).
    let (named, incarnation) = key.rsplit_once('#').expect("an incarnation");
    assert!(named.ends_with(&format!("@{endpoint}")), "printed {key:?}");
    assert_eq!(incarnation.len(), 16, "printed {key:?}");

    let output = dir.path().join("output.bin");
    let (code, _) = client(&["get", &key, "-o", output.to_str().expect("utf-8 path")]);
    assert_eq!(code, Some(0));
    assert_eq!(std::fs::read(&output).expect("read output"), data);

    assert_eq!(client(&["exists", &key]), (Some(0), "true".to_string()));
    assert_eq!(client(&["evict", &key]).0, Some(0));
    assert_eq!(client(&["exists", &key]), (Some(1), "false".to_string()));
    assert_eq!(client(&["get", &key]).0, Some(1), "get of an evicted key");

    signal(&child, libc::SIGTERM);
    assert!(exits_cleanly(&mut child, Duration::from_secs(5)));
}

/// The counters `proxy-peer stats` printed, by name.
fn stats(endpoint: &str) -> std::collections::HashMap<String, u64> {
    let (code, text) = client(&["stats", &format!("--peer={endpoint}")]);
    assert_eq!(code, Some(0), "stats failed: {text}");
    text.lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("a name: value line");
            (name.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

#[test]
fn the_stats_command_prints_objects_bytes_and_rejections() {
    let (mut child, endpoint) = start(&["--port=0", "--max-bytes=1000"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let small = dir.path().join("small.bin");
    let large = dir.path().join("large.bin");
    std::fs::write(&small, vec![7u8; 600]).expect("write");
    std::fs::write(&large, vec![8u8; 500]).expect("write");

    let empty = stats(&endpoint);
    assert_eq!(empty["objects"], 0);
    assert_eq!(empty["bytes"], 0);
    assert_eq!(empty["rejected requests"], 0);
    assert_eq!(empty["max bytes"], 1000);

    let (code, key) = client(&[
        "put",
        small.to_str().expect("utf-8"),
        &format!("--peer={endpoint}"),
    ]);
    assert_eq!(code, Some(0));
    // 600 + 500 bytes would exceed the 1000-byte quota: refused and counted.
    let (code, _) = client(&[
        "put",
        large.to_str().expect("utf-8"),
        &format!("--peer={endpoint}"),
    ]);
    assert_ne!(code, Some(0), "a put over the quota succeeded");
    let held = stats(&endpoint);
    assert_eq!(held["objects"], 1);
    assert_eq!(held["bytes"], 600);
    assert_eq!(held["remote bytes"], 600);
    assert_eq!(
        held["quota used"],
        600 + 320,
        "bytes and the per-object overhead"
    );
    assert_eq!(held["rejected requests"], 1);

    assert_eq!(client(&["evict", &key]).0, Some(0));
    let evicted = stats(&endpoint);
    assert_eq!((evicted["objects"], evicted["bytes"]), (0, 0));
    assert!(evicted["requests"] > held["requests"]);

    signal(&child, libc::SIGTERM);
    assert!(exits_cleanly(&mut child, Duration::from_secs(5)));
}

#[test]
fn a_log_written_to_a_file_or_pipe_has_no_colour_codes() {
    // A client command against a peer that never answers logs an error (the level and the
    // message) and fails; its standard error is a pipe here.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer = format!("tcp://{}", dead.local_addr().expect("address"));
    let output = Command::new(PEER)
        .args(["stats", "--peer", &peer, "--timeout=300ms"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .output()
        .expect("run proxy-peer");
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("ERROR"), "an error was logged: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log: {log:?}"
    );
}

/// The body of `GET path` from the HTTP server at `addr`, and its status line.
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a header and a body");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of the sample of `name` whose labels include every `labels` pair.
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse().expect("a number"))
        .next()
}

/// `--metrics-listen`: a scrape after known puts and gets shows them (issue 23).
#[test]
fn metrics_are_scraped_over_http_after_known_puts_and_gets() {
    let metrics = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("addr").to_string()
    };
    let (mut child, endpoint) = start(&["--metrics-listen", &metrics]);
    let client = ZmqConnector::client(ZmqOptions::default()).expect("client");
    let keys: Vec<_> = (0..3)
        .map(|_| {
            client
                .put_to(&endpoint, Bytes::from(vec![1u8; 1000]))
                .expect("put")
        })
        .collect();
    for key in &keys[..2] {
        assert!(client.get(key).expect("get").is_some());
    }
    let missing = proxy_core::Key::new("zmq", 7).with_peer(endpoint.as_str());
    assert_eq!(client.get(&missing).expect("get of a missing key"), None);

    let peer = ("peer", endpoint.as_str());
    // The peer sets its gauges right after it sends a batch's replies, so the first scrape
    // may come before them: scrape until they show (as Prometheus would at its next scrape).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, page) = loop {
        let (status, page) = http_get(&metrics, "/metrics");
        assert!(status.contains("200"), "{status}");
        let settled = sample(&page, "proxystore_peer_objects", &[peer]) == Some(3.0)
            && sample(
                &page,
                "proxystore_peer_requests_total",
                &[peer, ("op", "get"), ("outcome", "not_found")],
            )
            .is_some();
        if settled || std::time::Instant::now() > deadline {
            break (status, page);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.contains("200"), "{status}");
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&page, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{page}"))
    };
    assert_eq!(value("proxystore_peer_objects", &[peer]), 3.0);
    assert_eq!(value("proxystore_peer_remote_bytes", &[peer]), 3000.0);
    let requests = |op, outcome| {
        value(
            "proxystore_peer_requests_total",
            &[peer, ("op", op), ("outcome", outcome)],
        )
    };
    assert_eq!(requests("put", "ok"), 3.0);
    assert_eq!(requests("get", "ok"), 2.0);
    assert_eq!(requests("get", "not_found"), 1.0);
    assert!(value("proxystore_peer_received_bytes_total", &[peer]) >= 3000.0);
    assert!(value("proxystore_peer_sent_bytes_total", &[peer]) >= 2000.0);
    assert_eq!(
        value(
            "proxystore_peer_request_duration_seconds_count",
            &[peer, ("op", "put")]
        ),
        3.0
    );
    assert!(page.contains("# HELP proxystore_peer_objects"), "{page}");
    let (status, _) = http_get(&metrics, "/other");
    assert!(status.contains("404"), "{status}");
    let _ = child.kill();
    let _ = child.wait();
}

/// `proxy-peer` raises its soft open-file limit to the hard one at start, and logs it:
/// started with a soft limit of 256 and a hard one of 2048, it runs with 2048.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(PEER);
    command
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 2048,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = command.spawn().expect("start proxy-peer");
    let stderr = child.stderr.take().expect("stderr");
    let mut said = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("a log line");
        if line.contains("open-file limit") {
            said = Some(line);
            break;
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("limits");
    let _ = child.kill();
    let _ = child.wait();
    let said = said.expect("a log line about the open-file limit");
    assert!(said.contains("raised"), "{said}");
    assert!(said.contains("2048") && said.contains("256"), "{said}");
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("Max open files");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["2048", "2048"], "{open_files}");
}
