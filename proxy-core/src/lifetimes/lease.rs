//! `LeaseLifetime`: objects that live until a deadline, unless it is extended.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::attached::{next_name, Attached};
use super::{timer, Lifetime};
use crate::error::Result;
use crate::key::Key;
use crate::store::Store;

/// The furthest a deadline goes: a lease of `Duration::MAX` lasts a century, not an overflow.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A lease: the objects attached to it are evicted when it expires, `expiry` after it was
/// made unless [`extend`](LeaseLifetime::extend)ed, or when it is
/// [closed](Lifetime::close) earlier (ProxyStore's `LeaseLifetime`).
///
/// One timer thread serves every lease of the process (started with the first lease); it
/// evicts through each object's store, so caches stay coherent, and logs failed evictions
/// with `tracing::warn!`.
///
/// # Dropping the handle
/// Clones share the lease. Dropping every handle does **not** end it: the timer keeps it and
/// evicts its objects at expiry, as ProxyStore's lease keeps running. That is the point of a
/// lease: it bounds how long an object can outlive its last use even when the code that
/// should have ended the lifetime lost track of it (a proxy captured by a task that never
/// finishes, a handle leaked on an error path). To evict at once, call
/// [`close`](Lifetime::close); to evict at the end of a scope, use a
/// [`ContextLifetime`](super::ContextLifetime).
///
/// ```
/// use std::time::Duration;
/// use proxy_core::{LeaseLifetime, Lifetime, LocalConnector, Store};
///
/// let store = Store::new("lease-doc", LocalConnector::new());
/// let lease = LeaseLifetime::new(Duration::from_secs(60));
/// let key = store.put_in(&vec![0u8; 1024], &lease)?;
/// lease.extend(Duration::from_secs(60))?; // now about two minutes from its start
/// assert!(lease.expires_in().unwrap() > Duration::from_secs(60));
///
/// let handle = lease.clone();
/// drop(lease); // the timer still holds the lease: nothing is evicted yet
/// assert!(store.exists(&key)?);
/// handle.close()?; // ends it now
/// assert!(!store.exists(&key)?);
/// # Ok::<(), proxy_core::Error>(())
/// ```
#[derive(Clone)]
pub struct LeaseLifetime {
    lease: Arc<Lease>,
}

/// A lease's state, shared by its handles and the timer.
pub(super) struct Lease {
    attached: Attached,
    /// Held while the lease is ended by the timer, so that an extension either comes first
    /// (and the lease lives on) or fails (the lease has ended): it never succeeds in vain.
    deadline: Mutex<Instant>,
}

impl Lease {
    fn deadline(&self) -> MutexGuard<'_, Instant> {
        self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn name(&self) -> &str {
        self.attached.name()
    }

    /// Ends the lease if its deadline has passed and evicts its objects; otherwise returns
    /// its deadline, to be looked at again then. A lease closed by hand is forgotten.
    pub(super) fn expire_if_due(&self) -> Option<Instant> {
        let deadline = self.deadline();
        if self.attached.is_closed() {
            return None;
        }
        if *deadline > Instant::now() {
            return Some(*deadline);
        }
        let groups = self.attached.take_all();
        drop(deadline);
        if let Some(groups) = groups {
            match self.attached.evict(groups) {
                Ok(()) => tracing::debug!(lease = %self.name(), "lease expired"),
                Err(error) => tracing::warn!(
                    lease = %self.name(),
                    %error,
                    "a lease expired but some of its objects could not be evicted: they leak"
                ),
            }
        }
        None
    }
}

fn after(from: Instant, by: Duration) -> Instant {
    from.checked_add(by.min(FOREVER)).unwrap_or(from)
}

impl LeaseLifetime {
    /// A lease that expires `expiry` from now, named `lease-N` (unique in this process).
    pub fn new(expiry: Duration) -> Self {
        Self::named(next_name("lease"), expiry)
    }

    /// A lease named `name` (errors and logs name it) that expires `expiry` from now.
    pub fn named(name: impl Into<String>, expiry: Duration) -> Self {
        let deadline = after(Instant::now(), expiry);
        let lease = Arc::new(Lease {
            attached: Attached::new(name.into()),
            deadline: Mutex::new(deadline),
        });
        timer::schedule(deadline, Arc::clone(&lease));
        LeaseLifetime { lease }
    }

    /// Postpones expiry by `by` (added to the current deadline, as ProxyStore's `extend`).
    /// Fails with [`Error::LifetimeClosed`](crate::Error::LifetimeClosed) once the lease has
    /// expired or been closed.
    pub fn extend(&self, by: Duration) -> Result<()> {
        let mut deadline = self.lease.deadline();
        if self.lease.attached.is_closed() {
            return Err(self
                .lease
                .attached
                .closed_error(format!("extend by {by:?}")));
        }
        *deadline = after(*deadline, by);
        Ok(())
    }

    /// How long until the lease expires (zero once the deadline has passed); `None` once it
    /// has ended.
    pub fn expires_in(&self) -> Option<Duration> {
        let deadline = self.lease.deadline();
        if self.lease.attached.is_closed() {
            return None;
        }
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    /// How many objects are attached and not evicted yet.
    pub fn len(&self) -> usize {
        self.lease.attached.len()
    }

    /// Whether no object is attached (or all were evicted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Lifetime for LeaseLifetime {
    fn name(&self) -> &str {
        self.lease.name()
    }

    fn add_keys(&self, store: &Store, keys: &[Key]) -> Result<()> {
        self.lease.attached.add(store, keys)
    }

    /// Ends the lease now and evicts its objects (the timer forgets it).
    fn close(&self) -> Result<()> {
        self.lease.attached.close()
    }

    fn is_closed(&self) -> bool {
        self.lease.attached.is_closed()
    }
}

impl fmt::Debug for LeaseLifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseLifetime")
            .field("lifetime", &self.lease.attached)
            .field("expires_in", &self.expires_in())
            .finish()
    }
}
