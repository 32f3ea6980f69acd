//! proxy-core's metrics ([`proxy_core::telemetry`]) in the Prometheus text format over HTTP,
//! for binaries: `proxy-peer --metrics-listen ADDR`, and the examples with
//! `PROXYSTORE_METRICS_LISTEN=ADDR`. The page is at `http://ADDR/metrics`; it is not
//! authenticated (it holds counts and peer endpoints, never keys or secrets): bind an address
//! only your scrapers reach.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Buckets of the duration histograms, in seconds (100 us to 10 s).
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder (once per process) and serves `GET /metrics` on
/// `listen` from a thread of its own; returns the address it listens on.
pub fn serve(listen: SocketAddr) -> Result<SocketAddr, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .map_err(|e| format!("could not configure the metrics exporter: {e}"))?
        .install_recorder()
        .map_err(|e| format!("could not install the metrics recorder: {e}"))?;
    proxy_core::telemetry::describe();
    let server = tiny_http::Server::http(listen)
        .map_err(|e| format!("could not listen for metrics on {listen}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("the metrics listener on {listen} has no IP address"))?;
    std::thread::Builder::new()
        .name("metrics-http".to_string())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    handle.run_upkeep();
                    let content_type = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4"[..],
                    );
                    let response = tiny_http::Response::from_string(handle.render());
                    match content_type {
                        Ok(header) => response.with_header(header),
                        Err(()) => response,
                    }
                } else {
                    tiny_http::Response::from_string("not found: metrics are at /metrics\n")
                        .with_status_code(404)
                };
                // A scraper that went away takes its response with it.
                let _ = request.respond(response);
            }
        })
        .map_err(|e| format!("could not start the metrics thread: {e}"))?;
    Ok(bound)
}
