//! The scatter benchmark: large payloads from one producer to every worker of a Timely
//! cluster of real processes on loopback, moved natively by Timely (`Vec<u8>`, `Bytes`),
//! as proxies (`proxy`, `auto_proxy` then `resolve`), and, without Timely, over raw ZeroMQ
//! and over iceoryx2 (zero-copy shared memory, the state of the art for same-host IPC).
//!
//! The binary is its own child: the parent ([`harness`]) starts each point's processes by
//! re-executing itself with [`cli::CHILD_FLAG`]; each child ([`child`]) plays one process,
//! verifies every payload it reads and prints one result line; the parent combines them
//! ([`report`]), prints the table, writes the CSV files and draws the plots ([`plot`]).
//! See [`child`] for the exact definition of the timed interval.

pub mod child;
pub mod cli;
pub mod harness;
pub mod plot;
pub mod report;
pub mod rss;
pub mod workloads;

use std::io::IsTerminal;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cli::{Command, Options};
use harness::{run_point, Outcome, Point};
use workloads::format_size;

/// The entry point of the `scatter` binary.
pub fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log redirected to a file carries no escape codes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match cli::parse_from(std::env::args_os()) {
        Ok(Command::Child(spec)) => child::main(&spec),
        Ok(Command::Run(options)) => match run(&options) {
            Ok(all_ok) if all_ok => ExitCode::SUCCESS,
            Ok(_) => {
                eprintln!("scatter: some points failed (see the table and runs.csv)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("scatter: {e}");
                ExitCode::FAILURE
            }
        },
        // --help and --version (status 0), or a usage error (status 2).
        Err(e) => e.exit(),
    }
}

/// Every point of the run, repetitions outermost and modes innermost, so that the modes of
/// one (workload, size) run next to each other and share the machine's current noise.
///
/// Each repetition starts the list of modes one place further on (rep 0: `a b c`, rep 1:
/// `b c a`, ...), so that no mode always runs right after the same other one: a mode that
/// always ran second (after a mode that leaves the machine busy freeing memory, say) would
/// carry that position's cost in every repetition and its median.
pub fn points(options: &Options) -> Vec<Point> {
    let mut points = Vec::new();
    let modes = options.modes.len().max(1);
    for rep in 0..options.reps {
        for &workload in &options.workloads {
            for &size in &options.sizes {
                for &mode in options.modes.iter().cycle().skip(rep % modes).take(modes) {
                    points.push(Point {
                        workload,
                        mode,
                        size,
                        records: options.records(size),
                        rep,
                    });
                }
            }
        }
    }
    points
}

fn progress_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:40} {pos}/{len} points, {elapsed} elapsed, eta {eta}  {msg}",
        ) {
            bar.set_style(style);
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// Runs the benchmark; `Ok(false)` when some point failed.
fn run(options: &Options) -> Result<bool, String> {
    let exe = std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?;
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("creating {}: {e}", options.out.display()))?;
    if let Some(csv) = &options.from_csv {
        let text =
            std::fs::read_to_string(csv).map_err(|e| format!("reading {}: {e}", csv.display()))?;
        let mut options = options.clone();
        let outcomes = report::read_runs_csv(&text, &mut options)
            .map_err(|e| format!("{}: {e}", csv.display()))?;
        return write_reports(&options, &outcomes);
    }
    let points = points(options);
    let bar = progress_bar(points.len());
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(points.len());
    for point in points {
        bar.set_message(format!(
            "{} {} {} rep {}",
            point.workload,
            format_size(point.size),
            point.mode,
            point.rep + 1
        ));
        let outcome = run_point(options, &exe, point);
        if let Err(e) = &outcome.result {
            bar.suspend(|| {
                eprintln!(
                    "scatter: {} {} {} rep {} failed: {e}",
                    point.workload,
                    format_size(point.size),
                    point.mode,
                    point.rep + 1
                );
            });
        }
        outcomes.push(outcome);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(hostfile) = options.hostfile.as_ref().filter(|h| h.process != 0) {
        let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
        println!(
            "scatter: process {} of a hostfile cluster played {} points ({failed} failed); \
             process 0 prints and writes the figures",
            hostfile.process,
            outcomes.len()
        );
        return Ok(failed == 0);
    }
    report::write_file(
        &options.out,
        "runs.csv",
        &report::runs_csv(options, &outcomes),
    )?;
    write_reports(options, &outcomes)
}

/// Prints the table and writes summary.csv and the plots; `Ok(false)` when a point failed.
fn write_reports(options: &Options, outcomes: &[Outcome]) -> Result<bool, String> {
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("creating {}: {e}", options.out.display()))?;
    let rows = report::summarize(options, outcomes);
    print!("{}", report::table(options, &rows));
    report::write_file(
        &options.out,
        "summary.csv",
        &report::summary_csv(options, &rows),
    )?;
    println!(
        "\nwrote runs.csv and summary.csv in {}",
        options.out.display()
    );
    if options.plot {
        for path in plot::draw_all(options, &rows, &options.out)? {
            println!("wrote {}", path.display());
        }
    }
    Ok(outcomes.iter().all(|o| o.result.is_ok()))
}

#[cfg(test)]
mod tests {
    use super::workloads::{Mode, Workload};
    use super::*;

    #[test]
    fn every_mode_takes_every_place_in_turn() {
        let options = Options {
            modes: vec![Mode::NativeBytes, Mode::Proxy, Mode::Auto],
            workloads: vec![Workload::Scatter],
            sizes: vec![1 << 20],
            reps: 3,
            ..Options::default()
        };
        let order: Vec<Vec<Mode>> = points(&options)
            .chunks(3)
            .map(|rep| rep.iter().map(|p| p.mode).collect())
            .collect();
        assert_eq!(
            order,
            vec![
                vec![Mode::NativeBytes, Mode::Proxy, Mode::Auto],
                vec![Mode::Proxy, Mode::Auto, Mode::NativeBytes],
                vec![Mode::Auto, Mode::NativeBytes, Mode::Proxy],
            ]
        );
    }
}
