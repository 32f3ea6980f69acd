//! Turn proxies back into values at the consumer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use proxy_core::Prefetch;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::error::untimed_batch;
use crate::lifetime::release_after;
use crate::resolvable::Resolvable;

/// Turn a stream of proxies ([`Proxy<D>`](proxy_core::Proxy) or
/// [`Proxied<D>`](crate::Proxied)) into a stream of their values.
pub trait Resolve<'scope, T: Timestamp, R: Resolvable> {
    /// Resolves every record to its value.
    ///
    /// As a batch of proxies arrives, all of them start fetching in the background (in
    /// batched requests), so fetches overlap each other and the downstream computation: each
    /// value is passed on as soon as it is at hand, and the operator is woken as fetches
    /// finish. When every consumer has passed a time, the objects stored at it by this
    /// dataflow's [`proxy`](crate::ProxyRecords::proxy) operators are evicted.
    ///
    /// A record that cannot be fetched (evicted, or its peer down or silent) fails the
    /// operator with a message naming the store, key and peer; it never hangs past the
    /// connector's timeout.
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::{ProxyRecords, Resolve};
    /// use proxy_core::{LocalConnector, Store};
    /// use timely::dataflow::operators::{Exchange, Inspect, ToStream};
    ///
    /// let store = Store::new("resolve-doc", LocalConnector::new());
    /// timely::example(move |scope| {
    ///     (0..3u64)
    ///         .map(|i| vec![i as u8; 1 << 20])
    ///         .to_stream(scope)
    ///         .proxy(&store)
    ///         .exchange(|p| proxy_core::Proxy::key(p).id() as u64)
    ///         .resolve()
    ///         .inspect(|v| assert_eq!(v.len(), 1 << 20));
    /// });
    /// ```
    fn resolve(self) -> StreamVec<'scope, T, R::Value>;
}

/// Records of one arriving batch, waiting for their values.
struct Pending<T: Timestamp, R> {
    values: Capability<T>,
    // Held until every record of the batch is resolved: the release point's frontier.
    _done: Capability<T>,
    records: VecDeque<R>,
    prefetch: Prefetch,
}

impl<'scope, T, R> Resolve<'scope, T, R> for StreamVec<'scope, T, R>
where
    T: Timestamp + TotalOrder,
    R: Resolvable,
{
    fn resolve(self) -> StreamVec<'scope, T, R::Value> {
        let scope = self.scope();
        let mut builder = OperatorBuilder::new("Resolve".to_owned(), scope);
        let address = builder.operator_info().address;
        let mut input = builder.new_input(self, Pipeline);
        let (mut values_out, values) = builder.new_output::<Vec<R::Value>>();
        let (done_out, done) = builder.new_output::<Vec<()>>();

        // Fetch threads wake this operator when a batch of values arrives.
        let activator = Mutex::new(scope.worker().sync_activator_for(address.to_vec()));
        let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Ok(activator) = activator.lock() {
                // Fails only once the dataflow is gone, when there is nothing left to wake.
                let _ = activator.activate();
            }
        });

        builder.build(move |_initial_capabilities| {
            let _done_out = done_out; // never sends data; its capabilities carry progress
            let mut pending: Vec<Pending<T, R>> = Vec::new();
            move |_frontiers| {
                input.for_each(|cap, data| {
                    if data.iter().all(R::is_ready) {
                        // Nothing to fetch (inline records, or proxies resolved in this
                        // process): hand the values on at once, with no prefetch machinery.
                        let mut values = data
                            .drain(..)
                            .map(|record| {
                                record
                                    .into_value()
                                    .unwrap_or_else(|e| panic!("resolve: {e}"))
                            })
                            .collect::<Vec<_>>();
                        values_out.give(&cap, &mut values);
                        return;
                    }
                    let (Some(values_cap), Some(done_cap)) =
                        (cap.retain_least(0), cap.retain_least(1))
                    else {
                        untimed_batch("resolve", data.len())
                    };
                    let records = std::mem::take(data);
                    let prefetch = R::prefetch(&records, Arc::clone(&notify));
                    pending.push(Pending {
                        values: values_cap,
                        _done: done_cap,
                        records: records.into(),
                        prefetch,
                    });
                });
                for batch in pending.iter_mut() {
                    // After the prefetch finished, what is still unresolved failed: taking it
                    // fetches once more and reports the error.
                    let finished = batch.prefetch.is_done();
                    let mut ready = Vec::new();
                    let mut waiting = VecDeque::new();
                    for record in batch.records.drain(..) {
                        if finished || record.is_ready() {
                            match record.into_value() {
                                Ok(value) => ready.push(value),
                                Err(e) => panic!("resolve: {e}"),
                            }
                        } else {
                            waiting.push_back(record);
                        }
                    }
                    batch.records = waiting;
                    if !ready.is_empty() {
                        values_out.give(&batch.values, &mut ready);
                    }
                }
                pending.retain(|batch| !batch.records.is_empty());
            }
        });

        release_after(done);
        values
    }
}
