//! `proxy-peer`: a standalone ZeroMQ peer that serves objects with no dataflow running, and
//! client commands (`put`, `get`, `exists`, `evict`, `stats`) to operate one, and `secret
//! new PATH` to make a cluster secret file.
//!
//! Serving, it prints its endpoint on the first line of standard output, serves until SIGINT
//! or SIGTERM, then stops its server and exits with status 0. Clients store objects on it with
//! `ZmqConnector::put_to` (or `proxy-peer put`) and read them with any `ZmqConnector` (the
//! keys name the peer). Logs go to standard error, filtered by `RUST_LOG` (default `info`).

mod cli;
mod client;
mod serve;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log redirected to a file carries no escape codes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let outcome = match cli.command {
        None => serve::serve(&cli.serve),
        Some(command) => client::run(command),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
