//! Ties the lifetime of stored objects to dataflow progress.
//!
//! A producing operator ([`proxy`](crate::ProxyRecords::proxy),
//! [`auto_proxy`](crate::AutoProxy::auto_proxy)) registers a [`Tracker`] that remembers the
//! keys it stored at each timestamp. Consumers ([`resolve`](crate::Resolve::resolve),
//! [`release_proxies`](crate::ReleaseProxies::release_proxies)) attach *release points*:
//! sinks fed through an exchange channel from every worker, so a release point's frontier
//! passes a time only when every worker's consumer has finished that time. Once every
//! release point of a dataflow has passed a time, the objects stored at it are evicted.
//!
//! Trackers and release points meet in a per-worker table keyed by the dataflow, so that
//! `stream.proxy(&store) ... .resolve()` needs no extra wiring.
//!
//! A producer evicts in its own process, which drops the object from that process's caches
//! only. So that consumers in other processes do not keep serving it from theirs, a
//! producing operator over a caching store also broadcasts the keys it stored to every
//! worker, where a *cache tracker* drops them from that process's caches once every release
//! point (and the broadcast itself) has passed their time.

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use proxy_core::{Key, Store};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::{Scope, StreamVec};
use timely::order::TotalOrder;
use timely::progress::{Antichain, Timestamp};

/// The frontier of one release point, as last seen by it.
type ReleaseFrontier<T> = Rc<RefCell<Antichain<T>>>;

/// What a tracker does with the objects of a time once every release point has passed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// Evict them (the producing operator's tracker).
    Evict,
    /// Drop them from this process's caches (a consumer-side cache tracker).
    Uncache,
}

/// What one producing operator stored, by timestamp, until the consumers are done with it.
pub(crate) struct Tracker<T: Timestamp> {
    store: Store,
    pending: BTreeMap<T, Vec<Key>>,
    releases: Vec<ReleaseFrontier<T>>,
    action: Action,
    /// For a cache tracker: the frontier of its own input, so that a time is released only
    /// once all its keys have arrived.
    input: Option<ReleaseFrontier<T>>,
}

/// A shared handle to a tracker, as held by its producing operator and its release points.
pub(crate) type SharedTracker<T> = Rc<RefCell<Tracker<T>>>;

impl<T: Timestamp> Tracker<T> {
    /// A tracker for objects put into `store` by an operator of the dataflow of `scope`,
    /// registered so that release points built later in the same dataflow find it.
    pub(crate) fn register(scope: &Scope<'_, T>, store: Store) -> SharedTracker<T> {
        Self::register_as(scope, store, Action::Evict, None)
    }

    fn register_as(
        scope: &Scope<'_, T>,
        store: Store,
        action: Action,
        input: Option<ReleaseFrontier<T>>,
    ) -> SharedTracker<T> {
        let tracker = Rc::new(RefCell::new(Tracker {
            store,
            pending: BTreeMap::new(),
            releases: Vec::new(),
            action,
            input,
        }));
        let erased: Rc<dyn Any> = tracker.clone();
        TRACKERS.with(|table| {
            let mut table = table.borrow_mut();
            table.retain(|(_, weak)| weak.strong_count() > 0);
            table.push((dataflow_of(scope), Rc::downgrade(&erased)));
        });
        tracker
    }

    /// Remembers that `keys` were stored at `time`.
    /// A batch that stored nothing (all records inline) leaves no entry behind.
    pub(crate) fn record(&mut self, time: &T, keys: impl IntoIterator<Item = Key>) {
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_some() {
            self.pending.entry(time.clone()).or_default().extend(keys);
        }
    }

    /// Evicts every object stored at a time that all release points have passed.
    fn evict_passed(&mut self) {
        if self.releases.is_empty() {
            return;
        }
        let releases = &self.releases;
        let input = &self.input;
        let passed: Vec<T> = self
            .pending
            .keys()
            .filter(|t| releases.iter().all(|r| !r.borrow().less_equal(*t)))
            .filter(|t| input.as_ref().is_none_or(|i| !i.borrow().less_equal(*t)))
            .cloned()
            .collect();
        for time in passed {
            if let Some(keys) = self.pending.remove(&time) {
                self.evict(keys);
            }
        }
    }

    fn evict(&self, keys: Vec<Key>) {
        let _span = tracing::debug_span!("release", store = %self.store.name(), action = ?self.action, objects = keys.len()).entered();
        if self.action == Action::Uncache {
            for key in &keys {
                self.store.drop_cached(key);
            }
            return;
        }
        for key in keys {
            if let Err(e) = self.store.evict(&key) {
                // Eviction runs inside the dataflow's scheduling, where no caller can receive an
                // error: report it and go on (the object leaks rather than the dataflow failing).
                tracing::warn!(store = %self.store.name(), %key, error = %e, "could not evict a released object: it leaks");
            }
        }
    }
}

impl<T: Timestamp> Drop for Tracker<T> {
    fn drop(&mut self) {
        // The dataflow is gone, so no consumer can read what is left. Without any release
        // point the proxies may have left the dataflow (captured, say): keep their objects.
        if !self.releases.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            for (_, keys) in pending {
                self.evict(keys);
            }
        }
    }
}

/// After a producing operator: drops the objects behind `proxies` from every process's
/// caches once the dataflow no longer needs them ([`uncache_everywhere`]), for a `store`
/// that caches (nothing to do otherwise), and hands the stream back.
pub(crate) fn uncache_proxies<'scope, T, D, C>(
    proxies: StreamVec<'scope, T, proxy_core::Proxy<D, C>>,
    store: &Store,
) -> StreamVec<'scope, T, proxy_core::Proxy<D, C>>
where
    T: Timestamp + TotalOrder,
    D: Send + Sync + 'static,
    C: 'static,
{
    if store.config().cache_size > 0 {
        let keys = proxies.clone().map(|p| proxy_core::Proxy::key(&p).clone());
        uncache_everywhere(keys, store);
    }
    proxies
}

/// Sends the keys of `stored` (the objects a producing operator stored, at their times) to
/// every worker, where a cache tracker drops them from that process's caches once the
/// dataflow's release points have passed their time. Callers skip it for a store without a
/// cache (there is nothing to drop).
pub(crate) fn uncache_everywhere<T: Timestamp + TotalOrder>(
    stored: StreamVec<'_, T, Key>,
    store: &Store,
) {
    let scope = stored.scope();
    let input: ReleaseFrontier<T> = Rc::new(RefCell::new(Antichain::from_elem(T::minimum())));
    let tracker = Tracker::register_as(
        &scope,
        store.clone(),
        Action::Uncache,
        Some(Rc::clone(&input)),
    );
    stored
        .broadcast()
        .sink(Pipeline, "UncacheReleased", move |(keys, progress)| {
            let mut tracker = tracker.borrow_mut();
            keys.for_each(|cap, data| {
                if let Some(time) = cap.least() {
                    tracker.record(time, data.drain(..));
                }
            });
            *input.borrow_mut() = progress.frontier().to_owned();
            tracker.evict_passed();
        });
}

thread_local! {
    /// Trackers of this worker thread, by dataflow.
    static TRACKERS: RefCell<Vec<(usize, Weak<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

fn dataflow_of<T: Timestamp>(scope: &Scope<'_, T>) -> usize {
    scope.addr().first().copied().unwrap_or_default()
}

/// The live trackers of this worker for the dataflow of `scope`, with timestamp type `T`.
fn trackers_for<T: Timestamp>(scope: &Scope<'_, T>) -> Vec<SharedTracker<T>> {
    let dataflow = dataflow_of(scope);
    TRACKERS.with(|table| {
        table
            .borrow()
            .iter()
            .filter(|(d, _)| *d == dataflow)
            .filter_map(|(_, weak)| weak.upgrade())
            .filter_map(|any| any.downcast::<RefCell<Tracker<T>>>().ok())
            .collect()
    })
}

/// Attaches a release point to `done`, a stream that carries no data but whose frontier
/// says which times its consumer has finished. Every tracker of the dataflow built so far
/// waits for it before evicting.
pub(crate) fn release_after<T: Timestamp>(done: StreamVec<'_, T, ()>) {
    let scope = done.scope();
    let trackers = trackers_for(&scope);
    if trackers.is_empty() {
        return;
    }
    let frontier: ReleaseFrontier<T> = Rc::new(RefCell::new(Antichain::from_elem(T::minimum())));
    for tracker in &trackers {
        tracker.borrow_mut().releases.push(Rc::clone(&frontier));
    }
    // Through an exchange channel the sink's frontier accounts for every worker's consumer.
    done.sink(
        Exchange::new(|_: &()| 0),
        "ReleaseProxies",
        move |(input, progress)| {
            input.for_each(|_, _| {});
            *frontier.borrow_mut() = progress.frontier().to_owned();
            for tracker in &trackers {
                tracker.borrow_mut().evict_passed();
            }
        },
    );
}
