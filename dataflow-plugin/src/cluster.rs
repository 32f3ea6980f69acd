//! Running a timely cluster that fails fast and says which host is missing.
//!
//! Timely's networking has no deadline and no heartbeat: a process that never starts leaves
//! the others "awaiting connections" forever, and a host that stops answering (link down,
//! machine frozen, process stopped) hangs every other process silently. [`execute`] and
//! [`execute_from_args`] wrap timely's functions of the same names with a watchdog thread
//! per process that bounds both:
//!
//! - **Startup.** Every process sends a small UDP heartbeat to every other process, to the
//!   *same port number as its timely address* (UDP, beside timely's TCP listener), from the
//!   moment it starts. A process not heard from within the startup deadline
//!   ([`ClusterOptions::with_startup_deadline`], default 60 s), or a timely connection phase
//!   that has not finished by then, ends this process with [`EXIT_NEVER_JOINED`] and an error
//!   naming the host.
//! - **During the run.** A process silent for `misses` heartbeat intervals (default 10 x 1 s)
//!   ends this process with [`EXIT_HOST_LOST`] and an error naming the silent host. Detection
//!   takes at most `(misses + 1) x interval` after the host went silent.
//!
//! The watchdog prints the error (one line on standard error) and calls
//! [`std::process::exit`]: a timely worker blocked on a lost connection cannot be ended any
//! other way. A process that finishes normally says goodbye to the others (when its
//! [`ClusterGuards`] are joined or dropped, if every worker succeeded), so a cluster whose
//! processes end at different times is not mistaken for a lost host.
//!
//! It is opt-out: [`ClusterOptions::with_watchdog`]`(false)` or
//! `PROXYSTORE_CLUSTER_WATCHDOG=off` runs plain timely. Configurations other than
//! `Cluster` (one process) and clusters of one process run plain timely too.
//!
//! Open UDP on each timely port between the machines, as well as TCP. Heartbeats carry no
//! secret and grant nothing: a forged heartbeat can at most delay the detection of a lost
//! host, never end a process.
//!
//! ```no_run
//! use dataflow_plugin::cluster::{self, ClusterOptions};
//!
//! # fn main() -> Result<(), dataflow_plugin::Error> {
//! let options = ClusterOptions::from_env()?; // PROXYSTORE_CLUSTER_* or the defaults
//! let guards = cluster::execute_from_args(std::env::args(), options, |worker| {
//!     worker.index()
//! })?;
//! for result in guards.join() {
//!     result.map_err(|message| dataflow_plugin::Error::Timely { message })?;
//! }
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use timely::communication::initialize::WorkerGuards;
use timely::worker::Worker;

use crate::Error;

mod slurm;
pub use slurm::{
    parse_nodelist, slurm_launch, slurm_launch_from, Launch, DEFAULT_TIMELY_PORT, DISTRIBUTION_VAR,
    MAX_SLURM_TASKS, TIMELY_PORT_VAR,
};

/// Exit status of a process whose cluster did not form within the startup deadline (a host
/// never joined, or timely's connection phase did not finish): 69 (`EX_UNAVAILABLE`).
pub const EXIT_NEVER_JOINED: i32 = 69;
/// Exit status of a process that lost a host of its cluster during the run (silent for
/// `misses` heartbeat intervals): 75 (`EX_TEMPFAIL`: starting the run again may work).
pub const EXIT_HOST_LOST: i32 = 75;

/// Turns the watchdog off (`off`, `0`, `false`, `no`) or on (`on`, `1`, `true`, `yes`).
pub const WATCHDOG_VAR: &str = "PROXYSTORE_CLUSTER_WATCHDOG";
/// The startup deadline (`60s`, `2m`).
pub const STARTUP_VAR: &str = "PROXYSTORE_CLUSTER_STARTUP";
/// The heartbeat interval (`1s`, `250ms`).
pub const HEARTBEAT_VAR: &str = "PROXYSTORE_CLUSTER_HEARTBEAT";
/// Missed heartbeats after which a host is lost (a number, at least 2).
pub const MISSES_VAR: &str = "PROXYSTORE_CLUSTER_MISSES";

/// The watchdog's settings; [`Default`]: on, startup deadline 60 s, heartbeat every 1 s, a
/// host lost after 10 missed heartbeats (10 s of silence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    watchdog: bool,
    startup: Duration,
    heartbeat: Duration,
    misses: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            watchdog: true,
            startup: Duration::from_secs(60),
            heartbeat: Duration::from_secs(1),
            misses: 10,
        }
    }
}

impl ClusterOptions {
    /// The defaults, overridden by [`WATCHDOG_VAR`], [`STARTUP_VAR`], [`HEARTBEAT_VAR`] and
    /// [`MISSES_VAR`] where set. An unreadable value is an error naming the variable.
    pub fn from_env() -> Result<Self, Error> {
        Self::default().with_vars(|name| std::env::var(name).ok())
    }

    /// The settings with the variables that `get` returns applied (as [`from_env`](Self::from_env)).
    pub fn with_vars(mut self, get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let bad = |variable: &str, value: &str, reason: String| Error::ClusterConfig {
            variable: variable.to_string(),
            value: value.to_string(),
            reason,
        };
        if let Some(value) = get(WATCHDOG_VAR) {
            self.watchdog = match value.trim().to_ascii_lowercase().as_str() {
                "on" | "1" | "true" | "yes" => true,
                "off" | "0" | "false" | "no" => false,
                _ => return Err(bad(WATCHDOG_VAR, &value, "expected on or off".into())),
            };
        }
        for (variable, target) in [
            (STARTUP_VAR, &mut self.startup),
            (HEARTBEAT_VAR, &mut self.heartbeat),
        ] {
            if let Some(value) = get(variable) {
                let duration = humantime::parse_duration(value.trim())
                    .map_err(|e| bad(variable, &value, e.to_string()))?;
                if duration < Duration::from_millis(10) {
                    return Err(bad(variable, &value, "must be at least 10ms".into()));
                }
                *target = duration;
            }
        }
        if let Some(value) = get(MISSES_VAR) {
            self.misses = match value.trim().parse::<u32>() {
                Ok(n) if n >= 2 => n,
                _ => return Err(bad(MISSES_VAR, &value, "expected a number >= 2".into())),
            };
        }
        Ok(self)
    }

    /// Whether the watchdog runs (default: yes).
    pub fn with_watchdog(mut self, enabled: bool) -> Self {
        self.watchdog = enabled;
        self
    }

    /// How long every process has to start and timely's connection phase to finish
    /// (default 60 s; at least 10 ms).
    pub fn with_startup_deadline(mut self, deadline: Duration) -> Self {
        self.startup = deadline.max(Duration::from_millis(10));
        self
    }

    /// How often each process sends a heartbeat to every other (default 1 s; at least 10 ms).
    pub fn with_heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval.max(Duration::from_millis(10));
        self
    }

    /// Missed heartbeats after which a silent host is lost (default 10; at least 2).
    pub fn with_misses(mut self, misses: u32) -> Self {
        self.misses = misses.max(2);
        self
    }

    /// Whether the watchdog runs.
    pub fn watchdog(&self) -> bool {
        self.watchdog
    }

    /// The startup deadline.
    pub fn startup_deadline(&self) -> Duration {
        self.startup
    }

    /// The silence after which a host is lost: `misses` x the heartbeat interval.
    pub fn silence_bound(&self) -> Duration {
        self.heartbeat.saturating_mul(self.misses)
    }
}

/// The worker guards of a cluster run: [`join`](Self::join) them like timely's. Joining or
/// dropping them stops the watchdog, and tells the other processes that this one finished
/// (when every worker succeeded).
pub struct ClusterGuards<T: Send + 'static> {
    guards: Option<WorkerGuards<T>>,
    watchdog: Option<Watchdog>,
}

impl<T: Send + 'static> std::fmt::Debug for ClusterGuards<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterGuards")
            .field("joined", &self.guards.is_none())
            .field("watchdog", &self.watchdog.is_some())
            .finish()
    }
}

impl<T: Send + 'static> ClusterGuards<T> {
    /// Waits for every worker of this process; their results, as timely's
    /// [`WorkerGuards::join`].
    pub fn join(mut self) -> Vec<Result<T, String>> {
        let results = self
            .guards
            .take()
            .map(WorkerGuards::join)
            .unwrap_or_default();
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.finish(results.iter().all(Result::is_ok));
        }
        results
    }
}

impl<T: Send + 'static> Drop for ClusterGuards<T> {
    fn drop(&mut self) {
        if let Some(guards) = self.guards.take() {
            let ok = guards.join().iter().all(Result::is_ok);
            if let Some(watchdog) = self.watchdog.take() {
                watchdog.finish(ok);
            }
        }
    }
}

/// [`timely::execute()`] under the watchdog (see the [module](self)): a `Cluster`
/// configuration of two or more processes gets the startup deadline and the heartbeats of
/// `options`; anything else runs as plain timely.
///
/// # Errors
/// [`Error::ClusterSetup`] when the heartbeat socket cannot be bound (another process holds
/// UDP on this timely port, or the address is not this machine's); [`Error::Timely`] when
/// timely cannot start.
pub fn execute<T, F>(
    config: timely::Config,
    options: ClusterOptions,
    func: F,
) -> Result<ClusterGuards<T>, Error>
where
    T: Send + 'static,
    F: Fn(&mut Worker) -> T + Send + Sync + 'static,
{
    let watchdog = match &config.communication {
        timely::CommunicationConfig::Cluster {
            process, addresses, ..
        } if options.watchdog && addresses.len() > 1 => {
            Some(Watchdog::start(*process, addresses, &options)?)
        }
        _ => None,
    };
    let guards = timely::execute(config, func).map_err(|message| Error::Timely { message })?;
    if let Some(watchdog) = &watchdog {
        watchdog.connected();
    }
    Ok(ClusterGuards {
        guards: Some(guards),
        watchdog,
    })
}

/// [`timely::execute_from_args`] under the watchdog: timely's arguments (`-w -n -p -h`;
/// other words, such as a program name, are ignored) read by [`timely::Config::from_args`], then
/// [`execute`].
///
/// # Errors
/// [`Error::Timely`] for arguments timely cannot read, and those of [`execute`].
pub fn execute_from_args<I, T, F>(
    args: I,
    options: ClusterOptions,
    func: F,
) -> Result<ClusterGuards<T>, Error>
where
    I: IntoIterator<Item = String>,
    T: Send + 'static,
    F: Fn(&mut Worker) -> T + Send + Sync + 'static,
{
    let mut config =
        timely::Config::from_args(args.into_iter()).map_err(|message| Error::Timely { message })?;
    // No cluster on the command line (-n/-p/-h): under Slurm, its environment says.
    let threads = match config.communication {
        timely::CommunicationConfig::Thread => Some(1),
        timely::CommunicationConfig::Process(n) | timely::CommunicationConfig::ProcessBinary(n) => {
            Some(n)
        }
        timely::CommunicationConfig::Cluster { .. } => None,
    };
    if let Some(threads) = threads {
        if let Some(launch) = slurm_launch() {
            config.communication = launch?.config(threads);
        }
    }
    execute(config, options, func)
}

const MAGIC: &[u8; 4] = b"PSHB";
const VERSION: u8 = 1;
const BEAT: u8 = 0;
const BYE: u8 = 1;
const PACKET: usize = 18;

/// A heartbeat datagram: magic, version, kind, sender index, cluster id.
fn packet(kind: u8, sender: u32, cluster: u64) -> [u8; PACKET] {
    let mut p = [0u8; PACKET];
    p[..4].copy_from_slice(MAGIC);
    p[4] = VERSION;
    p[5] = kind;
    p[6..10].copy_from_slice(&sender.to_le_bytes());
    p[10..18].copy_from_slice(&cluster.to_le_bytes());
    p
}

/// The kind and sender of a datagram of this cluster; `None` for anything else.
fn parse_packet(data: &[u8], cluster: u64) -> Option<(u8, usize)> {
    if data.len() != PACKET || &data[..4] != MAGIC || data[4] != VERSION {
        return None;
    }
    let kind = data[5];
    let sender = u32::from_le_bytes(data[6..10].try_into().ok()?);
    let id = u64::from_le_bytes(data[10..18].try_into().ok()?);
    (id == cluster && (kind == BEAT || kind == BYE)).then_some((kind, sender as usize))
}

/// FNV-1a of the address list: the same on every process of one cluster, whatever its
/// build (unlike `DefaultHasher`), so heartbeats of another cluster are ignored.
fn cluster_id(addresses: &[String]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in addresses.join("\n").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The first address of a hostfile line (timely binds each whitespace-separated one).
fn first_address(line: &str) -> &str {
    line.split_whitespace().next().unwrap_or(line)
}

fn resolve(line: &str) -> Option<SocketAddr> {
    first_address(line).to_socket_addrs().ok()?.next()
}

/// Who has been heard from, and when: the watchdog's decisions, apart from its socket.
#[derive(Debug)]
struct Liveness {
    me: usize,
    addresses: Vec<String>,
    startup: Duration,
    silence: Duration,
    heartbeat: Duration,
    misses: u32,
    started: Instant,
    connected: Option<Instant>,
    last: Vec<Option<Instant>>,
    done: Vec<bool>,
}

impl Liveness {
    fn new(me: usize, addresses: &[String], options: &ClusterOptions, now: Instant) -> Self {
        Liveness {
            me,
            addresses: addresses.to_vec(),
            startup: options.startup,
            silence: options.silence_bound(),
            heartbeat: options.heartbeat,
            misses: options.misses,
            started: now,
            connected: None,
            last: vec![None; addresses.len()],
            done: vec![false; addresses.len()],
        }
    }

    fn heard(&mut self, kind: u8, from: usize, now: Instant) {
        if from == self.me || from >= self.last.len() {
            return;
        }
        self.last[from] = Some(now);
        if kind == BYE {
            self.done[from] = true;
        }
    }

    /// The failure to end the process with, if any, at `now`.
    fn check(&self, now: Instant) -> Option<Error> {
        for (process, last) in self.last.iter().enumerate() {
            if process == self.me || self.done[process] {
                continue;
            }
            let address = self.addresses[process].clone();
            // A process that timely connected to has joined, heard or not (UDP blocked?).
            match last.or(self.connected) {
                Some(since) if now.saturating_duration_since(since) > self.silence => {
                    return Some(Error::HostLost {
                        process,
                        address,
                        silent: round_ms(now.saturating_duration_since(since)),
                        heartbeat: self.heartbeat,
                        misses: self.misses,
                        never_heard: last.is_none(),
                    });
                }
                None if now.saturating_duration_since(self.started) > self.startup => {
                    return Some(Error::HostNeverJoined {
                        process,
                        address,
                        deadline: self.startup,
                    });
                }
                _ => {}
            }
        }
        if self.connected.is_none() && now.saturating_duration_since(self.started) > self.startup {
            return Some(Error::ClusterConnect {
                process: self.me,
                deadline: self.startup,
                addresses: self.addresses.join(", "),
            });
        }
        None
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// The watchdog thread of one process and what it shares with the main thread.
#[derive(Debug)]
struct Watchdog {
    stop: Arc<AtomicBool>,
    say_bye: Arc<AtomicBool>,
    liveness: Arc<Mutex<Liveness>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(me: usize, addresses: &[String], options: &ClusterOptions) -> Result<Self, Error> {
        let own = addresses.get(me).ok_or_else(|| Error::ClusterSetup {
            address: format!("process {me}"),
            reason: format!("the cluster lists only {} addresses", addresses.len()),
        })?;
        let setup = |reason: String| Error::ClusterSetup {
            address: own.clone(),
            reason,
        };
        let own_addr = resolve(own).ok_or_else(|| setup("cannot resolve it".into()))?;
        // Loopback clusters stay on loopback; otherwise listen on every interface of the
        // address family (the hostfile may name this machine by a name that resolves to
        // an address other than the one the others reach).
        let bind_ip = match own_addr.ip() {
            ip if ip.is_loopback() => ip,
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = UdpSocket::bind(SocketAddr::new(bind_ip, own_addr.port()))
            .map_err(|e| setup(format!("binding its heartbeat socket (UDP) failed: {e}")))?;
        let tick =
            (options.heartbeat / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
        socket
            .set_read_timeout(Some(tick))
            .map_err(|e| setup(format!("configuring its heartbeat socket: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let say_bye = Arc::new(AtomicBool::new(false));
        let liveness = Arc::new(Mutex::new(Liveness::new(
            me,
            addresses,
            options,
            Instant::now(),
        )));
        let cluster = cluster_id(addresses);
        let heartbeat = options.heartbeat;
        let mut targets: Vec<Option<SocketAddr>> = vec![None; addresses.len()];
        let lines = addresses.to_vec();
        let (t_stop, t_bye, t_live) = (stop.clone(), say_bye.clone(), liveness.clone());
        let thread = std::thread::Builder::new()
            .name("cluster-watchdog".into())
            .spawn(move || {
                let send_all = |targets: &mut Vec<Option<SocketAddr>>, kind: u8| {
                    for (process, target) in targets.iter_mut().enumerate() {
                        if process == me {
                            continue;
                        }
                        if target.is_none() {
                            *target = resolve(&lines[process]);
                        }
                        if let Some(addr) = target {
                            // Lost datagrams are what the misses allow for.
                            let _ = socket.send_to(&packet(kind, me as u32, cluster), *addr);
                        }
                    }
                };
                let mut next_beat = Instant::now();
                let mut buf = [0u8; 64];
                loop {
                    if t_stop.load(Ordering::Acquire) {
                        if t_bye.load(Ordering::Acquire) {
                            for _ in 0..3 {
                                send_all(&mut targets, BYE);
                            }
                        }
                        return;
                    }
                    if Instant::now() >= next_beat {
                        send_all(&mut targets, BEAT);
                        next_beat += heartbeat;
                        // After a stall (a stopped or starved process), beat from now on.
                        next_beat = next_beat.max(Instant::now());
                    }
                    if let Ok((n, _)) = socket.recv_from(&mut buf) {
                        if let Some((kind, from)) = parse_packet(&buf[..n], cluster) {
                            t_live.lock().unwrap_or_else(PoisonError::into_inner).heard(
                                kind,
                                from,
                                Instant::now(),
                            );
                        }
                    }
                    let failure = t_live
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .check(Instant::now());
                    if let Some(error) = failure {
                        if t_stop.load(Ordering::Acquire) {
                            return;
                        }
                        let code = error.exit_code().unwrap_or(EXIT_HOST_LOST);
                        eprintln!("error: {error} (exit status {code})");
                        std::process::exit(code);
                    }
                }
            })
            .map_err(|e| setup(format!("starting the watchdog thread: {e}")))?;
        Ok(Watchdog {
            stop,
            say_bye,
            liveness,
            thread: Some(thread),
        })
    }

    /// Timely's connection phase finished: every process has joined.
    fn connected(&self) {
        self.liveness
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connected = Some(Instant::now());
    }

    /// Stops the thread; says goodbye to the other processes first if `ok`.
    fn finish(mut self, ok: bool) {
        self.say_bye.store(ok, Ordering::Release);
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:2101", i + 1)).collect()
    }

    fn options() -> ClusterOptions {
        ClusterOptions::default()
            .with_startup_deadline(Duration::from_secs(5))
            .with_heartbeat(Duration::from_secs(1))
            .with_misses(3)
    }

    #[test]
    fn a_host_never_heard_ends_the_startup_naming_it() {
        let t0 = Instant::now();
        let mut live = Liveness::new(0, &addresses(3), &options(), t0);
        live.heard(BEAT, 1, t0 + Duration::from_secs(1));
        assert!(live.check(t0 + Duration::from_secs(4)).is_none());
        live.heard(BEAT, 1, t0 + Duration::from_secs(4));
        let error = live.check(t0 + Duration::from_secs(6)).expect("a failure");
        assert_eq!(error.exit_code(), Some(EXIT_NEVER_JOINED));
        let text = error.to_string();
        assert!(
            text.contains("process 2") && text.contains("10.0.0.3:2101"),
            "{text}"
        );
    }

    #[test]
    fn a_silent_host_is_lost_after_the_misses_and_a_goodbye_is_not() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut live = Liveness::new(1, &addresses(3), &options(), t0);
        live.heard(BEAT, 0, t0);
        live.heard(BEAT, 2, t0);
        live.connected = Some(t0 + s(1));
        live.heard(BEAT, 0, t0 + s(2));
        live.heard(BYE, 2, t0 + s(2));
        assert!(
            live.check(t0 + s(5)).is_none(),
            "3 s of silence is the bound"
        );
        let error = live.check(t0 + s(6)).expect("lost");
        assert_eq!(error.exit_code(), Some(EXIT_HOST_LOST));
        let text = error.to_string();
        assert!(
            text.contains("process 0") && text.contains("10.0.0.1:2101"),
            "{text}"
        );
        // Heartbeats from itself or out of range change nothing.
        live.heard(BEAT, 1, t0 + s(6));
        live.heard(BEAT, 99, t0 + s(6));
        assert!(live.check(t0 + s(6)).is_some());
    }

    #[test]
    fn a_connection_phase_past_the_deadline_fails() {
        let t0 = Instant::now();
        let mut live = Liveness::new(0, &addresses(2), &options(), t0);
        live.heard(BEAT, 1, t0 + Duration::from_secs(5));
        let error = live.check(t0 + Duration::from_secs(6)).expect("failure");
        assert_eq!(error.exit_code(), Some(EXIT_NEVER_JOINED));
        assert!(error.to_string().contains("connection phase"), "{error}");
    }

    #[test]
    fn packets_round_trip_and_others_are_ignored() {
        let id = cluster_id(&addresses(3));
        assert_ne!(id, cluster_id(&addresses(2)));
        assert_eq!(parse_packet(&packet(BEAT, 2, id), id), Some((BEAT, 2)));
        assert_eq!(parse_packet(&packet(BYE, 0, id), id), Some((BYE, 0)));
        assert_eq!(parse_packet(&packet(BEAT, 2, id), id ^ 1), None);
        assert_eq!(parse_packet(&packet(7, 2, id), id), None);
        let p = packet(BEAT, 2, id);
        for len in 0..PACKET {
            assert_eq!(parse_packet(&p[..len], id), None);
        }
        assert_eq!(parse_packet(&[0xff; 64], id), None);
    }

    #[test]
    fn options_from_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let o = ClusterOptions::default()
            .with_vars(vars(&[]))
            .expect("defaults");
        assert_eq!(o, ClusterOptions::default());
        assert_eq!(o.silence_bound(), Duration::from_secs(10));
        let o = ClusterOptions::default()
            .with_vars(vars(&[
                (STARTUP_VAR, "3s"),
                (HEARTBEAT_VAR, "200ms"),
                (MISSES_VAR, "5"),
                (WATCHDOG_VAR, "off"),
            ]))
            .expect("set");
        assert_eq!(o.startup_deadline(), Duration::from_secs(3));
        assert_eq!(o.silence_bound(), Duration::from_secs(1));
        assert!(!o.watchdog());
        for bad in [
            &[(STARTUP_VAR, "soon")][..],
            &[(HEARTBEAT_VAR, "1ms")],
            &[(MISSES_VAR, "1")],
            &[(MISSES_VAR, "-3")],
            &[(WATCHDOG_VAR, "maybe")],
        ] {
            let error = ClusterOptions::default()
                .with_vars(vars(bad))
                .expect_err("refused");
            assert!(error.to_string().contains(bad[0].0), "{error}");
        }
    }

    #[test]
    fn slurm_node_lists_expand() {
        let names = |list: &str| parse_nodelist(list).expect(list);
        assert_eq!(
            names("node[01-04,07]"),
            ["node01", "node02", "node03", "node04", "node07"]
        );
        assert_eq!(names("a[1-2],b3"), ["a1", "a2", "b3"]);
        assert_eq!(names("n[8-11]"), ["n8", "n9", "n10", "n11"]);
        assert_eq!(names("n[098-100]"), ["n098", "n099", "n100"]);
        assert_eq!(names("10.0.0.[1-3]"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(names("r[1-2]-n[1-2]"), ["r1-n1", "r1-n2", "r2-n1", "r2-n2"]);
        assert_eq!(names(" single "), ["single"]);
        assert_eq!(names("a,b[5],c"), ["a", "b5", "c"]);
    }

    #[test]
    fn hostile_node_lists_are_errors_not_panics() {
        for list in [
            "",
            ",",
            "a,,b",
            "a[",
            "a]",
            "a[1-2",
            "a1-2]",
            "a[]",
            "a[-1]",
            "a[1-]",
            "a[5-1]",
            "a[x]",
            "a[1-2,]",
            "a[[1]]",
            "a[1]]",
            "a[1-99999999999999999999]",
            "a[0-18446744073709551615]",
            "a[0-999999]",
            "a[0-300]b[0-300]",
            "\u{0}[\u{ff}]",
            "a[١-٣]",
        ] {
            assert!(parse_nodelist(list).is_err(), "{list:?} accepted");
        }
        // The bound holds also across many small groups.
        let many = vec!["a[0-99]"; 700].join(",");
        assert!(parse_nodelist(&many).is_err());
        assert_eq!(
            parse_nodelist(&vec!["a[0-99]"; 600].join(",")).map(|v| v.len()),
            Ok(60_000)
        );
    }

    #[test]
    fn random_node_lists_never_panic() {
        // Every string of up to 10 characters from the grammar's alphabet that a simple
        // generator reaches: an answer, never a panic, never past the bound.
        let alphabet: Vec<char> = "a019-[],x ".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = (state >> 60) as usize % 11;
            for _ in 0..len {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                text.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            if let Ok(names) = parse_nodelist(&text) {
                assert!(names.len() <= MAX_SLURM_TASKS, "{text:?}");
            }
            // The same strings as a distribution, over a small valid layout: an answer.
            let distribution = text.replace('x', "plane=").replace('a', "cyclic");
            let launch = slurm_launch_from(|name: &str| match name {
                "SLURM_PROCID" => Some("1".to_string()),
                "SLURM_NTASKS" => Some("4".to_string()),
                "SLURM_JOB_NODELIST" => Some("n[1-3]".to_string()),
                "SLURM_TASKS_PER_NODE" => Some("2,1,1".to_string()),
                "SLURM_DISTRIBUTION" => Some(distribution.clone()),
                _ => None,
            });
            if let Some(Ok(launch)) = launch {
                assert_eq!(launch.addresses.len(), 4, "{distribution:?}");
            }
        }
    }

    #[test]
    fn slurm_environment_gives_the_cluster() {
        let vars = |pairs: Vec<(&'static str, &'static str)>| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        // Not under srun, or a single task: no cluster.
        assert!(slurm_launch_from(vars(vec![])).is_none());
        assert!(
            slurm_launch_from(vars(vec![("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")])).is_none()
        );

        let launch = slurm_launch_from(vars(vec![
            ("SLURM_PROCID", "2"),
            ("SLURM_NTASKS", "3"),
            ("SLURM_JOB_NODELIST", "node[01-03]"),
        ]))
        .expect("under slurm")
        .expect("valid");
        assert_eq!(launch.process, 2);
        assert_eq!(
            launch.addresses,
            ["node01:2101", "node02:2101", "node03:2101"]
        );

        // Several tasks per node: consecutive ports, in blocks; the step's list wins.
        let launch = slurm_launch_from(vars(vec![
            ("SLURM_PROCID", "1"),
            ("SLURM_NTASKS", "5"),
            ("SLURM_JOB_NODELIST", "x[1-9]"),
            ("SLURM_STEP_NODELIST", "a[1-2],b3"),
            ("SLURM_STEP_TASKS_PER_NODE", "2(x2),1"),
            ("PROXYSTORE_TIMELY_PORT", "7100"),
        ]))
        .expect("under slurm")
        .expect("valid");
        assert_eq!(
            launch.addresses,
            ["a1:7100", "a1:7101", "a2:7100", "a2:7101", "b3:7100"]
        );

        // srun --distribution: cyclic and plane=N place tasks round after round, skipping
        // nodes whose tasks are all placed; the node level is the value's first part.
        let layout = |distribution: &'static str, per_node: &'static str, tasks: &'static str| {
            slurm_launch_from(vars(vec![
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", tasks),
                ("SLURM_JOB_NODELIST", "a,b,c"),
                ("SLURM_TASKS_PER_NODE", per_node),
                ("SLURM_DISTRIBUTION", distribution),
            ]))
            .expect("under slurm")
            .map(|launch| launch.addresses)
        };
        assert_eq!(
            layout("cyclic", "2,1,2", "5").expect("valid"),
            ["a:2101", "b:2101", "c:2101", "a:2102", "c:2102"]
        );
        assert_eq!(
            layout("Cyclic:Block,Pack", "2(x3)", "6").expect("valid"),
            ["a:2101", "b:2101", "c:2101", "a:2102", "b:2102", "c:2102"]
        );
        assert_eq!(
            layout("plane=2", "3,3,1", "7").expect("valid"),
            ["a:2101", "a:2102", "b:2101", "b:2102", "c:2101", "a:2103", "b:2103"]
        );
        for block in ["block", "*", "block:cyclic", ""] {
            assert_eq!(
                layout(block, "2,1,1", "4").expect(block),
                ["a:2101", "a:2102", "b:2101", "c:2101"]
            );
        }
        for refused in [
            "arbitrary",
            "plane=0",
            "plane=",
            "plane=x",
            "spiral",
            "plane=-1",
        ] {
            let error = layout(refused, "1,1,1", "3").expect_err(refused);
            assert!(error.to_string().contains("SLURM_DISTRIBUTION"), "{error}");
        }

        for bad in [
            vec![
                ("SLURM_PROCID", "3"),
                ("SLURM_NTASKS", "3"),
                ("SLURM_JOB_NODELIST", "n[1-3]"),
            ],
            vec![
                ("SLURM_PROCID", "x"),
                ("SLURM_NTASKS", "3"),
                ("SLURM_JOB_NODELIST", "n[1-3]"),
            ],
            vec![("SLURM_PROCID", "0"), ("SLURM_NTASKS", "3")],
            vec![
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "4"),
                ("SLURM_JOB_NODELIST", "n[1-3]"),
            ],
            vec![
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "99999999"),
                ("SLURM_JOB_NODELIST", "n1"),
            ],
            vec![
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "3"),
                ("SLURM_JOB_NODELIST", "n[1-3]"),
                ("PROXYSTORE_TIMELY_PORT", "0"),
            ],
            vec![
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "4"),
                ("SLURM_JOB_NODELIST", "n[1-2]"),
                ("SLURM_TASKS_PER_NODE", "2(x2"),
            ],
            vec![
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "4"),
                ("SLURM_JOB_NODELIST", "n[1-2]"),
                ("SLURM_TASKS_PER_NODE", "1(x18446744073709551615)"),
            ],
            vec![
                ("SLURM_PROCID", "0"),
                ("SLURM_NTASKS", "2"),
                ("SLURM_JOB_NODELIST", "n1"),
                ("SLURM_TASKS_PER_NODE", "2"),
                ("PROXYSTORE_TIMELY_PORT", "65535"),
            ],
        ] {
            let shown = format!("{bad:?}");
            let result = slurm_launch_from(vars(bad)).expect("under slurm");
            assert!(result.is_err(), "{shown} accepted: {result:?}");
        }
    }

    #[test]
    fn one_process_runs_plain_timely() {
        // A real cluster under the watchdog is in tests/multihost.rs and the examples.
        let config = timely::Config::thread();
        let guards = execute(config, ClusterOptions::default(), |w| w.index()).expect("run");
        assert_eq!(
            guards.join().into_iter().collect::<Result<Vec<_>, _>>(),
            Ok(vec![0])
        );
    }
}
