//! The objects attached to one lifetime, grouped by store, and how they are evicted.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::Store;

/// The keys attached to a lifetime, per store, and whether the lifetime has ended. Every
/// lifetime keeps one; ending it takes the keys out under the lock (so a key is evicted once,
/// and an attach that comes later fails) and evicts them outside it.
pub(crate) struct Attached {
    name: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    closed: bool,
    /// The stores objects were attached through (stores are told apart by identity: clones
    /// are the same store); `None` once a store's objects were taken out.
    stores: Vec<Option<Store>>,
    /// Each attached object, with the index of the store that evicts it. A key names one
    /// object wherever it is used, so it is attached once, through the first store given.
    keys: HashMap<Key, usize>,
}

impl State {
    fn take(&mut self, only: Option<usize>) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        let keys = std::mem::take(&mut self.keys);
        for (key, index) in keys {
            if only.is_some_and(|only| only != index) {
                self.keys.insert(key, index);
                continue;
            }
            let Some(store) = self.stores.get(index).and_then(Option::as_ref) else {
                continue;
            };
            match groups.iter_mut().find(|g| g.store.same_store(store)) {
                Some(group) => group.keys.push(key),
                None => groups.push(Group {
                    store: store.clone(),
                    keys: vec![key],
                }),
            }
        }
        match only {
            Some(index) => {
                if let Some(slot) = self.stores.get_mut(index) {
                    *slot = None;
                }
            }
            None => self.stores.clear(),
        }
        groups
    }
}

/// The keys of one store, to be evicted through it.
pub(crate) struct Group {
    store: Store,
    keys: Vec<Key>,
}

impl Attached {
    pub(crate) fn new(name: String) -> Self {
        Attached {
            name,
            state: Mutex::new(State::default()),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every change is one
        // push or one take), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches `keys` of `store`; fails, attaching none, once the lifetime has ended.
    pub(crate) fn add(&self, store: &Store, keys: &[Key]) -> Result<()> {
        let mut state = self.lock();
        if state.closed {
            return Err(self.closed_error(match keys {
                [key] => format!("attach object {key}"),
                [first, ..] => format!("attach {} objects (the first {first})", keys.len()),
                [] => "attach objects".to_string(),
            }));
        }
        let found = state
            .stores
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.same_store(store)));
        let index = match found {
            Some(index) => index,
            None => {
                state.stores.push(Some(store.clone()));
                state.stores.len() - 1
            }
        };
        for key in keys {
            state.keys.entry(key.clone()).or_insert(index);
        }
        Ok(())
    }

    /// The error for `operation` on this lifetime after it ended.
    pub(crate) fn closed_error(&self, operation: String) -> Error {
        Error::LifetimeClosed {
            lifetime: self.name.clone(),
            operation,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// How many objects are attached (and not yet evicted).
    pub(crate) fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// Ends the lifetime and takes its keys out; `None` if it had already ended.
    pub(crate) fn take_all(&self) -> Option<Vec<Group>> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.closed = true;
        Some(state.take(None))
    }

    /// Takes out the keys attached through `store` (or a clone of it), leaving the lifetime
    /// open for other stores.
    pub(crate) fn take_store(&self, store: &Store) -> Option<Group> {
        let mut state = self.lock();
        let index = state
            .stores
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.same_store(store)))?;
        state.take(Some(index)).pop()
    }

    /// Ends the lifetime and evicts its objects (see [`evict`](Attached::evict)); closing an
    /// ended lifetime does nothing.
    pub(crate) fn close(&self) -> Result<()> {
        match self.take_all() {
            Some(groups) => self.evict(groups),
            None => Ok(()),
        }
    }

    /// Evicts every object of `groups` through its store (so every cache of this process
    /// forgets it too). A failure does not stop the others; the error names how many failed
    /// and carries the first failure.
    pub(crate) fn evict(&self, groups: Vec<Group>) -> Result<()> {
        let mut objects = 0;
        let mut failed = Vec::new();
        let mut first = None;
        for group in groups {
            for key in group.keys {
                objects += 1;
                if let Err(error) = group.store.evict(&key) {
                    tracing::debug!(lifetime = %self.name, %key, %error, "could not evict");
                    first.get_or_insert(error);
                    failed.push(key);
                }
            }
        }
        tracing::debug!(lifetime = %self.name, objects, failed = failed.len(), "lifetime ended");
        match first {
            None => Ok(()),
            Some(source) => Err(Error::LifetimeEvict {
                lifetime: self.name.clone(),
                failed,
                objects,
                source: Box::new(source),
            }),
        }
    }
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Lifetime")
            .field("name", &self.name)
            .field("closed", &state.closed)
            .field("stores", &state.stores.iter().flatten().count())
            .field("objects", &state.keys.len())
            .finish()
    }
}

/// A name for an unnamed lifetime: `{kind}-{n}`, unique in this process.
pub(crate) fn next_name(kind: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{kind}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
