//! Declare where a dataflow is done with its proxies.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::operator::Operator;
use timely::dataflow::StreamVec;
use timely::progress::Timestamp;

use crate::lifetime::release_after;

/// Declare that the proxies of a dataflow have been read once a stream has passed a time.
pub trait ReleaseProxies<T: Timestamp> {
    /// Marks this stream as a point after which the dataflow no longer reads the objects
    /// stored (up to now in this dataflow) by [`proxy`](crate::ProxyRecords::proxy) and
    /// [`auto_proxy`](crate::AutoProxy::auto_proxy): once the stream's frontier has passed a
    /// time on every worker (and every other release point has too), those objects are
    /// evicted. [`resolve`](crate::Resolve::resolve) does this by itself; use this when you
    /// read proxies in your own operators instead. The stream's records are dropped.
    ///
    /// Without any release point, stored objects are never evicted by the dataflow (the
    /// proxies may outlive it, captured for example).
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::{ProxyRecords, ReleaseProxies};
    /// use proxy_core::{Connector, LocalConnector, Store};
    /// use timely::dataflow::operators::{ToStream, vec::Map};
    ///
    /// let connector = LocalConnector::new();
    /// let store = Store::new("release-doc", connector.clone());
    /// timely::example(move |scope| {
    ///     (0..4u64)
    ///         .to_stream(scope)
    ///         .proxy(&store)
    ///         .map(|p| *p * 2) // read through the proxy
    ///         .release_proxies();
    /// });
    /// assert_eq!(connector.object_count(), Some(0));
    /// ```
    fn release_proxies(self);
}

impl<T: Timestamp, D: 'static> ReleaseProxies<T> for StreamVec<'_, T, D> {
    fn release_proxies(self) {
        let done = self.unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
            Pipeline,
            "DropRecords",
            |_, _| |input, _output| input.for_each(|_, data| data.clear()),
        );
        release_after::<T>(done);
    }
}
