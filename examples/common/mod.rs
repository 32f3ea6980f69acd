//! Set-up shared by the examples (not every example uses every item).
#![allow(dead_code)]

use proxy_core::{register_store, Store, ZmqConnector, ZmqOptions};

/// Logs to standard error, filtered by `RUST_LOG` (default `warn`); `RUST_LOG=debug` shows
/// every put, get, resolve and evict.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Timely's command-line arguments for this run: those given, or two worker threads.
pub(crate) fn timely_args() -> Vec<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        vec!["-w".into(), "2".into()]
    } else {
        args
    }
}

/// A store named `name` over this process's embedded ZeroMQ peer, registered so that
/// proxies arriving from other processes find it. No cache: each value is read once.
///
/// The peer binds and advertises as the `PROXYSTORE_ZMQ_*` variables say (loopback by
/// default; on a cluster of machines set `PROXYSTORE_ZMQ_INTERFACE` on each one).
pub(crate) fn embedded_store(name: &str) -> Result<(ZmqConnector, Store), proxy_core::Error> {
    let connector = ZmqOptions::from_env()?.build()?;
    let store = Store::builder(name, connector.clone())
        .with_cache_size(0)
        .build();
    register_store(&store)?;
    Ok((connector, store))
}
