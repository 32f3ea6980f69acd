//! Replace every record of a stream with a proxy.

use proxy_core::{Codec, Proxy, Store};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::error::untimed_batch;
use crate::lifetime::{uncache_proxies, Tracker};

/// Replace every record of a stream with a [`Proxy`] to it.
pub trait ProxyRecords<'scope, T: Timestamp, D> {
    /// Stores every record in `store` and replaces it with a proxy.
    ///
    /// The proxies are ordinary exchangeable data: `exchange`, `broadcast` and the other
    /// operators move only the proxies (key and store config, about 200 bytes) through timely's channels,
    /// and consumers fetch the objects where they are used ([`Resolve`](crate::Resolve)).
    /// Each object is evicted from `store` once every consumer that releases proxies of this
    /// dataflow (`resolve`, [`release_proxies`](crate::ReleaseProxies)) has passed its time.
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::{ProxyRecords, Resolve};
    /// use proxy_core::{Connector, LocalConnector, Store};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let connector = LocalConnector::new();
    /// let store = Store::new("proxy-records-doc", connector.clone());
    /// let captured = timely::example(move |scope| {
    ///     (0..5u64)
    ///         .map(|i| vec![i; 1000])
    ///         .to_stream(scope)
    ///         .proxy(&store)
    ///         .resolve()
    ///         .capture()
    /// });
    /// let records: Vec<Vec<u64>> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(records.len(), 5);
    /// assert!(records.iter().all(|r| r.len() == 1000));
    /// assert_eq!(connector.object_count(), Some(0)); // nothing left behind
    /// ```
    ///
    /// The records are encoded with the store's default codec (`Store<C>`, see
    /// [`StoreBuilder::with_codec`](proxy_core::StoreBuilder::with_codec)), and the proxies
    /// carry it in their type (`Proxy<D, C>`), so [`resolve`](crate::Resolve::resolve)
    /// decodes with the same one.
    fn proxy<C: Codec<D>>(self, store: &Store<C>) -> StreamVec<'scope, T, Proxy<D, C>>;
}

impl<'scope, T, D> ProxyRecords<'scope, T, D> for StreamVec<'scope, T, D>
where
    T: Timestamp + TotalOrder,
    D: Send + Sync + 'static,
{
    fn proxy<C: Codec<D>>(self, store: &Store<C>) -> StreamVec<'scope, T, Proxy<D, C>> {
        let tracker = Tracker::register(&self.scope(), store.with_codec());
        let keys_store = store.with_codec();
        let store = store.clone();
        let worker = self.scope().index();
        let proxies = self.unary(Pipeline, "Proxy", move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(time) = cap.least().cloned() else {
                        untimed_batch("proxy", data.len())
                    };
                    let _span = tracing::debug_span!("proxy", operator = "proxy", worker, store = %store.name(), time = ?time, records = data.len()).entered();
                    let records = std::mem::take(data);
                    let mut proxies = match store.proxy_batch(records) {
                        Ok(proxies) => proxies,
                        Err(e) => panic!("proxy: could not store records at {time:?}: {e}"),
                    };
                    tracker
                        .borrow_mut()
                        .record(&time, proxies.iter().map(|p| Proxy::key(p).clone()));
                    output.session(&cap).give_container(&mut proxies);
                });
            }
        });
        uncache_proxies(proxies, &keys_store)
    }
}
