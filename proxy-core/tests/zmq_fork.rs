//! A process forked from one that uses ZeroMQ connectors (what Python's `multiprocessing`
//! does by default on Linux before 3.14): connectors inherited through the fork refuse to
//! work, with an error that says why, instead of storing objects nobody serves; connectors
//! made in the child work, with a ZeroMQ context and a server of their own.
//!
//! Before: a put through the inherited connector went into the child's copy of the parent
//! server's map and returned a key naming the parent, which never had the object.

use std::time::Duration;

use bytes::Bytes;
use proxy_core::{Connector, Key, ZmqConnector, ZmqOptions};

/// Writes all of `data` to `fd`.
fn write_all(fd: i32, data: &[u8]) {
    let mut written = 0;
    while written < data.len() {
        // SAFETY: `data[written..]` is a live buffer of the given length.
        let n = unsafe { libc::write(fd, data[written..].as_ptr().cast(), data.len() - written) };
        if n <= 0 {
            return;
        }
        written += n as usize;
    }
}

/// Reads from `fd` until end of file.
fn read_to_end(fd: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is a live buffer of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

fn pipe() -> [i32; 2] {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    fds
}

/// The child: checks what it can do, reports on `report` (one line per finding, then the
/// key of an object its own new peer holds), waits for the parent to read that object
/// (end of file on `release`), and exits.
fn child(parent: &ZmqConnector, parent_key: &Key, report: i32, release: i32) -> ! {
    let mut lines = Vec::new();
    match parent.put(Bytes::from_static(b"lost?")) {
        Err(e) if e.to_string().contains("fork") => lines.push("inherited put refused".into()),
        other => lines.push(format!("inherited put: {other:?}")),
    }
    match parent.get(parent_key) {
        Err(e) if e.to_string().contains("fork") => lines.push("inherited get refused".into()),
        other => lines.push(format!("inherited get: {other:?}")),
    }
    let own = ZmqOptions::default()
        .with_timeout(Duration::from_secs(10))
        .build();
    let mut held = None;
    match own {
        Ok(own) => {
            match own.get(parent_key) {
                Ok(Some(bytes)) if bytes[..] == b"from the parent"[..] => {
                    lines.push("new connector reads the parent's object".into())
                }
                other => lines.push(format!("new connector get: {other:?}")),
            }
            match own.put(Bytes::from_static(b"from the child")) {
                Ok(key) => lines.push(format!("key {key}")),
                Err(e) => lines.push(format!("new connector put: {e}")),
            }
            held = Some(own);
        }
        Err(e) => lines.push(format!("new connector: {e}")),
    }
    write_all(report, (lines.join("\n") + "\n").as_bytes());
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(report) };
    read_to_end(release);
    drop(held);
    // SAFETY: leaves the forked child without running the parent's test harness.
    unsafe { libc::_exit(0) }
}

#[test]
fn inherited_connectors_refuse_and_new_ones_work_after_fork() {
    let parent = ZmqOptions::default()
        .with_timeout(Duration::from_secs(10))
        .build()
        .expect("peer");
    let key = parent
        .put(Bytes::from_static(b"from the parent"))
        .expect("put");
    // This thread has client sockets too (a request to its own peer goes through the map,
    // so ask another peer).
    let other = ZmqConnector::new().expect("other peer");
    let other_key = other.put(Bytes::from_static(b"x")).expect("put");
    assert!(parent.exists(&other_key).expect("exists"));

    let report = pipe();
    let release = pipe();
    // SAFETY: the child only runs `child`, which ends with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: closing the ends this process does not use.
        unsafe {
            libc::close(report[0]);
            libc::close(release[1]);
        }
        child(&parent, &key, report[1], release[0]);
    }
    // SAFETY: closing the ends this process does not use.
    unsafe {
        libc::close(report[1]);
        libc::close(release[0]);
    }
    let text = String::from_utf8(read_to_end(report[0])).expect("utf-8 report");
    let lines: Vec<&str> = text.lines().collect();
    let child_key: Option<Key> = lines
        .iter()
        .find_map(|line| line.strip_prefix("key "))
        .and_then(|k| k.parse().ok());
    let read_back = child_key.as_ref().map(|k| parent.get(k));
    // SAFETY: closing our own descriptors; the child exits once `release` is closed.
    unsafe {
        libc::close(release[1]);
        libc::close(report[0]);
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };

    assert_eq!(
        &lines[..3],
        [
            "inherited put refused",
            "inherited get refused",
            "new connector reads the parent's object"
        ],
        "child's report: {text}"
    );
    let child_key = child_key.unwrap_or_else(|| panic!("no key in the child's report: {text}"));
    assert_ne!(
        child_key.peer(),
        parent.endpoint(),
        "the child's object is held by its own peer"
    );
    match read_back {
        Some(Ok(Some(bytes))) => assert_eq!(&bytes[..], b"from the child"),
        other => panic!("reading the child's object: {other:?}"),
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    // The parent's own connector is unaffected.
    assert_eq!(
        parent.get(&key).expect("get").as_deref(),
        Some(&b"from the parent"[..])
    );
}
