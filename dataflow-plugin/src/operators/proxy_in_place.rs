//! Write each record's object straight into the store's memory and send its proxy.

use bytes::Bytes;
use proxy_core::{Proxy, Store};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::error::untimed_batch;
use crate::lifetime::{uncache_proxies, Tracker};

/// Turn records into objects written in place in a store, and send their proxies.
pub trait ProxyInPlace<'scope, T: Timestamp, D> {
    /// For each record, asks `store` for a buffer of `len(&record)` bytes
    /// ([`Store::alloc`]), lets `fill` write the object into it, stores it
    /// ([`Store::proxy_buffer`]) and sends a `Proxy<Bytes>` in the record's place.
    ///
    /// With a ZeroMQ store and shared memory on, the buffer is a slot of the peer's
    /// pre-faulted shared memory: the object is written once, by `fill`, and consumers on
    /// the same host map those very bytes (no copy at put, none at the first read). Other
    /// stores get heap buffers and ordinary puts. Objects are evicted exactly as with
    /// [`proxy`](crate::ProxyRecords::proxy): once every release point of the dataflow has
    /// passed their time.
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::{ProxyInPlace, Resolve};
    /// use proxy_core::{Connector, Store, ZmqOptions};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::Extract};
    ///
    /// let connector = ZmqOptions::default().build()?;
    /// let store = Store::new("proxy-in-place-doc", connector.clone());
    /// let captured = timely::example(move |scope| {
    ///     (0..4u8)
    ///         .to_stream(scope)
    ///         .proxy_in_place(&store, |_| 1 << 20, |i, buffer| buffer.fill(i))
    ///         .resolve()
    ///         .capture()
    /// });
    /// let frames: Vec<bytes::Bytes> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(frames.len(), 4);
    /// assert!(frames.iter().all(|f| f.len() == 1 << 20 && f.iter().all(|&b| b == f[0])));
    /// assert_eq!(connector.object_count(), Some(0)); // evicted once consumed
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    fn proxy_in_place<L, F>(
        self,
        store: &Store,
        len: L,
        fill: F,
    ) -> StreamVec<'scope, T, Proxy<Bytes>>
    where
        L: Fn(&D) -> usize + 'static,
        F: FnMut(D, &mut [u8]) + 'static;
}

impl<'scope, T, D> ProxyInPlace<'scope, T, D> for StreamVec<'scope, T, D>
where
    T: Timestamp + TotalOrder,
    D: 'static,
{
    fn proxy_in_place<L, F>(
        self,
        store: &Store,
        len: L,
        mut fill: F,
    ) -> StreamVec<'scope, T, Proxy<Bytes>>
    where
        L: Fn(&D) -> usize + 'static,
        F: FnMut(D, &mut [u8]) + 'static,
    {
        let tracker = Tracker::register(&self.scope(), store.clone());
        let keys_store = store.clone();
        let store = store.clone();
        let worker = self.scope().index();
        let proxies = self.unary(Pipeline, "ProxyInPlace", move |_, _| {
            move |input, output| {
                input.for_each(|cap, data| {
                    let Some(time) = cap.least().cloned() else {
                        untimed_batch("proxy_in_place", data.len())
                    };
                    let _span = tracing::debug_span!("proxy", operator = "proxy_in_place", worker, store = %store.name(), time = ?time, records = data.len()).entered();
                    let mut proxies = Vec::with_capacity(data.len());
                    for record in data.drain(..) {
                        let mut buffer = match store.alloc(len(&record)) {
                            Ok(buffer) => buffer,
                            Err(e) => panic!("proxy_in_place: no buffer for a record at {time:?}: {e}"),
                        };
                        fill(record, &mut buffer);
                        match store.proxy_buffer::<Bytes>(buffer) {
                            Ok(proxy) => proxies.push(proxy),
                            Err(e) => panic!("proxy_in_place: could not store a record at {time:?}: {e}"),
                        }
                    }
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
