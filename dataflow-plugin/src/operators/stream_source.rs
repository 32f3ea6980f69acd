//! Feed a dataflow from another program's stream.

use crossbeam_channel::{Receiver, TryRecvError};
use proxy_core::stream::{ProxyOr, StreamConsumer};
use proxy_core::{Codec, ErrorKind};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, StreamVec};

use crate::error::Error;
use crate::proxied::Proxied;

/// Items the reading thread holds before it waits for the operator.
const BUFFERED: usize = 1024;

/// What the reading thread hands the operator.
enum Read<R> {
    Item(R),
    Failed(proxy_core::Error),
    End,
}

/// Turn a [`StreamConsumer`] into a timely stream.
///
/// The consumer is read on a thread of its own (it blocks), which wakes the operator as items
/// arrive. Records are stamped with the source's *epoch*: 0 for the first items handed to the
/// dataflow, then one more each time the operator finds new items; the frontier follows, and
/// the source's capability is dropped at the end of the stream, so the dataflow completes.
/// A worker given `None` contributes nothing (give the consumer to one worker, and
/// `exchange` its records to spread them).
///
/// Messages refused one by one (malformed, unauthenticated, a decode failure) are logged
/// and skipped. Anything that ends the stream otherwise (its publisher gone, the consumer's
/// timeout, a store that cannot be reached) fails the worker with an [`Error::Stream`]
/// naming the cause, as the other operators do.
pub trait StreamSource<D, C> {
    /// The stream's items: stored objects as proxies (resolved, and evicted when so sent,
    /// where they are read), objects that travelled in their events inline.
    ///
    /// # Examples
    /// ```
    /// use dataflow_plugin::{Proxied, StreamSource};
    /// use proxy_core::stream::{channel, StreamConsumer, StreamProducer};
    /// use proxy_core::{Connector, LocalConnector, Store};
    /// use timely::dataflow::operators::{capture::Extract, vec::Map, Capture};
    ///
    /// let connector = LocalConnector::new();
    /// let store = Store::new("stream-source-doc", connector.clone());
    /// let (publisher, subscriber) = channel();
    /// let mut producer = StreamProducer::<Vec<u32>>::builder(publisher)
    ///     .with_default_store(&store)
    ///     .build();
    /// for i in 0..4 {
    ///     producer.send("t", vec![i; 100]).unwrap();
    /// }
    /// producer.close_topics(["t"]).unwrap();
    ///
    /// let consumer = StreamConsumer::<Vec<u32>>::new(subscriber).unwrap();
    /// let captured = timely::example(move |scope| {
    ///     consumer.stream_source(scope).map(|p: Proxied<Vec<u32>>| p[0]).capture()
    /// });
    /// let mut firsts: Vec<u32> = captured.extract().into_iter().flat_map(|(_, v)| v).collect();
    /// firsts.sort();
    /// assert_eq!(firsts, vec![0, 1, 2, 3]);
    /// assert_eq!(connector.object_count(), Some(0)); // read once, evicted
    /// ```
    fn stream_source<'scope>(
        self,
        scope: Scope<'scope, u64>,
    ) -> StreamVec<'scope, u64, Proxied<D, C>>;

    /// The stream's objects themselves, fetched by the reading thread (and evicted from
    /// their store when so sent) before they enter the dataflow.
    fn object_source<'scope>(self, scope: Scope<'scope, u64>) -> StreamVec<'scope, u64, D>;
}

impl<D, C> StreamSource<D, C> for StreamConsumer<D, C>
where
    D: Send + Sync + 'static,
    C: Codec<D>,
{
    fn stream_source<'scope>(
        self,
        scope: Scope<'scope, u64>,
    ) -> StreamVec<'scope, u64, Proxied<D, C>> {
        Some(self).stream_source(scope)
    }

    fn object_source<'scope>(self, scope: Scope<'scope, u64>) -> StreamVec<'scope, u64, D> {
        Some(self).object_source(scope)
    }
}

impl<D, C> StreamSource<D, C> for Option<StreamConsumer<D, C>>
where
    D: Send + Sync + 'static,
    C: Codec<D>,
{
    fn stream_source<'scope>(
        self,
        scope: Scope<'scope, u64>,
    ) -> StreamVec<'scope, u64, Proxied<D, C>> {
        feed(scope, "StreamSource", self, |consumer| {
            consumer.next_item().map(|item| {
                item.map(|item| match item {
                    ProxyOr::Proxy(proxy) => Proxied::Stored(proxy),
                    ProxyOr::Object(obj) => Proxied::Inline(obj),
                })
            })
        })
    }

    fn object_source<'scope>(self, scope: Scope<'scope, u64>) -> StreamVec<'scope, u64, D> {
        feed(
            scope,
            "StreamObjectSource",
            self,
            StreamConsumer::next_object,
        )
    }
}

/// Whether an error is about one message only (the stream goes on after it).
fn skippable(error: &proxy_core::Error) -> bool {
    matches!(error.kind(), ErrorKind::Protocol | ErrorKind::Codec)
        || matches!(error.root(), proxy_core::Error::Unauthenticated { .. })
}

/// The source operator: `read` runs on the reading thread until the end of the stream.
fn feed<'scope, D, C, R>(
    scope: Scope<'scope, u64>,
    name: &str,
    consumer: Option<StreamConsumer<D, C>>,
    mut read: impl FnMut(&mut StreamConsumer<D, C>) -> proxy_core::Result<Option<R>> + Send + 'static,
) -> StreamVec<'scope, u64, R>
where
    D: Send + Sync + 'static,
    C: Codec<D>,
    R: Send + 'static,
{
    let worker = scope.worker();
    source::<u64, CapacityContainerBuilder<Vec<R>>, _, _>(scope, name, move |capability, info| {
        let mut capability = Some(capability);
        let again = scope.activator_for(info.address.clone());
        let items: Option<Receiver<Read<R>>> = consumer.map(|mut consumer| {
            let activator = worker.sync_activator_for(info.address.to_vec());
            let (tx, rx) = crossbeam_channel::bounded(BUFFERED);
            let spawned = std::thread::Builder::new()
                .name("proxystore-stream-source".to_string())
                .spawn(move || loop {
                    let (next, last) = match read(&mut consumer) {
                        Ok(Some(item)) => (Read::Item(item), false),
                        Ok(None) => (Read::End, true),
                        Err(e) if skippable(&e) => {
                            tracing::warn!(error = %e, "stream source: skipped a message");
                            continue;
                        }
                        Err(e) => (Read::Failed(e), true),
                    };
                    // The operator is gone when the dataflow was dropped: stop reading.
                    if tx.send(next).is_err() || activator.activate().is_err() || last {
                        return;
                    }
                });
            match spawned {
                Ok(_) => rx,
                Err(e) => panic!("stream_source: could not start its reading thread: {e}"),
            }
        });
        if items.is_none() {
            capability = None;
        }
        let mut epoch = 0u64;
        move |output| {
            let (Some(items), Some(cap)) = (&items, capability.as_mut()) else {
                return;
            };
            let mut batch = Vec::new();
            let mut ended = false;
            loop {
                match items.try_recv() {
                    Ok(Read::Item(item)) => batch.push(item),
                    Ok(Read::End) => {
                        ended = true;
                        break;
                    }
                    Ok(Read::Failed(source)) => {
                        let error = Error::Stream {
                            operator: "stream_source".to_string(),
                            source,
                        };
                        panic!("{error}");
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        panic!("stream_source: its reading thread ended without a word")
                    }
                }
                if batch.len() >= BUFFERED {
                    // Let the rest of the dataflow run; come back for more.
                    again.activate();
                    break;
                }
            }
            if !batch.is_empty() {
                output.session(&*cap).give_container(&mut batch);
                epoch += 1;
                cap.downgrade(&epoch);
            }
            if ended {
                capability = None;
            }
        }
    })
}
