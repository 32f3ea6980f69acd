//! The process's one ZeroMQ context, and how many I/O threads it runs.
//!
//! libzmq moves every byte of every connection on its I/O threads: the server thread and the
//! clients only hand messages to them. A context has one I/O thread unless told otherwise,
//! so one peer serving many readers pushes all their replies through one thread (one
//! `write` at a time, each a kernel copy of the payload), whatever the number of cores.
//! With several I/O threads libzmq spreads the connections over them (each new connection
//! goes to the least loaded thread), so replies to different readers are written in
//! parallel. The same holds on the reading side for a process with many fetching threads.
//!
//! The count is fixed when the context is created, by the first ZeroMQ connector of the
//! process: [`set_io_threads`] before that, else `PROXYSTORE_ZMQ_IO_THREADS`, else
//! [`default_io_threads`].
//!
//! A context does not survive `fork()`: the child has a copy of its state but none of its
//! threads. A process forked from one that used ZeroMQ therefore gets a context of its own
//! the first time it asks for one (the inherited copy is left alone, never terminated: that
//! would wait for threads that do not exist in the child), so connectors made in the child
//! work. Connectors inherited through the fork refuse to be used
//! ([`ZmqConnector`](super::ZmqConnector) says why).

use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};

/// The number of libzmq I/O threads (`PROXYSTORE_ZMQ_IO_THREADS`), read once, when the
/// process's ZeroMQ context is created.
pub(crate) const ENV_IO_THREADS: &str = "PROXYSTORE_ZMQ_IO_THREADS";

/// The most I/O threads accepted (libzmq has no hard limit; this is a sanity bound).
pub(crate) const MAX_IO_THREADS: usize = 64;

/// The process that made the context, the context and its I/O thread count. The lock is
/// held while a context is made and while [`set_io_threads`] records a count, so a setting
/// cannot slip in between the moment the context reads it and the moment it exists.
static CONTEXT: Mutex<Option<(u32, (zmq::Context, usize))>> = Mutex::new(None);
/// The count asked for by [`set_io_threads`] (read when the context is made).
static REQUESTED: Mutex<Option<usize>> = Mutex::new(None);

fn requested() -> std::sync::MutexGuard<'static, Option<usize>> {
    REQUESTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lock_context() -> MutexGuard<'static, Option<(u32, (zmq::Context, usize))>> {
    CONTEXT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This process's context and its I/O thread count: the one it made, or a new one, made
/// now on first use (also in a child forked from a process that had one, see the module
/// docs).
fn current() -> (zmq::Context, usize) {
    let mut slot = lock_context();
    // One inherited through fork() is left be (terminating it would wait for threads this
    // process does not have).
    if let Some((context, threads)) = crate::process_id::made_here(&mut slot) {
        return (context.clone(), *threads);
    }
    let threads = (*requested()).unwrap_or_else(|| {
        from_env(std::env::var(ENV_IO_THREADS).ok().as_deref()).unwrap_or_else(default_io_threads)
    });
    let context = zmq::Context::new();
    // Fails only for a count libzmq cannot take (we never pass 0); it then keeps its
    // default of one thread, which `io_threads` reports.
    let threads = match context.set_io_threads(threads as i32) {
        Ok(()) => threads,
        Err(_) => context.get_io_threads().map_or(1, |n| n.max(1) as usize),
    };
    *slot = Some((crate::process_id::current(), (context.clone(), threads)));
    (context, threads)
}

/// The process's ZeroMQ context, created on first use with its I/O threads.
pub(crate) fn context() -> zmq::Context {
    current().0
}

/// The I/O thread count in `PROXYSTORE_ZMQ_IO_THREADS`; `None` when it is unset, empty or
/// not a number from 1 to [`MAX_IO_THREADS`] (then the default applies).
fn from_env(value: Option<&str>) -> Option<usize> {
    value?
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_IO_THREADS).contains(n))
}

/// The default number of I/O threads: one per four cores, from 1 to 4 (1 on a machine with
/// fewer than 8 cores, 4 from 16 cores up).
pub(crate) fn default_io_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / 4).clamp(1, 4)
}

/// How many I/O threads the process's ZeroMQ context runs (creating the context if no
/// ZeroMQ connector has been used yet).
pub(crate) fn io_threads() -> usize {
    current().1
}

/// Sets the number of libzmq I/O threads of this process. Must come before the first ZeroMQ
/// connector of the process is used (the context is shared and created then).
pub(crate) fn set_io_threads(threads: usize) -> Result<()> {
    let what = || "the ZeroMQ context's I/O threads".to_string();
    if !(1..=MAX_IO_THREADS).contains(&threads) {
        return Err(Error::Config {
            what: what(),
            message: format!("{threads} I/O threads: expected 1 to {MAX_IO_THREADS}"),
        });
    }
    // Held while the count is set, so that no context is made meanwhile.
    let mut slot = lock_context();
    if let Some((_, running)) = crate::process_id::made_here(&mut slot) {
        if *running == threads {
            return Ok(());
        }
        return Err(Error::Config {
            what: what(),
            message: format!(
                "the context already runs {running} I/O threads; set the count before the first ZeroMQ connector is used"
            ),
        });
    }
    *requested() = Some(threads);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_outside_the_range_are_ignored() {
        assert_eq!(from_env(None), None);
        assert_eq!(from_env(Some("")), None);
        assert_eq!(from_env(Some("0")), None);
        assert_eq!(from_env(Some("four")), None);
        assert_eq!(from_env(Some("65")), None);
        assert_eq!(from_env(Some(" 3 ")), Some(3));
    }

    #[test]
    fn the_default_is_between_one_and_four() {
        assert!((1..=4).contains(&default_io_threads()));
    }

    #[test]
    fn the_count_is_fixed_once_the_context_exists() {
        // Other tests of this process have created the context, or this does.
        let running = io_threads();
        assert!(running >= 1);
        assert!(set_io_threads(running).is_ok());
        let other = if running == 1 { 2 } else { 1 };
        assert!(matches!(set_io_threads(other), Err(Error::Config { .. })));
        assert!(matches!(set_io_threads(0), Err(Error::Config { .. })));
        assert_eq!(io_threads(), running);
        assert_eq!(context().get_io_threads().ok(), Some(running as i32));
    }
}
