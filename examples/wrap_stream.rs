//! Proxy a stream of large records and resolve them where they are used.
//!
//! Worker 0 produces sixteen 4 MiB "images"; `proxy` stores each one with this process's
//! embedded ZeroMQ peer and sends only a proxy through the dataflow; `exchange` spreads the
//! proxies over the workers, and `resolve` fetches each image from the peer that holds it.
//!
//! ```sh
//! cargo run --release --example wrap_stream              # one process, two worker threads
//! cargo run --release --example wrap_stream -- -w 4      # timely's usual arguments
//! ```

mod common;

use std::error::Error;

use dataflow_plugin::{ProxyRecords, Resolve};
use proxy_core::{Connector, Proxy};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};

const IMAGES: u64 = 16;
const IMAGE_BYTES: usize = 4 << 20;

fn main() -> Result<(), Box<dyn Error>> {
    let _telemetry = common::init_logging();
    let args = common::timely_args();
    let (connector, store) = common::embedded_store("wrap-stream")?;

    // Under the cluster watchdog (see the README, "Running across machines").
    let options = dataflow_plugin::cluster::ClusterOptions::from_env()?;
    dataflow_plugin::cluster::execute_from_args(args, options, move |worker| {
        let index = worker.index();
        let store = store.clone();
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, images) = scope.new_input::<Vec<Vec<u8>>>();
            let probe = images
                .proxy(&store)
                .inspect(|p| {
                    println!(
                        "sent proxy {} ({} bytes on the wire)",
                        Proxy::key(p),
                        wire_size(p)
                    )
                })
                .exchange(|p| Proxy::key(p).id() as u64)
                .resolve()
                .inspect(move |image| {
                    let mean =
                        image.iter().map(|&b| f64::from(b)).sum::<f64>() / image.len() as f64;
                    println!(
                        "worker {index}: image {} resolved, mean pixel {mean:.1}",
                        image[0]
                    );
                })
                .probe()
                .0;
            (input, probe)
        });
        if index == 0 {
            for i in 0..IMAGES {
                input.send(vec![i as u8; IMAGE_BYTES]);
            }
        }
        input.advance_to(1);
        while probe.less_than(input.time()) {
            worker.step_or_park(None);
        }
    })?
    .join()
    .into_iter()
    .collect::<Result<Vec<()>, String>>()?;

    println!(
        "objects left in this process's peer: {:?}",
        connector.object_count()
    );
    Ok(())
}

fn wire_size<T>(proxy: &Proxy<T>) -> usize {
    bincode::serialized_size(proxy).map_or(0, |n| n as usize)
}
