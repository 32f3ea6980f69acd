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

use crate::error::{untimed_batch, ResolveError};
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
    /// connector's timeout. [`try_resolve`](Resolve::try_resolve) sends such records to a
    /// stream of errors instead.
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

    /// Resolves every record to its value, like [`resolve`](Resolve::resolve), but sends
    /// the records that cannot be fetched (evicted, never stored, a peer down or silent,
    /// bytes that do not decode) to a second stream, as [`ResolveError`]s at their time,
    /// instead of failing the worker.
    ///
    /// Returns `(values, errors)`. The objects of both kinds of records are released as
    /// with `resolve`: evicted once every consumer has passed their time.
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::{Resolve, ResolveError};
    /// use proxy_core::{ErrorKind, LocalConnector, Proxy, Store};
    /// use timely::dataflow::operators::{Capture, ToStream, capture::{Event, Extract}};
    ///
    /// let store = Store::new("try-resolve-doc", LocalConnector::new());
    /// let kept = store.proxy(7u64)?;
    /// let key = store.put(&8u64)?;
    /// store.evict(&key)?;
    /// let gone: Proxy<u64> = store.proxy_from_key(key.clone());
    ///
    /// let (values, errors) = timely::example(move |scope| {
    ///     let (values, errors) = vec![kept, gone].to_stream(scope).try_resolve();
    ///     (values.capture(), errors.capture())
    /// });
    /// let values: Vec<u64> = values.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// assert_eq!(values, vec![7]);
    /// let errors: Vec<ResolveError> = errors
    ///     .try_iter()
    ///     .flat_map(|event| match event {
    ///         Event::Messages(_time, batch) => batch,
    ///         Event::Progress(_) => Vec::new(),
    ///     })
    ///     .collect();
    /// assert_eq!(errors.len(), 1);
    /// assert_eq!((&errors[0].store[..], &errors[0].key), ("try-resolve-doc", &key));
    /// assert_eq!(errors[0].kind, ErrorKind::NotFound);
    /// # Ok::<(), proxy_core::Error>(())
    /// ```
    fn try_resolve(
        self,
    ) -> (
        StreamVec<'scope, T, R::Value>,
        StreamVec<'scope, T, ResolveError>,
    );
}

/// What the operator does with a record whose value cannot be fetched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnFailure {
    /// Fail the worker, naming the store, key and cause (`resolve`).
    Panic,
    /// Send a [`ResolveError`] to the errors output (`try_resolve`).
    Emit,
}

/// Records of one arriving batch, waiting for their values.
struct Pending<T: Timestamp, R> {
    values: Capability<T>,
    errors: Capability<T>,
    // Held until every record of the batch is resolved: the release point's frontier.
    _done: Capability<T>,
    records: VecDeque<R>,
    prefetch: Prefetch,
    // Open from the batch's arrival until its last record is handed on (its fetch time).
    span: tracing::Span,
}

impl<'scope, T, R> Resolve<'scope, T, R> for StreamVec<'scope, T, R>
where
    T: Timestamp + TotalOrder,
    R: Resolvable,
{
    fn resolve(self) -> StreamVec<'scope, T, R::Value> {
        resolve_records(self, "Resolve", OnFailure::Panic).0
    }

    fn try_resolve(
        self,
    ) -> (
        StreamVec<'scope, T, R::Value>,
        StreamVec<'scope, T, ResolveError>,
    ) {
        resolve_records(self, "TryResolve", OnFailure::Emit)
    }
}

/// The resolve operator: values on the first output, failures on the second (never used
/// with [`OnFailure::Panic`]), and a release point fed by a third that carries no data.
fn resolve_records<'scope, T, R>(
    stream: StreamVec<'scope, T, R>,
    name: &str,
    on_failure: OnFailure,
) -> (
    StreamVec<'scope, T, R::Value>,
    StreamVec<'scope, T, ResolveError>,
)
where
    T: Timestamp + TotalOrder,
    R: Resolvable,
{
    let scope = stream.scope();
    let worker = scope.index();
    let operator = name.to_owned();
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let address = builder.operator_info().address;
    let mut input = builder.new_input(stream, Pipeline);
    let (mut values_out, values) = builder.new_output::<Vec<R::Value>>();
    let (mut errors_out, errors) = builder.new_output::<Vec<ResolveError>>();
    let (done_out, done) = builder.new_output::<Vec<()>>();

    // Fetch threads wake this operator when a batch of values arrives.
    let activator = Mutex::new(scope.worker().sync_activator_for(address.to_vec()));
    let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        if let Ok(activator) = activator.lock() {
            // Fails only once the dataflow is gone, when there is nothing left to wake.
            let _ = activator.activate();
        }
    });

    // Takes a record's value into `ready`, or its failure into `failed`.
    let take = move |record: R, ready: &mut Vec<R::Value>, failed: &mut Vec<ResolveError>| {
        match record.into_value() {
            Ok(value) => ready.push(value),
            Err(e) if on_failure == OnFailure::Emit => match ResolveError::try_from(e) {
                Ok(failure) => {
                    tracing::debug!(store = %failure.store, key = %failure.key, error = %failure.message, "try_resolve: a record could not be resolved");
                    failed.push(failure);
                }
                Err(e) => panic!("try_resolve: {e}"),
            },
            Err(e) => panic!("resolve: {e}"),
        }
    };

    builder.build(move |_initial_capabilities| {
        let _done_out = done_out; // never sends data; its capabilities carry progress
        let mut pending: Vec<Pending<T, R>> = Vec::new();
        move |_frontiers| {
            input.for_each(|cap, data| {
                if data.iter().all(R::is_ready) {
                    // Nothing to fetch (inline records, or proxies resolved in this
                    // process): hand the values on at once, with no prefetch machinery.
                    let _span = tracing::debug_span!("resolve", operator = %operator, worker, time = ?cap.least(), records = data.len(), fetched = false).entered();
                    let (mut ready, mut failed) = (Vec::new(), Vec::new());
                    for record in data.drain(..) {
                        take(record, &mut ready, &mut failed);
                    }
                    if !ready.is_empty() {
                        values_out.give(&cap, &mut ready);
                    }
                    if !failed.is_empty() {
                        errors_out.give(&cap, &mut failed);
                    }
                    return;
                }
                let (Some(values_cap), Some(errors_cap), Some(done_cap)) = (
                    cap.retain_least(0),
                    cap.retain_least(1),
                    cap.retain_least(2),
                ) else {
                    untimed_batch("resolve", data.len())
                };
                let records = std::mem::take(data);
                let span = tracing::debug_span!("resolve", operator = %operator, worker, time = ?values_cap.time(), records = records.len(), fetched = true, failed = tracing::field::Empty);
                let prefetch = span.in_scope(|| R::prefetch(&records, Arc::clone(&notify)));
                pending.push(Pending {
                    values: values_cap,
                    errors: errors_cap,
                    _done: done_cap,
                    records: records.into(),
                    prefetch,
                    span,
                });
            });
            for batch in pending.iter_mut() {
                let _entered = batch.span.enter();
                // After the prefetch finished, what is still unresolved failed: taking it
                // reports the error the background fetch kept (without fetching again: a
                // dead peer costs one timeout, not one per record), or looks once more for
                // an object that was not stored.
                let finished = batch.prefetch.is_done();
                let (mut ready, mut failed) = (Vec::new(), Vec::new());
                let mut waiting = VecDeque::new();
                for record in batch.records.drain(..) {
                    if finished || record.is_ready() {
                        take(record, &mut ready, &mut failed);
                    } else {
                        waiting.push_back(record);
                    }
                }
                batch.records = waiting;
                if !ready.is_empty() {
                    values_out.give(&batch.values, &mut ready);
                }
                if !failed.is_empty() {
                    batch.span.record("failed", failed.len());
                    errors_out.give(&batch.errors, &mut failed);
                }
            }
            pending.retain(|batch| !batch.records.is_empty());
        }
    });

    release_after(done);
    (values, errors)
}
