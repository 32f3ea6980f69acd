//! Set-up shared by the examples (not every example uses every item).
#![allow(dead_code)]

use proxy_core::{register_store, Store, ZmqConnector, ZmqOptions};

/// What [`init_logging`] set up that must live as long as the example: the Chrome trace
/// file is written out when this is dropped (keep it bound: `let _telemetry = ...`).
pub(crate) struct Telemetry {
    _chrome: Option<tracing_chrome::FlushGuard>,
}

/// Logs to standard error, filtered by `RUST_LOG` (default `warn`); `RUST_LOG=debug` shows
/// every put, get, resolve and evict. With `PROXYSTORE_TRACE_CHROME=FILE`, also writes the
/// libraries' spans (`proxy`, `resolve`, `release`, `zmq.exchange`, at debug level) to FILE
/// as a Chrome trace (open it in `chrome://tracing` or <https://ui.perfetto.dev>); with
/// `PROXYSTORE_METRICS_LISTEN=ADDR`, serves Prometheus metrics.
pub(crate) fn init_logging() -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log redirected to a file carries no escape codes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_filter(filter);
    let (chrome, guard) =
        match std::env::var_os("PROXYSTORE_TRACE_CHROME").filter(|p| !p.is_empty()) {
            Some(path) => {
                let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new()
                    .file(path)
                    .trace_style(tracing_chrome::TraceStyle::Async)
                    .include_args(true)
                    .build();
                let spans = tracing_subscriber::filter::Targets::new()
                    .with_target("proxy_core", tracing::Level::DEBUG)
                    .with_target("dataflow_plugin", tracing::Level::DEBUG);
                (Some(layer.with_filter(spans)), Some(guard))
            }
            None => (None, None),
        };
    tracing_subscriber::registry().with(log).with(chrome).init();
    serve_metrics();
    Telemetry { _chrome: guard }
}

/// With `PROXYSTORE_METRICS_LISTEN=ADDR` (for example `127.0.0.1:9464`), serves this
/// process's metrics for Prometheus at `http://ADDR/metrics`, as `proxy-peer
/// --metrics-listen` does. A bad address is reported and the example goes on.
fn serve_metrics() {
    let Some(listen) = std::env::var("PROXYSTORE_METRICS_LISTEN")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return;
    };
    let served = listen
        .trim()
        .parse()
        .map_err(|e| format!("{listen:?} is not an address such as 127.0.0.1:9464: {e}"))
        .and_then(proxystore_metrics_http::serve);
    match served {
        Ok(bound) => {
            tracing::info!(metrics = %format_args!("http://{bound}/metrics"), "serving metrics")
        }
        Err(message) => tracing::warn!(%message, "PROXYSTORE_METRICS_LISTEN: not serving metrics"),
    }
}

/// Timely's own command-line arguments, parsed with clap (so `--help`, `--version` and
/// `--threads=4` work) and handed on to `timely::execute_from_args`. `-h` is timely's host
/// file, so help is `--help` only.
#[derive(Debug, clap::Parser)]
#[command(
    version,
    disable_help_flag = true,
    about = "Runs this example on a timely cluster; the options are timely's own",
    long_about = None
)]
pub(crate) struct TimelyCli {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Worker threads per process
    #[arg(short = 'w', long = "threads", value_name = "NUM", default_value_t = 2)]
    threads: usize,
    /// Processes in the cluster
    #[arg(
        short = 'n',
        long = "processes",
        value_name = "NUM",
        default_value_t = 1
    )]
    processes: usize,
    /// This process's index in the cluster
    #[arg(short = 'p', long = "process", value_name = "IDX", default_value_t = 0)]
    process: usize,
    /// Text file whose lines are the processes' addresses (host:port)
    #[arg(short = 'h', long = "hostfile", value_name = "FILE")]
    hostfile: Option<std::path::PathBuf>,
    /// Report connection progress
    #[arg(short = 'r', long = "report")]
    report: bool,
}

impl TimelyCli {
    /// The arguments as timely's own parser expects them.
    pub(crate) fn timely_args(&self) -> Vec<String> {
        let mut args = vec![
            "-w".to_string(),
            self.threads.to_string(),
            "-n".to_string(),
            self.processes.to_string(),
            "-p".to_string(),
            self.process.to_string(),
        ];
        if let Some(hostfile) = &self.hostfile {
            args.push("-h".to_string());
            args.push(hostfile.to_string_lossy().into_owned());
        }
        if self.report {
            args.push("-r".to_string());
        }
        args
    }
}

/// Timely's arguments for this run, from the command line (default: two worker threads).
pub(crate) fn timely_args() -> Vec<String> {
    <TimelyCli as clap::Parser>::parse().timely_args()
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

/// A scratch directory `<tmp>/<name>-<pid>` holding a timely hostfile for `processes`
/// processes on loopback; returns the directory (for [`relay_cluster`] to remove) and the
/// hostfile. The ports are below the kernel's ephemeral range, so the OS-chosen ports of
/// the ZeroMQ peers cannot take them before timely binds them.
pub(crate) fn loopback_hostfile(
    name: &str,
    processes: usize,
) -> Result<(std::path::PathBuf, std::path::PathBuf), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let hostfile = dir.join("hosts");
    let hosts: String = proxy_core::testing::free_loopback_ports(processes)?
        .into_iter()
        .map(|port| format!("127.0.0.1:{port}\n"))
        .collect();
    std::fs::write(&hostfile, hosts)?;
    Ok((dir, hostfile))
}

/// Waits for the processes of a cluster this example started, printing each one's standard
/// output (piped) line by line with `indent` before it, process by process; then removes
/// `dir` (the cluster's hostfile and scratch). Fails if any process failed.
pub(crate) fn relay_cluster(
    children: Vec<std::process::Child>,
    indent: &str,
    dir: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::BufRead;
    let mut failed = false;
    for (process, mut child) in children.into_iter().enumerate() {
        if let Some(out) = child.stdout.take() {
            for line in std::io::BufReader::new(out).lines() {
                println!("{indent}{}", line?);
            }
        }
        let status = child.wait()?;
        if !status.success() {
            eprintln!("process {process} failed: {status}");
            failed = true;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    if failed {
        return Err("a process of the cluster failed".into());
    }
    Ok(())
}
