//! A small pool of threads that resolve proxies in the background.

use std::sync::OnceLock;

use crossbeam_channel::{unbounded, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How many fetch threads to start when `PROXY_CORE_FETCH_THREADS` is not set.
const DEFAULT_THREADS: usize = 4;

/// How many fetch threads the pool has (`PROXY_CORE_FETCH_THREADS`, default 4).
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("PROXY_CORE_FETCH_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(DEFAULT_THREADS)
    })
}

fn pool() -> &'static Sender<Job> {
    static POOL: OnceLock<Sender<Job>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = threads();
        let (sender, receiver) = unbounded::<Job>();
        for i in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("proxy-fetch-{i}"))
                .spawn(move || {
                    for job in receiver {
                        // A panicking job must not take the worker thread with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(thread = i, error = %e, "could not start a fetch thread");
            }
        }
        sender
    })
}

/// Runs `job` on a background fetch thread. If no thread could be started, runs it here.
pub(crate) fn spawn(job: impl FnOnce() + Send + 'static) {
    if let Err(failed) = pool().send(Box::new(job)) {
        (failed.into_inner())();
    }
}
