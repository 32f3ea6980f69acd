//! A future's proxy travels through a dataflow before its value exists, and resolves at the
//! consumer once the producer sets it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy_core::{register_store, Proxy, Store, ZmqConnector};
use timely::dataflow::operators::{Exchange, Input, Inspect, Probe};
use timely::Config;

#[test]
fn future_proxies_cross_serializing_workers_and_resolve_when_set() {
    const RECORDS: u64 = 8;
    let store = Store::builder("dataflow-futures", ZmqConnector::new().expect("peer"))
        .with_cache_size(0)
        .build();
    register_store(&store).expect("register");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    // Worker threads that serialize every record they exchange, as separate processes do.
    let config = Config {
        communication: timely::CommunicationConfig::ProcessBinary(2),
        worker: timely::WorkerConfig::default(),
    };
    let producer_store = store.clone();
    timely::execute(config, move |worker| {
        let index = worker.index();
        let sink = Arc::clone(&sink);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(move |scope| {
            let (input, stream) = scope.new_input::<Vec<Proxy<Vec<u64>>>>();
            let probe = stream
                .exchange(|_| 1)
                .inspect(move |proxy: &Proxy<Vec<u64>>| {
                    assert!(Proxy::is_future(proxy));
                    // Waits here until worker 0 sets the value.
                    let sum: u64 = proxy.iter().sum();
                    sink.lock().expect("sink").push((proxy.len() as u64, sum));
                })
                .probe()
                .0;
            (input, probe)
        });
        if index == 0 {
            let futures: Vec<_> = (0..RECORDS)
                .map(|_| producer_store.future::<Vec<u64>>().expect("future"))
                .collect();
            for future in &futures {
                input.send(future.proxy());
            }
            input.advance_to(1);
            // The proxies are on their way (or already waiting at worker 1): set the values.
            for _ in 0..10 {
                worker.step();
            }
            std::thread::sleep(Duration::from_millis(10));
            for (i, future) in futures.iter().enumerate() {
                future.set(&vec![i as u64; i + 1]).expect("set");
            }
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
    })
    .expect("timely");

    let mut seen = seen.lock().expect("seen").clone();
    seen.sort_unstable();
    let expected: Vec<(u64, u64)> = (0..RECORDS).map(|i| (i + 1, i * (i + 1))).collect();
    assert_eq!(seen, expected);
    store.close().expect("close");
}
