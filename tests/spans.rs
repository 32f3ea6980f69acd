//! The `tracing` spans a trace viewer shows: the operators' `proxy`, `resolve` and `release`
//! work with their worker and batch, and each ZeroMQ exchange with its peer, operation, sizes
//! and outcome (`docs/src/operating.md`, "Tracing where a dataflow's time goes").
//!
//! One test binary with its own global subscriber, so spans opened on the background fetch
//! threads are seen too.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use dataflow_plugin::{ProxyRecords, Resolve};
use proxy_core::{Connector, LocalConnector, Store, ZmqOptions};
use timely::dataflow::operators::{Inspect, ToStream};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// One span as a subscriber saw it: its name and every field's last recorded value.
#[derive(Clone, Debug)]
struct SeenSpan {
    name: &'static str,
    fields: HashMap<&'static str, String>,
}

/// Every span opened in the process, by id (ids are reused once a span closes, so a closed
/// span moves to `closed`).
#[derive(Default)]
struct SpanLog {
    open: HashMap<u64, SeenSpan>,
    closed: Vec<SeenSpan>,
}

struct Recorder(Arc<Mutex<SpanLog>>);

struct Values<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Values<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }
}

impl<S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S>
    for Recorder
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Values(&mut fields));
        let span = SeenSpan {
            name: attrs.metadata().name(),
            fields,
        };
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        log.open.insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(span) = log.open.get_mut(&id.into_u64()) {
            values.record(&mut Values(&mut span.fields));
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let mut log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(span) = log.open.remove(&id.into_u64()) {
            log.closed.push(span);
        }
    }
}

/// The process's span log, installed once as the global subscriber (debug level).
fn spans() -> Arc<Mutex<SpanLog>> {
    static LOG: OnceLock<Arc<Mutex<SpanLog>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(SpanLog::default()));
        tracing_subscriber::registry()
            .with(Recorder(Arc::clone(&log)).with_filter(LevelFilter::DEBUG))
            .init();
        log
    })
    .clone()
}

/// The closed spans named `name` whose field `field` is `value`.
fn closed(name: &str, field: &str, value: &str) -> Vec<SeenSpan> {
    let log = spans();
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    log.closed
        .iter()
        .filter(|s| s.name == name && s.fields.get(field).map(String::as_str) == Some(value))
        .cloned()
        .collect()
}

#[test]
fn a_dataflow_shows_its_proxy_resolve_and_release_work_per_worker_and_batch() {
    spans();
    let connector = LocalConnector::new();
    // Proxies that fetch on first use, so `resolve` has a batch to fetch.
    let store = Store::builder("spans-dataflow", connector.clone())
        .with_populate_target(false)
        .build();
    timely::example(move |scope| {
        (0..6u64)
            .map(|i| vec![i; 512])
            .to_stream(scope)
            .proxy(&store)
            .resolve()
            .inspect(|record| assert_eq!(record.len(), 512));
    });
    assert_eq!(connector.object_count(), Some(0));

    let proxy = closed("proxy", "store", "spans-dataflow");
    assert!(!proxy.is_empty(), "no `proxy` span for the store");
    let proxied: u64 = proxy
        .iter()
        .map(|s| s.fields["records"].parse::<u64>().expect("records"))
        .sum();
    assert_eq!(proxied, 6, "the proxy spans count every record: {proxy:?}");
    assert!(proxy.iter().all(|s| s.fields["worker"] == "0"
        && s.fields["operator"] == "proxy"
        && s.fields.contains_key("time")));

    let resolve: Vec<SeenSpan> = spans()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .closed
        .iter()
        .filter(|s| {
            s.name == "resolve" && s.fields.get("operator").map(String::as_str) == Some("Resolve")
        })
        .cloned()
        .collect();
    let resolved: u64 = resolve
        .iter()
        .map(|s| s.fields["records"].parse::<u64>().expect("records"))
        .sum();
    assert!(
        resolved >= 6,
        "the resolve spans cover every fetched record: {resolve:?}"
    );
    assert!(resolve.iter().all(|s| s.fields["worker"] == "0"));

    let release: Vec<SeenSpan> = closed("release", "store", "spans-dataflow")
        .into_iter()
        .filter(|s| s.fields["action"] == "Evict")
        .collect();
    let released: u64 = release
        .iter()
        .map(|s| s.fields["objects"].parse::<u64>().expect("objects"))
        .sum();
    assert_eq!(
        released, 6,
        "every object's eviction is in a release span: {release:?}"
    );
    assert!(release.iter().all(|s| s.fields["action"] == "Evict"));
}

#[test]
fn each_zmq_exchange_names_its_peer_operation_sizes_and_outcome() {
    spans();
    let owner = ZmqOptions::default().build().expect("owner peer");
    let reader = ZmqOptions::default().build().expect("reader peer");
    let peer = owner.endpoint().expect("a serving peer").to_string();
    let key = owner.put(Bytes::from(vec![7u8; 3000])).expect("put");
    let got = reader.get(&key).expect("get").expect("stored");
    assert_eq!(got.len(), 3000);
    owner.evict(&key).expect("evict");
    assert!(reader.get(&key).expect("get after evict").is_none());

    let exchanges = closed("zmq.exchange", "peer", &peer);
    let gets: Vec<&SeenSpan> = exchanges
        .iter()
        .filter(|s| s.fields.get("op").map(String::as_str) == Some("get"))
        .collect();
    assert!(
        gets.iter().any(
            |s| s.fields.get("outcome").map(String::as_str) == Some("ok")
                && s.fields.get("received_bytes").map(String::as_str) == Some("3000")
                && s.fields.get("requests").map(String::as_str) == Some("1")
        ),
        "a get of 3000 bytes from {peer}: {exchanges:?}"
    );
    assert!(
        gets.iter()
            .any(|s| s.fields.get("received_bytes").map(String::as_str) == Some("0")),
        "the get after the evict received nothing: {exchanges:?}"
    );
}
