//! Same-host shared memory across two processes: process B (this test binary, re-executed)
//! owns a peer and puts objects; process A reads them in place, holds one while B evicts it
//! and reuses its memory, then kills B with SIGKILL and checks what is left behind.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use proxy_core::{Connector, Key, ZmqConnector, ZmqOptions};

const CHILD_ENV: &str = "PROXY_CORE_ZMQ_SHM_MULTIPROCESS_CHILD";
const TEST_NAME: &str =
    "a_reader_in_another_process_maps_objects_and_a_killed_owner_leaves_nothing";
const SIZES: [usize; 3] = [100_000, (1 << 20) + 8, 16 << 20];

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

/// The inodes of process `pid`'s descriptors that are this project's memory files.
fn memory_files_of(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    let path = entry.ok()?.path();
                    let target = std::fs::read_link(&path).ok()?;
                    target
                        .to_string_lossy()
                        .contains("memfd:proxystore-zmq")
                        .then(|| std::fs::metadata(&path).ok().map(|m| m.ino()))?
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The inodes of the files this process has mapped (`/proc/self/maps`, fifth column).
fn mapped_inodes() -> HashSet<u64> {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4)?.parse().ok())
        .filter(|&inode: &u64| inode != 0)
        .collect()
}

#[test]
fn a_reader_in_another_process_maps_objects_and_a_killed_owner_leaves_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut b = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start process B");
    let mut to_b = b.stdin.take().expect("stdin");
    let mut from_b = BufReader::new(b.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut keys = Vec::new();
    while keys.len() < SIZES.len() {
        line.clear();
        assert!(
            from_b.read_line(&mut line).expect("B's output") > 0,
            "B ended early"
        );
        // libtest may have printed the test's name on the same line.
        if let Some((_, key)) = line.trim().split_once("KEY ") {
            keys.push(key.parse::<Key>().expect("a key"));
        }
    }

    let reader = ZmqOptions::default()
        .with_timeout(Duration::from_millis(500))
        .build()
        .expect("peer A");
    let mut held = Vec::new();
    for (index, (key, len)) in keys.iter().zip(SIZES).enumerate() {
        let read = reader.get(key).expect("get from B").expect("present");
        assert!(read == pattern(len, index as u8), "{len} bytes differ");
        held.push(read);
    }
    assert_eq!(
        reader.mapped_reads(),
        SIZES.len() as u64,
        "A did not map B's objects"
    );
    let b_files = memory_files_of(b.id());
    assert!(!b_files.is_empty(), "B holds no memory files");
    assert!(
        b_files.is_subset(&mapped_inodes()),
        "A does not map B's memory files"
    );

    // B evicts everything and stores new objects of the same sizes; A reads them, which
    // moves them into B's shared memory, where they would take the slots A still reads if
    // pins did not keep them.
    writeln!(to_b, "churn").expect("tell B");
    let mut new_keys = Vec::new();
    loop {
        line.clear();
        assert!(
            from_b.read_line(&mut line).expect("B's output") > 0,
            "B ended early"
        );
        if let Some((_, key)) = line.trim().split_once("NEW ") {
            new_keys.push(key.parse::<Key>().expect("a key"));
        }
        if line.trim().ends_with("CHURNED") {
            break;
        }
    }
    for (index, key) in new_keys.iter().enumerate() {
        let (round, size) = (index / SIZES.len(), SIZES[index % SIZES.len()]);
        let read = reader.get(key).expect("get").expect("present");
        assert!(
            read == pattern(size, 200 + round as u8),
            "new object {index} differs"
        );
    }
    assert_eq!(reader.mapped_reads(), (SIZES.len() + new_keys.len()) as u64);
    for key in &keys {
        assert_eq!(reader.get(key).expect("get"), None, "B evicted it");
    }
    for (index, (read, len)) in held.iter().zip(SIZES).enumerate() {
        assert!(
            *read == pattern(len, index as u8),
            "B's churn changed A's bytes"
        );
    }

    let pid = b.id();
    b.kill().expect("SIGKILL B");
    b.wait().expect("reap B");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "B is still there"
    );
    // The memory files died with B: their pages live on only in A's mappings.
    for (index, (read, len)) in held.iter().zip(SIZES).enumerate() {
        assert!(
            *read == pattern(len, index as u8),
            "A's bytes changed when B died"
        );
    }
    assert!(
        reader.get(&keys[0]).is_err(),
        "a get from a dead peer is an error"
    );
    // Once A lets go of B's objects, the next segment A maps (here one of a peer of its
    // own) makes it drop its mappings of the dead owner's files: nothing of B is left.
    drop(held);
    let other = ZmqConnector::new().expect("another peer in A");
    let key = other.put(pattern(200_000, 7)).expect("put");
    let before = reader.mapped_reads();
    assert!(reader.get(&key).expect("get").expect("present") == pattern(200_000, 7));
    assert_eq!(reader.mapped_reads(), before + 1, "not read in place");
    let left: Vec<u64> = b_files.intersection(&mapped_inodes()).copied().collect();
    assert!(left.is_empty(), "A still maps B's memory files {left:?}");
}

/// Process B: owns a peer, puts the objects, prints their keys; on `churn`, evicts them
/// and stores others of the same sizes; then waits to be killed.
fn child() {
    let owner = ZmqConnector::new().expect("start peer B");
    let mut keys = Vec::new();
    for (index, len) in SIZES.into_iter().enumerate() {
        let key = owner.put(pattern(len, index as u8)).expect("put");
        println!("KEY {key}");
        keys.push(key);
    }
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    let stdin = std::io::stdin();
    while stdin.lock().read_line(&mut line).expect("read A's command") > 0 {
        if line.trim() == "churn" {
            for key in &keys {
                owner.evict(key).expect("evict");
            }
            let mut others = Vec::new();
            // Freed slots are reused last-freed first, so one round already aims at them.
            for round in 0..3u8 {
                for len in SIZES {
                    let key = owner.put(pattern(len, 200 + round)).expect("put");
                    println!("NEW {key}");
                    others.push(key);
                }
            }
            println!("CHURNED");
            std::io::stdout().flush().expect("flush");
        }
        line.clear();
    }
}
