//! Medians, the table on stdout, and the CSV files.

use std::fmt::Write as _;
use std::path::Path;

use super::cli::Options;
use std::time::Duration;

use super::harness::{Measured, Outcome, Point};
use super::workloads::{format_size, Mode, Workload};

/// The median of every repetition of one (workload, size, mode).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The workload.
    pub workload: Workload,
    /// Payload size in bytes.
    pub size: u64,
    /// The mode.
    pub mode: Mode,
    /// Payloads per repetition.
    pub records: u64,
    /// Repetitions that succeeded.
    pub ok: usize,
    /// Repetitions run.
    pub reps: usize,
    /// Median throughput of the successful repetitions, in MB/s.
    pub mb_per_s: Option<f64>,
    /// Median timed interval, in seconds.
    pub seconds: Option<f64>,
    /// Median peak resident memory of each process, in MiB.
    pub peak_rss_mib: Vec<Option<f64>>,
    /// The throughput relative to `native-bytes` in the same workload and size.
    pub ratio_to_native_bytes: Option<f64>,
    /// The first failure, if any repetition failed.
    pub error: Option<String>,
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Summarizes `outcomes` by (workload, size, mode), in the order of the options.
pub fn summarize(options: &Options, outcomes: &[Outcome]) -> Vec<Summary> {
    let mut rows = Vec::new();
    for &workload in &options.workloads {
        for &size in &options.sizes {
            let start = rows.len();
            for &mode in &options.modes {
                let runs: Vec<&Outcome> = outcomes
                    .iter()
                    .filter(|o| {
                        o.point.workload == workload && o.point.size == size && o.point.mode == mode
                    })
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                let ok: Vec<_> = runs.iter().filter_map(|o| o.result.as_ref().ok()).collect();
                let mut rates: Vec<f64> = ok.iter().map(|m| m.mb_per_s()).collect();
                let mut seconds: Vec<f64> = ok.iter().map(|m| m.elapsed.as_secs_f64()).collect();
                let peak_rss_mib = (0..options.processes)
                    .map(|p| {
                        let mut v: Vec<f64> = ok
                            .iter()
                            .filter_map(|m| m.peak_rss_kib.get(p).copied().flatten())
                            .map(|kib| kib as f64 / 1024.0)
                            .collect();
                        median(&mut v)
                    })
                    .collect();
                rows.push(Summary {
                    workload,
                    size,
                    mode,
                    records: runs[0].point.records,
                    ok: ok.len(),
                    reps: runs.len(),
                    mb_per_s: median(&mut rates),
                    seconds: median(&mut seconds),
                    peak_rss_mib,
                    ratio_to_native_bytes: None,
                    error: runs.iter().find_map(|o| o.result.as_ref().err().cloned()),
                });
            }
            let base = rows[start..]
                .iter()
                .find(|r| r.mode == Mode::NativeBytes)
                .and_then(|r| r.mb_per_s);
            for row in &mut rows[start..] {
                row.ratio_to_native_bytes = match (row.mb_per_s, base) {
                    (Some(rate), Some(base)) if base > 0.0 => Some(rate / base),
                    _ => None,
                };
            }
        }
    }
    rows
}

fn rss_list(values: &[Option<f64>], sep: &str) -> String {
    values
        .iter()
        .map(|v| v.map_or_else(|| "-".to_string(), |m| format!("{m:.0}")))
        .collect::<Vec<_>>()
        .join(sep)
}

/// The table printed at the end of a run (copied by hand into the scatter section of benchmarks/README.md).
pub fn table(options: &Options, rows: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scatter benchmark: {}", options.describe());
    let _ = writeln!(
        out,
        "MB/s = payload bytes read by consumers / timed interval (10^6 B/s), median of the successful repetitions"
    );
    let rss_header = (0..options.processes)
        .map(|p| format!("p{p}"))
        .collect::<Vec<_>>()
        .join("/");
    let _ = writeln!(
        out,
        "\n| workload | size | records | mode | MB/s | x native-bytes | peak RSS MiB ({rss_header}) | ok |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|---:|---:|");
    for row in rows {
        let rate = row
            .mb_per_s
            .map_or_else(|| "FAILED".to_string(), |r| format!("{r:.1}"));
        let ratio = row
            .ratio_to_native_bytes
            .map_or_else(|| "-".to_string(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            row.workload,
            format_size(row.size),
            row.records,
            row.mode,
            rate,
            ratio,
            rss_list(&row.peak_rss_mib, " / "),
            row.ok,
            row.reps
        );
    }
    let failures: Vec<&Summary> = rows.iter().filter(|r| r.error.is_some()).collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailures (first per point):");
        for row in failures {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                row.workload,
                format_size(row.size),
                row.mode,
                row.error.as_deref().unwrap_or_default()
            );
        }
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The columns of `runs.csv`, one row per repetition.
pub const RUNS_COLUMNS: [&str; 15] = [
    "workload",
    "mode",
    "size_bytes",
    "records",
    "processes",
    "workers",
    "rep",
    "status",
    "seconds",
    "delivered_bytes",
    "mb_per_s",
    "peak_rss_mib_max",
    "peak_rss_mib_by_process",
    "objects_left",
    "error",
];

/// Every repetition as CSV.
pub fn runs_csv(options: &Options, outcomes: &[Outcome]) -> String {
    let mut out = RUNS_COLUMNS.join(",") + "\n";
    for outcome in outcomes {
        let p = &outcome.point;
        let mut fields = vec![
            p.workload.to_string(),
            p.mode.to_string(),
            p.size.to_string(),
            p.records.to_string(),
            options.processes.to_string(),
            options.workers.to_string(),
            p.rep.to_string(),
        ];
        match &outcome.result {
            Ok(m) => {
                let rss: Vec<Option<f64>> = m
                    .peak_rss_kib
                    .iter()
                    .map(|k| k.map(|kib| kib as f64 / 1024.0))
                    .collect();
                fields.extend([
                    "ok".to_string(),
                    format!("{:.6}", m.elapsed.as_secs_f64()),
                    m.delivered_bytes.to_string(),
                    format!("{:.3}", m.mb_per_s()),
                    m.max_rss_mib()
                        .map_or_else(String::new, |v| format!("{v:.1}")),
                    rss_list(&rss, ";"),
                    m.objects_left.map_or_else(String::new, |n| n.to_string()),
                    String::new(),
                ]);
            }
            Err(e) => {
                fields.push("failed".to_string());
                fields.extend(std::iter::repeat_n(String::new(), 6));
                fields.push(e.clone());
            }
        }
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// The medians as CSV.
pub fn summary_csv(options: &Options, rows: &[Summary]) -> String {
    let mut out = String::from(
        "workload,mode,size_bytes,records,processes,workers,reps_ok,reps,median_mb_per_s,ratio_to_native_bytes,median_seconds,median_peak_rss_mib_by_process\n",
    );
    let opt =
        |v: Option<f64>, digits: usize| v.map_or_else(String::new, |v| format!("{v:.digits$}"));
    for row in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            row.workload,
            row.mode,
            row.size,
            row.records,
            options.processes,
            options.workers,
            row.ok,
            row.reps,
            opt(row.mb_per_s, 3),
            opt(row.ratio_to_native_bytes, 4),
            opt(row.seconds, 6),
            rss_list(&row.peak_rss_mib, ";"),
        );
    }
    out
}

/// Writes `text` to `dir/name`, saying which file failed.
pub fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Splits one CSV line as written by [`runs_csv`] (quoted fields may hold commas).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Reads a `runs.csv` back: the outcomes, and `options` adjusted to what the file holds
/// (processes, workers, workloads, modes, sizes, repetitions), so that its table and plots
/// can be made again without running anything.
pub fn read_runs_csv(text: &str, options: &mut Options) -> Result<Vec<Outcome>, String> {
    let mut lines = text.lines();
    let header = split_csv(lines.next().ok_or("empty runs file")?);
    if header != RUNS_COLUMNS {
        return Err(format!("unexpected columns {header:?}"));
    }
    let mut outcomes = Vec::new();
    let (mut workloads, mut modes, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    options.reps = 0;
    for (n, line) in lines.enumerate() {
        let f = split_csv(line);
        if f.len() != RUNS_COLUMNS.len() {
            return Err(format!("line {}: {} fields", n + 2, f.len()));
        }
        let bad = |what: &str| format!("line {}: bad {what}", n + 2);
        let num = |i: usize, what: &str| f[i].parse::<u64>().map_err(|_| bad(what));
        let workload: Workload = f[0].parse()?;
        let mode: Mode = f[1].parse()?;
        let size = num(2, "size")?;
        options.processes = num(4, "processes")? as usize;
        options.workers = num(5, "workers")? as usize;
        let rep = num(6, "rep")? as usize;
        let result = if f[7] == "ok" {
            let seconds: f64 = f[8].parse().map_err(|_| bad("seconds"))?;
            Ok(Measured {
                elapsed: Duration::from_secs_f64(seconds),
                delivered_bytes: num(9, "delivered bytes")?,
                peak_rss_kib: f[12]
                    .split(';')
                    .map(|m| m.parse::<f64>().ok().map(|mib| (mib * 1024.0) as u64))
                    .collect(),
                objects_left: f[13].parse().ok(),
            })
        } else {
            Err(f[14].clone())
        };
        if !workloads.contains(&workload) {
            workloads.push(workload);
        }
        if !modes.contains(&mode) {
            modes.push(mode);
        }
        if !sizes.contains(&size) {
            sizes.push(size);
        }
        options.reps = options.reps.max(rep + 1);
        outcomes.push(Outcome {
            point: Point {
                workload,
                mode,
                size,
                records: num(3, "records")?,
                rep,
            },
            result,
        });
    }
    sizes.sort_unstable();
    options.workloads = workloads;
    options.modes = modes;
    options.sizes = sizes;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn runs_csv_reads_back() {
        let options = Options {
            processes: 3,
            ..Options::default()
        };
        let point = Point {
            workload: Workload::Selective,
            mode: Mode::Proxy,
            size: 1 << 20,
            records: 256,
            rep: 1,
        };
        let outcomes = vec![
            Outcome {
                point,
                result: Ok(Measured {
                    elapsed: Duration::from_millis(125),
                    delivered_bytes: 256 << 20,
                    peak_rss_kib: vec![Some(2048), Some(1024), None],
                    objects_left: Some(0),
                }),
            },
            Outcome {
                point: Point { rep: 0, ..point },
                result: Err("timed out, \"badly\"".to_string()),
            },
        ];
        let text = runs_csv(&options, &outcomes);
        let mut back_options = Options::default();
        let back = read_runs_csv(&text, &mut back_options).expect("parses");
        assert_eq!(back.len(), 2);
        assert_eq!(back_options.processes, 3);
        assert_eq!(back_options.reps, 2);
        assert_eq!(back_options.modes, vec![Mode::Proxy]);
        let measured = back[0].result.as_ref().expect("ok");
        assert_eq!(measured.delivered_bytes, 256 << 20);
        assert_eq!(measured.peak_rss_kib, vec![Some(2048), Some(1024), None]);
        assert_eq!(back[1].result, Err("timed out, \"badly\"".to_string()));
    }

    #[test]
    fn csv_fields_are_quoted() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, \"b\""), "\"a, \"\"b\"\"\"");
    }
}
