//! Streams of objects between programs (ProxyStore's `proxystore.stream`): bulk bytes go
//! into a store, small events naming them go through a message broker.
//!
//! A [`StreamProducer`] sends objects to *topics*. Each topic has a [`Store`](crate::Store)
//! (its own, or the producer's default one) where its objects are put, or none, and then the
//! objects travel inside the events. An event (key, [`Metadata`], whether to evict once
//! consumed) goes through a [`Publisher`]; a [`StreamConsumer`] takes events from a
//! [`Subscriber`] and hands out the objects: as proxies ([`ProxyOr`]), as objects, or as
//! `(metadata, object)` pairs. The bytes move only when a consumer resolves a proxy, from
//! wherever the store keeps them (peer to peer with the [`ZmqConnector`](crate::ZmqConnector)).
//!
//! - Producers batch ([`with_batch_size`](StreamProducerBuilder::with_batch_size)), combine
//!   batches ([`with_aggregator`](StreamProducerBuilder::with_aggregator)) and drop objects
//!   by metadata ([`with_filter`](StreamProducerBuilder::with_filter), [`Filter`],
//!   [`SamplingFilter`]); [`flush`](StreamProducer::flush) sends partial batches and
//!   [`close_topics`](StreamProducer::close_topics) ends topics with an end-of-stream event.
//! - Consumers evict each stored object once they consumed it, unless it was sent with
//!   [`SendOptions::evict`]`(false)`; objects a consumer's filter drops are evicted too, so a
//!   store is empty once its stream has been read to the end.
//! - Events are a versioned, documented format ([`EventBatch`], see [`events`](EventBatch));
//!   malformed messages are errors, never panics.
//! - Publishers and subscribers ([`Publisher`], [`Subscriber`]): an in-process [`channel`];
//!   ZeroMQ PUB/SUB straight from the producer ([`ZmqPublisher`], [`ZmqSubscriber`]),
//!   authenticated under the cluster secret; Redis pub/sub and Redis lists (queues) with the
//!   `redis` feature. No Kafka (see [`Publisher`]'s module notes).
//! - In a Timely dataflow: `dataflow_plugin`'s `StreamSource` (a consumer as a timely stream
//!   whose frontier closes at the end of the stream) and `StreamSink` (a timely stream's
//!   records sent to a topic).
//!
//! ```
//! use proxy_core::stream::{channel, Metadata, SendOptions, StreamConsumer, StreamProducer};
//! use proxy_core::{Connector, LocalConnector, Store};
//!
//! let connector = LocalConnector::new();
//! let store = Store::new("stream-doc", connector.clone());
//! let (publisher, subscriber) = channel();
//!
//! let mut producer = StreamProducer::<Vec<f64>>::builder(publisher)
//!     .with_default_store(&store)
//!     .with_batch_size(2)
//!     .build();
//! for i in 0..5 {
//!     let metadata = Metadata::new().with("index", i);
//!     producer.send_with("frames", vec![i as f64; 1000], SendOptions::new().with_metadata(metadata))?;
//! }
//! producer.close_topics(["frames"])?; // flushes the partial batch, then ends the topic
//!
//! let mut consumer = StreamConsumer::<Vec<f64>>::new(subscriber)?;
//! let mut seen = 0;
//! for item in consumer.iter_with_metadata() {
//!     let (metadata, frame) = item?;
//!     assert!(frame.is_proxy()); // resolved (and evicted) on first use
//!     assert_eq!(frame[0], metadata.get("index").and_then(|v| v.as_f64()).unwrap());
//!     seen += 1;
//! }
//! assert_eq!(seen, 5);
//! assert_eq!(connector.object_count(), Some(0)); // every object was evicted once consumed
//! # Ok::<(), proxy_core::Error>(())
//! ```

mod channel;
mod consumer;
mod events;
mod filter;
mod metadata;
mod producer;
mod pubsub;
#[cfg(feature = "redis")]
mod redis;
mod seal;
mod zmq;

pub use channel::{bounded_channel, channel, ChannelPublisher, ChannelSubscriber};
pub use consumer::{ProxyOr, StreamConsumer, StreamConsumerBuilder, DEFAULT_STREAM_TIMEOUT};
pub use events::{Event, EventBatch, EVENT_FORMAT_VERSION, MAX_STORE_CONFIG_LEN};
pub use filter::{Filter, NullFilter, SamplingFilter};
pub use metadata::{Metadata, Value};
pub use producer::{SendOptions, StreamProducer, StreamProducerBuilder};
pub use pubsub::{Publisher, Subscriber};
#[cfg(feature = "redis")]
pub use redis::{RedisPublisher, RedisQueuePublisher, RedisQueueSubscriber, RedisSubscriber};
pub use zmq::{
    ZmqPublisher, ZmqStreamOptions, ZmqSubscriber, DEFAULT_CLOSE_TIMEOUT, DEFAULT_HEARTBEAT,
    DEFAULT_HIGH_WATER_MARK, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SEND_TIMEOUT,
};
