//! Command-line options of the parent (clap), and the parameters handed to each child
//! process.
//!
//! The parent starts each child as `scatter --child KEY=VALUE ...` ([`ChildSpec::to_args`]);
//! the hidden `--child` option of the same command line reads them back
//! ([`ChildSpec::from_args`]), so parent and child always agree on the protocol.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use super::workloads::{format_size, parse_size, Mode, Workload, MIN_PAYLOAD};

/// Said after the options in `--help`.
const AFTER_HELP: &str = "\
Every point (workload x mode x payload size x repetition) runs as fresh child processes
forming one Timely cluster on 127.0.0.1 (raw-zmq: plain ZeroMQ sockets, iceoryx2:
iceoryx2 publish-subscribe in shared memory; neither runs Timely).
Hostfile mode (--hostfile FILE --process I, the same command on every machine): each
point runs across the machines the hostfile lists, this machine playing process I; the
peers bind as the PROXYSTORE_ZMQ_* variables say; process 0 prints the figures.
Options given on the command line or in the environment override --quick's choices;
command-line options win over the environment.

Examples:
  scatter --quick
  scatter --workloads=selective --workers=2 --reps=5 --out=target/scatter-2x2
  SCATTER_BENCH_OUT=/data/scatter scatter --sizes 1MiB,16MiB --modes proxy,auto
  PROXYSTORE_ZMQ_INTERFACE=10.0.0.1 scatter --hostfile hosts.txt --process 0 --modes proxy";

/// The command line, as clap reads it (see [`parse_from`]).
#[derive(Debug, Parser)]
#[command(
    name = "scatter",
    version,
    about = "scatter: proxied dataflow against Timely's own exchange, across real processes on loopback",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Processes per cluster [default: 2]
    #[arg(long, value_name = "N", env = "SCATTER_BENCH_PROCESSES", value_parser = at_least_one)]
    processes: Option<usize>,
    /// Worker threads per process [default: 1]
    #[arg(long, value_name = "N", env = "SCATTER_BENCH_WORKERS", value_parser = at_least_one)]
    workers: Option<usize>,
    /// Comma-separated: scatter,broadcast,selective [default: all]
    #[arg(
        long,
        value_name = "LIST",
        env = "SCATTER_BENCH_WORKLOADS",
        value_delimiter = ','
    )]
    workloads: Option<Vec<Workload>>,
    /// Comma-separated: native,native-bytes,proxy,proxy-tcp,proxy-inplace,auto,raw-zmq,
    /// iceoryx2 [default: all]; proxy-tcp is proxy with same-host shared memory off (every
    /// fetch over loopback TCP); proxy-inplace writes each payload straight into the
    /// producer's shared memory (`proxy_in_place`); raw-zmq and iceoryx2 are baselines without Timely (iceoryx2 on one host only)
    #[arg(
        long,
        value_name = "LIST",
        env = "SCATTER_BENCH_MODES",
        value_delimiter = ','
    )]
    modes: Option<Vec<Mode>>,
    /// Payload sizes, e.g. 1KiB,64KiB,1MiB,16MiB (the default)
    #[arg(long, value_name = "LIST", env = "SCATTER_BENCH_SIZES", value_delimiter = ',', value_parser = payload_size)]
    sizes: Option<Vec<u64>>,
    /// Payload bytes produced per point; the record count is N / size, capped by
    /// --max-records [default: 256MiB]
    #[arg(long, value_name = "N", value_parser = parse_size)]
    bytes: Option<u64>,
    /// Record cap per point, for small sizes [default: 262144]
    #[arg(long, value_name = "N")]
    max_records: Option<u64>,
    /// Repetitions per point; the table shows medians [default: 3]
    #[arg(long, value_name = "N", env = "SCATTER_BENCH_REPS", value_parser = at_least_one)]
    reps: Option<usize>,
    /// Payload bytes per Timely epoch (at least one record) [default: 8MiB]
    #[arg(long, value_name = "N", value_parser = parse_size)]
    batch: Option<u64>,
    /// Epochs in flight before the producer waits [default: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    window: Option<u64>,
    /// Deadline per point in seconds; 0 picks one from the bytes moved [default: 0]
    #[arg(long, value_name = "SECS", env = "SCATTER_BENCH_TIMEOUT")]
    timeout: Option<u64>,
    /// Where runs.csv, summary.csv and the SVG plots go [default: target/scatter]
    #[arg(long, value_name = "DIR", env = "SCATTER_BENCH_OUT")]
    out: Option<PathBuf>,
    /// A small run for smoke tests (sizes 1KiB,64KiB,1MiB, 16MiB per point, at most 2048
    /// records, 1 repetition)
    #[arg(long)]
    quick: bool,
    /// Skip the SVG plots
    #[arg(long)]
    no_plot: bool,
    /// Run nothing: read a runs.csv written before and print its table, write summary.csv
    /// and the plots into --out
    #[arg(long, value_name = "FILE")]
    from_csv: Option<PathBuf>,
    /// Hostfile mode: a text file of the cluster's timely addresses (host:port per line, the
    /// same file on every machine); this run plays process --process of every point, and
    /// process 0 measures. Start the same command on every machine. Not for iceoryx2 (one
    /// host only); raw-zmq listens at the hostfile's ports + 1000 and up.
    #[arg(long, value_name = "FILE", requires = "process")]
    hostfile: Option<PathBuf>,
    /// Hostfile mode: this machine's index in the hostfile
    #[arg(long, value_name = "IDX", requires = "hostfile")]
    process: Option<usize>,
    /// Internal: play one process of one point, as the parent asks (KEY=VALUE parameters,
    /// see `ChildSpec::to_args`)
    #[arg(long = "child", hide = true, num_args = 1.., value_name = "KEY=VALUE")]
    child: Option<Vec<String>>,
}

/// A count of at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a valid number")),
    }
}

/// A payload size no smaller than [`MIN_PAYLOAD`].
fn payload_size(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if size < MIN_PAYLOAD {
        return Err(format!(
            "payload size {size} is below the minimum of {MIN_PAYLOAD} bytes"
        ));
    }
    Ok(size)
}

impl Cli {
    /// What the command line asks for.
    fn into_command(self) -> Result<Command, String> {
        if let Some(child) = self.child {
            return ChildSpec::from_args(&child).map(Command::Child);
        }
        let mut options = Options::default();
        if self.quick {
            options.quick();
        }
        // Explicit choices (command line or environment) win over --quick's.
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut options.processes, self.processes);
        set(&mut options.workers, self.workers);
        set(&mut options.workloads, self.workloads);
        let modes_given = self.modes.is_some();
        set(&mut options.modes, self.modes);
        set(&mut options.sizes, self.sizes);
        set(&mut options.bytes_per_point, self.bytes);
        set(&mut options.max_records, self.max_records);
        set(&mut options.reps, self.reps);
        set(&mut options.batch_bytes, self.batch);
        set(&mut options.window, self.window);
        set(&mut options.out, self.out);
        if let Some(secs) = self.timeout {
            options.timeout = (secs > 0).then(|| Duration::from_secs(secs));
        }
        options.plot = !self.no_plot;
        if let (Some(hostfile), Some(process)) = (self.hostfile, self.process) {
            options.hostfile = Some(Hostfile::read(&hostfile, process)?);
            if self.processes.is_some() {
                return Err("--processes is the hostfile's line count in hostfile mode".into());
            }
            if let Some(mode) = options.modes.iter().find(|m| m.local_only()) {
                if modes_given {
                    return Err(format!(
                        "{mode} runs on one host only, not in hostfile mode"
                    ));
                }
                options.modes.retain(|m| !m.local_only());
            }
        }
        if let Some(hostfile) = &options.hostfile {
            options.processes = hostfile.addresses.len();
        }
        options.from_csv = self.from_csv;
        options.sizes.sort_unstable();
        options.sizes.dedup();
        Ok(Command::Run(options))
    }
}

/// What the parent process was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Processes per cluster.
    pub processes: usize,
    /// Worker threads per process.
    pub workers: usize,
    /// Workloads to run, in order.
    pub workloads: Vec<Workload>,
    /// Modes to run, in order.
    pub modes: Vec<Mode>,
    /// Payload sizes in bytes, ascending.
    pub sizes: Vec<u64>,
    /// Payload bytes produced per point (before the record cap).
    pub bytes_per_point: u64,
    /// The most records one point produces.
    pub max_records: u64,
    /// Repetitions of every point.
    pub reps: usize,
    /// Payload bytes per Timely epoch.
    pub batch_bytes: u64,
    /// Epochs in flight before the producer waits for the consumers.
    pub window: u64,
    /// Deadline per point (`None`: derived from the bytes moved).
    pub timeout: Option<Duration>,
    /// Output directory.
    pub out: PathBuf,
    /// Whether to draw the SVG plots.
    pub plot: bool,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Read this `runs.csv` instead of running anything.
    pub from_csv: Option<PathBuf>,
    /// Hostfile mode: the cluster across machines and this machine's place in it.
    pub hostfile: Option<Hostfile>,
}

/// A cluster across machines (`--hostfile` and `--process`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostfile {
    /// Every process's timely address, in process order.
    pub addresses: Vec<String>,
    /// The process this run plays.
    pub process: usize,
}

impl Hostfile {
    /// Reads `path` (non-empty lines, `host:port`) for process `process`.
    pub fn read(path: &std::path::Path, process: usize) -> Result<Hostfile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the hostfile {}: {e}", path.display()))?;
        Hostfile::parse(&text, process).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The addresses of a hostfile's text, for process `process`.
    pub fn parse(text: &str, process: usize) -> Result<Hostfile, String> {
        let addresses: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if let Some(bad) = addresses
            .iter()
            .find(|a| !a.contains(':') || a.contains(','))
        {
            return Err(format!("`{bad}` is not host:port"));
        }
        if process >= addresses.len() {
            return Err(format!(
                "process {process} is not among its {} lines",
                addresses.len()
            ));
        }
        Ok(Hostfile { addresses, process })
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            processes: 2,
            workers: 1,
            workloads: Workload::ALL.to_vec(),
            modes: Mode::ALL.to_vec(),
            sizes: vec![1 << 10, 64 << 10, 1 << 20, 16 << 20],
            bytes_per_point: 256 << 20,
            max_records: 262_144,
            reps: 3,
            batch_bytes: 8 << 20,
            window: 4,
            timeout: None,
            out: PathBuf::from("target/scatter"),
            plot: true,
            quick: false,
            from_csv: None,
            hostfile: None,
        }
    }
}

impl Options {
    fn quick(&mut self) {
        self.quick = true;
        self.sizes = vec![1 << 10, 64 << 10, 1 << 20];
        self.bytes_per_point = 16 << 20;
        self.max_records = 2048;
        self.reps = 1;
    }

    /// How many records a point of payload `size` produces.
    pub fn records(&self, size: u64) -> u64 {
        self.bytes_per_point
            .div_ceil(size.max(1))
            .clamp(1, self.max_records.max(1))
    }

    /// Workers in the whole cluster.
    pub fn total_workers(&self) -> usize {
        self.processes * self.workers
    }

    /// A one-line description of the run, for reports.
    pub fn describe(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(|&s| format_size(s)).collect();
        format!(
            "{} processes x {} workers; sizes {}; {} per point (at most {} records); {} repetition(s)",
            self.processes,
            self.workers,
            sizes.join(", "),
            format_size(self.bytes_per_point),
            self.max_records,
            self.reps
        )
    }
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub enum Command {
    /// Run the benchmark (the parent).
    Run(Options),
    /// Play one process of one point (started by the parent).
    Child(ChildSpec),
}

/// Parses a command line (the program name first). `--help` and `--version` come back as
/// errors of their kind, which [`clap::Error::exit`] prints to standard output with status
/// 0; mistakes print usage to standard error with status 2.
pub fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)?
        .into_command()
        .map_err(|message| Cli::command().error(ErrorKind::ValueValidation, message))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag}: `{text}` is not a valid number"))
}

fn list<T>(text: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    let items: Vec<T> = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse(s.trim()))
        .collect::<Result<_, _>>()?;
    if items.is_empty() {
        return Err(format!("empty list `{text}`"));
    }
    Ok(items)
}

/// The first argument that makes the binary play a child process.
pub const CHILD_FLAG: &str = "--child";

/// Everything one child process needs to play its part in one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpec {
    /// The workload.
    pub workload: Workload,
    /// The mode.
    pub mode: Mode,
    /// Payload size in bytes.
    pub size: u64,
    /// Records produced.
    pub records: u64,
    /// Records per Timely epoch.
    pub batch_records: u64,
    /// Epochs in flight before the producer waits.
    pub window: u64,
    /// Worker threads per process.
    pub workers: usize,
    /// This process's index.
    pub process: usize,
    /// Every process's Timely address (`host:port`); its length is the process count.
    pub addresses: Vec<String>,
    /// raw-zmq: one port per worker of the cluster (workers of process 0 unused), then the
    /// control port of process 0.
    pub zmq_ports: Vec<u16>,
    /// The child gives up (and exits with an error) after this long.
    pub deadline: Duration,
}

impl ChildSpec {
    /// Processes in the cluster.
    pub fn processes(&self) -> usize {
        self.addresses.len()
    }

    /// Workers in the cluster.
    pub fn total_workers(&self) -> usize {
        self.processes() * self.workers
    }

    /// The arguments that make the binary play this child.
    pub fn to_args(&self) -> Vec<String> {
        let ports: Vec<String> = self.zmq_ports.iter().map(u16::to_string).collect();
        vec![
            CHILD_FLAG.to_string(),
            format!("workload={}", self.workload),
            format!("mode={}", self.mode),
            format!("size={}", self.size),
            format!("records={}", self.records),
            format!("batch={}", self.batch_records),
            format!("window={}", self.window),
            format!("workers={}", self.workers),
            format!("process={}", self.process),
            format!("addresses={}", self.addresses.join(",")),
            format!("zmq-ports={}", ports.join(",")),
            format!("deadline-ms={}", self.deadline.as_millis()),
        ]
    }

    /// Parses the arguments made by [`to_args`](ChildSpec::to_args) (after the child flag).
    pub fn from_args(args: &[String]) -> Result<ChildSpec, String> {
        let get = |key: &str| -> Result<&str, String> {
            args.iter()
                .find_map(|a| a.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
                .ok_or_else(|| format!("child: missing {key}="))
        };
        let ports = get("zmq-ports")?;
        let zmq_ports = if ports.is_empty() {
            Vec::new()
        } else {
            list(ports, |p| number("zmq-ports", p))?
        };
        let spec = ChildSpec {
            workload: get("workload")?.parse()?,
            mode: get("mode")?.parse()?,
            size: number("size", get("size")?)?,
            records: number("records", get("records")?)?,
            batch_records: number("batch", get("batch")?)?,
            window: number("window", get("window")?)?,
            workers: number("workers", get("workers")?)?,
            process: number("process", get("process")?)?,
            addresses: list(get("addresses")?, |s| Ok(s.to_string()))?,
            zmq_ports,
            deadline: Duration::from_millis(number("deadline-ms", get("deadline-ms")?)?),
        };
        if spec.process >= spec.processes() || spec.workers == 0 || spec.batch_records == 0 {
            return Err(format!("child: inconsistent parameters {spec:?}"));
        }
        if spec.size < MIN_PAYLOAD {
            return Err(format!(
                "child: payload size {} below {MIN_PAYLOAD}",
                spec.size
            ));
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Command, clap::Error> {
        parse_from(std::iter::once("scatter").chain(list.iter().copied()))
    }

    fn run(list: &[&str]) -> Options {
        match parse(list) {
            Ok(Command::Run(options)) => options,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    #[test]
    fn hostfile_mode() {
        let h = Hostfile::parse("10.0.0.1:2101\n\n 10.0.0.2:2101 \n", 1).expect("hostfile");
        assert_eq!(h.addresses, ["10.0.0.1:2101", "10.0.0.2:2101"]);
        assert_eq!(h.process, 1);
        assert!(Hostfile::parse("10.0.0.1:2101\n", 1).is_err());
        assert!(Hostfile::parse("", 0).is_err());
        assert!(Hostfile::parse("a:1,b:2\n", 0).is_err());
        assert!(Hostfile::parse("nohost\n", 0).is_err());

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        std::fs::write(&path, "10.0.0.1:2101\n10.0.0.2:2101\n10.0.0.3:2101\n").expect("write");
        let file = path.to_string_lossy().into_owned();
        let o = run(&["--hostfile", &file, "--process", "2"]);
        assert_eq!(o.processes, 3);
        assert!(o.modes.contains(&Mode::RawZmq));
        assert!(!o.modes.contains(&Mode::Iceoryx2));
        assert_eq!(o.hostfile.as_ref().map(|h| h.process), Some(2));
        // --process needs --hostfile and the reverse; iceoryx2 and --processes are refused.
        assert!(parse(&["--process", "0"]).is_err());
        assert!(parse(&["--hostfile", &file]).is_err());
        assert!(parse(&["--hostfile", &file, "--process", "0", "--modes", "iceoryx2"]).is_err());
        assert!(parse(&["--hostfile", &file, "--process", "0", "--modes", "raw-zmq"]).is_ok());
        assert!(parse(&["--hostfile", &file, "--process", "0", "--processes", "2"]).is_err());
        assert!(parse(&["--hostfile", &file, "--process", "3"]).is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_overrides() {
        let o = run(&[]);
        assert_eq!((o.processes, o.workers, o.reps), (2, 1, 3));
        assert_eq!(o.records(1 << 20), 256);
        assert_eq!(o.records(16 << 20), 16);
        assert_eq!(o.records(1 << 10), 262_144);
        assert_eq!(o.out, PathBuf::from("target/scatter"));
        assert!(o.plot && !o.quick && o.timeout.is_none());

        // --quick's choices yield to explicit options, before or after it.
        for list in [
            &["--quick", "--sizes=4KiB,1KiB", "--workers", "2"][..],
            &["--sizes", "1KiB,4KiB,1KiB", "--workers=2", "--quick"],
        ] {
            let o = run(list);
            assert!(o.quick);
            assert_eq!(o.sizes, vec![1024, 4096], "{list:?}");
            assert_eq!(o.workers, 2);
            assert_eq!((o.reps, o.max_records), (1, 2048));
        }
    }

    #[test]
    fn every_option_in_both_forms() {
        let spaced = [
            "--processes",
            "3",
            "--workers",
            "2",
            "--workloads",
            "scatter,selective",
            "--modes",
            "proxy,raw-zmq",
            "--sizes",
            "64KiB",
            "--bytes",
            "8MiB",
            "--max-records",
            "100",
            "--reps",
            "5",
            "--batch",
            "1MiB",
            "--window",
            "2",
            "--timeout",
            "30",
            "--out",
            "/tmp/x",
            "--no-plot",
            "--from-csv",
            "runs.csv",
        ];
        let joined: Vec<String> = spaced
            .chunks(2)
            .flat_map(|pair| match pair {
                [flag, value] if !value.starts_with("--") => vec![format!("{flag}={value}")],
                other => other.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        let joined: Vec<&str> = joined.iter().map(String::as_str).collect();
        for list in [&spaced[..], &joined[..]] {
            let o = run(list);
            assert_eq!((o.processes, o.workers, o.reps, o.window), (3, 2, 5, 2));
            assert_eq!(o.workloads, vec![Workload::Scatter, Workload::Selective]);
            assert_eq!(o.modes, vec![Mode::Proxy, Mode::RawZmq]);
            assert_eq!(o.sizes, vec![64 << 10]);
            assert_eq!(
                (o.bytes_per_point, o.max_records, o.batch_bytes),
                (8 << 20, 100, 1 << 20)
            );
            assert_eq!(o.timeout, Some(Duration::from_secs(30)));
            assert_eq!(o.out, PathBuf::from("/tmp/x"));
            assert!(!o.plot);
            assert_eq!(o.from_csv, Some(PathBuf::from("runs.csv")));
        }
        assert_eq!(run(&["--timeout=0"]).timeout, None);
    }

    #[test]
    fn errors_are_reported() {
        for bad in [
            &["--modes", "nope"][..],
            &["--processes"],
            &["--processes", "0"],
            &["--workers=0"],
            &["--reps=0"],
            &["--window=0"],
            &["--sizes", "4"],
            &["--bytes", "lots"],
            &["--frobnicate"],
            &["--child", "workload=scatter"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let help = parse(&["--help"]).expect_err("help");
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert_eq!(
            parse(&["-h"]).expect_err("help").kind(),
            ErrorKind::DisplayHelp
        );
        let version = parse(&["--version"]).expect_err("version");
        assert_eq!(version.kind(), ErrorKind::DisplayVersion);
        let text = Cli::command().render_help().to_string();
        for option in [
            "--processes",
            "--sizes",
            "--quick",
            "--from-csv",
            "SCATTER_BENCH_OUT",
        ] {
            assert!(text.contains(option), "help lacks {option}");
        }
        assert!(!text.contains("--child"), "the internal option is hidden");
    }

    #[test]
    fn child_spec_round_trips() {
        let spec = ChildSpec {
            workload: Workload::Selective,
            mode: Mode::Proxy,
            size: 1 << 20,
            records: 256,
            batch_records: 8,
            window: 4,
            workers: 2,
            process: 1,
            addresses: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            zmq_ports: vec![3, 4, 5, 6, 7],
            deadline: Duration::from_millis(1500),
        };
        let child_args =
            |spec: &ChildSpec| std::iter::once("scatter".to_string()).chain(spec.to_args());
        let Ok(Command::Child(back)) = parse_from(child_args(&spec)) else {
            panic!("child")
        };
        assert_eq!(back, spec);
        let no_zmq = ChildSpec {
            zmq_ports: Vec::new(),
            ..spec
        };
        let Ok(Command::Child(back)) = parse_from(child_args(&no_zmq)) else {
            panic!("child")
        };
        assert_eq!(back, no_zmq);
    }
}
