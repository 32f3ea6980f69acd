//! `ZmqOptions` (how a peer binds, waits and what it accepts) and `ZmqConfig` (what travels).
//!
//! Settings come from explicit options, then environment variables, then defaults: start
//! from [`ZmqOptions::from_env`] and call `with_*` for what the program decides itself.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::Secret;
use super::secret::{self, ENV_SECRET_FILE_ANY_MODE};
use super::ZmqConnector;
use crate::error::{Error, Result};

/// Default time a request may wait for a silent peer.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default minimum rate of a transfer a request waits for: 1 MiB/s.
pub(crate) const DEFAULT_MIN_RATE: u64 = 1 << 20;
/// Default largest message (frame) a peer accepts from the network: 1 GiB.
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 30;

/// The interface to bind (`PROXYSTORE_ZMQ_INTERFACE`).
pub(crate) const ENV_INTERFACE: &str = "PROXYSTORE_ZMQ_INTERFACE";
/// The host name or address written into keys (`PROXYSTORE_ZMQ_ADVERTISE`).
pub(crate) const ENV_ADVERTISE: &str = "PROXYSTORE_ZMQ_ADVERTISE";
/// The port, or a range `A-B` of ports, to bind (`PROXYSTORE_ZMQ_PORT`).
pub(crate) const ENV_PORT: &str = "PROXYSTORE_ZMQ_PORT";
/// The request timeout, such as `5s` or `250ms` (`PROXYSTORE_ZMQ_TIMEOUT`).
pub(crate) const ENV_TIMEOUT: &str = "PROXYSTORE_ZMQ_TIMEOUT";
/// Sessions a peer with a secret keeps (`PROXYSTORE_ZMQ_MAX_SESSIONS`).
pub(crate) const ENV_MAX_SESSIONS: &str = "PROXYSTORE_ZMQ_MAX_SESSIONS";
/// Connections a peer server keeps open (`PROXYSTORE_ZMQ_MAX_CONNECTIONS`).
pub(crate) const ENV_MAX_CONNECTIONS: &str = "PROXYSTORE_ZMQ_MAX_CONNECTIONS";
/// Default limit on the connections a peer server keeps open (see
/// [`ZmqOptions::with_max_connections`]).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long requests to a peer that timed out fail at once (`PROXYSTORE_ZMQ_COOLDOWN`).
pub(crate) const ENV_COOLDOWN: &str = "PROXYSTORE_ZMQ_COOLDOWN";
/// The minimum rate of a transfer, in bytes per second; 0 turns it off
/// (`PROXYSTORE_ZMQ_MIN_RATE`).
pub(crate) const ENV_MIN_RATE: &str = "PROXYSTORE_ZMQ_MIN_RATE";
/// The largest message accepted, in bytes (`PROXYSTORE_ZMQ_MAX_MESSAGE_SIZE`).
pub(crate) const ENV_MAX_MESSAGE_SIZE: &str = "PROXYSTORE_ZMQ_MAX_MESSAGE_SIZE";
/// The most bytes held for remote puts (`PROXYSTORE_ZMQ_MAX_BYTES`).
pub(crate) const ENV_MAX_BYTES: &str = "PROXYSTORE_ZMQ_MAX_BYTES";
/// The cluster secret (`PROXYSTORE_SECRET`), read when a connector is built.
pub(crate) const ENV_SECRET: &str = "PROXYSTORE_SECRET";
/// A file holding the cluster secret (`PROXYSTORE_SECRET_FILE`), read when a connector is
/// built.
pub(crate) const ENV_SECRET_FILE: &str = "PROXYSTORE_SECRET_FILE";
/// `1` allows binding a non-loopback interface without a secret (`PROXYSTORE_INSECURE`).
pub(crate) const ENV_INSECURE: &str = "PROXYSTORE_INSECURE";
/// Default limit on the bytes a peer holds for remote puts: 4 GiB.
pub(crate) const DEFAULT_MAX_BYTES: u64 = 4 << 30;
/// `0` turns same-host shared memory off, `1` on (`PROXYSTORE_ZMQ_SHM`).
pub(crate) const ENV_SHM: &str = "PROXYSTORE_ZMQ_SHM";
/// Smallest object kept in shared memory, in bytes (`PROXYSTORE_ZMQ_SHM_MIN_SIZE`).
pub(crate) const ENV_SHM_MIN_SIZE: &str = "PROXYSTORE_ZMQ_SHM_MIN_SIZE";
/// Most bytes of shared memory a peer creates (`PROXYSTORE_ZMQ_SHM_CAPACITY`).
pub(crate) const ENV_SHM_CAPACITY: &str = "PROXYSTORE_ZMQ_SHM_CAPACITY";
/// How long a shared memory segment stays unused before it is returned to the operating
/// system, such as `30s` (`PROXYSTORE_ZMQ_SHM_IDLE`).
pub(crate) const ENV_SHM_IDLE: &str = "PROXYSTORE_ZMQ_SHM_IDLE";
/// Objects to make shared memory room for when the peer starts, as `LENxCOUNT` in bytes,
/// such as `1048576x32` (`PROXYSTORE_ZMQ_SHM_PREWARM`).
pub(crate) const ENV_SHM_PREWARM: &str = "PROXYSTORE_ZMQ_SHM_PREWARM";
/// `1` makes gets copy objects out of another process's shared memory
/// (`PROXYSTORE_ZMQ_SHM_COPY_ON_READ`).
pub(crate) const ENV_SHM_COPY_ON_READ: &str = "PROXYSTORE_ZMQ_SHM_COPY_ON_READ";
/// Default smallest object kept in shared memory: 64 KiB (below it a TCP reply costs about
/// as much as mapping, pinning and the extra descriptor check).
pub(crate) const DEFAULT_SHM_MIN_SIZE: u64 = 64 << 10;
/// Default most bytes of shared memory segments a peer creates: 4 GiB.
pub(crate) const DEFAULT_SHM_CAPACITY: u64 = 4 << 30;
/// Default time a shared memory segment stays unused (no object, no reader's pin) before it
/// is returned to the operating system: 30 s (long enough that steady traffic keeps its
/// pre-faulted segments, short enough that memory comes back soon after a burst).
pub(crate) const DEFAULT_SHM_IDLE: Duration = Duration::from_secs(30);

/// Options of a [`ZmqConnector`], set builder style and finished with [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use proxy_core::ZmqOptions;
///
/// let connector = ZmqOptions::default()
///     .with_interface("127.0.0.1")
///     .with_port(0) // the OS picks one
///     .with_timeout(Duration::from_secs(2))
///     .with_max_message_size(256 << 20)
///     .build()?;
/// assert!(connector.endpoint().unwrap().starts_with("tcp://127.0.0.1:"));
/// # Ok::<(), proxy_core::Error>(())
/// ```
///
/// The same settings from the environment, with the program's own choices on top:
///
/// ```
/// use proxy_core::ZmqOptions;
///
/// // PROXYSTORE_ZMQ_INTERFACE, _ADVERTISE, _PORT, _TIMEOUT, _MAX_MESSAGE_SIZE if set,
/// // then the program's explicit choice of port, which wins over PROXYSTORE_ZMQ_PORT.
/// let options = ZmqOptions::from_env()?.with_port(0);
/// assert_eq!(options.ports(), (0, 0));
/// # Ok::<(), proxy_core::Error>(())
/// ```
///
/// Security options: [`with_secret`](Self::with_secret) /
/// [`with_secret_file`](Self::with_secret_file) (else `PROXYSTORE_SECRET`, else
/// `PROXYSTORE_SECRET_FILE`, read when the connector is built), [`insecure`](Self::insecure)
/// (else `PROXYSTORE_INSECURE=1`) and [`with_max_bytes`](Self::with_max_bytes). The secret
/// is never serialized nor shown by `Debug`: a connector rebuilt from a configuration in
/// another process takes that process's own secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[must_use = "options do nothing until a connector is built from them"]
pub struct ZmqOptions {
    interface: String,
    address: Option<String>,
    /// First and last port to try; `(0, 0)`: the OS chooses.
    ports: (u16, u16),
    timeout: Duration,
    /// How long requests to a peer that timed out fail at once; `None`: the timeout.
    #[serde(default)]
    cooldown: Option<Duration>,
    /// Least bytes per second a request's connection must move once it has waited a
    /// window (0: no floor).
    #[serde(default = "default_min_rate")]
    min_rate: u64,
    max_message_size: u64,
    /// Where this connector's puts go.
    placement: Placement,
    /// Limit on bytes held for remote puts.
    #[serde(default = "default_max_bytes")]
    max_bytes: u64,
    /// Binding a non-loopback interface without a secret is allowed.
    #[serde(default)]
    insecure: bool,
    /// Sessions kept by a peer with a secret (this process's server setting: never taken
    /// from a configuration).
    #[serde(skip, default = "default_max_sessions")]
    max_sessions: usize,
    /// Connections kept open by this process's peer server (a server setting: never taken
    /// from a configuration).
    #[serde(skip, default = "default_max_connections")]
    max_connections: usize,
    #[serde(skip)]
    secret: Option<Secret>,
    #[serde(skip)]
    secret_file: Option<PathBuf>,
    /// The length of a secret given to [`with_secret`](Self::with_secret) that is too
    /// short (refused when the options are resolved; the secret itself is not kept). A
    /// `u8` (it is below [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN)) keeps the options small.
    #[serde(skip)]
    secret_too_short: Option<u8>,
    /// A secret file that its group or others may read is accepted.
    #[serde(skip)]
    secret_file_any_mode: bool,
    /// Same-host shared memory (this host's choice: never taken from a configuration).
    #[serde(skip, default = "SharedMemory::default")]
    shm: SharedMemory,
}

/// The shared memory settings of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SharedMemory {
    /// Whether large objects go to shared memory and gets ask for descriptors.
    pub(crate) enabled: bool,
    /// Smallest object kept in shared memory.
    pub(crate) min_size: u64,
    /// Most bytes of segments created.
    pub(crate) capacity: u64,
    /// Gets copy objects out of another process's shared memory instead of reading them in
    /// place.
    pub(crate) copy_on_read: bool,
    /// How long a segment stays unused before it is returned to the operating system.
    pub(crate) idle: Duration,
    /// Objects (length, count) to create pre-faulted room for when the peer starts.
    pub(crate) prewarm: (u64, u32),
}

impl Default for SharedMemory {
    fn default() -> Self {
        SharedMemory {
            enabled: true,
            min_size: DEFAULT_SHM_MIN_SIZE,
            capacity: DEFAULT_SHM_CAPACITY,
            copy_on_read: false,
            idle: DEFAULT_SHM_IDLE,
            prewarm: (0, 0),
        }
    }
}

/// Where the puts of a [`ZmqConnector`] go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Placement {
    /// Into this process's own peer server, started on the first put (the default).
    Here,
    /// To the peer at this endpoint (for example a standalone `proxy-peer`).
    Remote(String),
    /// Nowhere: this connector only reads; a put is an error.
    ClientOnly,
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

fn default_min_rate() -> u64 {
    DEFAULT_MIN_RATE
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_max_sessions() -> usize {
    super::auth::DEFAULT_MAX_SESSIONS
}

impl Default for ZmqOptions {
    fn default() -> Self {
        ZmqOptions {
            interface: "127.0.0.1".to_string(),
            address: None,
            ports: (0, 0),
            timeout: DEFAULT_TIMEOUT,
            cooldown: None,
            min_rate: DEFAULT_MIN_RATE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            placement: Placement::Here,
            max_bytes: DEFAULT_MAX_BYTES,
            insecure: false,
            max_sessions: super::auth::DEFAULT_MAX_SESSIONS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            secret: None,
            secret_file: None,
            secret_too_short: None,
            secret_file_any_mode: false,
            shm: SharedMemory::default(),
        }
    }
}

impl ZmqOptions {
    /// The defaults overridden by the environment variables that are set (an empty
    /// variable counts as unset):
    ///
    /// | variable | setting | example |
    /// |---|---|---|
    /// | `PROXYSTORE_ZMQ_INTERFACE` | [`with_interface`](Self::with_interface) | `10.0.0.5`, `0.0.0.0` |
    /// | `PROXYSTORE_ZMQ_ADVERTISE` | [`with_address`](Self::with_address) | `node-3` |
    /// | `PROXYSTORE_ZMQ_PORT` | [`with_port`](Self::with_port) or [`with_port_range`](Self::with_port_range) | `7000`, `7000-7099` |
    /// | `PROXYSTORE_ZMQ_TIMEOUT` | [`with_timeout`](Self::with_timeout) | `5s`, `250ms`, `1m 30s` |
    /// | `PROXYSTORE_ZMQ_COOLDOWN` | [`with_peer_cooldown`](Self::with_peer_cooldown) | `10s`, `0s` |
    /// | `PROXYSTORE_ZMQ_MIN_RATE` | [`with_min_rate`](Self::with_min_rate) | `1048576`, `0` (off) |
    /// | `PROXYSTORE_ZMQ_MAX_MESSAGE_SIZE` | [`with_max_message_size`](Self::with_max_message_size) | `268435456` |
    /// | `PROXYSTORE_ZMQ_MAX_BYTES` | [`with_max_bytes`](Self::with_max_bytes) | `8589934592` |
    /// | `PROXYSTORE_ZMQ_MAX_SESSIONS` | [`with_max_sessions`](Self::with_max_sessions) | `65536` |
    /// | `PROXYSTORE_ZMQ_MAX_CONNECTIONS` | [`with_max_connections`](Self::with_max_connections) | `4096` |
    /// | `PROXYSTORE_ZMQ_SHM` | [`with_shared_memory`](Self::with_shared_memory) | `0`, `1` |
    /// | `PROXYSTORE_ZMQ_SHM_MIN_SIZE` | [`with_shared_memory_min_size`](Self::with_shared_memory_min_size) | `65536` |
    /// | `PROXYSTORE_ZMQ_SHM_CAPACITY` | [`with_shared_memory_capacity`](Self::with_shared_memory_capacity) | `4294967296` |
    /// | `PROXYSTORE_ZMQ_SHM_IDLE` | [`with_shared_memory_idle`](Self::with_shared_memory_idle) | `30s`, `500ms` |
    /// | `PROXYSTORE_ZMQ_SHM_PREWARM` | [`with_shared_memory_prewarm`](Self::with_shared_memory_prewarm) | `1048576x32` |
    /// | `PROXYSTORE_ZMQ_SHM_COPY_ON_READ` | [`with_shared_memory_copy_on_read`](Self::with_shared_memory_copy_on_read) | `0`, `1` |
    ///
    /// The secret (`PROXYSTORE_SECRET`, `PROXYSTORE_SECRET_FILE`) and
    /// `PROXYSTORE_INSECURE` are read by every connector when it is built, whether its
    /// options came from here or not, unless set explicitly.
    ///
    /// Explicit options beat the environment: call `with_*` on the result. A malformed
    /// variable is an [`Error::Config`] naming it.
    pub fn from_env() -> Result<Self> {
        Self::default().with_vars(|name| std::env::var(name).ok())
    }

    /// These options overridden by the variables that `lookup` finds (see
    /// [`from_env`](Self::from_env)).
    pub(crate) fn with_vars(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        // Each setting is checked as it is applied, so that an error names its variable.
        let checked = |options: Self, variable: &str| match options.validate() {
            Ok(()) => Ok(options),
            Err(Error::Config { message, .. }) => Err(env_error(variable, message)),
            Err(other) => Err(other),
        };
        if let Some(interface) = var(ENV_INTERFACE) {
            self.interface = interface.trim().to_string();
            self = checked(self, ENV_INTERFACE)?;
        }
        if let Some(address) = var(ENV_ADVERTISE) {
            self.address = Some(address.trim().to_string());
            self = checked(self, ENV_ADVERTISE)?;
        }
        if let Some(ports) = var(ENV_PORT) {
            self.ports = parse_ports(&ports).ok_or_else(|| {
                env_error(
                    ENV_PORT,
                    format!(
                        "{ports:?} is not a port (0-65535) or a range of ports such as 7000-7099"
                    ),
                )
            })?;
        }
        if let Some(timeout) = var(ENV_TIMEOUT) {
            self.timeout = humantime::parse_duration(timeout.trim()).map_err(|e| {
                env_error(
                    ENV_TIMEOUT,
                    format!("{timeout:?} is not a duration such as 5s or 250ms: {e}"),
                )
            })?;
            self = checked(self, ENV_TIMEOUT)?;
        }
        if let Some(cooldown) = var(ENV_COOLDOWN) {
            self.cooldown = Some(humantime::parse_duration(cooldown.trim()).map_err(|e| {
                env_error(
                    ENV_COOLDOWN,
                    format!("{cooldown:?} is not a duration such as 10s or 0s: {e}"),
                )
            })?);
        }
        if let Some(rate) = var(ENV_MIN_RATE) {
            self.min_rate = rate.trim().parse().map_err(|_| {
                env_error(
                    ENV_MIN_RATE,
                    format!("{rate:?} is not a number of bytes per second (0 turns it off)"),
                )
            })?;
        }
        if let Some(size) = var(ENV_MAX_MESSAGE_SIZE) {
            self.max_message_size = size.trim().parse().map_err(|_| {
                env_error(
                    ENV_MAX_MESSAGE_SIZE,
                    format!("{size:?} is not a number of bytes"),
                )
            })?;
            self = checked(self, ENV_MAX_MESSAGE_SIZE)?;
        }
        if let Some(bytes) = var(ENV_MAX_BYTES) {
            self.max_bytes = bytes.trim().parse().map_err(|_| {
                env_error(ENV_MAX_BYTES, format!("{bytes:?} is not a number of bytes"))
            })?;
        }
        // A count of at least 1 from `text`, the value of variable `name`.
        let at_least_one = |name: &str, text: &str, what: &str| {
            text.trim()
                .parse()
                .ok()
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| {
                    env_error(
                        name,
                        format!("{text:?} is not a number of {what} (at least 1)"),
                    )
                })
        };
        if let Some(sessions) = var(ENV_MAX_SESSIONS) {
            self.max_sessions = at_least_one(ENV_MAX_SESSIONS, &sessions, "sessions")?;
        }
        if let Some(connections) = var(ENV_MAX_CONNECTIONS) {
            self.max_connections = at_least_one(ENV_MAX_CONNECTIONS, &connections, "connections")?;
        }
        if let Some(on) = var(ENV_SHM) {
            self.shm.enabled = match on.trim() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(env_error(ENV_SHM, format!("{on:?} is not 0 or 1"))),
            };
        }
        if let Some(on) = var(ENV_SHM_COPY_ON_READ) {
            self.shm.copy_on_read = match on.trim() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    return Err(env_error(
                        ENV_SHM_COPY_ON_READ,
                        format!("{on:?} is not 0 or 1"),
                    ))
                }
            };
        }
        if let Some(bytes) = var(ENV_SHM_MIN_SIZE) {
            self.shm.min_size = bytes.trim().parse().map_err(|_| {
                env_error(
                    ENV_SHM_MIN_SIZE,
                    format!("{bytes:?} is not a number of bytes"),
                )
            })?;
        }
        if let Some(bytes) = var(ENV_SHM_CAPACITY) {
            self.shm.capacity = bytes.trim().parse().map_err(|_| {
                env_error(
                    ENV_SHM_CAPACITY,
                    format!("{bytes:?} is not a number of bytes"),
                )
            })?;
        }
        if let Some(text) = var(ENV_SHM_PREWARM) {
            let parsed = text.trim().split_once('x').and_then(|(len, count)| {
                Some((
                    len.trim().parse::<u64>().ok()?,
                    count.trim().parse::<u32>().ok()?,
                ))
            });
            self.shm.prewarm = parsed.ok_or_else(|| {
                env_error(
                    ENV_SHM_PREWARM,
                    format!("{text:?} is not LENxCOUNT, such as 1048576x32 (bytes x objects)"),
                )
            })?;
        }
        if let Some(idle) = var(ENV_SHM_IDLE) {
            self.shm.idle = humantime::parse_duration(idle.trim()).map_err(|e| {
                env_error(
                    ENV_SHM_IDLE,
                    format!("{idle:?} is not a duration such as 30s or 500ms: {e}"),
                )
            })?;
        }
        Ok(self)
    }

    /// The interface the peer server binds: an IP address, a host name, or `*` / `0.0.0.0`
    /// for all interfaces (then the address written into keys, unless set with
    /// [`with_address`](Self::with_address), is this host's name if it resolves to a
    /// non-loopback address, else the address of its first non-loopback interface). Default
    /// `127.0.0.1`.
    pub fn with_interface(mut self, interface: impl Into<String>) -> Self {
        self.interface = interface.into();
        self
    }

    /// The host name or address other peers use to reach this one, written into every key.
    /// Default: the interface.
    pub fn with_address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The TCP port of the peer server; 0 (the default) lets the OS choose.
    pub fn with_port(mut self, port: u16) -> Self {
        self.ports = (port, port);
        self
    }

    /// The ports the peer server may bind, from `first` to `last` inclusive: it takes the
    /// first one that is free (for firewalls that open a range).
    pub fn with_port_range(mut self, first: u16, last: u16) -> Self {
        self.ports = (first, last);
        self
    }

    /// How long a request waits for a peer that does not answer before failing with
    /// [`Error::Timeout`]. In a batch, the time allowed between two replies. Default 5 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long requests to a peer fail at once after one of them timed out, so that a dead
    /// or silent peer costs its callers one timeout rather than one per request (a batch of
    /// records owned by a host that went away fails in about one timeout). During the
    /// cool-down, requests to that peer fail with [`Error::Timeout`] saying they were not
    /// sent; the first request after it is sent as usual, and any answer ends the cool-down.
    /// Every connector of the process shares what it learnt about a peer. Default: the
    /// timeout; zero turns it off for this connector (its requests are always sent, and its
    /// timeouts start no cool-down).
    pub fn with_peer_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = Some(cooldown);
        self
    }

    /// The least rate, in bytes per second, at which a request's connection must move data
    /// once the request has waited a window (its timeout, at least 1 s): a peer that moves
    /// fewer bytes in a window (one that trickles a reply, or sends only ZMTP heartbeats)
    /// fails the request with [`Error::TooSlow`](crate::Error::TooSlow) naming it. Replies restart the window.
    /// Default 1 MiB/s; 0 turns the floor off (then only silence ends a request).
    pub fn with_min_rate(mut self, bytes_per_second: u64) -> Self {
        self.min_rate = bytes_per_second;
        self
    }

    /// The largest frame accepted from the network, in bytes, both by the peer server (a
    /// larger request drops the connection that sent it) and by this connector's client
    /// sockets (a larger reply does the same, and the request then times out). Default 1 GiB.
    pub fn with_max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How many client sessions a peer server with a secret keeps (default 65,536, about
    /// 100 bytes each). A put or evict must come within a session: a client opens one with
    /// its first request to a peer and numbers its requests in it, so a replayed request is
    /// refused (see `proxy-core/ZMQ.md`). Beyond this many, opening a session forgets the
    /// least recently used one; a client whose session was forgotten opens a new one and
    /// sends its request again, so the limit bounds memory without refusing anyone who is
    /// still at work. Raise it above the number of client threads of the whole cluster that
    /// write to this peer.
    pub fn with_max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions.max(1);
        self
    }

    /// How many client sessions a peer server with a secret keeps.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// How many connections this process's peer server keeps open (default 4,096). Each
    /// takes a file descriptor, and a client that opens connections and sends nothing could
    /// otherwise take them all. Beyond the limit the server drops a connection: first the
    /// oldest that has not completed the ZeroMQ handshake (with a secret: has not shown a
    /// valid connection token; without one: has not spoken ZeroMQ), else the newest, so that
    /// established clients keep theirs. The server never keeps more than its soft open-file
    /// limit (`RLIMIT_NOFILE`) less a quarter of it (at least 64 descriptors), whatever this
    /// says: under `ulimit -n 1024` at most 768. Each connection of a client without the
    /// secret holds at most about 64 KiB of the peer's memory (see `proxy-core/ZMQ.md`,
    /// Limits and the memory budget). Each client thread keeps one connection to each peer
    /// it talks to: raise the limit (and the open-file limit) above the number of client
    /// threads of the whole cluster that talk to this peer, or the newest are turned away.
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How many connections this process's peer server keeps open.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Whether the endpoint written into keys is an address set explicitly
    /// ([`with_address`](Self::with_address), `PROXYSTORE_ZMQ_ADVERTISE`).
    pub(crate) fn advertises_address(&self) -> bool {
        self.address.is_some()
    }

    /// The interface the peer server binds.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The address written into keys, if set explicitly (otherwise the interface, or a
    /// detected one when binding all interfaces).
    pub fn address(&self) -> Option<&str> {
        self.address.as_deref()
    }

    /// The first and last port the server may bind; `(0, 0)` lets the OS choose.
    pub fn ports(&self) -> (u16, u16) {
        self.ports
    }

    /// How long a request waits for a silent peer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long requests to a peer fail at once after one of them timed out (see
    /// [`with_peer_cooldown`](Self::with_peer_cooldown)).
    pub fn peer_cooldown(&self) -> Duration {
        self.cooldown.unwrap_or(self.timeout)
    }

    /// The least rate of a transfer a request waits for, in bytes per second (0: none).
    pub fn min_rate(&self) -> u64 {
        self.min_rate
    }

    /// The largest frame accepted from the network, in bytes.
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// Puts go to the peer at `peer` (`tcp://HOST:PORT`, for example a standalone
    /// `proxy-peer`) instead of into this process: the connector never starts a server of
    /// its own, and a [`Store`](crate::Store) on it puts and proxies as any other. Gets of
    /// any peer's keys work as usual.
    pub fn with_remote(mut self, peer: impl Into<String>) -> Self {
        self.placement = Placement::Remote(peer.into());
        self
    }

    /// This connector only reads other peers' objects and never serves any: it binds
    /// nothing, and a put fails with [`Error::Config`] (for a login node or a process that
    /// must not open ports).
    pub fn with_client_only(mut self) -> Self {
        self.placement = Placement::ClientOnly;
        self
    }

    /// The peer this connector's puts go to, if set with [`with_remote`](Self::with_remote).
    pub fn remote(&self) -> Option<&str> {
        match &self.placement {
            Placement::Remote(peer) => Some(peer),
            _ => None,
        }
    }

    /// Whether this connector was made client-only ([`with_client_only`](Self::with_client_only)).
    pub fn is_client_only(&self) -> bool {
        self.placement == Placement::ClientOnly
    }

    /// Where this connector's puts go.
    pub(crate) fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The options a connector rebuilt in this process from another process's `travelled`
    /// options uses: where to bind, what to advertise and where puts go are this process's
    /// own (defaults, then the environment, as [`from_env`](Self::from_env)); the timeout, the
    /// minimum rate and the maximum message size travel, unless the environment here sets
    /// them.
    pub(crate) fn rebuilt_here(
        travelled: &ZmqOptions,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ZmqOptions> {
        ZmqOptions {
            timeout: travelled.timeout,
            cooldown: travelled.cooldown,
            min_rate: travelled.min_rate,
            max_message_size: travelled.max_message_size,
            ..ZmqOptions::default()
        }
        .with_vars(lookup)
    }

    /// The shortest cluster secret accepted, in bytes: a shorter one, from any source, makes
    /// building a connector fail with [`Error::Config`].
    pub const MIN_SECRET_LEN: usize = secret::MIN_SECRET_LEN;

    /// The cluster secret: every request this connector makes proves it (a MAC; the secret
    /// never travels), and its peer server refuses requests that do not. Every process of
    /// a cluster needs the same secret. Overrides `PROXYSTORE_SECRET` and
    /// `PROXYSTORE_SECRET_FILE`, and an earlier [`with_secret_file`](Self::with_secret_file).
    ///
    /// A secret shorter than [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN) (16) bytes is refused:
    /// building the connector fails with [`Error::Config`] (which names its length, never
    /// its bytes). [`create_secret_file`](Self::create_secret_file) (`proxy-peer secret
    /// new PATH`) makes a good one.
    pub fn with_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        if secret.len() < Self::MIN_SECRET_LEN {
            self.secret = None;
            self.secret_too_short = Some(u8::try_from(secret.len()).unwrap_or(u8::MAX));
        } else {
            self.secret = Some(Secret::new(secret));
            self.secret_too_short = None;
        }
        self.secret_file = None;
        self
    }

    /// The cluster secret, read from `path` when the connector is built (its content
    /// without a trailing newline, at least [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN) bytes).
    /// The file must not be readable by its group or others (mode `0600` or stricter, as
    /// ssh requires of private keys) unless [`with_secret_file_any_mode`](Self::with_secret_file_any_mode)
    /// allows it; otherwise building fails with [`Error::Config`] naming the file, its mode
    /// and the fix (`chmod 600 PATH`). See [`with_secret`](Self::with_secret).
    pub fn with_secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret_file = Some(path.into());
        self.secret = None;
        self.secret_too_short = None;
        self
    }

    /// Accepts a secret file (from [`with_secret_file`](Self::with_secret_file) or
    /// `PROXYSTORE_SECRET_FILE`) that its group or others may read. Off by default: such a
    /// file is refused, since anyone who can read it can act as a member of the cluster.
    /// `PROXYSTORE_SECRET_FILE_ANY_MODE=1` turns it on too (`proxy-peer
    /// --secret-file-any-mode`). For files whose access is controlled some other way (an
    /// ACL, a group of one, a file system without Unix modes).
    pub fn with_secret_file_any_mode(mut self, allowed: bool) -> Self {
        self.secret_file_any_mode = allowed;
        self
    }

    /// Whether a secret file that its group or others may read is accepted (explicitly;
    /// the environment is read when building).
    pub fn secret_file_any_mode(&self) -> bool {
        self.secret_file_any_mode
    }

    /// Writes a fresh cluster secret to a new file at `path`: 32 bytes from the operating
    /// system's random generator, as 64 hexadecimal characters and a newline (so the
    /// file's content also works as `PROXYSTORE_SECRET`), with mode `0600`. The file must
    /// not exist (it is created with `O_CREAT | O_EXCL`: a secret that other processes use
    /// is never replaced by mistake) unless `overwrite`, in which case the new secret is
    /// written to a new file renamed over the old one (readers see one or the other,
    /// complete). `proxy-peer secret new PATH [--force]` calls this.
    ///
    /// ```
    /// use proxy_core::ZmqOptions;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("cluster-secret");
    /// ZmqOptions::create_secret_file(&path, false)?;
    /// let peer = ZmqOptions::default().with_secret_file(&path).build()?;
    /// assert!(ZmqOptions::create_secret_file(&path, false).is_err(), "never replaced unasked");
    /// # drop(peer);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_secret_file(path: impl AsRef<std::path::Path>, overwrite: bool) -> Result<()> {
        secret::create_file(path.as_ref(), overwrite)
    }

    /// Allows binding an interface other than loopback without a secret, so that anyone
    /// who can reach the port can read, store and evict objects. Without this (or
    /// `PROXYSTORE_INSECURE=1`) such a peer refuses to start.
    pub fn insecure(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// The most bytes this peer holds for objects other processes store on it (remote
    /// puts); a put beyond it is refused with [`Error::QuotaExceeded`] and nothing is
    /// stored. Each object is charged 320 bytes of overhead (its entry and bookkeeping:
    /// empty objects are not free) plus its bytes while they are on the heap, and the shared
    /// memory segments made for such objects (when same-host readers map them) are charged
    /// whole, free slots included, until they are returned to the operating system; a
    /// remote object is copied into shared memory only if that keeps the charge within the
    /// limit. Objects this process puts itself do not count. Default 4 GiB
    /// (`PROXYSTORE_ZMQ_MAX_BYTES` through [`from_env`](Self::from_env)).
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Same-host shared memory, on by default (`PROXYSTORE_ZMQ_SHM=0` through
    /// [`from_env`](Self::from_env) turns it off). When on, this peer keeps objects of at
    /// least [`with_shared_memory_min_size`](Self::with_shared_memory_min_size) bytes in
    /// shared memory (copied in once: up to 16 MiB when a reader on this machine first asks
    /// for it, larger ones at put), and its gets of another peer's objects ask to
    /// read them in place when both run on one machine: the reader then maps the owner's
    /// memory instead of receiving the bytes over TCP. The reader must run as the same user
    /// (or root); whenever it cannot map, it reads over TCP. Off: every object stays on the
    /// heap and every remote get travels over TCP. Linux only (elsewhere it is always off).
    pub fn with_shared_memory(mut self, enabled: bool) -> Self {
        self.shm.enabled = enabled;
        self
    }

    /// The smallest object kept in shared memory, in bytes. Default 64 KiB
    /// (`PROXYSTORE_ZMQ_SHM_MIN_SIZE`).
    pub fn with_shared_memory_min_size(mut self, bytes: u64) -> Self {
        self.shm.min_size = bytes;
        self
    }

    /// The most bytes of shared memory this peer holds (segments are created when needed,
    /// kept for reuse while in use, returned to the operating system after
    /// [`with_shared_memory_idle`](Self::with_shared_memory_idle) unused, and freed by the
    /// kernel when the process ends, however it ends). Objects that do not fit stay on the
    /// heap and are served over TCP. Segments made for objects other processes stored here
    /// count against [`with_max_bytes`](Self::with_max_bytes) too. Default 4 GiB
    /// (`PROXYSTORE_ZMQ_SHM_CAPACITY`, `proxy-peer --shm-capacity`).
    pub fn with_shared_memory_capacity(mut self, bytes: u64) -> Self {
        self.shm.capacity = bytes;
        self
    }

    /// How long a shared memory segment stays unused (no object in it, no slot a reader
    /// holds) before it is returned to the operating system. Under steady traffic segments
    /// are reused, pre-faulted, and never reach it; after a burst, or objects of sizes no
    /// longer used, the memory comes back within this time (plus at most a quarter of it,
    /// up to 1 s). A segment is also returned at once when a new one would not fit in the
    /// capacity (or, for objects other processes stored, in the quota) otherwise. Default
    /// 30 s (`PROXYSTORE_ZMQ_SHM_IDLE`, `proxy-peer --shm-idle`); zero returns a segment as
    /// soon as it is unused (every object of a new size class then faults in fresh pages).
    pub fn with_shared_memory_idle(mut self, idle: Duration) -> Self {
        self.shm.idle = idle;
        self
    }

    /// Makes room in shared memory for `count` objects of `len` bytes as soon as the peer
    /// starts, on a background thread: their segments are created and pre-faulted then, not
    /// inside the first transfers (a fresh 4 KiB page costs about 2 us to fault in on the VMs
    /// this project is measured on). For producers that write objects in place
    /// ([`Connector::alloc`](crate::Connector::alloc)) or put objects of a known size; the
    /// room counts against the capacity like any segment and, left unused, returns to the
    /// operating system after the idle time ([`with_shared_memory_idle`](Self::with_shared_memory_idle)).
    /// Default none (`PROXYSTORE_ZMQ_SHM_PREWARM=LENxCOUNT`); objects below the threshold
    /// or a count of 0 make no room. To make the room and wait until it is there, call
    /// [`ZmqConnector::prewarm_shared_memory`](crate::ZmqConnector::prewarm_shared_memory)
    /// instead.
    pub fn with_shared_memory_prewarm(mut self, len: u64, count: u32) -> Self {
        self.shm.prewarm = (len, count);
        self
    }

    /// The most bytes of shared memory this peer holds (see
    /// [`with_shared_memory_capacity`](Self::with_shared_memory_capacity)).
    pub fn shared_memory_capacity(&self) -> u64 {
        self.shm.capacity
    }

    /// How long a shared memory segment stays unused before it is returned (see
    /// [`with_shared_memory_idle`](Self::with_shared_memory_idle)).
    pub fn shared_memory_idle(&self) -> Duration {
        self.shm.idle
    }

    /// Gets of another process's objects through shared memory copy the bytes out of the
    /// mapping into memory of this process (one copy, at memory speed) instead of returning
    /// a `Bytes` over the mapping. Off by default (`PROXYSTORE_ZMQ_SHM_COPY_ON_READ=1`
    /// turns it on).
    ///
    /// In place, the bytes a get returns are memory that another process can still write:
    /// the owner follows the protocol (a slot is never rewritten while a reader holds it),
    /// but any process of the same user can open the owner's memory file read-write and
    /// change them while this process reads, so a decoder that validates bytes once and
    /// then trusts them (UTF-8 text, a zero-copy archive format) could see them change.
    /// Such a process can already read and write this process's own memory, which is why
    /// in place is the default; turn copying on in a program that shares its user with
    /// processes it does not trust, or whose decoders must see bytes that cannot change.
    pub fn with_shared_memory_copy_on_read(mut self, copy: bool) -> Self {
        self.shm.copy_on_read = copy;
        self
    }

    /// Whether gets copy objects out of shared memory (see
    /// [`with_shared_memory_copy_on_read`](Self::with_shared_memory_copy_on_read)).
    pub fn shared_memory_copy_on_read(&self) -> bool {
        self.shm.copy_on_read
    }

    /// Whether same-host shared memory is on (see [`with_shared_memory`](Self::with_shared_memory)).
    pub fn shared_memory(&self) -> bool {
        self.shm.enabled
    }

    /// The shared memory settings.
    pub(crate) fn shm(&self) -> SharedMemory {
        self.shm
    }

    /// Whether a secret is set (explicitly; the environment is read when building).
    pub fn has_secret(&self) -> bool {
        self.secret.is_some() || self.secret_file.is_some() || self.secret_too_short.is_some()
    }

    /// Fills what was not set explicitly from the environment: the secret
    /// (`PROXYSTORE_SECRET`, then `PROXYSTORE_SECRET_FILE`), `PROXYSTORE_INSECURE` and
    /// `PROXYSTORE_SECRET_FILE_ANY_MODE`. Reads a secret file; refuses a short secret or a
    /// secret file others may read.
    pub(crate) fn resolve(self) -> Result<ZmqOptions> {
        self.resolve_with(|name| std::env::var_os(name))
    }

    /// [`resolve`](Self::resolve) with the variables `lookup` finds.
    pub(crate) fn resolve_with(
        mut self,
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<ZmqOptions> {
        let flag = |name: &str| {
            lookup(name).is_some_and(|v| matches!(v.to_string_lossy().trim(), "1" | "true" | "yes"))
        };
        if let Some(len) = self.secret_too_short {
            return Err(secret::too_short(
                "ZmqOptions::with_secret",
                usize::from(len),
            ));
        }
        self.secret_file_any_mode = self.secret_file_any_mode || flag(ENV_SECRET_FILE_ANY_MODE);
        if let Some(path) = self.secret_file.take() {
            self.secret = Some(secret::read_file(&path, self.secret_file_any_mode)?);
        } else if self.secret.is_none() {
            match lookup(ENV_SECRET) {
                Some(value) if !value.is_empty() => {
                    self.secret = Some(secret::from_bytes(
                        value.as_encoded_bytes(),
                        &format!("environment variable {ENV_SECRET}"),
                    )?);
                }
                _ => {
                    if let Some(path) = lookup(ENV_SECRET_FILE).filter(|p| !p.is_empty()) {
                        self.secret = Some(secret::read_file(
                            std::path::Path::new(&path),
                            self.secret_file_any_mode,
                        )?);
                    }
                }
            }
        }
        self.insecure = self.insecure || flag(ENV_INSECURE);
        Ok(self)
    }

    /// The secret, once [resolved](Self::resolve).
    pub(crate) fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// Uses `secret` if none is set (a connector rebuilt next to a live server).
    pub(crate) fn or_secret(mut self, secret: Option<&Secret>) -> Self {
        if !self.has_secret() {
            self.secret = secret.cloned();
        }
        self
    }

    /// The most bytes held for objects other processes store here.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Refuses to serve a non-loopback interface without a secret, unless insecure.
    pub(crate) fn check_exposure(&self) -> Result<()> {
        if self.secret.is_some() || self.insecure || is_loopback(&self.interface) {
            return Ok(());
        }
        Err(Error::Config {
            what: "zmq connector".to_string(),
            message: format!(
                "refusing to serve interface {:?} without a secret: anyone who can reach it could read, store and evict objects. Set a cluster secret (ZmqOptions::with_secret_file, PROXYSTORE_SECRET_FILE or PROXYSTORE_SECRET, --secret-file) or say insecure (ZmqOptions::insecure, PROXYSTORE_INSECURE=1, --insecure)",
                self.interface
            ),
        })
    }

    /// A connector with these options, its peer server started and bound (unless its puts
    /// go elsewhere: [`with_remote`](Self::with_remote), [`with_client_only`](Self::with_client_only)).
    pub fn build(self) -> Result<ZmqConnector> {
        ZmqConnector::with_options(self)
    }

    /// Checks the options without binding anything.
    pub(crate) fn validate(&self) -> Result<()> {
        let fail = |message: String| {
            Err(Error::Config {
                what: "zmq connector".to_string(),
                message,
            })
        };
        if self.interface.is_empty() || self.interface.contains(['\0', '/']) {
            return fail(format!(
                "interface {:?} is not a host or address",
                self.interface
            ));
        }
        let (first, last) = self.ports;
        if first > last || (first == 0 && last != 0) {
            return fail(format!("port range {first}-{last} is empty or starts at 0"));
        }
        if let Some(address) = &self.address {
            if address.is_empty() || address.contains(['\0', '/']) || is_wildcard(address) {
                return fail(format!(
                    "address {address:?} is not a reachable host or address"
                ));
            }
        }
        if self.timeout.is_zero() {
            return fail("the timeout must be positive".to_string());
        }
        if let Placement::Remote(peer) = &self.placement {
            if !is_tcp_endpoint(peer) {
                return fail(format!(
                    "remote peer {peer:?} is not an endpoint such as tcp://HOST:PORT"
                ));
            }
        }
        if self.max_message_size == 0 || self.max_message_size > i64::MAX as u64 {
            return fail(format!(
                "max message size {} is out of range",
                self.max_message_size
            ));
        }
        Ok(())
    }

    /// The endpoints the peer server tries to bind, in order.
    pub(crate) fn bind_endpoints(&self) -> impl Iterator<Item = String> + '_ {
        let (first, last) = self.ports;
        let host = bracket_ipv6(&self.interface);
        (first..=last).map(move |port| {
            if port == 0 {
                format!("tcp://{host}:*")
            } else {
                format!("tcp://{host}:{port}")
            }
        })
    }

    /// A description of what the server binds, for errors.
    pub(crate) fn bind_description(&self) -> String {
        match self.ports {
            (0, _) => format!("tcp://{}:*", bracket_ipv6(&self.interface)),
            (first, last) if first == last => {
                format!("tcp://{}:{first}", bracket_ipv6(&self.interface))
            }
            (first, last) => format!("tcp://{}:{first}-{last}", bracket_ipv6(&self.interface)),
        }
    }

    /// Binds `socket` to the first free endpoint of [`bind_endpoints`](Self::bind_endpoints).
    pub(crate) fn bind(&self, socket: &zmq::Socket) -> Result<()> {
        let mut last_error = None;
        for endpoint in self.bind_endpoints() {
            match socket.bind(&endpoint) {
                Ok(()) => return Ok(()),
                Err(zmq::Error::EADDRINUSE) => last_error = Some(zmq::Error::EADDRINUSE),
                Err(e) => return Err(self.bind_error(e)),
            }
        }
        Err(self.bind_error(last_error.unwrap_or(zmq::Error::EADDRINUSE)))
    }

    fn bind_error(&self, e: zmq::Error) -> Error {
        let hint = match e {
            zmq::Error::EADDRINUSE => format!(
                "every port is taken; choose other ports ({ENV_PORT} or ZmqOptions::with_port_range)"
            ),
            _ => format!(
                "is {:?} an address of this host? Set the interface to bind with {ENV_INTERFACE} or ZmqOptions::with_interface",
                self.interface
            ),
        };
        Error::Peer {
            peer: self.bind_description(),
            message: format!("could not bind the peer server socket: {e} ({hint})"),
        }
    }

    /// The endpoint other peers connect to, once the server listens on `port`.
    pub(crate) fn advertised_endpoint(&self, port: u16) -> Result<String> {
        let host = match &self.address {
            Some(address) => address.clone(),
            None if is_wildcard(&self.interface) => reachable_host()?,
            None => self.interface.clone(),
        };
        Ok(format!("tcp://{}:{port}", bracket_ipv6(&host)))
    }

    /// Whether the server must be allowed to use IPv6.
    pub(crate) fn uses_ipv6(&self) -> bool {
        self.interface.contains(':') || is_wildcard(&self.interface)
    }

    /// The configured maximum message size in bytes.
    pub(crate) fn get_max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// The configured timeout.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The maximum message size as libzmq's option value.
    pub(crate) fn max_message_size_option(&self) -> i64 {
        i64::try_from(self.max_message_size).unwrap_or(i64::MAX)
    }

    /// libzmq's `ZMQ_MAXMSGSIZE` for these options: the largest whole message (header and
    /// payload frames; the patched libzmq bounds the sum of a message's frames).
    pub(crate) fn wire_limit_option(&self) -> i64 {
        self.max_message_size_option()
            .saturating_add(super::wire::HEADER_LEN as i64)
    }
}

fn env_error(variable: &str, message: String) -> Error {
    Error::Config {
        what: format!("environment variable {variable}"),
        message,
    }
}

/// `7000` or `7000-7099` (inclusive).
fn parse_ports(text: &str) -> Option<(u16, u16)> {
    let text = text.trim();
    match text.split_once('-') {
        None => text.parse().ok().map(|port| (port, port)),
        Some((first, last)) => {
            let first: u16 = first.trim().parse().ok()?;
            let last: u16 = last.trim().parse().ok()?;
            (first != 0 && first <= last).then_some((first, last))
        }
    }
}

/// A name or address of this host that other hosts can reach: the host name if it resolves
/// to a non-loopback address, else the first non-loopback interface address.
fn reachable_host() -> Result<String> {
    let hostname = host_name();
    let resolved: Vec<IpAddr> = hostname
        .as_deref()
        .and_then(|name| (name, 0).to_socket_addrs().ok())
        .map(|addrs| addrs.map(|a| a.ip()).collect())
        .unwrap_or_default();
    let interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    pick_reachable(hostname.as_deref(), &resolved, &interfaces).ok_or_else(|| Error::Config {
        what: "zmq connector".to_string(),
        message: format!(
            "binding all interfaces needs an address other hosts can reach, and none was found \
             (host name {:?} resolves to {resolved:?}; no interface has a non-loopback address): \
             set {ENV_ADVERTISE} or ZmqOptions::with_address",
            hostname.as_deref().unwrap_or("(unknown)")
        ),
    })
}

/// The choice of [`reachable_host`], given what it found.
fn pick_reachable(
    hostname: Option<&str>,
    resolved: &[IpAddr],
    interfaces: &[IpAddr],
) -> Option<String> {
    let routable = |ip: &IpAddr| {
        !ip.is_loopback()
            && !ip.is_unspecified()
            && !matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80)
    };
    if let Some(name) = hostname {
        if resolved.iter().any(routable) {
            return Some(name.to_string());
        }
    }
    interfaces
        .iter()
        .filter(|ip| routable(ip))
        .min_by_key(|ip| ip.is_ipv6())
        .map(IpAddr::to_string)
}

/// This host's name, if the OS gives one.
fn host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its length; gethostname writes at most that
    // many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = std::str::from_utf8(&buffer[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// `tcp://HOST:PORT` with a non-empty host and a port number.
fn is_tcp_endpoint(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("tcp://")
        .and_then(|rest| rest.rsplit_once(':'))
        .is_some_and(|(host, port)| {
            !host.is_empty()
                && !is_wildcard(host)
                && !host.contains(['/', '\0'])
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        })
}

/// The cluster secret the environment gives: `PROXYSTORE_SECRET`, else the file named by
/// `PROXYSTORE_SECRET_FILE`, else none.
pub(crate) fn secret_from_env() -> Result<Option<Secret>> {
    // The same rules as a connector's (length, file permissions, the opt-in).
    Ok(ZmqOptions::default().resolve()?.secret().cloned())
}

pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_wildcard(host: &str) -> bool {
    matches!(host, "*" | "0.0.0.0" | "::" | "[::]")
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The serializable description of a [`ZmqConnector`] (inside
/// [`ConnectorConfig::Zmq`](crate::ConnectorConfig::Zmq)).
///
/// Built in the process whose connector made it, while that connector's server runs, it gives
/// back a connector on the same server and objects. Built anywhere else, it gives a connector
/// with the same options that reads any peer's objects (the keys name their peers) and starts
/// its own server on its first `put`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ZmqConfig {
    /// The options of the original connector.
    pub options: ZmqOptions,
    /// The endpoint of the original connector's peer server, if it had started one.
    pub endpoint: Option<String>,
}

impl ZmqConfig {
    /// The configuration of a connector with `options` whose peer server, if it started
    /// one, listens on `endpoint`.
    pub fn new(options: ZmqOptions, endpoint: Option<String>) -> Self {
        ZmqConfig { options, endpoint }
    }

    /// Builds the connector this configuration describes (see the type's documentation).
    pub fn build(&self) -> Result<ZmqConnector> {
        ZmqConnector::from_config(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn endpoints(options: &ZmqOptions) -> Vec<String> {
        options.bind_endpoints().collect()
    }

    #[test]
    fn endpoints_follow_the_options() {
        let options = ZmqOptions::default();
        assert_eq!(endpoints(&options), ["tcp://127.0.0.1:*"]);
        assert_eq!(
            options.advertised_endpoint(4000).expect("endpoint"),
            "tcp://127.0.0.1:4000"
        );
        let options = ZmqOptions::default().with_interface("::1").with_port(7);
        assert_eq!(endpoints(&options), ["tcp://[::1]:7"]);
        assert!(options.uses_ipv6());
        let options = ZmqOptions::default()
            .with_interface("0.0.0.0")
            .with_address("node-3");
        assert_eq!(
            options.advertised_endpoint(9).expect("endpoint"),
            "tcp://node-3:9"
        );
        let options = ZmqOptions::default().with_port_range(7000, 7002);
        assert_eq!(
            endpoints(&options),
            [
                "tcp://127.0.0.1:7000",
                "tcp://127.0.0.1:7001",
                "tcp://127.0.0.1:7002"
            ]
        );
        assert_eq!(options.bind_description(), "tcp://127.0.0.1:7000-7002");
    }

    #[test]
    fn unusable_options_are_config_errors() {
        for options in [
            ZmqOptions::default().with_interface(""),
            ZmqOptions::default().with_interface("a\0b"),
            ZmqOptions::default().with_address("0.0.0.0"),
            ZmqOptions::default().with_timeout(Duration::ZERO),
            ZmqOptions::default().with_max_message_size(0),
            ZmqOptions::default().with_port_range(7010, 7000),
            ZmqOptions::default().with_port_range(0, 7000),
        ] {
            match options.validate() {
                Err(Error::Config { what, .. }) => assert_eq!(what, "zmq connector"),
                other => panic!("{options:?} gave {other:?}"),
            }
        }
        assert!(ZmqOptions::default().validate().is_ok());
        assert!(ZmqOptions::default().with_interface("*").validate().is_ok());
    }

    fn from_vars(vars: &[(&str, &str)]) -> Result<ZmqOptions> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ZmqOptions::default().with_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_environment_sets_every_option_and_explicit_options_win() {
        let options = from_vars(&[
            (ENV_INTERFACE, "0.0.0.0"),
            (ENV_ADVERTISE, "node-7"),
            (ENV_PORT, "7000-7099"),
            (ENV_TIMEOUT, "250ms"),
            (ENV_MIN_RATE, "4096"),
            (ENV_MAX_MESSAGE_SIZE, "65536"),
        ])
        .expect("valid variables");
        assert_eq!(options.interface(), "0.0.0.0");
        assert_eq!(options.address(), Some("node-7"));
        assert_eq!(options.ports(), (7000, 7099));
        assert_eq!(options.timeout(), Duration::from_millis(250));
        assert_eq!(options.min_rate(), 4096);
        assert_eq!(options.max_message_size(), 65536);
        assert_eq!(options.clone().with_min_rate(0).min_rate(), 0);
        assert_eq!(ZmqOptions::default().min_rate(), DEFAULT_MIN_RATE);

        let options = options.with_port(7200).with_timeout(Duration::from_secs(9));
        assert_eq!(options.ports(), (7200, 7200));
        assert_eq!(options.timeout(), Duration::from_secs(9));

        // The cool-down follows the timeout unless set.
        assert_eq!(options.peer_cooldown(), Duration::from_secs(9));
        let set = from_vars(&[(ENV_COOLDOWN, "2s")]).expect("valid");
        assert_eq!(set.peer_cooldown(), Duration::from_secs(2));
        let off = from_vars(&[(ENV_COOLDOWN, "0s")]).expect("valid");
        assert_eq!(off.peer_cooldown(), Duration::ZERO);
        assert!(matches!(
            from_vars(&[(ENV_COOLDOWN, "soon")]),
            Err(Error::Config { .. })
        ));

        let options = from_vars(&[(ENV_PORT, "7300"), (ENV_TIMEOUT, "1m 30s")]).expect("valid");
        assert_eq!(options.ports(), (7300, 7300));
        assert_eq!(options.timeout(), Duration::from_secs(90));
        assert_eq!(options.interface(), "127.0.0.1", "unset: the default");
        assert_eq!(
            from_vars(&[(ENV_INTERFACE, " "), (ENV_PORT, "")]).expect("empty is unset"),
            ZmqOptions::default()
        );
    }

    #[test]
    fn a_malformed_variable_is_an_error_naming_it() {
        for (variable, value) in [
            (ENV_PORT, "70000"),
            (ENV_PORT, "7000-"),
            (ENV_PORT, "7010-7000"),
            (ENV_PORT, "0-10"),
            (ENV_PORT, "http"),
            (ENV_TIMEOUT, "5"),
            (ENV_TIMEOUT, "soon"),
            (ENV_TIMEOUT, "0s"),
            (ENV_MIN_RATE, "fast"),
            (ENV_MIN_RATE, "-1"),
            (ENV_MAX_MESSAGE_SIZE, "1GiB"),
            (ENV_MAX_MESSAGE_SIZE, "0"),
            (ENV_INTERFACE, "a/b"),
            (ENV_ADVERTISE, "*"),
        ] {
            match from_vars(&[(variable, value)]) {
                Err(Error::Config { what, message }) => {
                    assert_eq!(
                        what,
                        format!("environment variable {variable}"),
                        "{message}"
                    )
                }
                other => panic!("{variable}={value:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn binding_all_interfaces_advertises_a_reachable_name_or_address() {
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        let lo6: IpAddr = "::1".parse().expect("ip");
        let link_local: IpAddr = "fe80::1".parse().expect("ip");
        let lan: IpAddr = "10.1.2.3".parse().expect("ip");
        let lan6: IpAddr = "fd00::2".parse().expect("ip");
        // A host name that resolves off loopback is the best choice.
        assert_eq!(
            pick_reachable(Some("node-3"), &[lan], &[lo, lan]).as_deref(),
            Some("node-3")
        );
        // One that resolves to loopback (as /etc/hosts often says) is not: an interface
        // address is, IPv4 first.
        assert_eq!(
            pick_reachable(Some("vm"), &[lo], &[lo, lo6, link_local, lan6, lan]).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(
            pick_reachable(None, &[], &[lo, lan6]).as_deref(),
            Some("fd00::2")
        );
        assert_eq!(
            pick_reachable(Some("vm"), &[lo], &[lo, lo6, link_local]),
            None
        );
    }

    #[test]
    fn a_wildcard_interface_never_advertises_the_wildcard_or_loopback() {
        let options = ZmqOptions::default().with_interface("0.0.0.0");
        match options.advertised_endpoint(5) {
            Ok(endpoint) => {
                assert!(!endpoint.contains("0.0.0.0"), "{endpoint}");
                assert!(!endpoint.contains("127.0.0.1"), "{endpoint}");
            }
            // A host with nothing but loopback: the error says what to set.
            Err(Error::Config { message, .. }) => {
                assert!(message.contains(ENV_ADVERTISE), "{message}")
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn exposed_interfaces_need_a_secret_or_insecure() {
        for loopback in ["127.0.0.1", "127.0.0.2", "::1", "localhost"] {
            let options = ZmqOptions::default().with_interface(loopback);
            assert!(options.check_exposure().is_ok(), "{loopback}");
        }
        let exposed = ZmqOptions::default()
            .with_interface("0.0.0.0")
            .with_address("node-1");
        match exposed.check_exposure() {
            Err(Error::Config { message, .. }) => {
                assert!(message.contains("--insecure"), "{message}")
            }
            other => panic!("gave {other:?}"),
        }
        assert!(exposed.clone().insecure().check_exposure().is_ok());
        assert!(exposed
            .with_secret("a cluster secret of 32 bytes....")
            .check_exposure()
            .is_ok());
    }

    #[test]
    fn secrets_are_neither_printed_nor_serialized() {
        let options = ZmqOptions::default().with_secret("hunter2-hunter2-secret");
        assert!(!format!("{options:?}").contains("hunter2"));
        let bytes = bincode::serialize(&options).expect("serialize");
        let back: ZmqOptions = bincode::deserialize(&bytes).expect("deserialize");
        assert!(!back.has_secret());
        assert_eq!(back, ZmqOptions::default());
    }

    fn os_vars(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        let vars: HashMap<String, std::ffi::OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    /// The message of a configuration error about the cluster secret.
    fn secret_error(result: Result<ZmqOptions>) -> String {
        match result {
            Err(Error::Config { what, message }) => {
                assert_eq!(what, "cluster secret", "{message}");
                message
            }
            other => panic!("expected a secret error, got {other:?}"),
        }
    }

    #[test]
    fn short_secrets_are_refused_wherever_they_enter() {
        // ZmqOptions::with_secret: refused when the options are resolved (build, client).
        let short = "hunter2-secret"; // 14 bytes
        let options = ZmqOptions::default().with_secret(short);
        assert!(options.has_secret());
        assert!(!format!("{options:?}").contains("hunter2"));
        let message = secret_error(options.clone().resolve_with(os_vars(&[])));
        assert!(message.contains("ZmqOptions::with_secret"), "{message}");
        assert!(message.contains("14 bytes long"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        match ZmqConnector::client(options) {
            Err(Error::Config { message, .. }) => assert!(!message.contains("hunter2")),
            other => panic!("a short secret built a connector: {other:?}"),
        }
        // A later long secret replaces it.
        let fixed = ZmqOptions::default()
            .with_secret(short)
            .with_secret("sixteen bytes!!!");
        assert!(fixed.resolve_with(os_vars(&[])).is_ok());

        // PROXYSTORE_SECRET.
        let message =
            secret_error(ZmqOptions::default().resolve_with(os_vars(&[(ENV_SECRET, "s3cret")])));
        assert!(message.contains(ENV_SECRET), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let long = ZmqOptions::default()
            .resolve_with(os_vars(&[(ENV_SECRET, "sixteen bytes!!!")]))
            .expect("16 bytes are enough");
        assert!(long.secret().is_some());

        // PROXYSTORE_SECRET_FILE and with_secret_file (the file's own checks are tested in
        // `secret`).
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod 600");
        let message = secret_error(
            ZmqOptions::default()
                .resolve_with(os_vars(&[(ENV_SECRET_FILE, path.to_str().expect("utf-8"))])),
        );
        assert!(message.contains("6 bytes long"), "{message}");
        let message = secret_error(
            ZmqOptions::default()
                .with_secret_file(&path)
                .resolve_with(os_vars(&[])),
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
    }

    #[test]
    fn secret_files_others_may_read_need_an_explicit_opt_in() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "a cluster secret long enough\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let text = path.to_str().expect("utf-8");
        for refused in [
            ZmqOptions::default().resolve_with(os_vars(&[(ENV_SECRET_FILE, text)])),
            ZmqOptions::default()
                .with_secret_file(&path)
                .resolve_with(os_vars(&[])),
        ] {
            let message = secret_error(refused);
            assert!(message.contains("mode 0644"), "{message}");
            assert!(message.contains("chmod 600"), "{message}");
        }
        for allowed in [
            ZmqOptions::default().resolve_with(os_vars(&[
                (ENV_SECRET_FILE, text),
                (ENV_SECRET_FILE_ANY_MODE, "1"),
            ])),
            ZmqOptions::default()
                .with_secret_file(&path)
                .resolve_with(os_vars(&[(ENV_SECRET_FILE_ANY_MODE, "1")])),
            ZmqOptions::default()
                .with_secret_file(&path)
                .with_secret_file_any_mode(true)
                .resolve_with(os_vars(&[])),
        ] {
            assert!(allowed.expect("allowed explicitly").secret().is_some());
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(ZmqOptions::default()
            .with_secret_file(&path)
            .resolve_with(os_vars(&[]))
            .is_ok());
    }

    #[test]
    fn the_environment_sets_the_byte_limit() {
        let options = from_vars(&[(ENV_MAX_BYTES, "4096")]).expect("valid");
        assert_eq!(options.max_bytes(), 4096);
        let shm =
            from_vars(&[(ENV_SHM_CAPACITY, "65536"), (ENV_SHM_IDLE, "250ms")]).expect("valid");
        assert_eq!(shm.shared_memory_capacity(), 65536);
        assert_eq!(shm.shared_memory_idle(), Duration::from_millis(250));
        assert_eq!(ZmqOptions::default().shared_memory_idle(), DEFAULT_SHM_IDLE);
        assert!(from_vars(&[(ENV_SHM_IDLE, "soon")]).is_err());
        assert_eq!(options.with_max_bytes(10).max_bytes(), 10, "explicit wins");
        assert!(from_vars(&[(ENV_MAX_BYTES, "lots")]).is_err());
    }

    #[test]
    fn the_environment_sets_the_prewarmed_room() {
        let options = from_vars(&[(ENV_SHM_PREWARM, " 1048576 x 32 ")]).expect("valid");
        assert_eq!(options.shm().prewarm, (1 << 20, 32));
        assert_eq!(ZmqOptions::default().shm().prewarm, (0, 0));
        for bad in ["1048576", "1MiBx2", "x", "1x-1", "1x99999999999"] {
            let error = from_vars(&[(ENV_SHM_PREWARM, bad)]).expect_err(bad);
            assert!(error.to_string().contains(ENV_SHM_PREWARM), "{error}");
        }
    }
}
