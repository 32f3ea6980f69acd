//! A small pool of threads that resolve proxies in the background.

use std::sync::OnceLock;

use crossbeam_channel::{unbounded, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How many fetch threads to start when `PROXYSTORE_FETCH_THREADS` is not set.
const DEFAULT_THREADS: usize = 4;

/// The number of background fetch threads.
const ENV_THREADS: &str = "PROXYSTORE_FETCH_THREADS";
/// The old name of [`ENV_THREADS`], still read when the new one is unset.
const ENV_THREADS_OLD: &str = "PROXY_CORE_FETCH_THREADS";

/// How many fetch threads the pool has (`PROXYSTORE_FETCH_THREADS`, or the old
/// `PROXY_CORE_FETCH_THREADS`; default 4). Read once per process.
pub(crate) fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| threads_from(|name| std::env::var(name).ok()))
}

/// [`threads`] from the variables `lookup` finds; a malformed value is reported and ignored.
fn threads_from(lookup: impl Fn(&str) -> Option<String>) -> usize {
    let Some((name, value)) = [ENV_THREADS, ENV_THREADS_OLD].into_iter().find_map(|name| {
        lookup(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    }) else {
        return DEFAULT_THREADS;
    };
    match value.trim().parse::<usize>() {
        Ok(threads) if threads > 0 => threads,
        _ => {
            tracing::warn!(
                variable = name,
                value = %value,
                default = DEFAULT_THREADS,
                "not a positive number of fetch threads; using the default"
            );
            DEFAULT_THREADS
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let set: Vec<(String, String)> = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| set.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_new_name_wins_and_the_old_one_is_still_read() {
        assert_eq!(threads_from(vars(&[])), DEFAULT_THREADS);
        assert_eq!(threads_from(vars(&[(ENV_THREADS_OLD, "3")])), 3);
        assert_eq!(
            threads_from(vars(&[(ENV_THREADS, "7"), (ENV_THREADS_OLD, "3")])),
            7
        );
        assert_eq!(threads_from(vars(&[(ENV_THREADS, "0")])), DEFAULT_THREADS);
        assert_eq!(
            threads_from(vars(&[(ENV_THREADS, "many")])),
            DEFAULT_THREADS
        );
    }
}
