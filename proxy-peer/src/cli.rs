//! The command line: serving options at the top level, client commands as subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use proxy_core::{Key, ZmqOptions};

const AFTER_HELP: &str = "\
Without a subcommand, proxy-peer serves: it prints its endpoint (tcp://HOST:PORT) on the first
line of standard output and serves until SIGINT or SIGTERM.

Environment (command-line options win):
  PROXYSTORE_ZMQ_INTERFACE        --bind
  PROXYSTORE_ZMQ_ADVERTISE        --address
  PROXYSTORE_ZMQ_PORT             --port (a port or a range A-B)
  PROXYSTORE_ZMQ_TIMEOUT          --timeout (5s, 250ms, ...)
  PROXYSTORE_ZMQ_MAX_MESSAGE_SIZE --max-message-size
  PROXYSTORE_ZMQ_MAX_BYTES        --max-bytes
  PROXYSTORE_ZMQ_MAX_CONNECTIONS  --max-connections
  PROXYSTORE_ZMQ_SHM_CAPACITY     --shm-capacity
  PROXYSTORE_ZMQ_SHM_IDLE         --shm-idle
  PROXYSTORE_SECRET_FILE          --secret-file (a file of mode 0600; make one with
                                  `proxy-peer secret new PATH`)
  PROXYSTORE_SECRET_FILE_ANY_MODE --secret-file-any-mode
  PROXYSTORE_PEER                 --peer of the put and stats commands
  RUST_LOG                        log filter (default info), e.g. RUST_LOG=proxy_core=debug";

/// `proxy-peer`: serve proxy-core objects over ZeroMQ, or operate a running peer.
#[derive(Debug, Parser)]
#[command(
    name = "proxy-peer",
    version,
    about = "Serve proxy-core objects over ZeroMQ until SIGINT or SIGTERM, or operate a running peer",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// How to serve (used when no subcommand is given).
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
    /// A client command against a running peer.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Options of the serving peer.
#[derive(Debug, Args, PartialEq)]
pub(crate) struct ServeArgs {
    /// Interface to bind: an address, a host name, or * / 0.0.0.0 for all [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<String>,
    /// Host name or address written into keys [default: the interface, or this host's
    /// reachable address when binding all interfaces]
    #[arg(long, value_name = "HOST")]
    pub(crate) address: Option<String>,
    /// TCP port, or a range A-B of ports to try [default: 0, chosen by the OS]
    #[arg(long, value_name = "PORT|A-B", value_parser = parse_ports)]
    pub(crate) port: Option<(u16, u16)>,
    /// Most bytes held for objects other processes store here: 320 bytes per object, their
    /// bytes on the heap, and the shared memory segments made for them [default:
    /// PROXYSTORE_ZMQ_MAX_BYTES, else 4294967296]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_bytes: Option<u64>,
    /// Client sessions kept (with a secret, puts and evicts come within one; the least
    /// recently used is forgotten beyond this many, and its client opens another)
    /// [default: PROXYSTORE_ZMQ_MAX_SESSIONS, else 65536]
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_sessions: Option<u64>,
    /// Connections kept open; beyond it the oldest connection that has not completed its
    /// handshake (with a secret: shown no valid token) is dropped first, else the newest.
    /// Never more than the open-file limit (which proxy-peer raises to its hard limit at
    /// start) less a quarter [default: PROXYSTORE_ZMQ_MAX_CONNECTIONS, else 4096]
    #[arg(long, value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics (for example 127.0.0.1:9464; the
    /// page is not authenticated: bind an address only your scrapers reach)
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// Most bytes of same-host shared memory segments held [default:
    /// PROXYSTORE_ZMQ_SHM_CAPACITY, else 4294967296]
    #[arg(long, value_name = "BYTES")]
    pub(crate) shm_capacity: Option<u64>,
    /// How long a shared memory segment stays unused before it is returned to the
    /// operating system, in seconds or with a unit (500ms) [default: PROXYSTORE_ZMQ_SHM_IDLE,
    /// else 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) shm_idle: Option<Duration>,
    /// Allow binding an interface other than loopback without a secret (anyone who can
    /// reach the port can then read, store and evict objects) [default: PROXYSTORE_INSECURE]
    #[arg(long)]
    pub(crate) insecure: bool,
    #[command(flatten)]
    pub(crate) limits: Limits,
}

/// Options shared by the server and the client commands.
#[derive(Debug, Args, PartialEq)]
pub(crate) struct Limits {
    /// Timeout of requests to other peers, in seconds (1.5) or with a unit (250ms, 2m) [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) timeout: Option<Duration>,
    /// Largest message (frame) accepted from the network, in bytes [default: 1073741824]
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_message_size: Option<u64>,
    /// File holding the cluster secret that requests prove: at least 16 bytes, readable by
    /// its owner only (mode 0600) [default: PROXYSTORE_SECRET, else PROXYSTORE_SECRET_FILE]
    #[arg(long, value_name = "FILE")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Accept a secret file that its group or others may read [default:
    /// PROXYSTORE_SECRET_FILE_ANY_MODE]
    #[arg(long)]
    pub(crate) secret_file_any_mode: bool,
}

/// Client commands: each talks to the peer named in its key, or to `--peer`.
#[derive(Debug, Subcommand, PartialEq)]
pub(crate) enum Command {
    /// Store FILE on a peer and print its key
    Put {
        /// The file to store
        file: PathBuf,
        /// The peer to store it on (tcp://HOST:PORT, as a serving proxy-peer prints)
        #[arg(long, env = "PROXYSTORE_PEER", value_name = "ENDPOINT")]
        peer: String,
        #[command(flatten)]
        limits: Limits,
    },
    /// Fetch the object of KEY into a file (or standard output)
    Get {
        /// A key as `put` prints it (it names the peer that holds the object, so no --peer)
        key: Key,
        /// Where to write the object [default: standard output]
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Print whether the object of KEY exists (exit status 0 if it does, 1 if not)
    Exists {
        /// A key as `put` prints it (it names the peer that holds the object, so no --peer)
        key: Key,
        #[command(flatten)]
        limits: Limits,
    },
    /// Delete the object of KEY from its peer (evicting a missing object is not an error)
    Evict {
        /// A key as `put` prints it (it names the peer that holds the object, so no --peer)
        key: Key,
        #[command(flatten)]
        limits: Limits,
    },
    /// Print a peer's counters: objects and bytes held, rejected requests, limits
    Stats {
        /// The peer to ask (tcp://HOST:PORT, as a serving proxy-peer prints)
        #[arg(long, env = "PROXYSTORE_PEER", value_name = "ENDPOINT")]
        peer: String,
        #[command(flatten)]
        limits: Limits,
    },
    /// Manage cluster secrets
    #[command(subcommand)]
    Secret(SecretCommand),
}

/// `proxy-peer secret ...`
#[derive(Debug, Subcommand, PartialEq)]
pub(crate) enum SecretCommand {
    /// Write a fresh secret to a new file PATH: 32 random bytes from the operating system,
    /// as 64 hexadecimal characters and a newline, mode 0600 (give the file to every process
    /// of the cluster: --secret-file or PROXYSTORE_SECRET_FILE)
    New {
        /// The file to create (it must not exist, unless --force)
        path: PathBuf,
        /// Replace PATH if it exists (processes still using the old secret stop being
        /// accepted)
        #[arg(long)]
        force: bool,
    },
}

impl Limits {
    /// `options` with these limits applied on top.
    pub(crate) fn apply(&self, mut options: ZmqOptions) -> ZmqOptions {
        if let Some(timeout) = self.timeout {
            options = options.with_timeout(timeout);
        }
        if let Some(size) = self.max_message_size {
            options = options.with_max_message_size(size);
        }
        if let Some(path) = &self.secret_file {
            options = options.with_secret_file(path);
        }
        if self.secret_file_any_mode {
            options = options.with_secret_file_any_mode(true);
        }
        options
    }
}

impl ServeArgs {
    /// `options` (the environment's) with the command line's choices applied on top.
    pub(crate) fn apply(&self, mut options: ZmqOptions) -> ZmqOptions {
        if let Some(bind) = &self.bind {
            options = options.with_interface(bind.as_str());
        }
        if let Some(address) = &self.address {
            options = options.with_address(address.as_str());
        }
        match self.port {
            Some((port, last)) if port == last => options = options.with_port(port),
            Some((first, last)) => options = options.with_port_range(first, last),
            None => {}
        }
        if let Some(sessions) = self.max_sessions {
            options = options.with_max_sessions(usize::try_from(sessions).unwrap_or(usize::MAX));
        }
        if let Some(connections) = self.max_connections {
            options =
                options.with_max_connections(usize::try_from(connections).unwrap_or(usize::MAX));
        }
        if let Some(bytes) = self.max_bytes {
            options = options.with_max_bytes(bytes);
        }
        if let Some(bytes) = self.shm_capacity {
            options = options.with_shared_memory_capacity(bytes);
        }
        if let Some(idle) = self.shm_idle {
            options = options.with_shared_memory_idle(idle);
        }
        if self.insecure {
            options = options.insecure();
        }
        self.limits.apply(options)
    }
}

/// `7000` or `7000-7099`.
fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    let invalid =
        || format!("invalid port {text:?}: expected a port (0-65535) or a range such as 7000-7099");
    let port = |part: &str| part.trim().parse::<u16>().map_err(|_| invalid());
    match text.split_once('-') {
        Some((first, last)) => {
            let (first, last) = (port(first)?, port(last)?);
            if first == 0 || first > last {
                return Err(invalid());
            }
            Ok((first, last))
        }
        None => port(text).map(|p| (p, p)),
    }
}

/// Seconds (`1.5`, `0`) or a duration with a unit (`250ms`, `2m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("invalid duration {text:?}: not a number of seconds"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} (expected seconds or 500ms, 2m, ...)"))
}

/// Seconds (`1.5`) or a duration with a unit (`250ms`, `2m`).
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("invalid timeout {text:?}: not a number of seconds"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid timeout {text:?}: {e} (expected seconds or 250ms, 2m, ...)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("proxy-peer").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serving_options_in_both_forms() {
        for args in [
            &[
                "--bind",
                "0.0.0.0",
                "--address",
                "node-1",
                "--port",
                "7001",
                "--timeout",
                "1.5",
                "--max-message-size",
                "1024",
            ][..],
            &[
                "--bind=0.0.0.0",
                "--address=node-1",
                "--port=7001",
                "--timeout=1500ms",
                "--max-message-size=1024",
            ],
        ] {
            let cli = parse(args).expect("valid");
            assert_eq!(cli.command, None);
            let expected = ZmqOptions::default()
                .with_interface("0.0.0.0")
                .with_address("node-1")
                .with_port(7001)
                .with_timeout(Duration::from_millis(1500))
                .with_max_message_size(1024);
            assert_eq!(cli.serve.apply(ZmqOptions::default()), expected, "{args:?}");
        }
    }

    #[test]
    fn security_options() {
        let cli = parse(&[
            "--insecure",
            "--max-bytes=4096",
            "--max-sessions=100",
            "--max-connections=500",
            "--secret-file",
            "/run/secrets/proxystore",
        ])
        .expect("valid");
        let expected = ZmqOptions::default()
            .insecure()
            .with_max_bytes(4096)
            .with_max_sessions(100)
            .with_max_connections(500)
            .with_secret_file("/run/secrets/proxystore");
        assert_eq!(cli.serve.apply(ZmqOptions::default()), expected);
        let cli = parse(&["--shm-capacity=1048576", "--shm-idle=500ms"]).expect("valid");
        assert_eq!(
            cli.serve.apply(ZmqOptions::default()),
            ZmqOptions::default()
                .with_shared_memory_capacity(1 << 20)
                .with_shared_memory_idle(Duration::from_millis(500))
        );
        assert_eq!(
            parse(&["--shm-idle", "2"])
                .expect("valid")
                .serve
                .apply(ZmqOptions::default())
                .shared_memory_idle(),
            Duration::from_secs(2)
        );
        assert!(parse(&["--shm-idle=soon"]).is_err());
        assert!(parse(&["--shm-capacity=lots"]).is_err());
        let cli = parse(&["--secret-file=/s", "--secret-file-any-mode"]).expect("valid");
        assert_eq!(
            cli.serve.apply(ZmqOptions::default()),
            ZmqOptions::default()
                .with_secret_file("/s")
                .with_secret_file_any_mode(true)
        );
        assert!(parse(&["--max-bytes=lots"]).is_err());
        assert!(parse(&["--max-sessions=0"]).is_err());
        assert!(parse(&["--max-connections=0"]).is_err());
    }

    #[test]
    fn a_port_range() {
        let cli = parse(&["--port=7000-7099"]).expect("valid");
        assert_eq!(cli.serve.apply(ZmqOptions::default()).ports(), (7000, 7099));
    }

    #[test]
    fn client_commands() {
        let key = Key::new("zmq", 0xab).with_peer("tcp://127.0.0.1:7000");
        let text = key.to_string();
        let cli = parse(&["get", &text, "-o", "out.bin", "--timeout=2s"]).expect("valid");
        assert_eq!(
            cli.command,
            Some(Command::Get {
                key: key.clone(),
                output: Some("out.bin".into()),
                limits: Limits {
                    timeout: Some(Duration::from_secs(2)),
                    max_message_size: None,
                    secret_file: None,
                    secret_file_any_mode: false,
                },
            })
        );
        for command in ["exists", "evict"] {
            assert!(parse(&[command, &text]).is_ok(), "{command}");
        }
        let stats =
            parse(&["stats", "--peer", "tcp://127.0.0.1:7000", "--secret-file=s"]).expect("valid");
        assert_eq!(
            stats.command,
            Some(Command::Stats {
                peer: "tcp://127.0.0.1:7000".to_string(),
                limits: Limits {
                    timeout: None,
                    max_message_size: None,
                    secret_file: Some("s".into()),
                    secret_file_any_mode: false,
                },
            })
        );
        let new = parse(&["secret", "new", "/etc/proxystore/secret"]).expect("valid");
        assert_eq!(
            new.command,
            Some(Command::Secret(SecretCommand::New {
                path: "/etc/proxystore/secret".into(),
                force: false,
            }))
        );
        let forced = parse(&["secret", "new", "--force", "s"]).expect("valid");
        assert!(matches!(
            forced.command,
            Some(Command::Secret(SecretCommand::New { force: true, .. }))
        ));
        let put = parse(&["put", "data.bin", "--peer=tcp://127.0.0.1:7000"]).expect("valid");
        assert!(
            matches!(put.command, Some(Command::Put { ref peer, .. }) if peer == "tcp://127.0.0.1:7000")
        );
    }

    #[test]
    fn bad_arguments_are_errors() {
        for bad in [
            &["--port"][..],
            &["--port", "x"],
            &["--port", "70000"],
            &["--port", "7100-7000"],
            &["--timeout", "-1"],
            &["--timeout", "soon"],
            &["--frobnicate", "1"],
            &["get", "not-a-key"],
            &[
                "--port=7000",
                "get",
                "zmq:000000000000000000000000000000ab@tcp://h:1",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
