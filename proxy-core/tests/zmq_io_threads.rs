//! The process's ZeroMQ context runs the I/O threads asked for before its first use.
//!
//! One test in its own binary (so its own process): nothing has created the context yet.

use bytes::Bytes;
use proxy_core::{Connector, Error, ZmqConnector};

#[test]
fn io_threads_set_before_first_use_are_the_ones_running() {
    #[cfg(target_os = "linux")]
    let before = threads();
    ZmqConnector::set_io_threads(3).expect("before first use, any count from 1 to 64");
    // Until the context exists the choice can still change.
    ZmqConnector::set_io_threads(2).expect("still before first use");
    assert!(matches!(
        ZmqConnector::set_io_threads(0),
        Err(Error::Config { .. })
    ));

    // Several readers of one peer, each thread with its own client socket.
    let owner = ZmqConnector::new().expect("owner");
    let keys: Vec<_> = (0..4u8)
        .map(|i| owner.put(Bytes::from(vec![i; 1 << 16])).expect("put"))
        .collect();
    std::thread::scope(|scope| {
        for (i, key) in keys.iter().enumerate() {
            scope.spawn(move || {
                let reader = ZmqConnector::client(Default::default()).expect("reader");
                let data = reader.get(key).expect("get").expect("present");
                assert_eq!(data, Bytes::from(vec![i as u8; 1 << 16]));
            });
        }
    });

    assert_eq!(ZmqConnector::io_threads(), 2);
    // The threads started since the test began that keep running, besides the peer's
    // server thread: libzmq's reaper and its I/O threads (the readers' threads, joined, may
    // take a moment to leave /proc).
    #[cfg(target_os = "linux")]
    {
        let libzmq = || -> Vec<(String, String)> {
            threads()
                .into_iter()
                .filter(|thread| !before.contains(thread) && !thread.1.starts_with("zmq-peer"))
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while libzmq().len() != 1 + 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let running = libzmq();
        assert_eq!(
            running.len(),
            1 + 2,
            "libzmq runs a reaper and two I/O threads, not {running:?}"
        );
    }
    ZmqConnector::set_io_threads(2).expect("the running count is accepted");
    assert!(matches!(
        ZmqConnector::set_io_threads(4),
        Err(Error::Config { .. })
    ));
    assert_eq!(ZmqConnector::io_threads(), 2);
}

/// This process's threads: (id, name).
#[cfg(target_os = "linux")]
fn threads() -> Vec<(String, String)> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| {
            let task = task.ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some((
                task.file_name().to_string_lossy().into_owned(),
                name.trim().to_string(),
            ))
        })
        .collect()
}
