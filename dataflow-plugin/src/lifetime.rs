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

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use proxy_core::{Key, Store};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::{Scope, StreamVec};
use timely::progress::{Antichain, Timestamp};

/// The frontier of one release point, as last seen by it.
type ReleaseFrontier<T> = Rc<RefCell<Antichain<T>>>;

/// What one producing operator stored, by timestamp, until the consumers are done with it.
pub(crate) struct Tracker<T: Timestamp> {
    store: Store,
    pending: BTreeMap<T, Vec<Key>>,
    releases: Vec<ReleaseFrontier<T>>,
}

/// A shared handle to a tracker, as held by its producing operator and its release points.
pub(crate) type SharedTracker<T> = Rc<RefCell<Tracker<T>>>;

impl<T: Timestamp> Tracker<T> {
    /// A tracker for objects put into `store` by an operator of the dataflow of `scope`,
    /// registered so that release points built later in the same dataflow find it.
    pub(crate) fn register(scope: &Scope<'_, T>, store: Store) -> SharedTracker<T> {
        let tracker = Rc::new(RefCell::new(Tracker {
            store,
            pending: BTreeMap::new(),
            releases: Vec::new(),
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
        let passed: Vec<T> = self
            .pending
            .keys()
            .filter(|t| releases.iter().all(|r| !r.borrow().less_equal(*t)))
            .cloned()
            .collect();
        for time in passed {
            if let Some(keys) = self.pending.remove(&time) {
                self.evict(keys);
            }
        }
    }

    fn evict(&self, keys: Vec<Key>) {
        for key in keys {
            if let Err(e) = self.store.evict(&key) {
                // Eviction runs inside the dataflow's scheduling, where no caller can receive an
                // error: report it and go on (the object leaks rather than the dataflow failing).
                eprintln!("dataflow-plugin: could not evict {key}: {e}");
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
