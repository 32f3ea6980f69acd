//! Proxy only the records that are worth it.

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

/// Proxy the records of a stream whose encoded size passes a threshold.
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
        let tracker = Tracker::register(&self.scope(), store.with_codec());
        let keys_store = store.with_codec();
        let store = store.clone();
        let records = self.unary(Pipeline, "AutoProxy", move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(time) = cap.least().cloned() else {
                        untimed_batch("auto_proxy", data.len())
                    };
                    let mut stored = Vec::new();
                    let mut records: Vec<Proxied<D, C>> = data
                        .drain(..)
                        .map(|record| {
                            // A codec that cannot tell the size without encoding is assumed
                            // to produce large records: proxying is the safe choice.
                            let len = C::encoded_len(&record);
                            if len.is_some_and(|len| len <= threshold_bytes) {
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
