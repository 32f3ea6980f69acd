//! Smoke test of the scatter benchmark: `--quick` runs every workload and mode across two
//! real processes, exits 0, and writes CSV files and plots that parse. It checks that the
//! benchmark works, not how fast anything is.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use benchmarks::scatter::report::{split_csv, RUNS_COLUMNS};
use benchmarks::scatter::workloads::{Mode, Workload};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn quick_run_exits_cleanly_and_writes_parsable_results() {
    let out = tempfile::tempdir().expect("temporary directory");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_scatter"))
        .args([
            "--quick",
            "--sizes",
            "1KiB,64KiB",
            "--bytes",
            "4MiB",
            "--max-records",
            "512",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("running the scatter binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scatter --quick failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("scatter --quick took {:?}", started.elapsed());
    assert!(
        stdout.contains("| workload | size |"),
        "no table on stdout:\n{stdout}"
    );

    let runs = read(&out.path().join("runs.csv"));
    let mut lines = runs.lines();
    let header = split_csv(lines.next().expect("a header line"));
    assert_eq!(header, RUNS_COLUMNS.map(String::from).to_vec());
    let column = |name: &str| header.iter().position(|h| h == name).expect("column");
    let (mode_col, workload_col) = (column("mode"), column("workload"));
    let (status_col, rate_col, rss_col) = (
        column("status"),
        column("mb_per_s"),
        column("peak_rss_mib_max"),
    );

    let rows: Vec<Vec<String>> = lines.map(split_csv).collect();
    // 2 sizes x 3 workloads x every mode x 1 repetition.
    assert_eq!(
        rows.len(),
        2 * Workload::ALL.len() * Mode::ALL.len(),
        "{runs}"
    );
    for row in &rows {
        assert_eq!(row.len(), header.len(), "ragged row {row:?}");
        assert_eq!(row[status_col], "ok", "failed point {row:?}");
        let rate: f64 = row[rate_col].parse().expect("a numeric throughput");
        assert!(rate > 0.0, "no throughput in {row:?}");
        let rss: f64 = row[rss_col].parse().expect("a numeric peak RSS");
        assert!(rss > 0.0, "no peak RSS in {row:?}");
    }
    for mode in Mode::ALL {
        for workload in Workload::ALL {
            assert!(
                rows.iter()
                    .any(|r| r[mode_col] == mode.name() && r[workload_col] == workload.name()),
                "no row for {workload} {mode}"
            );
        }
    }

    let summary = read(&out.path().join("summary.csv"));
    assert!(
        summary.starts_with("workload,mode,size_bytes,"),
        "{summary}"
    );
    for workload in Workload::ALL {
        let svg = read(&out.path().join(format!("scatter-{workload}.svg")));
        assert!(
            svg.starts_with("<svg") && svg.contains("native-bytes"),
            "bad plot for {workload}"
        );
    }
}
