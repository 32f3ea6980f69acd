//! `StreamProducer`: sends objects to topics; bulk bytes to the topic's store, small events to
//! the publisher.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Mutex, PoisonError};

use super::events::{Event, EventBatch};
use super::filter::Filter;
use super::metadata::Metadata;
use super::pubsub::Publisher;
use crate::codec::{Codec, DefaultCodec};
use crate::error::{Error, Result};
use crate::store::Store;

/// How one object is sent ([`StreamProducer::send_with`]): its metadata, and whether the
/// consumer evicts it once consumed (the default, as in ProxyStore).
#[derive(Debug, Clone)]
#[must_use]
pub struct SendOptions {
    metadata: Metadata,
    evict: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            metadata: Metadata::new(),
            evict: true,
        }
    }
}

impl SendOptions {
    /// Evict once consumed, no metadata.
    pub fn new() -> SendOptions {
        SendOptions::default()
    }

    /// The object's metadata (filters read it; consumers receive it).
    pub fn with_metadata(mut self, metadata: Metadata) -> SendOptions {
        self.metadata = metadata;
        self
    }

    /// Whether the consumer evicts the object from its store once it has consumed it
    /// (default `true`). Set `false` when several consumers read the same object (Redis or
    /// ZeroMQ pub/sub with several subscribers): the object then stays until evicted by
    /// hand. Ignored for topics without a store.
    pub fn evict(mut self, evict: bool) -> SendOptions {
        self.evict = evict;
        self
    }
}

struct Buffered<T> {
    obj: T,
    evict: bool,
    metadata: Metadata,
}

struct TopicBuffer<T> {
    objects: Vec<Buffered<T>>,
    closed: bool,
    /// Batches sent to the topic so far.
    sequence: u64,
}

impl<T> Default for TopicBuffer<T> {
    fn default() -> Self {
        TopicBuffer {
            objects: Vec::new(),
            closed: false,
            sequence: 0,
        }
    }
}

type Aggregator<T> = Box<dyn FnMut(Vec<T>) -> T + Send>;

/// Builds a [`StreamProducer`] ([`StreamProducer::builder`]).
#[must_use = "a builder does nothing until `build` is called"]
pub struct StreamProducerBuilder<T, C = DefaultCodec> {
    publisher: Box<dyn Publisher>,
    default_store: Option<Store<C>>,
    stores: HashMap<String, Option<Store<C>>>,
    batch_size: usize,
    aggregator: Option<Aggregator<T>>,
    filter: Option<Box<dyn Filter>>,
}

impl<T, C> fmt::Debug for StreamProducerBuilder<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProducerBuilder")
            .field("publisher", &self.publisher)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

impl<T, C: Codec<T>> StreamProducerBuilder<T, C> {
    /// The store of every topic not named by [`with_topic_store`](Self::with_topic_store)
    /// or [`with_inline_topic`](Self::with_inline_topic). Without one, such topics carry
    /// their objects inside the events.
    pub fn with_default_store(mut self, store: &Store<C>) -> Self {
        self.default_store = Some(store.clone());
        self
    }

    /// The store of `topic`'s objects.
    pub fn with_topic_store(mut self, topic: impl Into<String>, store: &Store<C>) -> Self {
        self.stores.insert(topic.into(), Some(store.clone()));
        self
    }

    /// `topic`'s objects travel inside its events (encoded with `C`), whatever the default
    /// store: for small objects, or a broker that should carry everything.
    pub fn with_inline_topic(mut self, topic: impl Into<String>) -> Self {
        self.stores.insert(topic.into(), None);
        self
    }

    /// How many objects of a topic are sent together, in one batch of events and one
    /// [`Store::put_batch`] (default 1: each at once). A partial batch waits for
    /// [`flush`](StreamProducer::flush), [`close_topics`](StreamProducer::close_topics) or
    /// [`close`](StreamProducer::close). 0 is taken as 1.
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Combines each batch into one object (a sum, a concatenation) before it is stored;
    /// its metadata is the union of the batch's (later values winning) and it is evicted
    /// once consumed if any object of the batch was to be.
    pub fn with_aggregator(mut self, aggregator: impl FnMut(Vec<T>) -> T + Send + 'static) -> Self {
        self.aggregator = Some(Box::new(aggregator));
        self
    }

    /// Drops the objects whose metadata the filter picks (`true`: dropped), in
    /// [`send`](StreamProducer::send), before batching.
    pub fn with_filter(mut self, filter: impl Filter + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// The producer.
    pub fn build(self) -> StreamProducer<T, C> {
        StreamProducer {
            publisher: Some(Mutex::new(self.publisher)),
            default_store: self.default_store,
            stores: self.stores,
            batch_size: self.batch_size,
            aggregator: self.aggregator.map(Mutex::new),
            filter: self.filter,
            buffers: HashMap::new(),
            codec: PhantomData,
        }
    }
}

/// Sends objects of type `T` to a stream's topics: each object goes into its topic's
/// [`Store`] (or, for a topic without one, inside its event), and a small event naming it
/// goes through the [`Publisher`] (ProxyStore's `StreamProducer`).
///
/// Objects can be batched ([`with_batch_size`](StreamProducerBuilder::with_batch_size)),
/// combined ([`with_aggregator`](StreamProducerBuilder::with_aggregator)) and filtered
/// ([`with_filter`](StreamProducerBuilder::with_filter)). By default the consumer evicts an
/// object once it has consumed it ([`SendOptions::evict`]). [`close_topics`](Self::close_topics)
/// ends topics with an end-of-stream event. Objects still in partial batches when the
/// producer is dropped are not sent (a warning is logged): end with [`flush`](Self::flush) or
/// [`close`](Self::close). The producer is not shared between threads (`&mut self`); see the
/// [module docs](super) for an example.
pub struct StreamProducer<T, C = DefaultCodec> {
    // In mutexes only to make the producer `Sync` (timely's closures must be): every use is
    // through `&mut self` and `Mutex::get_mut`, which never locks.
    publisher: Option<Mutex<Box<dyn Publisher>>>,
    default_store: Option<Store<C>>,
    stores: HashMap<String, Option<Store<C>>>,
    batch_size: usize,
    aggregator: Option<Mutex<Aggregator<T>>>,
    filter: Option<Box<dyn Filter>>,
    buffers: HashMap<String, TopicBuffer<T>>,
    codec: PhantomData<fn() -> C>,
}

impl<T, C> fmt::Debug for StreamProducer<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProducer")
            .field("publisher", &self.publisher)
            .field("batch_size", &self.batch_size)
            .field("topics", &self.buffers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<T> StreamProducer<T> {
    /// A builder of a producer that publishes through `publisher`, with the
    /// [`DefaultCodec`] (for another codec: [`StreamProducer::builder_with_codec`]).
    pub fn builder(publisher: impl Publisher + 'static) -> StreamProducerBuilder<T>
    where
        DefaultCodec: Codec<T>,
    {
        StreamProducer::builder_with_codec(publisher)
    }
}

impl<T, C: Codec<T>> StreamProducer<T, C> {
    /// A builder of a producer with codec `C` (its stores are `Store<C>`).
    pub fn builder_with_codec(publisher: impl Publisher + 'static) -> StreamProducerBuilder<T, C> {
        StreamProducerBuilder {
            publisher: Box::new(publisher),
            default_store: None,
            stores: HashMap::new(),
            batch_size: 1,
            aggregator: None,
            filter: None,
        }
    }

    fn store_of(&self, topic: &str) -> Option<&Store<C>> {
        match self.stores.get(topic) {
            Some(store) => store.as_ref(),
            None => self.default_store.as_ref(),
        }
    }

    /// Sends `obj` to `topic`, to be evicted once consumed, without metadata.
    ///
    /// # Errors
    /// [`Error::TopicClosed`] after [`close_topics`](Self::close_topics) named `topic`; a
    /// store or publisher error when this send completes a batch.
    pub fn send(&mut self, topic: &str, obj: T) -> Result<()> {
        self.send_with(topic, obj, SendOptions::default())
    }

    /// Sends `obj` to `topic` with `options` (metadata, eviction).
    ///
    /// The producer's filter sees the metadata first; a dropped object is not sent. The
    /// object joins the topic's batch, which is flushed when it is full.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_with(&mut self, topic: &str, obj: T, options: SendOptions) -> Result<()> {
        let buffer = self.buffers.entry(topic.to_string()).or_default();
        if buffer.closed {
            return Err(Error::TopicClosed {
                topic: topic.to_string(),
            });
        }
        if self
            .filter
            .as_ref()
            .is_some_and(|f| f.drops(&options.metadata))
        {
            return Ok(());
        }
        buffer.objects.push(Buffered {
            obj,
            evict: options.evict,
            metadata: options.metadata,
        });
        if buffer.objects.len() >= self.batch_size {
            self.flush_topic(topic)?;
        }
        Ok(())
    }

    /// Sends the partial batches of every topic.
    ///
    /// # Errors
    /// The first store or publisher error; the other topics are flushed all the same.
    pub fn flush(&mut self) -> Result<()> {
        let mut topics: Vec<String> = self.buffers.keys().cloned().collect();
        topics.sort();
        let mut first = Ok(());
        for topic in topics {
            let flushed = self.flush_topic(&topic);
            first = first.and(flushed);
        }
        first
    }

    /// Sends `topic`'s partial batch (and its end of stream, once it is closed): the
    /// objects are aggregated if an aggregator is set, stored with one
    /// [`Store::put_batch`] (or encoded into the events for a topic without a store), and
    /// published as one [`EventBatch`].
    ///
    /// # Errors
    /// A store, codec or publisher error: the batch's objects are then not sent (objects
    /// already stored are evicted again where possible).
    pub fn flush_topic(&mut self, topic: &str) -> Result<()> {
        let Some(buffer) = self.buffers.get_mut(topic) else {
            return Ok(());
        };
        if buffer.objects.is_empty() && !buffer.closed {
            return Ok(());
        }
        let closed = buffer.closed;
        let mut objects = std::mem::take(&mut buffer.objects);
        if let (Some(aggregator), false) = (self.aggregator.as_mut(), objects.is_empty()) {
            let aggregator = aggregator.get_mut().unwrap_or_else(PoisonError::into_inner);
            let evict = objects.iter().any(|o| o.evict);
            let mut metadata = Metadata::new();
            let mut objs = Vec::with_capacity(objects.len());
            for object in objects {
                metadata.extend(object.metadata);
                objs.push(object.obj);
            }
            objects = vec![Buffered {
                obj: aggregator(objs),
                evict,
                metadata,
            }];
        }

        let store = self.store_of(topic).cloned();
        let mut events = Vec::with_capacity(objects.len() + 1);
        let mut stored = Vec::new();
        let (objs, infos): (Vec<T>, Vec<(Metadata, bool)>) = objects
            .into_iter()
            .map(|o| (o.obj, (o.metadata, o.evict)))
            .unzip();
        match &store {
            Some(store) if !objs.is_empty() => {
                let keys = store.put_batch_with::<T, C>(&objs)?;
                stored.clone_from(&keys);
                for ((metadata, evict), key) in infos.into_iter().zip(keys) {
                    events.push(Event::Key {
                        metadata,
                        key,
                        evict,
                    });
                }
            }
            Some(_) => {}
            None => {
                for (obj, (metadata, _)) in objs.into_iter().zip(infos) {
                    events.push(Event::Object {
                        object: C::encode_owned(obj)?,
                        metadata,
                    });
                }
            }
        }
        if closed {
            events.push(Event::EndOfStream);
        }
        let buffer = self.buffers.entry(topic.to_string()).or_default();
        buffer.sequence += 1;
        let batch = EventBatch {
            topic: topic.to_string(),
            sequence: buffer.sequence,
            store: store
                .as_ref()
                .filter(|_| !stored.is_empty())
                .map(Store::config),
            events,
        };
        let sent = batch
            .encode()
            .and_then(|message| match &mut self.publisher {
                Some(publisher) => publisher
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner)
                    .send_message(topic, message),
                None => Err(Error::Closed {
                    connector: "stream producer (its publisher was handed back or closed)"
                        .to_string(),
                }),
            });
        if let (Err(_), Some(store)) = (&sent, &store) {
            // Nobody will hear of these objects: do not leave them behind.
            for key in &stored {
                if let Err(e) = store.evict(key) {
                    tracing::warn!(%key, error = %e, "stream: could not evict an object whose event was not sent");
                }
            }
        }
        sent
    }

    /// Ends each of `topics`: flushes its partial batch and sends an end-of-stream event
    /// after it. A consumer reads every earlier event, then sees the end of the stream.
    /// Sending to a closed topic is an error ([`Error::TopicClosed`]).
    ///
    /// # Errors
    /// The first store or publisher error; the other topics are closed all the same.
    pub fn close_topics<S: AsRef<str>>(
        &mut self,
        topics: impl IntoIterator<Item = S>,
    ) -> Result<()> {
        let mut first = Ok(());
        for topic in topics {
            let topic = topic.as_ref();
            self.buffers.entry(topic.to_string()).or_default().closed = true;
            let flushed = self.flush_topic(topic);
            first = first.and(flushed);
        }
        first
    }

    /// Flushes every topic and closes the publisher. The stores stay open (they may hold
    /// objects not consumed yet); [`close_with_stores`](Self::close_with_stores) closes them
    /// too. Topics that were not closed send no end of stream.
    ///
    /// # Errors
    /// The first flush or close error; everything is closed all the same.
    pub fn close(mut self) -> Result<()> {
        let flushed = self.flush();
        let closed = match self.publisher.take() {
            Some(publisher) => publisher
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .close(),
            None => Ok(()),
        };
        flushed.and(closed)
    }

    /// [`close`](Self::close), then closes (and unregisters) every store of the producer.
    ///
    /// # Errors
    /// The first error; everything is closed all the same.
    pub fn close_with_stores(mut self) -> Result<()> {
        let mut stores: Vec<Store<C>> = self.default_store.take().into_iter().collect();
        stores.extend(self.stores.drain().filter_map(|(_, store)| store));
        let mut first = self.close();
        let mut closed: Vec<Store<C>> = Vec::new();
        for store in stores {
            if closed.iter().any(|c| c.same_store(&store)) {
                continue;
            }
            first = first.and(store.close());
            closed.push(store);
        }
        first
    }

    /// Flushes every topic and hands the publisher back, open (to reuse it with another
    /// producer).
    ///
    /// # Errors
    /// A flush error (the publisher is lost with the producer then).
    pub fn into_publisher(mut self) -> Result<Box<dyn Publisher>> {
        self.flush()?;
        self.publisher
            .take()
            .map(|p| p.into_inner().unwrap_or_else(PoisonError::into_inner))
            .ok_or_else(|| Error::Closed {
                connector: "stream producer (its publisher was handed back or closed)".to_string(),
            })
    }
}

impl<T, C> Drop for StreamProducer<T, C> {
    fn drop(&mut self) {
        if self.publisher.is_none() {
            return;
        }
        let pending: usize = self.buffers.values().map(|b| b.objects.len()).sum();
        if pending > 0 {
            tracing::warn!(
                pending,
                "stream producer dropped with objects in partial batches: they were not sent (call flush or close)"
            );
        }
    }
}
