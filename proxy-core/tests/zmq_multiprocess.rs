//! Two processes share objects through `ZmqConnector`: process A puts and sends a proxy as
//! bytes through a pipe; process B (this test binary, re-executed) resolves it from A's peer
//! server, checks it, evicts it, and A sees it gone.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use proxy_core::{register_store, Proxy, Store, ZmqConnector};

/// Set in the child process; its value is the number of elements to expect.
const CHILD_ENV: &str = "PROXY_CORE_ZMQ_MULTIPROCESS_CHILD";
const TEST_NAME: &str =
    "a_proxy_sent_to_another_process_resolves_there_and_its_evict_reaches_the_owner";

fn expected(len: u64) -> Vec<u64> {
    (0..len)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect()
}

#[test]
fn a_proxy_sent_to_another_process_resolves_there_and_its_evict_reaches_the_owner() {
    if let Ok(len) = std::env::var(CHILD_ENV) {
        let len: u64 = len.parse().expect("element count");
        return child(len);
    }
    const LEN: u64 = 300_000; // 2.4 MB: large enough for the zero-copy frame paths
    let connector = ZmqConnector::new().expect("start peer A");
    let store = Store::builder("zmq-multiprocess", connector)
        .with_cache_size(0)
        .build();
    register_store(&store).expect("register");
    let proxy = store.proxy(expected(LEN)).expect("proxy");
    let key = Proxy::key(&proxy).clone();
    let wire = bincode::serialize(&proxy).expect("serialize the proxy");
    assert!(
        wire.len() < 300,
        "a proxy is {} bytes on the wire",
        wire.len()
    );
    assert!(store.connector().exists(&key).expect("exists in A"));

    let exe = std::env::current_exe().expect("test binary");
    let mut b = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, LEN.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start process B");
    b.stdin
        .take()
        .expect("stdin")
        .write_all(&wire)
        .expect("send the proxy to B");
    let mut report = String::new();
    b.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut report)
        .expect("B's report");
    let status = b.wait().expect("wait for B");
    assert!(status.success(), "process B failed: {status}\n{report}");
    assert!(
        report.contains("B: resolved and evicted"),
        "B did not run the child path:\n{report}"
    );

    assert!(
        !store.connector().exists(&key).expect("exists in A"),
        "B's evict did not reach A"
    );
    assert_eq!(store.connector().object_count(), Some(0));
}

/// Process B: reads a proxy from standard input, resolves it remotely, evicts it.
fn child(len: u64) {
    let mut wire = Vec::new();
    std::io::stdin()
        .read_to_end(&mut wire)
        .expect("read the proxy");
    let proxy: Proxy<Vec<u64>> = bincode::deserialize(&wire).expect("deserialize the proxy");
    assert!(!Proxy::is_resolved(&proxy));
    Proxy::resolve(&proxy).expect("resolve from A's peer server");
    assert!(*proxy == expected(len), "B read different contents");

    let store = Proxy::store(&proxy).expect("the proxy's store, rebuilt in B");
    assert_eq!(
        store.connector().object_count(),
        Some(0),
        "B stored nothing itself"
    );
    let key = Proxy::key(&proxy);
    store.evict(key).expect("evict from B");
    assert!(!store.connector().exists(key).expect("exists from B"));
    println!("B: resolved and evicted {key}");
}
