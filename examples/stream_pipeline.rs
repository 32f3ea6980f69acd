//! Three programs exchange a stream of proxied objects (ProxyStore's streams over ZeroMQ
//! PUB/SUB): a plain producer, a Timely dataflow that consumes, transforms and republishes,
//! and a plain consumer.
//!
//! - `producer`: sends `--count` frames (`Vec<f32>`, 256 Ki values each, with their index in
//!   the metadata) to topic `raw`. Each frame stays in the producer's own ZeroMQ peer; only a
//!   small event goes through its publisher. It waits for the pipeline to subscribe, and then
//!   for every frame to be consumed (evicted) before it exits.
//! - `pipeline`: a dataflow whose source is the `raw` stream (`StreamSource`): the frames are
//!   exchanged over the workers as proxies, resolved where they are used (each fetched from
//!   the producer's peer, then evicted there), scaled by 2, and sent to topic `processed`
//!   (`StreamSink`), stored in the pipeline's own peer. The dataflow completes at the end of
//!   the `raw` stream.
//! - `consumer`: reads `processed` to its end and checks every frame.
//!
//! ```sh
//! cargo run --release --example stream_pipeline                 # all three, as processes
//! # or each in its own terminal (any order):
//! cargo run --release --example stream_pipeline -- producer --port 5601
//! cargo run --release --example stream_pipeline -- pipeline --from tcp://127.0.0.1:5601 --port 5602 -w 2
//! cargo run --release --example stream_pipeline -- consumer --from tcp://127.0.0.1:5602
//! ```
//!
//! Under a cluster secret (`PROXYSTORE_SECRET` or `PROXYSTORE_SECRET_FILE`, the same for all
//! three) every event is authenticated and every object request proven.

mod common;

use std::error::Error;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use dataflow_plugin::{StreamSink, StreamSource};
use proxy_core::stream::{
    Metadata, SendOptions, StreamConsumer, StreamProducer, ZmqPublisher, ZmqStreamOptions,
    ZmqSubscriber,
};
use proxy_core::{Connector, ZmqConnector};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Exchange;

/// Values per frame (1 MiB of `f32`).
const FRAME_LEN: usize = 256 << 10;
/// How long each program waits for the others (to subscribe, to consume).
const PATIENCE: Duration = Duration::from_secs(120);

#[derive(Debug, Parser)]
#[command(about = "A producer, a Timely pipeline and a consumer exchanging a proxied stream")]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Frames to send (all three programs when run together)
    #[arg(long, default_value_t = 32, global = true)]
    count: u64,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// Send frames to topic `raw`
    Producer {
        /// Port of the publisher
        #[arg(long)]
        port: u16,
    },
    /// Consume `raw`, scale, publish `processed`
    Pipeline {
        /// The producer's publisher (tcp://HOST:PORT)
        #[arg(long)]
        from: String,
        /// Port of this program's publisher
        #[arg(long)]
        port: u16,
        /// Timely worker threads
        #[arg(short = 'w', long = "threads", default_value_t = 2)]
        threads: usize,
    },
    /// Read `processed` and check it
    Consumer {
        /// The pipeline's publisher (tcp://HOST:PORT)
        #[arg(long)]
        from: String,
    },
}

fn frame(index: u64) -> Vec<f32> {
    vec![index as f32; FRAME_LEN]
}

/// Waits until `connector` holds nothing (every object consumed and evicted).
fn wait_until_consumed(connector: &ZmqConnector, what: &str) -> Result<(), Box<dyn Error>> {
    let deadline = Instant::now() + PATIENCE;
    while connector.object_count() != Some(0) {
        if Instant::now() > deadline {
            return Err(format!("{what}: objects were not consumed within {PATIENCE:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn producer(port: u16, count: u64) -> Result<(), Box<dyn Error>> {
    let (connector, store) = common::embedded_store("stream-pipeline-producer")?;
    let mut publisher = ZmqPublisher::bind(ZmqStreamOptions::new().with_port(port))?;
    publisher.wait_for_subscribers("raw", 1, PATIENCE)?;
    let mut producer = StreamProducer::<Vec<f32>>::builder(publisher)
        .with_default_store(&store)
        .build();
    for i in 0..count {
        let metadata = Metadata::new().with("index", i);
        producer.send_with("raw", frame(i), SendOptions::new().with_metadata(metadata))?;
    }
    producer.close_topics(["raw"])?;
    producer.close()?;
    wait_until_consumed(&connector, "producer")?;
    println!("producer: sent {count} frames, all consumed");
    Ok(())
}

fn pipeline(from: String, port: u16, threads: usize) -> Result<(), Box<dyn Error>> {
    let (connector, store) = common::embedded_store("stream-pipeline-stage")?;
    // Worker 0 reads `raw` and publishes `processed`; the others transform.
    let mut publisher = ZmqPublisher::bind(ZmqStreamOptions::new().with_port(port))?;
    let subscriber = ZmqSubscriber::connect(&from, ["raw"], ZmqStreamOptions::new())?;
    publisher.wait_for_subscribers("processed", 1, PATIENCE)?;
    let ends = std::sync::Mutex::new(Some((subscriber, publisher)));
    timely::execute(timely::Config::process(threads), move |worker| {
        let ends = if worker.index() == 0 {
            ends.lock().ok().and_then(|mut ends| ends.take())
        } else {
            None
        };
        let (consumer, producer) = match ends {
            Some((subscriber, publisher)) => (
                Some(
                    StreamConsumer::<Vec<f32>>::builder(subscriber)
                        .with_timeout(Some(PATIENCE))
                        .build()
                        .expect("consumer"),
                ),
                Some(
                    StreamProducer::<Vec<f32>>::builder(publisher)
                        .with_default_store(&store)
                        .build(),
                ),
            ),
            None => (None, None),
        };
        let index = worker.index();
        worker.dataflow::<u64, _, _>(move |scope| {
            consumer
                .stream_source(scope)
                .exchange(|frame| {
                    frame
                        .as_proxy()
                        .map_or(0, |p| proxy_core::Proxy::key(p).id() as u64)
                })
                .map(move |frame| {
                    // Resolves here (fetched from the producer's peer, then evicted there).
                    let scaled: Vec<f32> = frame.iter().map(|x| x * 2.0).collect();
                    println!("pipeline: worker {index} scaled frame {}", frame[0]);
                    scaled
                })
                .stream_sink(producer, "processed");
        });
    })
    .map_err(|e| format!("timely: {e}"))?;
    wait_until_consumed(&connector, "pipeline")?;
    println!("pipeline: done");
    Ok(())
}

fn consumer(from: String, count: u64) -> Result<(), Box<dyn Error>> {
    let subscriber = ZmqSubscriber::connect(&from, ["processed"], ZmqStreamOptions::new())?;
    let mut consumer = StreamConsumer::<Vec<f32>>::builder(subscriber)
        .with_timeout(Some(PATIENCE))
        .build()?;
    let mut seen = Vec::new();
    for frame in consumer.iter_objects() {
        let frame = frame?;
        assert_eq!(frame.len(), FRAME_LEN);
        assert!(frame.iter().all(|&x| x == frame[0]), "a frame was mixed up");
        seen.push((frame[0] / 2.0) as u64);
    }
    seen.sort_unstable();
    if seen != (0..count).collect::<Vec<_>>() {
        return Err(format!("consumer: got frames {seen:?}, expected 0..{count}").into());
    }
    println!("consumer: received {count} processed frames, then the end of the stream");
    Ok(())
}

/// Runs the three roles as processes of this program.
fn all(count: u64) -> Result<(), Box<dyn Error>> {
    let ports = proxy_core::testing::free_loopback_ports(2)?;
    let exe = std::env::current_exe()?;
    let spawn = |args: Vec<String>| -> std::io::Result<Child> {
        Command::new(&exe)
            .args(args)
            .arg(format!("--count={count}"))
            .spawn()
    };
    let mut children = [
        spawn(vec![
            "consumer".into(),
            format!("--from=tcp://127.0.0.1:{}", ports[1]),
        ])?,
        spawn(vec![
            "pipeline".into(),
            format!("--from=tcp://127.0.0.1:{}", ports[0]),
            format!("--port={}", ports[1]),
        ])?,
        spawn(vec!["producer".into(), format!("--port={}", ports[0])])?,
    ];
    let mut failed = Vec::new();
    for (child, role) in children
        .iter_mut()
        .zip(["consumer", "pipeline", "producer"])
    {
        let status = child.wait()?;
        if !status.success() {
            failed.push(format!("{role}: {status}"));
        }
    }
    if failed.is_empty() {
        println!("all three programs succeeded");
        Ok(())
    } else {
        Err(failed.join(", ").into())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let _telemetry = common::init_logging();
    let cli = Cli::parse();
    match cli.role {
        None => all(cli.count),
        Some(Role::Producer { port }) => producer(port, cli.count),
        Some(Role::Pipeline {
            from,
            port,
            threads,
        }) => pipeline(from, port, threads),
        Some(Role::Consumer { from }) => consumer(from, cli.count),
    }
}
