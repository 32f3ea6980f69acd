//! SVG plots of throughput against payload size, one per workload, one line per mode.

use std::path::{Path, PathBuf};

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange};
use plotters::prelude::*;

use super::cli::Options;
use super::report::Summary;
use super::workloads::{format_size, Mode, Workload};

fn color(mode: Mode) -> RGBColor {
    match mode {
        Mode::Native => RGBColor(214, 39, 40),
        Mode::NativeBytes => RGBColor(255, 127, 14),
        Mode::Proxy => RGBColor(31, 119, 180),
        Mode::ProxyTcp => RGBColor(148, 103, 189),
        Mode::ProxyInPlace => RGBColor(23, 60, 120),
        Mode::Auto => RGBColor(44, 160, 44),
        Mode::RawZmq => RGBColor(90, 90, 90),
        Mode::Iceoryx2 => RGBColor(23, 190, 207),
    }
}

/// The file name of a workload's plot.
pub fn file_name(workload: Workload) -> String {
    format!("scatter-{workload}.svg")
}

/// Draws one SVG per workload into `dir`; returns the files written.
pub fn draw_all(options: &Options, rows: &[Summary], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for &workload in &options.workloads {
        let path = dir.join(file_name(workload));
        draw(options, workload, rows, &path)
            .map_err(|e| format!("drawing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Axis labels at 1, 2 and 5 times each power of ten between `lo` and `hi`.
fn one_two_five(lo: f64, hi: f64) -> Vec<f64> {
    let mut keys = Vec::new();
    let mut decade = 10f64.powi(lo.max(1e-3).log10().floor() as i32);
    while decade <= hi {
        for step in [1.0, 2.0, 5.0] {
            let key = decade * step;
            if (lo..=hi).contains(&key) {
                keys.push(key);
            }
        }
        decade *= 10.0;
    }
    keys
}

fn draw(
    options: &Options,
    workload: Workload,
    rows: &[Summary],
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let rows: Vec<&Summary> = rows.iter().filter(|r| r.workload == workload).collect();
    let rates: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.mb_per_s)
        .filter(|r| *r > 0.0)
        .collect();
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let (y_lo, y_hi) = if rates.is_empty() {
        (1.0, 10.0)
    } else {
        // Headroom above the data for the legend.
        (lo / 2.0, hi * 5.0)
    };
    let sizes: Vec<f64> = options.sizes.iter().map(|&s| s as f64).collect();
    let x_lo = sizes.first().copied().unwrap_or(1024.0) / 1.5;
    let x_hi = sizes.last().copied().unwrap_or(1024.0) * 1.5;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "{workload}: throughput by payload size ({} processes x {} worker(s) each, loopback)",
        options.processes, options.workers
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (x_lo..x_hi).log_scale().with_key_points(sizes.clone()),
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(one_two_five(y_lo, y_hi)),
        )?;
    chart
        .configure_mesh()
        .x_desc("payload size (log scale)")
        .y_desc("MB/s delivered to consumers (log scale)")
        .x_label_formatter(&|x| format_size(x.round() as u64))
        .y_label_formatter(&|y| format!("{y:.0}"))
        // Log axes draw many light lines between the labels; they only add noise.
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    for &mode in &options.modes {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.mode == mode)
            .filter_map(|r| r.mb_per_s.map(|rate| (r.size as f64, rate)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let style = color(mode);
        chart
            .draw_series(LineSeries::new(points.clone(), style.stroke_width(2)))?
            .label(mode.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, style.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_keys_follow_one_two_five() {
        assert_eq!(
            one_two_five(90.0, 2500.0),
            vec![100.0, 200.0, 500.0, 1000.0, 2000.0]
        );
        assert_eq!(one_two_five(3.0, 4.0), Vec::<f64>::new());
    }
}
