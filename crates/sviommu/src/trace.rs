//! `sviommu trace record | replay | convert` and `sviommu stats`: traces and statistics through
//! `sviommu-sim`, an IOTLB sweep and its plot.

use std::path::Path;

use serde::Serialize;
use sviommu_sim::machine::Config;
use sviommu_sim::replay::{self, Options, ReplayReport, ReplayRun};
use sviommu_sim::run::Stats;
use sviommu_sim::scenario::Arch;
use sviommu_sim::trace::{Record, Trace, TraceError};
use sviommu_sim::ScenarioError;

/// What a trace command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The trace.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A file to write.
    #[error("{file}: {source}")]
    Write {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The plot.
    #[error("{file}: the plot could not be drawn: {message}")]
    Plot {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
}

/// Which form a file is written in: CSV when its name ends in `.csv`, else binary.
pub fn is_csv(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// What `record` and `convert` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    /// The file.
    pub output: String,
    /// `binary` or `csv`.
    pub form: &'static str,
    /// Records in it.
    pub records: u64,
    /// DMA records among them.
    pub dma: u64,
    /// Action records among them.
    pub actions: u64,
    /// ATS translation requests among them (each with its page request and retry).
    pub ats: u64,
    /// Devices it names.
    pub devices: Vec<String>,
    /// Bytes written.
    pub bytes: u64,
}

/// Writes `trace` to `path` in the form its name asks for.
pub fn write(trace: &Trace, path: &Path) -> Result<Written, Error> {
    let csv = is_csv(path);
    let bytes = if csv { trace.to_csv().into_bytes() } else { trace.to_binary() };
    let file = path.display().to_string();
    std::fs::write(path, &bytes).map_err(|source| Error::Write { file: file.clone(), source })?;
    let count = |f: fn(&Record) -> bool| trace.records.iter().filter(|r| f(r)).count() as u64;
    let actions = count(|r| matches!(r, Record::Action { .. }));
    let ats = count(|r| matches!(r, Record::Ats { .. }));
    Ok(Written {
        output: file,
        form: if csv { "csv" } else { "binary" },
        records: trace.records.len() as u64,
        dma: trace.records.len() as u64 - actions - ats,
        actions,
        ats,
        devices: trace.devices.clone(),
        bytes: bytes.len() as u64,
    })
}

/// `trace record`: runs the scenario (the built-in one when `None`) and writes what it issued.
pub fn record(scenario: Option<&Path>, arch: Option<Arch>, out: &Path) -> Result<Written, Error> {
    let source = crate::run::source(scenario)?;
    let s = sviommu_sim::scenario::parse(&source)?;
    let trace = sviommu_sim::run::record(&s, &source, arch)?;
    write(&trace, out)
}

/// `trace convert`: reads either form, writes the other (or the same).
pub fn convert(input: &Path, out: &Path) -> Result<Written, Error> {
    write(&Trace::read(input)?, out)
}

/// One point of an IOTLB sweep.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// The architecture.
    pub arch: Arch,
    /// IOTLB entries.
    pub iotlb_entries: usize,
    /// IOTLB (TLB) hits per lookup, as the model counted them.
    pub iotlb_hit_rate: f64,
    /// Reads per translation.
    pub reads_per_translation: f64,
}

/// A replay at several IOTLB sizes.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    /// The trace file.
    pub trace: String,
    /// One point per architecture and size.
    pub points: Vec<Point>,
    /// The replays, each with its statistics, in the order of `points`.
    pub replays: Vec<ReplayReport>,
}

/// The IOTLB figures of a run.
pub fn point(run: &ReplayRun) -> Point {
    let iotlb = run.stats.caches.iter().find(|c| c.cache == "IOTLB" || c.cache == "TLB");
    let rate =
        iotlb.map_or(0.0, |c| if c.lookups == 0 { 0.0 } else { c.hits as f64 / c.lookups as f64 });
    Point {
        arch: run.arch,
        iotlb_entries: run.iotlb_entries,
        iotlb_hit_rate: rate,
        reads_per_translation: run.stats.reads_per_translation,
    }
}

/// Replays `trace` once per IOTLB size in `sizes` (once with the scenario's when empty).
pub fn sweep(
    trace: &Trace,
    opts: &Options,
    sizes: &[usize],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Sweep, Error> {
    let sizes: Vec<Option<usize>> =
        if sizes.is_empty() { vec![None] } else { sizes.iter().copied().map(Some).collect() };
    let n = sizes.len() as u64;
    let mut replays = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let config = Config { iotlb: size.or(opts.config.iotlb), ..opts.config };
        let o = Options { config, ..*opts };
        let mut step = |done: u64, total: u64| progress(i as u64 * total + done, n * total);
        replays.push(replay::replay(trace, &o, &mut step)?);
    }
    let points = replays.iter().flat_map(|r| r.runs.iter().map(point)).collect();
    Ok(Sweep { trace: trace.file.clone(), points, replays })
}

/// What `stats` found: a scenario's run or a trace's replay, statistics only.
#[derive(Clone, Debug, Serialize)]
pub struct StatsReport {
    /// The file (or the built-in scenario).
    pub source: String,
    /// `scenario` or `trace`.
    pub kind: &'static str,
    /// One per architecture.
    pub runs: Vec<StatsRun>,
}

/// One architecture's statistics.
#[derive(Clone, Debug, Serialize)]
pub struct StatsRun {
    /// The architecture.
    pub arch: Arch,
    /// The unit.
    pub unit: String,
    /// What the unit counted.
    pub stats: Stats,
}

/// `stats [SCENARIO|TRACE]`: a trace (by its magic) is replayed, anything else run as a
/// scenario.
pub fn stats(
    path: Option<&Path>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<StatsReport, Error> {
    if let Some(p) = path {
        let bytes = std::fs::read(p)
            .map_err(|source| ScenarioError::Read { file: p.display().to_string(), source })?;
        if Trace::looks_like_trace(&bytes) {
            let trace = Trace::parse(&p.display().to_string(), &bytes)?;
            let r = replay::replay(&trace, &Options::default(), progress)?;
            let runs = r
                .runs
                .into_iter()
                .map(|run| StatsRun { arch: run.arch, unit: run.unit, stats: run.stats })
                .collect();
            return Ok(StatsReport { source: trace.file, kind: "trace", runs });
        }
    }
    let report = crate::run::run(path)?;
    let runs = report
        .runs
        .into_iter()
        .map(|a| StatsRun { arch: a.arch, unit: a.unit, stats: a.stats })
        .collect();
    Ok(StatsReport { source: report.source, kind: "scenario", runs })
}

impl StatsReport {
    /// As text.
    pub fn text(&self) -> String {
        let runs: Vec<(Arch, String, Stats)> =
            self.runs.iter().map(|r| (r.arch, r.unit.clone(), r.stats.clone())).collect();
        sviommu_sim::report::stats_text(&self.source, &runs)
    }
}

/// A sweep as text: a line per point, then (for one size) the whole replay.
pub fn sweep_text(s: &Sweep) -> String {
    if let [one] = s.replays.as_slice() {
        return sviommu_sim::report::replay_text(one);
    }
    let mut out = format!("IOTLB sweep of {}\n", s.trace);
    out.push_str("  arch    IOTLB entries  hit rate  reads per translation\n");
    for p in &s.points {
        out.push_str(&format!(
            "  {:<6}  {:>13}  {:>7.1}%  {:>21.2}\n",
            p.arch.to_string(),
            p.iotlb_entries,
            p.iotlb_hit_rate * 100.0,
            p.reads_per_translation
        ));
    }
    out
}

/// Draws hit rate and reads per translation against IOTLB size, one line per architecture,
/// as an SVG file. Text is SVG `<text>`: no font library is needed to write it.
pub fn plot(s: &Sweep, path: &Path) -> Result<(), Error> {
    use plotters::prelude::*;
    let file = path.display().to_string();
    let fail =
        |e: &dyn std::fmt::Display| Error::Plot { file: file.clone(), message: e.to_string() };
    let root = SVGBackend::new(path, (800, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(350);
    let sizes: Vec<f64> = s.points.iter().map(|p| p.iotlb_entries.max(1) as f64).collect();
    let lo = sizes.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let hi = sizes.iter().copied().fold(1.0, f64::max);
    let x = (lo / 2.0)..(hi * 2.0);
    let max_reads = s.points.iter().map(|p| p.reads_per_translation).fold(0.0, f64::max);
    let archs: Vec<Arch> = {
        let mut a: Vec<Arch> = s.points.iter().map(|p| p.arch).collect();
        a.sort();
        a.dedup();
        a
    };
    let colour = |a: Arch| if a == Arch::Vtd { BLUE } else { RED };
    type Metric = fn(&Point) -> f64;
    let panels: [(&DrawingArea<SVGBackend, _>, &str, std::ops::Range<f64>, Metric); 2] = [
        (&top, "IOTLB hit rate (%)", 0.0..100.0, |p| p.iotlb_hit_rate * 100.0),
        (&bottom, "reads per translation", 0.0..(max_reads * 1.1).max(1.0), |p| {
            p.reads_per_translation
        }),
    ];
    for (area, label, y, metric) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{label} against IOTLB entries"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(x.clone().log_scale(), y)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("IOTLB entries")
            .y_desc(label)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| fail(&e))?;
        for &a in &archs {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.arch == a)
                .map(|p| (p.iotlb_entries.max(1) as f64, metric(p)))
                .collect();
            let c = colour(a);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(a.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
                .map_err(|e| fail(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
