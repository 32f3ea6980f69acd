//! The static lifetime at the end of the process: evicted at a normal exit, or by `close`.
//! (Its own test binary: closing the static lifetime ends it for the whole process.)

mod common;

use std::path::Path;
use std::process::Command;

use common::unique;
use proxy_core::{Error, FileConnector, Lifetime, LocalConnector, StaticLifetime, Store};

/// Set in the child: the directory of its file store.
const CHILD_DIR: &str = "STATIC_LIFETIME_CHILD_DIR";
/// Set in the child: whether to attach its object to the static lifetime.
const CHILD_ATTACH: &str = "STATIC_LIFETIME_CHILD_ATTACH";

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).expect("read dir").count()
}

/// Runs the child in a process of its own, which stores one object in `dir` and exits
/// normally without closing its store.
fn run_child(dir: &Path, attach: bool) {
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "child_stores_and_exits",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ATTACH, if attach { "1" } else { "0" })
        .stdout(std::process::Stdio::null())
        .status()
        .expect("spawn the child");
    assert!(status.success(), "the child failed: {status}");
}

#[test]
#[ignore = "run by objects_of_the_static_lifetime_are_evicted_at_exit in a child process"]
fn child_stores_and_exits() {
    let dir = std::env::var_os(CHILD_DIR).expect("run by the parent test");
    let attach = std::env::var(CHILD_ATTACH).expect("run by the parent test") == "1";
    let store = Store::new("static-exit-child", FileConnector::new(dir).expect("file"));
    let key = if attach {
        store
            .put_in(&vec![1u8; 64], &StaticLifetime)
            .expect("put_in")
    } else {
        store.put(&vec![1u8; 64]).expect("put")
    };
    assert!(store.exists(&key).expect("exists"));
    // No close: the process ends here.
}

#[test]
fn objects_of_the_static_lifetime_are_evicted_at_exit() {
    // Without the static lifetime the object outlives the process (so the check below can
    // tell the difference)...
    let kept = tempfile::tempdir().expect("tempdir");
    run_child(kept.path(), false);
    assert_eq!(files_in(kept.path()), 1, "the control child left no object");
    // ...and with it, the exit handler evicts it.
    let evicted = tempfile::tempdir().expect("tempdir");
    run_child(evicted.path(), true);
    assert_eq!(
        files_in(evicted.path()),
        0,
        "the static lifetime's object outlived the process"
    );
}

#[test]
fn closing_the_static_lifetime_evicts_everything_and_ends_it() {
    let a = Store::new(unique("static-all-a"), LocalConnector::new());
    let b = Store::new(unique("static-all-b"), LocalConnector::new());
    let ka = a.put_in(&1u32, &StaticLifetime).expect("a");
    let kb = b.proxy_in(2u32, &StaticLifetime).expect("b");
    assert!(StaticLifetime.len() >= 2);
    StaticLifetime.close().expect("close");
    assert!(StaticLifetime.is_closed() && StaticLifetime.is_empty());
    assert!(!a.exists(&ka).expect("exists"));
    assert!(!b.exists(proxy_core::Proxy::key(&kb)).expect("exists"));
    let err = a.put_in(&3u32, &StaticLifetime).expect_err("ended");
    assert!(matches!(err, Error::LifetimeClosed { ref lifetime, .. } if lifetime == "static"));
    // Closing a store afterwards still works.
    a.close().expect("close a");
}
