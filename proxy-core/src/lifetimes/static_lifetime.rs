//! `StaticLifetime`: objects that live as long as their store, or the process.

use std::sync::{Once, OnceLock};
use std::time::Duration;

use super::attached::Attached;
use super::Lifetime;
use crate::error::Result;
use crate::key::Key;
use crate::store::Store;

/// How long a normal exit waits for the evictions of the static lifetime: a store that does
/// not answer must not hold the process up for long.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// The process-wide lifetime: an object attached to it is evicted when its store is
/// [closed](Store::close), when this lifetime is [closed](Lifetime::close), or when the
/// process exits normally, whichever comes first (ProxyStore's `StaticLifetime`, which
/// evicts at interpreter exit).
///
/// `StaticLifetime` is a unit value: every `StaticLifetime` is the same lifetime.
/// [`close`](Lifetime::close) evicts every object attached so far and ends it for the rest of
/// the process (later attaches fail), so call it only when the process is shutting down;
/// [`Store::close`] evicts just that store's objects and leaves it open for the others.
///
/// # At exit
/// Rust's standard library runs nothing at exit, so the first attach registers a C `atexit`
/// handler (through `libc`, already a dependency). It runs when `main` returns or
/// [`std::process::exit`] is called, not after a signal, an abort or a panic that aborts.
/// The handler evicts on a thread of its own (the exiting thread's thread-locals are gone by
/// then, and some connectors keep their sockets in them) and waits for it at most 10 seconds,
/// so a store that does not answer delays the exit, but does not hang it; failures are
/// logged with `tracing::warn!`. Closing the stores before exiting is the deterministic way.
///
/// ```
/// use proxy_core::{LocalConnector, StaticLifetime, Store};
///
/// let store = Store::new("static-doc", LocalConnector::new());
/// let key = store.put_in(&String::from("config for the whole run"), &StaticLifetime)?;
/// assert!(store.exists(&key)?);
/// store.close()?; // evicts the store's objects attached to the static lifetime
/// assert!(!store.exists(&key)?);
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaticLifetime;

fn attached() -> &'static Attached {
    static ATTACHED: OnceLock<Attached> = OnceLock::new();
    ATTACHED.get_or_init(|| Attached::new("static".to_string()))
}

impl StaticLifetime {
    /// How many objects are attached and not evicted yet.
    pub fn len(&self) -> usize {
        attached().len()
    }

    /// Whether no object is attached (or all were evicted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Lifetime for StaticLifetime {
    fn name(&self) -> &str {
        attached().name()
    }

    fn add_keys(&self, store: &Store, keys: &[Key]) -> Result<()> {
        attached().add(store, keys)?;
        evict_at_exit();
        crate::store::on_close(close_store);
        Ok(())
    }

    /// Evicts every object attached so far and ends the static lifetime for the rest of the
    /// process.
    fn close(&self) -> Result<()> {
        attached().close()
    }

    fn is_closed(&self) -> bool {
        attached().is_closed()
    }
}

/// Evicts the objects attached to the static lifetime through `store` (or a clone of it):
/// part of [`Store::close`].
pub(crate) fn close_store(store: &Store) -> Result<()> {
    let attached = attached();
    match attached.take_store(store) {
        Some(group) => attached.evict(vec![group]),
        None => Ok(()),
    }
}

/// Registers the exit handler, once.
fn evict_at_exit() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `at_exit` is a plain `extern "C" fn()` that catches every panic.
        let failed = unsafe { libc::atexit(at_exit) } != 0;
        if failed {
            tracing::warn!(
                "could not register the exit handler of the static lifetime: its objects are \
                 evicted only when their stores close"
            );
        }
    });
}

extern "C" fn at_exit() {
    // A panic must not unwind into C.
    let _ = std::panic::catch_unwind(|| {
        if attached().is_closed() || attached().len() == 0 {
            return;
        }
        let (done, finished) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new()
            .name("proxy-static-exit".into())
            .spawn(move || {
                let outcome = attached().close();
                let _ = done.send(outcome);
            });
        let outcome = match spawned {
            Ok(_) => finished.recv_timeout(EXIT_GRACE).ok(),
            Err(error) => {
                tracing::warn!(%error, "no thread to evict the static lifetime's objects at exit");
                None
            }
        };
        match outcome {
            Some(Ok(())) => {}
            Some(Err(error)) => tracing::warn!(
                %error,
                "at exit, some objects of the static lifetime could not be evicted: they leak"
            ),
            None => tracing::warn!(
                grace = ?EXIT_GRACE,
                "at exit, the static lifetime's evictions did not finish in time: the rest leak"
            ),
        }
    });
}
