//! Command-line options of the parent, and the parameters handed to each child process.

use std::path::PathBuf;
use std::time::Duration;

use super::workloads::{format_size, parse_size, Mode, Workload, MIN_PAYLOAD};

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
scatter: proxied dataflow against Timely's own exchange, across real processes on loopback

USAGE:
    cargo run --release -p benchmarks --bin scatter -- [OPTIONS]

Every point (workload x mode x payload size x repetition) runs as fresh child processes
forming one Timely cluster on 127.0.0.1 (raw-zmq: plain ZeroMQ sockets, no Timely).

OPTIONS:
    --processes N        processes per cluster (default 2)
    --workers N          worker threads per process (default 1)
    --workloads LIST     comma-separated: scatter,broadcast,selective (default all)
    --modes LIST         comma-separated: native,native-bytes,proxy,auto,raw-zmq (default all)
    --sizes LIST         payload sizes, e.g. 1KiB,64KiB,1MiB,16MiB (the default)
    --bytes N            payload bytes produced per point (default 256MiB); the record
                         count is N / size, capped by --max-records
    --max-records N      record cap per point, for small sizes (default 262144)
    --reps N             repetitions per point; the table shows medians (default 3)
    --batch N            payload bytes per Timely epoch (default 8MiB, at least one record)
    --window N           epochs in flight before the producer waits (default 4)
    --timeout SECS       deadline per point; 0 picks one from the bytes moved (default 0)
    --out DIR            where runs.csv, summary.csv and the SVG plots go
                         (default target/scatter)
    --quick              a small run for smoke tests (sizes 1KiB,64KiB,1MiB, 16MiB per
                         point, at most 2048 records, 1 repetition); later options override
    --no-plot            skip the SVG plots
    --from-csv FILE      run nothing: read a runs.csv written before and print its table,
                         write summary.csv and the plots into --out
    -h, --help           this text
";

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
    /// Print the usage text.
    Help,
    /// Run the benchmark (the parent).
    Run(Options),
    /// Play one process of one point (started by the parent).
    Child(ChildSpec),
}

fn value<'a>(flag: &str, args: &mut impl Iterator<Item = &'a String>) -> Result<&'a str, String> {
    args.next()
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
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

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    if args.first().map(String::as_str) == Some(CHILD_FLAG) {
        return ChildSpec::from_args(&args[1..]).map(Command::Child);
    }
    let mut options = Options::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        let mut take = || -> Result<&str, String> {
            match inline {
                Some(v) => Ok(v),
                None => value(flag, &mut iter),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--quick" => options.quick(),
            "--no-plot" => options.plot = false,
            "--processes" => options.processes = number(flag, take()?)?,
            "--workers" => options.workers = number(flag, take()?)?,
            "--workloads" => options.workloads = list(take()?, |s| s.parse())?,
            "--modes" => options.modes = list(take()?, |s| s.parse())?,
            "--sizes" => options.sizes = list(take()?, parse_size)?,
            "--bytes" => options.bytes_per_point = parse_size(take()?)?,
            "--max-records" => options.max_records = number(flag, take()?)?,
            "--reps" => options.reps = number(flag, take()?)?,
            "--batch" => options.batch_bytes = parse_size(take()?)?,
            "--window" => options.window = number(flag, take()?)?,
            "--timeout" => {
                let secs: u64 = number(flag, take()?)?;
                options.timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            "--out" => options.out = PathBuf::from(take()?),
            "--from-csv" => options.from_csv = Some(PathBuf::from(take()?)),
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    if options.processes == 0 || options.workers == 0 {
        return Err("--processes and --workers must be at least 1".into());
    }
    if options.reps == 0 || options.window == 0 {
        return Err("--reps and --window must be at least 1".into());
    }
    if let Some(&small) = options.sizes.iter().find(|&&s| s < MIN_PAYLOAD) {
        return Err(format!(
            "payload size {small} is below the minimum of {MIN_PAYLOAD} bytes"
        ));
    }
    options.sizes.sort_unstable();
    options.sizes.dedup();
    Ok(Command::Run(options))
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

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_and_overrides() {
        let Ok(Command::Run(o)) = parse(&args(&[])) else {
            panic!("defaults")
        };
        assert_eq!((o.processes, o.workers, o.reps), (2, 1, 3));
        assert_eq!(o.records(1 << 20), 256);
        assert_eq!(o.records(16 << 20), 16);
        assert_eq!(o.records(1 << 10), 262_144);

        let parsed = parse(&args(&["--quick", "--sizes=1KiB,4KiB", "--workers", "2"]));
        let Ok(Command::Run(o)) = parsed else {
            panic!("quick")
        };
        assert!(o.quick);
        assert_eq!(o.sizes, vec![1024, 4096]);
        assert_eq!(o.workers, 2);
        assert_eq!(o.reps, 1);
    }

    #[test]
    fn errors_are_reported() {
        assert!(parse(&args(&["--modes", "nope"])).is_err());
        assert!(parse(&args(&["--processes"])).is_err());
        assert!(parse(&args(&["--sizes", "4"])).is_err());
        assert!(parse(&args(&["--frobnicate"])).is_err());
        assert!(matches!(parse(&args(&["-h"])), Ok(Command::Help)));
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
        let Ok(Command::Child(back)) = parse(&spec.to_args()) else {
            panic!("child")
        };
        assert_eq!(back, spec);
        let no_zmq = ChildSpec {
            zmq_ports: Vec::new(),
            ..spec
        };
        let Ok(Command::Child(back)) = parse(&no_zmq.to_args()) else {
            panic!("child")
        };
        assert_eq!(back, no_zmq);
    }
}
