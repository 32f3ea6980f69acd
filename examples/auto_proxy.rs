//! Mixed small and large records: only the large ones become proxies.
//!
//! A simulation emits a small status message every step and, every fourth step, a large
//! frame. `auto_proxy` keeps records of up to 64 KiB inline and stores the others, so the
//! small ones pay nothing for the feature. `resolve` turns both kinds back into values.
//!
//! ```sh
//! cargo run --release --example auto_proxy
//! ```

mod common;

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dataflow_plugin::{AutoProxy, Resolve};
use proxy_core::Connector;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};

const THRESHOLD: u64 = 64 * 1024;

/// What the simulation emits.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Output {
    Status { step: u64, message: String },
    Frame { step: u64, cells: Vec<f32> },
}

fn main() -> Result<(), Box<dyn Error>> {
    let _telemetry = common::init_logging();
    let args = common::timely_args();
    let (connector, store) = common::embedded_store("auto-proxy")?;
    let inline = Arc::new(AtomicUsize::new(0));
    let stored = Arc::new(AtomicUsize::new(0));
    let (inline2, stored2) = (Arc::clone(&inline), Arc::clone(&stored));

    // Under the cluster watchdog (see the README, "Running across machines").
    let options = dataflow_plugin::cluster::ClusterOptions::from_env()?;
    dataflow_plugin::cluster::execute_from_args(args, options, move |worker| {
        let index = worker.index();
        let store = store.clone();
        let (inline, stored) = (Arc::clone(&inline2), Arc::clone(&stored2));
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, outputs) = scope.new_input::<Vec<Output>>();
            let probe = outputs
                .auto_proxy(&store, THRESHOLD)
                .inspect(move |record| {
                    let counter = if record.is_stored() { &stored } else { &inline };
                    counter.fetch_add(1, Ordering::Relaxed);
                })
                .exchange(|record| match &**record {
                    Output::Status { step, .. } | Output::Frame { step, .. } => *step,
                })
                .resolve()
                .inspect(move |output| match output {
                    Output::Status { step, message } => {
                        println!("worker {index}: step {step}: {message}")
                    }
                    Output::Frame { step, cells } => {
                        let max = cells.iter().copied().fold(f32::MIN, f32::max);
                        println!(
                            "worker {index}: step {step}: frame of {} cells, max {max}",
                            cells.len()
                        );
                    }
                })
                .probe()
                .0;
            (input, probe)
        });
        for step in 0..12u64 {
            if index == 0 {
                input.send(Output::Status {
                    step,
                    message: format!("step {step} done"),
                });
                if step % 4 == 0 {
                    let cells = (0..256 * 1024)
                        .map(|c| (c as f32 * 0.001 + step as f32).sin())
                        .collect();
                    input.send(Output::Frame { step, cells });
                }
            }
            input.advance_to(step + 1);
            while probe.less_than(input.time()) {
                worker.step_or_park(None);
            }
        }
    })?
    .join()
    .into_iter()
    .collect::<Result<Vec<()>, String>>()?;

    println!(
        "{} records inline, {} stored behind proxies; objects left: {:?}",
        inline.load(Ordering::Relaxed),
        stored.load(Ordering::Relaxed),
        connector.object_count()
    );
    Ok(())
}
