//! The publisher and subscriber traits: how a stream's event messages travel.
//!
//! A [`StreamProducer`](super::StreamProducer) encodes each batch of events as one message
//! ([`EventBatch::encode`](super::EventBatch::encode)) and hands it to its [`Publisher`]
//! with the batch's topic; a [`StreamConsumer`](super::StreamConsumer) takes messages from
//! its [`Subscriber`] and decodes them. Implementations move opaque bytes, so a new broker
//! is two small types (as ProxyStore's "message" publishers and subscribers are). This crate
//! has:
//!
//! - [`channel`](super::channel) / [`bounded_channel`](super::bounded_channel): threads of
//!   one process (crossbeam; each message reaches one subscriber).
//! - [`ZmqPublisher`](super::ZmqPublisher) / [`ZmqSubscriber`](super::ZmqSubscriber): ZeroMQ
//!   PUB/SUB straight from the producer's process, authenticated under the cluster secret.
//! - `RedisPublisher` / `RedisSubscriber` (pub/sub) and `RedisQueuePublisher` /
//!   `RedisQueueSubscriber` (lists: each message to one consumer, kept until read), with the
//!   `redis` feature.
//!
//! There is no Kafka publisher: the Rust Kafka clients either wrap the C library
//! `librdkafka` (`rdkafka`, which must build or find it) or are async-only (`rskafka`), and no
//! Kafka broker is at hand to test one against. Implementing these two traits over any client
//! takes a few lines.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Result;

/// Sends a stream's event messages to a broker, or straight to subscribers.
pub trait Publisher: Send + fmt::Debug {
    /// Publishes `message` (an encoded [`EventBatch`](super::EventBatch)) to `topic`.
    ///
    /// # Errors
    /// When the message could not be handed over (the broker is unreachable, the publisher
    /// is closed, a subscriber did not take it in time).
    fn send_message(&mut self, topic: &str, message: Bytes) -> Result<()>;

    /// Closes the publisher, after the messages already sent have been handed over where
    /// the transport can tell. Sending afterwards is an error.
    ///
    /// # Errors
    /// When closing failed; the publisher is closed all the same.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Receives a stream's event messages.
pub trait Subscriber: Send + fmt::Debug {
    /// The next message, waiting at most `wait` (`None`: as long as it takes). `Ok(None)`
    /// when no message came in time.
    ///
    /// # Errors
    /// When a message was refused (malformed, not authenticated, a replay) or the channel
    /// failed or ended ([`Error::StreamEnded`](crate::Error::StreamEnded): the publisher is
    /// gone). A refused message is skipped: the next call reads the next one.
    fn next_message(&mut self, wait: Option<Duration>) -> Result<Option<Bytes>>;

    /// Where the messages come from, for error messages (an endpoint, a channel name).
    fn source(&self) -> String;

    /// Closes the subscriber.
    ///
    /// # Errors
    /// When closing failed; the subscriber is closed all the same.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<P: Publisher + ?Sized> Publisher for Box<P> {
    fn send_message(&mut self, topic: &str, message: Bytes) -> Result<()> {
        (**self).send_message(topic, message)
    }
    fn close(&mut self) -> Result<()> {
        (**self).close()
    }
}

impl<S: Subscriber + ?Sized> Subscriber for Box<S> {
    fn next_message(&mut self, wait: Option<Duration>) -> Result<Option<Bytes>> {
        (**self).next_message(wait)
    }
    fn source(&self) -> String {
        (**self).source()
    }
    fn close(&mut self) -> Result<()> {
        (**self).close()
    }
}
