//! Streams between processes (`proxy_core::stream`): a producer and a consumer in two
//! processes over each network publisher (ZeroMQ PUB/SUB, Redis pub/sub, Redis lists), with
//! batching, filters, metadata and the end of the stream; a Timely dataflow in another
//! process fed by a stream and republishing it; a slow consumer; a producer that dies
//! mid-stream. Every store is checked empty once everything is consumed.
//!
//! Each child half is an `#[ignore]`d test that its parent runs (`--ignored --exact`); the
//! parent checks what the child printed. The Redis tests skip (loudly) without
//! `redis-server`.

use std::io::{BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use dataflow_plugin::{StreamSink, StreamSource};
use proxy_core::stream::{
    Metadata, Publisher, SendOptions, StreamConsumer, StreamProducer, Subscriber, Value,
    ZmqPublisher, ZmqStreamOptions, ZmqSubscriber,
};
use proxy_core::{register_store, Connector, Error, Store, ZmqConnector, ZmqOptions};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Exchange;

/// The cluster secret of these tests (given to children through `PROXYSTORE_SECRET`).
const SECRET: &str = "stream-tests-cluster-secret";
/// Set in a child: what it is to connect to.
const CHILD_ENDPOINT: &str = "STREAM_TEST_CHILD_ENDPOINT";
/// How long a test waits for the other process.
const PATIENCE: Duration = Duration::from_secs(60);

fn zmq_options() -> ZmqStreamOptions {
    ZmqStreamOptions::new().with_secret(SECRET)
}

/// A registered store over this process's own ZeroMQ peer (with the secret).
fn peer_store(prefix: &str) -> (ZmqConnector, Store) {
    let connector = ZmqOptions::default()
        .with_secret(SECRET)
        .build()
        .expect("start a peer");
    let name = format!("{prefix}-{}", std::process::id());
    let store = Store::builder(name, connector.clone())
        .with_cache_size(0)
        .build();
    register_store(&store).expect("register");
    (connector, store)
}

struct ChildProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    name: &'static str,
}

impl ChildProcess {
    /// Runs the ignored test `name` of this binary with `endpoint` in its environment.
    fn spawn(name: &'static str, endpoint: &str) -> ChildProcess {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                name,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENDPOINT, endpoint)
            .env("PROXYSTORE_SECRET", SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let stdin = child.stdin.take();
        ChildProcess {
            child,
            stdin,
            lines,
            name,
        }
    }

    /// Tells the child to go on (a line on its standard input).
    fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the child's stdin");
        writeln!(stdin, "{line}").expect("write to the child");
        stdin.flush().expect("flush");
    }

    /// What follows `prefix` in the next line the child printed with it.
    fn expect_line(&mut self, prefix: &str) -> String {
        for line in self.lines.by_ref() {
            let line = line.expect("read the child's output");
            // The harness may print `test NAME ... ` before the child's first line.
            if let Some((_, rest)) = line.split_once(prefix) {
                return rest.trim().to_string();
            }
        }
        let status = self.child.wait().expect("wait");
        panic!(
            "child {} ended ({status}) without printing {prefix:?}",
            self.name
        );
    }

    fn finish(mut self) {
        let status = self.child.wait().expect("wait for the child");
        assert!(status.success(), "child {} failed: {status}", self.name);
    }
}

fn child_endpoint() -> String {
    std::env::var(CHILD_ENDPOINT).expect("run by its parent test")
}

/// Sends `count` numbers with their index (and parity) as metadata; the producer's filter
/// drops every fifth; batches of 3.
fn produce_numbers(publisher: impl Publisher + 'static, store: &Store, count: i64) {
    let mut producer = StreamProducer::<Vec<i64>>::builder(publisher)
        .with_default_store(store)
        .with_batch_size(3)
        .with_filter(|m: &Metadata| m.get("index").and_then(Value::as_i64).unwrap_or(0) % 5 == 4)
        .build();
    for i in 0..count {
        let metadata = Metadata::new().with("index", i).with("odd", i % 2 == 1);
        producer
            .send_with(
                "numbers",
                vec![i; 1000],
                SendOptions::new().with_metadata(metadata),
            )
            .expect("send");
    }
    producer.close_topics(["numbers"]).expect("close the topic");
    producer.close().expect("close the producer");
}

/// Consumes numbers, dropping odd ones (a consumer filter), and prints what it got.
fn consume_numbers(subscriber: impl Subscriber + 'static) {
    let mut consumer = StreamConsumer::<Vec<i64>>::builder(subscriber)
        .with_filter(|m: &Metadata| m.get("odd") == Some(&Value::Bool(true)))
        .with_timeout(Some(PATIENCE))
        .build()
        .expect("consumer");
    let mut got = Vec::new();
    for item in consumer.iter_with_metadata() {
        let (metadata, numbers) = item.expect("an item");
        assert!(numbers.is_proxy(), "stored objects arrive as proxies");
        let index = metadata
            .get("index")
            .and_then(Value::as_i64)
            .expect("index");
        assert_eq!(numbers.len(), 1000);
        assert!(
            numbers.iter().all(|&n| n == index),
            "object {index} mixed up"
        );
        got.push(index);
    }
    assert!(consumer.is_ended());
    println!("GOT {got:?}");
}

/// What the consumer of `produce_numbers(20)` keeps: even, not a fifth.
fn expected_numbers(count: i64) -> String {
    format!(
        "{:?}",
        (0..count)
            .filter(|i| i % 2 == 0 && i % 5 != 4)
            .collect::<Vec<_>>()
    )
}

#[test]
fn zmq_stream_between_processes_with_batches_filters_metadata_and_end() {
    let (connector, store) = peer_store("stream-zmq-across");
    let mut publisher = ZmqPublisher::bind(zmq_options()).expect("bind");
    let mut child = ChildProcess::spawn("child_zmq_consumer", publisher.endpoint());
    publisher
        .wait_for_subscribers("numbers", 1, PATIENCE)
        .expect("the child subscribed");
    produce_numbers(publisher, &store, 20);
    assert_eq!(child.expect_line("GOT"), expected_numbers(20));
    child.finish();
    // Consumed, filtered and producer-filtered objects alike: nothing left.
    assert_eq!(connector.object_count(), Some(0));
}

#[test]
#[ignore = "child half of zmq_stream_between_processes_with_batches_filters_metadata_and_end"]
fn child_zmq_consumer() {
    let subscriber =
        ZmqSubscriber::connect(&child_endpoint(), ["numbers"], ZmqStreamOptions::new())
            .expect("connect");
    consume_numbers(subscriber);
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use proxy_core::stream::{
        RedisPublisher, RedisQueuePublisher, RedisQueueSubscriber, RedisSubscriber,
    };
    use proxy_core::testing::RedisServer;

    #[test]
    fn redis_pubsub_stream_between_processes() {
        let Some(server) = RedisServer::start_or_skip() else {
            return;
        };
        let (connector, store) = peer_store("stream-redis-pubsub");
        let mut child = ChildProcess::spawn("redis::child_redis_pubsub_consumer", &server.url());
        // Redis pub/sub keeps nothing: wait until the child is subscribed.
        child.expect_line("SUBSCRIBED");
        let publisher = RedisPublisher::connect(&server.url())
            .expect("publisher")
            .with_secret(SECRET);
        produce_numbers(publisher, &store, 20);
        assert_eq!(child.expect_line("GOT"), expected_numbers(20));
        child.finish();
        assert_eq!(connector.object_count(), Some(0));
    }

    #[test]
    #[ignore = "child half of redis_pubsub_stream_between_processes"]
    fn child_redis_pubsub_consumer() {
        let subscriber =
            RedisSubscriber::connect(&child_endpoint(), ["numbers"]).expect("subscribe");
        println!("SUBSCRIBED");
        consume_numbers(subscriber);
    }

    #[test]
    fn redis_queue_stream_between_processes() {
        let Some(server) = RedisServer::start_or_skip() else {
            return;
        };
        let (connector, store) = peer_store("stream-redis-queue");
        // A queue keeps the events until read: produce everything first.
        let publisher = RedisQueuePublisher::connect(&server.url())
            .expect("publisher")
            .with_secret(SECRET);
        produce_numbers(publisher, &store, 20);
        let child = ChildProcess::spawn("redis::child_redis_queue_consumer", &server.url());
        let mut child = child;
        assert_eq!(child.expect_line("GOT"), expected_numbers(20));
        child.finish();
        assert_eq!(connector.object_count(), Some(0));
    }

    #[test]
    #[ignore = "child half of redis_queue_stream_between_processes"]
    fn child_redis_queue_consumer() {
        let subscriber =
            RedisQueueSubscriber::connect(&child_endpoint(), "numbers").expect("connect");
        consume_numbers(subscriber);
    }

    /// A producer that dies leaves its Redis consumer waiting: the consumer's timeout ends
    /// the wait with an error.
    #[test]
    fn a_redis_consumer_whose_producer_died_times_out() {
        let Some(server) = RedisServer::start_or_skip() else {
            return;
        };
        let mut child =
            ChildProcess::spawn("child_dying_producer", &format!("redis:{}", server.url()));
        let subscriber = RedisQueueSubscriber::connect(&server.url(), "dying")
            .expect("connect")
            .with_secret(SECRET);
        let mut consumer = StreamConsumer::<u32>::builder(subscriber)
            .with_timeout(Some(Duration::from_millis(500)))
            .build()
            .expect("consumer");
        child.expect_line("SENT");
        for i in 0..3 {
            assert_eq!(consumer.next_object().expect("an object"), Some(i));
        }
        child.tell("die");
        let status = child.child.wait().expect("wait");
        assert!(!status.success(), "the producer was to die");
        let started = Instant::now();
        match consumer.next_object() {
            Err(e) => assert!(e.is_timeout(), "{e}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < PATIENCE);
    }
}

/// Sends three inline objects, prints `SENT`, and dies without closing anything.
#[test]
#[ignore = "child half of the dying-producer tests"]
fn child_dying_producer() {
    let endpoint = child_endpoint();
    let publisher: Box<dyn Publisher> = match endpoint.strip_prefix("redis:") {
        #[cfg(feature = "redis")]
        Some(url) => {
            Box::new(proxy_core::stream::RedisQueuePublisher::connect(url).expect("connect"))
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => panic!("built without the redis feature"),
        None => {
            let port: u16 = endpoint.parse().expect("a port");
            let mut publisher = ZmqPublisher::bind(zmq_options().with_port(port)).expect("bind");
            publisher
                .wait_for_subscribers("dying", 1, PATIENCE)
                .expect("the parent subscribed");
            Box::new(publisher)
        }
    };
    let mut producer = StreamProducer::<u32>::builder(publisher).build();
    for i in 0..3 {
        producer.send("dying", i).expect("send");
    }
    println!("SENT");
    // Die (mid-stream: no end of stream, nothing closed) once the parent has read them.
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .expect("the parent's word");
    std::process::abort();
}

/// A producer process that dies mid-stream: its ZeroMQ consumer reads
/// what was sent and then gets an error at once, not a hang.
#[test]
fn a_zmq_consumer_whose_producer_died_gets_an_error_not_a_hang() {
    let port = proxy_core::testing::free_loopback_port();
    let mut child = ChildProcess::spawn("child_dying_producer", &port.to_string());
    let subscriber =
        ZmqSubscriber::connect(&format!("tcp://127.0.0.1:{port}"), ["dying"], zmq_options())
            .expect("connect");
    // A timeout far longer than the test: the error must come from the disconnection.
    let mut consumer = StreamConsumer::<u32>::builder(subscriber)
        .with_timeout(Some(PATIENCE))
        .build()
        .expect("consumer");
    child.expect_line("SENT");
    for i in 0..3 {
        assert_eq!(consumer.next_object().expect("an object"), Some(i));
    }
    child.tell("die");
    let started = Instant::now();
    match consumer.next_object() {
        Err(Error::StreamEnded { stream, message }) => {
            assert!(stream.contains(&port.to_string()), "{stream}");
            assert!(message.contains("disconnected"), "{message}");
        }
        other => panic!("expected the end of the stream, got {other:?}"),
    }
    assert!(started.elapsed() < PATIENCE);
    let status = child.child.wait().expect("wait");
    assert!(!status.success(), "the producer was to die");
}

/// A consumer much slower than its producer over ZeroMQ: the producer waits for it (the
/// high water mark is 2 messages) instead of dropping events, and everything arrives in
/// order. 16 MiB of objects inside their events (raw bytes: encoded without a copy, so the
/// producer is fast): more than the kernel's socket buffers hold.
#[test]
fn a_slow_zmq_consumer_loses_nothing() {
    const OBJECTS: u8 = 64;
    let options = zmq_options().with_high_water_mark(2);
    let mut publisher = ZmqPublisher::bind(options.clone()).expect("bind");
    let subscriber =
        ZmqSubscriber::connect(publisher.endpoint(), ["slow"], options).expect("connect");
    publisher
        .wait_for_subscribers("slow", 1, PATIENCE)
        .expect("subscribed");
    let consume = std::thread::spawn(move || {
        let mut consumer = StreamConsumer::<Vec<u8>>::builder(subscriber)
            .with_timeout(Some(PATIENCE))
            .build()
            .expect("consumer");
        let mut got = Vec::new();
        while let Some(object) = consumer.next_object().expect("no loss, no error") {
            got.push(object[0]);
            // Slow: the producer gets ahead by far more than the high water mark.
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    });
    let mut producer = StreamProducer::<Vec<u8>>::builder(publisher).build();
    for i in 0..OBJECTS {
        producer.send("slow", vec![i; 256 << 10]).expect("send");
    }
    producer.close_topics(["slow"]).expect("close topic");
    producer.close().expect("close");
    assert_eq!(
        consume.join().expect("consumer"),
        (0..OBJECTS).collect::<Vec<_>>()
    );
}

/// A Timely dataflow in another process (two workers) consumes a stream, transforms it and
/// republishes it; this process produces the input and consumes the output. Both processes'
/// stores are empty at the end.
#[test]
fn a_dataflow_in_another_process_consumes_and_republishes_a_stream() {
    const FRAMES: u64 = 24;
    let (connector, store) = peer_store("stream-dataflow-in");
    let mut publisher = ZmqPublisher::bind(zmq_options()).expect("bind");
    let mut child = ChildProcess::spawn("child_dataflow_stage", publisher.endpoint());
    let out_endpoint = child.expect_line("PUBLISHING");
    // The stage's store, reached with this process's secret (a store rebuilt from an event's
    // configuration would take the secret from the environment, which this process lacks).
    let stage_store = child.expect_line("STORE_NAME");
    let client = ZmqOptions::default()
        .with_secret(SECRET)
        .with_client_only()
        .build()
        .expect("a client");
    register_store(
        &Store::builder(stage_store, client)
            .with_cache_size(0)
            .build(),
    )
    .expect("register");
    let subscriber =
        ZmqSubscriber::connect(&out_endpoint, ["processed"], zmq_options()).expect("connect");
    publisher
        .wait_for_subscribers("raw", 1, PATIENCE)
        .expect("the dataflow subscribed");
    let consume = std::thread::spawn(move || {
        let mut consumer = StreamConsumer::<Vec<u64>>::builder(subscriber)
            .with_timeout(Some(PATIENCE))
            .build()
            .expect("consumer");
        let mut got: Vec<u64> = consumer
            .iter_objects()
            .map(|frame| {
                let frame = frame.expect("a frame");
                assert!(frame.iter().all(|&x| x == frame[0]));
                frame[0]
            })
            .collect();
        got.sort_unstable();
        got
    });
    let mut producer = StreamProducer::<Vec<u64>>::builder(publisher)
        .with_default_store(&store)
        .with_batch_size(4)
        .build();
    for i in 0..FRAMES {
        producer.send("raw", vec![i; 10_000]).expect("send");
    }
    producer.close_topics(["raw"]).expect("close topic");
    producer.close().expect("close");
    let expected: Vec<u64> = (0..FRAMES).map(|i| i * 3 + 1).collect();
    assert_eq!(consume.join().expect("consumer"), expected);
    assert_eq!(
        child.expect_line("STORE"),
        "0",
        "the dataflow's store is empty"
    );
    child.finish();
    assert_eq!(
        connector.object_count(),
        Some(0),
        "the producer's store is empty"
    );
}

#[test]
#[ignore = "child half of a_dataflow_in_another_process_consumes_and_republishes_a_stream"]
fn child_dataflow_stage() {
    let (connector, store) = peer_store("stream-dataflow-stage");
    let mut publisher = ZmqPublisher::bind(ZmqStreamOptions::new()).expect("bind");
    println!("PUBLISHING {}", publisher.endpoint());
    println!("STORE_NAME {}", store.name());
    let subscriber = ZmqSubscriber::connect(&child_endpoint(), ["raw"], ZmqStreamOptions::new())
        .expect("connect");
    publisher
        .wait_for_subscribers("processed", 1, PATIENCE)
        .expect("the parent subscribed");
    let ends = std::sync::Mutex::new(Some((subscriber, publisher)));
    timely::execute(timely::Config::process(2), move |worker| {
        let ends = if worker.index() == 0 {
            ends.lock().expect("lock").take()
        } else {
            None
        };
        let (consumer, producer) = match ends {
            Some((subscriber, publisher)) => (
                Some(
                    StreamConsumer::<Vec<u64>>::builder(subscriber)
                        .with_timeout(Some(PATIENCE))
                        .build()
                        .expect("consumer"),
                ),
                Some(
                    StreamProducer::<Vec<u64>>::builder(publisher)
                        .with_default_store(&store)
                        .build(),
                ),
            ),
            None => (None, None),
        };
        worker.dataflow::<u64, _, _>(move |scope| {
            consumer
                .stream_source(scope)
                .exchange(|frame| {
                    frame
                        .as_proxy()
                        .map_or(0, |p| proxy_core::Proxy::key(p).id() as u64)
                })
                .map(|frame| frame.iter().map(|x| x * 3 + 1).collect::<Vec<u64>>())
                .stream_sink(producer, "processed");
        });
    })
    .expect("timely");
    // The parent consumes (and so evicts) everything this stage published.
    let deadline = Instant::now() + PATIENCE;
    while connector.object_count() != Some(0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("STORE {}", connector.object_count().unwrap_or(usize::MAX));
}
