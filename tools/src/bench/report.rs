//! `strata bench report FILE... [--chart out.svg|out.png]`: compares result files.
//!
//! Each file is one column group (labelled by its file stem). When a file holds several results
//! for a workload (runs appended with `--jsonl-out`), the table shows their median and how many
//! there were. The chart has a throughput panel (bars, log scale), a p50/p99 latency panel and,
//! when results carry timelines, one throughput-over-time panel per workload (the latest run of
//! each file).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use clap::Args;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::output::{BenchDocument, WorkloadResult, SCHEMA};
use super::{say, BenchError};

/// Options of `strata bench report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Result files: JSON lines (`--jsonl-out`, `--format jsonl`) or `--format json` documents.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also draw throughput, latency and throughput-over-time charts to this .svg or .png file.
    #[arg(long, value_name = "FILE")]
    pub chart: Option<PathBuf>,
}

/// One file's results, grouped by workload.
struct Source {
    label: String,
    path: PathBuf,
    by_workload: BTreeMap<String, Vec<WorkloadResult>>,
}

/// The median of some numbers (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
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

impl Source {
    fn results(&self, workload: &str) -> &[WorkloadResult] {
        self.by_workload.get(workload).map_or(&[], Vec::as_slice)
    }

    fn ops_per_sec(&self, workload: &str) -> Option<f64> {
        median(
            self.results(workload)
                .iter()
                .map(|r| r.ops_per_sec)
                .collect(),
        )
    }

    fn latency(&self, workload: &str, pick: fn(&super::output::Latency) -> f64) -> Option<f64> {
        median(
            self.results(workload)
                .iter()
                .filter_map(|r| r.latency_us.as_ref().map(pick))
                .collect(),
        )
    }

    /// The latest run's timeline, if it has at least two samples (one says nothing over time).
    fn timeline(&self, workload: &str) -> Option<&[f64]> {
        self.results(workload)
            .last()
            .map(|r| r.timeline.as_slice())
            .filter(|t| t.len() >= 2)
    }
}

/// Reads one result file.
fn load(path: &Path) -> Result<Vec<WorkloadResult>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BenchError::Io(format!("reading {}", path.display()), e))?;
    if let Ok(document) = serde_json::from_str::<BenchDocument>(&text) {
        return Ok(document.results);
    }
    let mut results = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let result: WorkloadResult = serde_json::from_str(line).map_err(|e| {
            BenchError::Other(format!(
                "{}:{}: not a {SCHEMA} result: {e}",
                path.display(),
                number + 1
            ))
        })?;
        if result.schema != SCHEMA {
            return Err(BenchError::Other(format!(
                "{}:{}: schema {:?}, expected {SCHEMA:?}",
                path.display(),
                number + 1,
                result.schema
            )));
        }
        results.push(result);
    }
    Ok(results)
}

/// Runs `strata bench report`.
///
/// # Errors
/// Unreadable or malformed files, or a chart that cannot be drawn.
pub fn run(args: &ReportArgs) -> Result<(), BenchError> {
    let mut order: Vec<String> = Vec::new();
    let mut sources = Vec::new();
    for path in &args.files {
        let mut by_workload: BTreeMap<String, Vec<WorkloadResult>> = BTreeMap::new();
        for result in load(path)? {
            if result.status != "ok" {
                continue;
            }
            if !order.contains(&result.workload) {
                order.push(result.workload.clone());
            }
            by_workload
                .entry(result.workload.clone())
                .or_default()
                .push(result);
        }
        let stem = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        );
        sources.push(Source {
            label: stem,
            path: path.clone(),
            by_workload,
        });
    }
    // Labels must tell the files apart.
    for i in 0..sources.len() {
        if sources
            .iter()
            .enumerate()
            .any(|(j, s)| j != i && s.label == sources[i].label)
        {
            sources[i].label = sources[i].path.display().to_string();
        }
    }
    if order.is_empty() {
        return Err(BenchError::Other(
            "the files hold no completed workload results".into(),
        ));
    }
    for source in &sources {
        let runs: Vec<&WorkloadResult> = source.by_workload.values().flatten().collect();
        let mut ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let config = runs.first().map(|r| &r.config);
        say(&format!(
            "{}: {} ({} result(s) from {} run(s){})\n",
            source.label,
            source.path.display(),
            runs.len(),
            ids.len(),
            config.map_or(String::new(), |c| format!(
                "; num {}, reads {}, threads {}, {}+{} bytes, wal {}",
                c.num, c.reads, c.threads, c.key_size, c.value_size, c.wal_mode
            ))
        ))?;
    }
    say(&format!("{}\n", table(&order, &sources)))?;
    if let Some(chart) = &args.chart {
        draw(chart, &order, &sources)?;
        say(&format!("chart written to {}\n", chart.display()))?;
    }
    Ok(())
}

fn table(order: &[String], sources: &[Source]) -> Table {
    let mut table = Table::new();
    let mut header = vec!["workload".to_string()];
    for (i, s) in sources.iter().enumerate() {
        header.push(format!("{} ops/sec", s.label));
        header.push(format!("{} p99 us", s.label));
        if i > 0 {
            header.push(format!("{} / {}", s.label, sources[0].label));
        }
    }
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    let right = |text: String| Cell::new(text).set_alignment(CellAlignment::Right);
    for workload in order {
        let mut row = vec![Cell::new(workload)];
        let base = sources[0].ops_per_sec(workload);
        for (i, s) in sources.iter().enumerate() {
            let n = s.results(workload).len();
            let count = if n > 1 {
                format!(" (n={n})")
            } else {
                String::new()
            };
            let ops = s.ops_per_sec(workload);
            row.push(right(ops.map_or("-".into(), |v| format!("{v:.0}{count}"))));
            row.push(right(
                s.latency(workload, |l| l.p99)
                    .map_or("-".into(), |v| format!("{v:.2}")),
            ));
            if i > 0 {
                row.push(right(match (ops, base) {
                    (Some(o), Some(b)) if b > 0.0 => format!("{:.2}x", o / b),
                    _ => "-".into(),
                }));
            }
        }
        table.add_row(row);
    }
    table
}

/// Colours of the files, in order.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// A lighter shade of `c` (for p50 next to p99).
fn lighter(c: RGBColor) -> RGBColor {
    let mix = |v: u8| ((u16::from(v) + 2 * 255) / 3) as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

/// Registers a TrueType font for chart text under "sans-serif": `$STRATA_FONT`, or a common
/// system font.
fn register_font() -> Result<(), BenchError> {
    const CANDIDATES: [&str; 8] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];
    let mut paths: Vec<PathBuf> = std::env::var_os("STRATA_FONT")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    paths.extend(CANDIDATES.iter().map(PathBuf::from));
    for path in paths {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
            return Ok(());
        }
    }
    Err(BenchError::Other(
        "no TrueType font found for chart labels (looked for DejaVu Sans and Liberation Sans); \
         set STRATA_FONT=/path/to/font.ttf"
            .into(),
    ))
}

/// Draws the chart to `path` (.svg or .png).
fn draw(path: &Path, order: &[String], sources: &[Source]) -> Result<(), BenchError> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let timelines: Vec<&String> = order
        .iter()
        .filter(|w| sources.iter().any(|s| s.timeline(w).is_some()))
        .collect();
    let columns = 3;
    let rows = timelines.len().div_ceil(columns);
    let size = (1200u32, 860 + 260 * rows as u32);
    let failed = |e: String| BenchError::Other(format!("drawing {}: {e}", path.display()));
    match extension.as_deref() {
        Some("svg") => {
            register_font()?;
            let root = SVGBackend::new(path, size).into_drawing_area();
            draw_on(&root, order, sources, &timelines, columns).map_err(failed)
        }
        Some("png") => {
            register_font()?;
            let root = BitMapBackend::new(path, size).into_drawing_area();
            draw_on(&root, order, sources, &timelines, columns).map_err(failed)
        }
        _ => Err(BenchError::Usage(format!(
            "--chart {}: the file name must end in .svg or .png",
            path.display()
        ))),
    }
}

fn text_error<E: Display>(e: E) -> String {
    e.to_string()
}

/// `1234567` as `1.2M`.
fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    order: &[String],
    sources: &[Source],
    timelines: &[&String],
    columns: usize,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(text_error)?;
    let (top, rest) = root.split_vertically(430);
    let (middle, bottom) = rest.split_vertically(430);

    let throughput: Vec<Bars> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| Bars {
            label: s.label.clone(),
            color: color(i),
            values: order.iter().map(|w| s.ops_per_sec(w)).collect(),
        })
        .collect();
    bar_panel(&top, "Throughput (ops/sec, log scale)", order, &throughput)?;

    let mut latency = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        latency.push(Bars {
            label: format!("{} p50", s.label),
            color: lighter(color(i)),
            values: order.iter().map(|w| s.latency(w, |l| l.p50)).collect(),
        });
        latency.push(Bars {
            label: format!("{} p99", s.label),
            color: color(i),
            values: order.iter().map(|w| s.latency(w, |l| l.p99)).collect(),
        });
    }
    bar_panel(
        &middle,
        "Latency per operation (microseconds, log scale)",
        order,
        &latency,
    )?;

    if !timelines.is_empty() {
        let rows = timelines.len().div_ceil(columns);
        let panels = bottom.split_evenly((rows, columns));
        for (panel, workload) in panels.iter().zip(timelines) {
            timeline_panel(panel, workload, sources)?;
        }
    }
    root.present().map_err(text_error)
}

/// One series of bars: a value per workload.
struct Bars {
    label: String,
    color: RGBColor,
    values: Vec<Option<f64>>,
}

fn bar_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    order: &[String],
    series: &[Bars],
) -> Result<(), String> {
    let positive = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .filter(|v| *v > 0.0)
    };
    let low = positive().fold(f64::INFINITY, f64::min);
    let high = positive().fold(0.0, f64::max);
    let (low, high) = if low.is_finite() && high > 0.0 {
        // Headroom above the tallest bar for the legend: its rows take about this fraction of
        // the plot's height, and the axis is logarithmic.
        let legend = (0.06 + 0.055 * series.len() as f64).min(0.5);
        let low = low / 2.0;
        let span = (high / low).ln();
        (low, high * (legend / (1.0 - legend) * span).exp())
    } else {
        (0.1, 10.0)
    };
    let n = order.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..n, (low..high).log_scale())
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_label_formatter(&|v| human(*v))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(text_error)?;
    let width = 0.8 / series.len().max(1) as f64;
    for (k, s) in series.iter().enumerate() {
        let color = s.color;
        let bars = s.values.iter().enumerate().filter_map(|(i, v)| {
            let v = (*v)?;
            let x0 = i as f64 + 0.1 + k as f64 * width;
            Some(Rectangle::new(
                [(x0, low), (x0 + width * 0.9, v.max(low))],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(text_error)?
            .label(s.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(text_error)?;
    // Workload names under the bars, in the area's own coordinates.
    let (base_x, base_y) = area.get_base_pixel();
    let style = ("sans-serif", 13)
        .into_text_style(area)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, workload) in order.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, low));
        area.draw(&Text::new(
            workload.clone(),
            (x - base_x, y - base_y + 6),
            style.clone(),
        ))
        .map_err(text_error)?;
    }
    Ok(())
}

fn timeline_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    workload: &str,
    sources: &[Source],
) -> Result<(), String> {
    let lines: Vec<(usize, &[f64])> = sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.timeline(workload).map(|t| (i, t)))
        .collect();
    let seconds = lines.iter().map(|(_, t)| t.len()).max().unwrap_or(1).max(1);
    let top = lines
        .iter()
        .flat_map(|(_, t)| t.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{workload}: ops/sec over time"), ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..seconds as f64, 0f64..top)
        .map_err(text_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_label_formatter(&|v| human(*v))
        .label_style(("sans-serif", 11))
        .draw()
        .map_err(text_error)?;
    for (i, timeline) in lines {
        let points: Vec<(f64, f64)> = timeline
            .iter()
            .enumerate()
            .map(|(second, ops)| (second as f64 + 0.5, *ops))
            .collect();
        let style = color(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(text_error)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color(i).filled())))
            .map_err(text_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(1_234_567.0), "1.2M");
        assert_eq!(human(45_000.0), "45k");
        assert_eq!(human(12.0), "12");
    }
}
