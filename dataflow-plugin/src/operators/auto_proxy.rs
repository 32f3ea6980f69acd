//! Proxy only the records that are worth it: by size, or by a predicate of yours.

use proxy_core::{Codec, Proxy, Store};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::error::untimed_batch;
use crate::lifetime::{uncache_everywhere, Tracker};
use crate::proxied::Proxied;

/// Proxy the records of a stream whose encoded size passes a threshold, or that a predicate
/// picks.
pub trait AutoProxy<'scope, T: Timestamp, D> {
    /// Replaces records whose encoded size is over `threshold_bytes` with proxies, and keeps
    /// the others inline, as [`Proxied`] records that deref to `D` either way.
    ///
    /// The size is computed without encoding (for byte buffers it is their length), so a
    /// small record is not serialized twice; a large one is encoded once and put once.
    /// Stored objects are evicted like those of [`proxy`](crate::ProxyRecords::proxy).
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::{AutoProxy, Resolve};
    /// use proxy_core::{LocalConnector, Store};
    /// use timely::dataflow::operators::{Capture, Inspect, ToStream, capture::Extract};
    ///
    /// let store = Store::new("auto-proxy-doc", LocalConnector::new());
    /// let captured = timely::example(move |scope| {
    ///     vec![vec![1u8; 10], vec![2u8; 100_000]]
    ///         .to_stream(scope)
    ///         .auto_proxy(&store, 1024)
    ///         .inspect(|r| assert_eq!(r.is_stored(), r.len() > 1024))
    ///         .resolve()
    ///         .capture()
    /// });
    /// let mut lens: Vec<usize> = captured.extract().into_iter().flat_map(|(_, v)| v).map(|r| r.len()).collect();
    /// lens.sort();
    /// assert_eq!(lens, vec![10, 100_000]);
    /// ```
    ///
    /// Records are encoded with the store's default codec `C` (`Store<C>`), which the
    /// [`Proxied<D, C>`] records carry in their type.
    fn auto_proxy<C: Codec<D>>(
        self,
        store: &Store<C>,
        threshold_bytes: u64,
    ) -> StreamVec<'scope, T, Proxied<D, C>>;

    /// Replaces the records for which `predicate` returns `true` with proxies, and keeps the
    /// others inline, as [`Proxied`] records that deref to `D` either way.
    ///
    /// The policy is yours: by variant (ProxyStore proxies by type), by a field, by content,
    /// or by size measured your way. The predicate runs once per record, in the worker that
    /// produced it, before anything is encoded. Stored objects are evicted like those of
    /// [`proxy`](crate::ProxyRecords::proxy): once every consumer has passed their time.
    /// [`auto_proxy`](AutoProxy::auto_proxy) is this operator with a size threshold as the
    /// predicate.
    ///
    /// # Examples
    /// Proxy the images of a stream and keep its labels inline:
    /// ```
    /// use dataflow_plugin::{AutoProxy, Resolve};
    /// use proxy_core::{Connector, LocalConnector, Store};
    /// use serde::{Deserialize, Serialize};
    /// use timely::dataflow::operators::{Capture, Inspect, ToStream, capture::Extract};
    ///
    /// #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    /// enum Item {
    ///     Label(String),
    ///     Image(Vec<u8>),
    /// }
    ///
    /// let connector = LocalConnector::new();
    /// let store = Store::new("auto-proxy-by-doc", connector.clone());
    /// let items = vec![Item::Label("cat".into()), Item::Image(vec![7; 64])];
    /// let sent = items.clone();
    /// let captured = timely::example(move |scope| {
    ///     sent.to_stream(scope)
    ///         .auto_proxy_by(&store, |item: &Item| matches!(item, Item::Image(_)))
    ///         .inspect(|r| assert_eq!(r.is_stored(), matches!(**r, Item::Image(_))))
    ///         .resolve()
    ///         .capture()
    /// });
    /// let received: Vec<Item> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(received, items);
    /// assert_eq!(connector.object_count(), Some(0)); // the image was evicted after use
    /// ```
    fn auto_proxy_by<C, P>(
        self,
        store: &Store<C>,
        predicate: P,
    ) -> StreamVec<'scope, T, Proxied<D, C>>
    where
        C: Codec<D>,
        P: FnMut(&D) -> bool + 'static;
}

impl<'scope, T, D> AutoProxy<'scope, T, D> for StreamVec<'scope, T, D>
where
    T: Timestamp + TotalOrder,
    D: Clone + Send + Sync + 'static,
{
    fn auto_proxy<C: Codec<D>>(
        self,
        store: &Store<C>,
        threshold_bytes: u64,
    ) -> StreamVec<'scope, T, Proxied<D, C>> {
        // A codec that cannot tell the size without encoding is assumed to produce large
        // records: proxying is the safe choice.
        self.auto_proxy_by(store, move |record: &D| {
            C::encoded_len(record).is_none_or(|len| len > threshold_bytes)
        })
    }

    fn auto_proxy_by<C, P>(
        self,
        store: &Store<C>,
        mut predicate: P,
    ) -> StreamVec<'scope, T, Proxied<D, C>>
    where
        C: Codec<D>,
        P: FnMut(&D) -> bool + 'static,
    {
        let tracker = Tracker::register(&self.scope(), store.with_codec());
        let keys_store = store.with_codec();
        let store = store.clone();
        let worker = self.scope().index();
        let records = self.unary(Pipeline, "AutoProxy", move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(time) = cap.least().cloned() else {
                        untimed_batch("auto_proxy", data.len())
                    };
                    let span = tracing::debug_span!("proxy", operator = "auto_proxy", worker, store = %store.name(), time = ?time, records = data.len(), stored = tracing::field::Empty);
                    let _entered = span.enter();
                    let mut stored = Vec::new();
                    let mut records: Vec<Proxied<D, C>> = data
                        .drain(..)
                        .map(|record| {
                            if !predicate(&record) {
                                return Proxied::Inline(record);
                            }
                            match store.proxy(record) {
                                Ok(proxy) => {
                                    stored.push(Proxy::key(&proxy).clone());
                                    Proxied::Stored(proxy)
                                }
                                Err(e) => {
                                    panic!("auto_proxy: could not store a record at {time:?}: {e}")
                                }
                            }
                        })
                        .collect();
                    span.record("stored", stored.len());
                    tracker.borrow_mut().record(&time, stored);
                    output.session(&cap).give_container(&mut records);
                });
            }
        });
        if keys_store.config().cache_size > 0 {
            let keys = records
                .clone()
                .flat_map(|r| r.as_proxy().map(|p| Proxy::key(p).clone()));
            uncache_everywhere(keys, &keys_store);
        }
        records
    }
}
