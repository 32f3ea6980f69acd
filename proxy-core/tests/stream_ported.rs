//! ProxyStore's stream tests (`tests/stream/interface_test.py` and the queue shim's
//! `tests/stream/shims/queue_test.py`), ported: each test names the one it ports. The
//! in-process channel stands for ProxyStore's queue publisher; ProxyStore's "event" publishers
//! (which pass batches without encoding them) have no counterpart here, so the
//! `use_event_queue` cases run once, over encoded messages. The event format's and filters'
//! tests are unit tests of `proxy_core::stream` (`events`, `filter`); the Redis and ZeroMQ
//! shims' tests are unit tests of their modules and the cross-process tests in
//! `tests/stream.rs`.

mod common;

use common::unique;
use proxy_core::stream::{
    channel, ChannelSubscriber, Event, EventBatch, Metadata, ProxyOr, Publisher, SendOptions,
    StreamConsumer, StreamProducer, Subscriber, Value,
};
use proxy_core::{get_store, register_store, Connector, Error, FileConnector, Store};
use tempfile::TempDir;

/// ProxyStore's `store` fixture: a registered store over a file connector in a fresh
/// directory.
fn file_store(prefix: &str) -> (Store, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::new(
        unique(prefix),
        FileConnector::new(dir.path()).expect("file connector"),
    );
    register_store(&store).expect("register");
    (store, dir)
}

fn objects_in(store: &Store) -> usize {
    store
        .connector()
        .object_count()
        .expect("the file connector counts")
}

/// The key events waiting in `subscriber`'s channel (reading into the publisher's queue, as
/// ProxyStore's tests do).
fn waiting_keys(subscriber: &ChannelSubscriber) -> Vec<(proxy_core::Key, bool)> {
    let mut keys = Vec::new();
    for (_, message) in subscriber.peek() {
        let batch = EventBatch::decode(&message, "test").expect("decode");
        for event in batch.events {
            if let Event::Key { key, evict, .. } = event {
                keys.push((key, evict));
            }
        }
    }
    keys
}

/// `interface_test.py::test_stream_basics` (batch sizes 1, 2, 3; with and without a store),
/// producer and consumer on two threads.
#[test]
fn stream_basics() {
    for batch_size in [1, 2, 3] {
        for use_store in [true, false] {
            let (store, _dir) = file_store("stream-basics");
            let (publisher, subscriber) = channel();
            let mut builder =
                StreamProducer::<u128>::builder(publisher).with_batch_size(batch_size);
            builder = if use_store {
                builder.with_topic_store("default", &store)
            } else {
                builder.with_inline_topic("default")
            };
            let mut producer = builder.build();
            let mut consumer = StreamConsumer::<u128>::new(subscriber).expect("consumer");
            let objects: Vec<u128> = (0..10u128).map(|i| i * 0x9e37_79b9_7f4a_7c15).collect();
            let sent = objects.clone();
            let produce = std::thread::spawn(move || {
                for obj in sent {
                    producer.send("default", obj).expect("send");
                }
                producer.flush().expect("flush");
                producer
            });
            let consume = std::thread::spawn(move || {
                let mut received = Vec::new();
                for item in consumer.by_ref().take(10) {
                    let item = item.expect("an item");
                    assert_eq!(item.is_proxy(), use_store);
                    received.push(*item);
                }
                (received, consumer)
            });
            let producer = produce.join().expect("producer");
            let (received, consumer) = consume.join().expect("consumer");
            assert_eq!(received, objects, "batch {batch_size}, store {use_store}");
            assert_eq!(
                objects_in(&store),
                0,
                "every object was consumed and evicted"
            );
            producer.close_with_stores().expect("close producer");
            consumer.close_with_stores().expect("close consumer");
        }
    }
}

/// `interface_test.py::test_context_manager`: one object sent and received.
#[test]
fn send_and_receive_one() {
    let (store, _dir) = file_store("stream-one");
    let (publisher, subscriber) = channel();
    let mut producer = StreamProducer::<String>::builder(publisher)
        .with_topic_store("default", &store)
        .build();
    let mut consumer = StreamConsumer::<String>::new(subscriber).expect("consumer");
    producer.send("default", "value".to_string()).expect("send");
    let item = consumer.next().expect("an item").expect("no error");
    assert_eq!(*item, "value");
    producer.close().expect("close");
    consumer.close().expect("close");
}

/// `interface_test.py::test_close_without_closing_connectors`: the publisher and subscriber
/// are handed back open and reused.
#[test]
fn close_without_closing_the_publisher_or_subscriber() {
    let (store, _dir) = file_store("stream-reuse");
    let (publisher, subscriber) = channel();
    let producer = StreamProducer::<String>::builder(publisher)
        .with_topic_store("default", &store)
        .build();
    let consumer = StreamConsumer::<String>::new(subscriber).expect("consumer");
    let publisher = producer.into_publisher().expect("publisher back");
    let subscriber = consumer.into_subscriber().expect("subscriber back");

    let mut producer = StreamProducer::<String>::builder(publisher)
        .with_topic_store("default", &store)
        .build();
    let mut consumer = StreamConsumer::<String>::new(subscriber).expect("consumer");
    producer.send("default", "value".to_string()).expect("send");
    assert_eq!(
        *consumer.next().expect("an item").expect("no error"),
        "value"
    );
}

/// `interface_test.py::test_producer_close_topic`: closing the topic ends the consumer's
/// iteration.
#[test]
fn closing_a_topic_ends_the_stream() {
    let (store, _dir) = file_store("stream-close-topic");
    let (publisher, subscriber) = channel();
    let mut producer = StreamProducer::<String>::builder(publisher)
        .with_topic_store("default", &store)
        .build();
    let mut consumer = StreamConsumer::<String>::new(subscriber).expect("consumer");
    producer.close_topics(["default"]).expect("close topic");
    assert!(consumer.next().is_none());
    assert!(consumer.is_ended());
    assert!(consumer.next().is_none(), "an ended stream stays ended");
}

/// `interface_test.py::test_error_sending_to_closed_topic`.
#[test]
fn sending_to_a_closed_topic_is_an_error() {
    let (store, _dir) = file_store("stream-closed-topic");
    let (publisher, _subscriber) = channel();
    let mut producer = StreamProducer::<String>::builder(publisher)
        .with_topic_store("default", &store)
        .build();
    producer.close_topics(["default"]).expect("close topic");
    match producer.send("default", "value".to_string()) {
        Err(Error::TopicClosed { topic }) => assert_eq!(topic, "default"),
        other => panic!("expected TopicClosed, got {other:?}"),
    }
    assert_eq!(
        objects_in(&store),
        0,
        "nothing was stored for the refused send"
    );
}

/// `interface_test.py::test_use_and_register_default_store`: the consumer registers the
/// store its events name, and unregisters it when closed with its stores.
#[test]
fn the_consumer_registers_the_default_store_and_closing_unregisters_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let name = unique("stream-default-store");
    let store = Store::new(
        name.clone(),
        FileConnector::new(dir.path()).expect("connector"),
    );
    let (publisher, subscriber) = channel();
    let mut producer = StreamProducer::<String>::builder(publisher)
        .with_default_store(&store)
        .build();
    let mut consumer = StreamConsumer::<String>::new(subscriber).expect("consumer");
    producer.send("default", "value".to_string()).expect("send");
    assert!(get_store(&name).is_none());
    let item = consumer.next().expect("an item").expect("no error");
    assert!(
        get_store(&name).is_some(),
        "the consumer registered the store"
    );
    assert_eq!(*item, "value");
    producer.close_with_stores().expect("close producer");
    consumer.close_with_stores().expect("close consumer");
    assert!(get_store(&name).is_none(), "closing unregistered it");
}

/// `interface_test.py::test_filtering_stream` (the filter on either side): half the objects
/// pass, and every object is evicted, filtered or not.
#[test]
fn filtering_on_either_side_evicts_everything() {
    for on_producer in [true, false] {
        let (store, _dir) = file_store("stream-filter");
        let (publisher, subscriber) = channel();
        let odd = |metadata: &Metadata| {
            metadata
                .get("index")
                .and_then(Value::as_i64)
                .expect("an index")
                % 2
                != 0
        };
        let mut builder =
            StreamProducer::<i64>::builder(publisher).with_topic_store("default", &store);
        if on_producer {
            builder = builder.with_filter(odd);
        }
        let mut producer = builder.build();
        let mut consumer_builder = StreamConsumer::<i64>::builder(subscriber.clone());
        if !on_producer {
            consumer_builder = consumer_builder.with_filter(odd);
        }
        let mut consumer = consumer_builder.build().expect("consumer");
        for i in 0..10i64 {
            let options = SendOptions::new()
                .with_metadata(Metadata::new().with("index", i))
                .evict(true);
            producer.send_with("default", i, options).expect("send");
        }
        let keys = waiting_keys(&subscriber);
        assert_eq!(keys.len(), if on_producer { 5 } else { 10 });
        assert!(keys
            .iter()
            .all(|(key, _)| store.exists(key).expect("exists")));
        producer.close_topics(["default"]).expect("close topic");
        let received: Vec<i64> = consumer
            .iter_objects()
            .collect::<Result<_, _>>()
            .expect("objects");
        assert_eq!(
            received,
            vec![0, 2, 4, 6, 8],
            "filter on producer: {on_producer}"
        );
        for (key, _) in keys {
            assert!(
                !store.exists(&key).expect("exists"),
                "{key} was left behind"
            );
        }
        assert_eq!(objects_in(&store), 0);
    }
}

/// `interface_test.py::test_aggregator` (batch sizes 1, 2, 3): batches are summed.
#[test]
fn the_aggregator_combines_each_batch() {
    for batch_size in [1usize, 2, 3] {
        let (store, _dir) = file_store("stream-aggregate");
        let (publisher, subscriber) = channel();
        let mut producer = StreamProducer::<u64>::builder(publisher)
            .with_aggregator(|batch: Vec<u64>| batch.into_iter().sum())
            .with_batch_size(batch_size)
            .with_topic_store("default", &store)
            .build();
        let mut consumer = StreamConsumer::<u64>::new(subscriber).expect("consumer");
        let count: usize = 10;
        for _ in 0..count {
            producer.send("default", 1).expect("send");
        }
        producer.close_topics(["default"]).expect("close topic");
        let values: Vec<u64> = consumer
            .iter_objects()
            .collect::<Result<_, _>>()
            .expect("objects");
        assert_eq!(values.len(), count.div_ceil(batch_size));
        assert_eq!(values.iter().sum::<u64>(), count as u64);
        assert_eq!(objects_in(&store), 0);
    }
}

/// An aggregated object's metadata is the union of its batch's, later values winning.
#[test]
fn aggregated_metadata_is_the_union_of_the_batch() {
    let (publisher, subscriber) = channel();
    let mut producer = StreamProducer::<u64>::builder(publisher)
        .with_aggregator(|batch: Vec<u64>| batch.into_iter().sum())
        .with_batch_size(2)
        .build();
    let mut consumer = StreamConsumer::<u64>::new(subscriber).expect("consumer");
    for (i, name) in [(1u64, "first"), (2, "second")] {
        let metadata = Metadata::new().with(name, true).with("last", i);
        producer
            .send_with("t", i, SendOptions::new().with_metadata(metadata))
            .expect("send");
    }
    let (metadata, sum) = consumer
        .next_object_with_metadata()
        .expect("no error")
        .expect("an object");
    assert_eq!(sum, 3);
    assert_eq!(metadata.get("first"), Some(&Value::Bool(true)));
    assert_eq!(metadata.get("second"), Some(&Value::Bool(true)));
    assert_eq!(metadata.get("last").and_then(Value::as_u64), Some(2));
}

/// `interface_test.py::test_iter_with_metadata` (with and without a store).
#[test]
fn iterate_items_with_metadata() {
    for use_store in [true, false] {
        let (store, _dir) = file_store("stream-iter-metadata");
        let (publisher, subscriber) = channel();
        let builder = StreamProducer::<i64>::builder(publisher);
        let mut producer = if use_store {
            builder.with_topic_store("default", &store)
        } else {
            builder.with_inline_topic("default")
        }
        .build();
        let mut consumer = StreamConsumer::<i64>::new(subscriber).expect("consumer");
        for i in 0..10i64 {
            let options = SendOptions::new().with_metadata(Metadata::new().with("value", i));
            producer.send_with("default", i, options).expect("send");
        }
        producer.close_topics(["default"]).expect("close topic");
        let mut seen = 0;
        for item in consumer.iter_with_metadata() {
            let (metadata, item) = item.expect("an item");
            assert_eq!(matches!(item, ProxyOr::Proxy(_)), use_store);
            assert_eq!(metadata.get("value").and_then(Value::as_i64), Some(*item));
            seen += 1;
        }
        assert_eq!(seen, 10);
        assert_eq!(objects_in(&store), 0);
    }
}

/// `interface_test.py::test_iter_objects_with_metadata` (with and without a store).
#[test]
fn iterate_objects_with_metadata() {
    for use_store in [true, false] {
        let (store, _dir) = file_store("stream-iter-objects");
        let (publisher, subscriber) = channel();
        let builder = StreamProducer::<i64>::builder(publisher);
        let mut producer = if use_store {
            builder.with_topic_store("default", &store)
        } else {
            builder.with_inline_topic("default")
        }
        .build();
        let mut consumer = StreamConsumer::<i64>::new(subscriber).expect("consumer");
        for i in 0..10i64 {
            let options = SendOptions::new().with_metadata(Metadata::new().with("value", i));
            producer.send_with("default", i, options).expect("send");
        }
        producer.close_topics(["default"]).expect("close topic");
        let pairs: Vec<(Metadata, i64)> = consumer
            .iter_objects_with_metadata()
            .collect::<Result<_, _>>()
            .expect("objects");
        assert_eq!(pairs.len(), 10);
        for (metadata, obj) in pairs {
            assert_eq!(metadata.get("value").and_then(Value::as_i64), Some(obj));
        }
        assert_eq!(objects_in(&store), 0);
    }
}

/// `interface_test.py::test_consumer_next_object_evicts` (evict true and false).
#[test]
fn next_object_evicts_only_when_asked() {
    for evict in [true, false] {
        let (store, _dir) = file_store("stream-next-object-evicts");
        let (publisher, subscriber) = channel();
        let mut producer = StreamProducer::<String>::builder(publisher)
            .with_topic_store("default", &store)
            .build();
        let mut consumer = StreamConsumer::<String>::new(subscriber.clone()).expect("consumer");
        producer
            .send_with(
                "default",
                "value".to_string(),
                SendOptions::new().evict(evict),
            )
            .expect("send");
        let keys = waiting_keys(&subscriber);
        assert_eq!(keys.len(), 1);
        let (key, sent_evict) = keys[0].clone();
        assert_eq!(sent_evict, evict);
        assert!(store.exists(&key).expect("exists"));
        assert_eq!(
            consumer.next_object().expect("no error").as_deref(),
            Some("value")
        );
        assert_eq!(store.exists(&key).expect("exists"), !evict);
    }
}

/// A proxy of an object sent to be evicted evicts it on its first resolve, not before.
#[test]
fn a_proxy_evicts_on_first_resolve() {
    let (store, _dir) = file_store("stream-proxy-evicts");
    let (publisher, subscriber) = channel();
    let mut producer = StreamProducer::<String>::builder(publisher)
        .with_topic_store("default", &store)
        .build();
    let mut consumer = StreamConsumer::<String>::new(subscriber).expect("consumer");
    producer.send("default", "value".to_string()).expect("send");
    let item = consumer.next_item().expect("no error").expect("an item");
    let proxy = item.as_proxy().expect("a proxy").clone();
    assert_eq!(objects_in(&store), 1, "not evicted before it is read");
    assert!(!proxy_core::Proxy::is_resolved(&proxy));
    assert_eq!(*item, "value");
    assert_eq!(objects_in(&store), 0, "evicted once read");
    assert_eq!(*proxy, "value", "clones share the value");
}

/// `interface_test.py::test_consumer_next_object_missing`: an object evicted before it is
/// consumed is an error naming it.
#[test]
fn a_missing_object_is_not_found() {
    let (store, _dir) = file_store("stream-missing");
    let (publisher, subscriber) = channel();
    let mut producer = StreamProducer::<String>::builder(publisher)
        .with_topic_store("default", &store)
        .build();
    let mut consumer = StreamConsumer::<String>::new(subscriber.clone()).expect("consumer");
    producer.send("default", "value".to_string()).expect("send");
    let (key, _) = waiting_keys(&subscriber)[0].clone();
    store.evict(&key).expect("evict");
    match consumer.next_object() {
        Err(Error::NotFound {
            key: missing,
            store: name,
        }) => {
            assert_eq!(missing, key);
            assert_eq!(name, store.name());
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// `queue_test.py::test_threading_send_messages` and `test_multiprocessing_open_close`:
/// messages cross threads in order; a closed publisher ends the subscriber.
#[test]
fn channel_messages_cross_threads_in_order_and_a_closed_publisher_ends_them() {
    let (mut publisher, mut subscriber) = channel();
    let messages: Vec<bytes::Bytes> = (0..10)
        .map(|i| bytes::Bytes::from(format!("message-{i}")))
        .collect();
    let sent = messages.clone();
    let publish = std::thread::spawn(move || {
        for message in sent {
            publisher.send_message("default", message).expect("send");
        }
        publisher.close().expect("close");
    });
    let mut received = Vec::new();
    for _ in 0..10 {
        received.push(
            subscriber
                .next_message(None)
                .expect("a message")
                .expect("not timed out"),
        );
    }
    publish.join().expect("publisher");
    assert_eq!(received, messages);
    assert!(matches!(
        subscriber.next_message(None),
        Err(Error::StreamEnded { .. })
    ));
}

/// A consumer whose producer is dropped mid-stream gets an error at once, not a wait.
#[test]
fn a_dropped_producer_ends_the_consumer_with_an_error() {
    let (publisher, subscriber) = channel();
    let mut producer = StreamProducer::<u32>::builder(publisher).build();
    let mut consumer = StreamConsumer::<u32>::builder(subscriber)
        .with_timeout(None)
        .build()
        .expect("consumer");
    producer.send("t", 1).expect("send");
    drop(producer);
    assert_eq!(consumer.next_object().expect("the first object"), Some(1));
    match consumer.next_object() {
        Err(e @ Error::StreamEnded { .. }) => assert!(e.to_string().contains("before the end")),
        other => panic!("expected StreamEnded, got {other:?}"),
    }
}

/// A consumer waits at most its timeout for the next event.
#[test]
fn a_silent_stream_times_out() {
    let (_publisher, subscriber) = channel();
    let mut consumer = StreamConsumer::<u32>::builder(subscriber)
        .with_timeout(Some(std::time::Duration::from_millis(50)))
        .build()
        .expect("consumer");
    let started = std::time::Instant::now();
    match consumer.next_object() {
        Err(e) => assert!(e.is_timeout(), "{e}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
}

/// Hostile bytes on the channel are an error for that message; the next one is read.
#[test]
fn a_malformed_message_is_an_error_and_the_stream_goes_on() {
    let (mut publisher, subscriber) = channel();
    publisher
        .send_message("t", bytes::Bytes::from_static(b"\x01garbage"))
        .expect("send");
    let mut producer = StreamProducer::<u32>::builder(publisher).build();
    producer.send("t", 7).expect("send");
    let mut consumer = StreamConsumer::<u32>::new(subscriber).expect("consumer");
    assert!(matches!(
        consumer.next_object(),
        Err(Error::Protocol { .. })
    ));
    assert_eq!(consumer.next_object().expect("the next"), Some(7));
}

/// Objects the store could not take are not announced, and nothing is left behind when a
/// batch's event cannot be sent.
#[test]
fn a_batch_whose_event_cannot_be_sent_leaves_nothing_in_the_store() {
    let (store, _dir) = file_store("stream-unsent");
    let (publisher, subscriber) = channel();
    drop(subscriber);
    let mut producer = StreamProducer::<Vec<u8>>::builder(publisher)
        .with_topic_store("default", &store)
        .with_batch_size(3)
        .build();
    producer.send("default", vec![1]).expect("buffered");
    producer.send("default", vec![2]).expect("buffered");
    assert!(matches!(
        producer.send("default", vec![3]),
        Err(Error::Closed { .. })
    ));
    assert_eq!(objects_in(&store), 0);
}
