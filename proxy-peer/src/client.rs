//! The client commands: one request each to the peer a key names (or `--peer`).

use std::io::Write;
use std::process::ExitCode;

use bytes::Bytes;
use proxy_core::{Connector, Error, PeerStats, ZmqConnector, ZmqOptions};

use crate::cli::{Command, Limits, SecretCommand};

/// Runs one client command; its result goes to standard output.
pub(crate) fn run(command: Command) -> proxy_core::Result<ExitCode> {
    match command {
        Command::Put { file, peer, limits } => {
            let data = std::fs::read(&file).map_err(|source| Error::Io {
                action: "read",
                path: file.clone(),
                source,
            })?;
            let size = data.len();
            let key = client(&limits)?.put_to(&peer, Bytes::from(data))?;
            tracing::info!(%key, size, file = %file.display(), "stored");
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            key,
            output,
            limits,
        } => {
            let Some(data) = client(&limits)?.get(&key)? else {
                tracing::error!(%key, "no such object");
                return Ok(ExitCode::FAILURE);
            };
            let written = match &output {
                Some(path) => std::fs::write(path, &data).map_err(|source| Error::Io {
                    action: "write",
                    path: path.clone(),
                    source,
                }),
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(&data)
                        .and_then(|()| stdout.flush())
                        .map_err(|source| Error::Io {
                            action: "write",
                            path: "<standard output>".into(),
                            source,
                        })
                }
            };
            written?;
            tracing::info!(%key, size = data.len(), "fetched");
            Ok(ExitCode::SUCCESS)
        }
        Command::Exists { key, limits } => {
            let exists = client(&limits)?.exists(&key)?;
            println!("{exists}");
            Ok(if exists {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Evict { key, limits } => {
            client(&limits)?.evict(&key)?;
            tracing::info!(%key, "evicted");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats { peer, limits } => {
            let stats = client(&limits)?.peer_stats(&peer)?;
            print!("{}", stats_text(&stats));
            Ok(ExitCode::SUCCESS)
        }
        Command::Secret(SecretCommand::New { path, force }) => {
            ZmqOptions::create_secret_file(&path, force)?;
            // The path only: the secret is never printed.
            tracing::info!(path = %path.display(), "wrote a new cluster secret (mode 0600)");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One `name: value` line per counter (values in plain numbers, for scripts).
fn stats_text(stats: &PeerStats) -> String {
    format!(
        "objects: {}\nbytes: {}\nrejected requests: {}\nrequests: {}\nremote bytes: {}\nmax bytes: {}\nquota used: {}\nmax message size: {}\nshared memory bytes: {}\nshared memory reserved: {}\nshared memory reserved for remote puts: {}\nshared memory capacity: {}\n",
        stats.objects,
        stats.bytes,
        stats.rejected_requests,
        stats.requests,
        stats.remote_bytes,
        stats.max_bytes,
        stats.quota_used,
        stats.max_message_size,
        stats.shared_memory_bytes,
        stats.shared_memory_reserved,
        stats.shared_memory_remote_reserved,
        stats.shared_memory_capacity,
    )
}

/// A connector that serves nothing, with the environment's settings and `limits`.
fn client(limits: &Limits) -> proxy_core::Result<ZmqConnector> {
    ZmqConnector::client(limits.apply(ZmqOptions::from_env()?))
}
