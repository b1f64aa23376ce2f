//! PNG plots drawn with plotters' bitmap backend and an embedded font (DejaVu Sans), so
//! that no system font library is needed.

use anyhow::{anyhow, Context};
use plotters::prelude::*;
use std::{path::Path, sync::Once};

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is a valid TrueType font"));
    });
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A solid line through the points.
    Line,
    /// A dashed line through the points.
    Dashed,
    /// Filled circles at the points.
    Dots,
}

/// One labelled series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend label.
    pub label: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// How to draw them.
    pub mark: Mark,
    /// The colour.
    pub color: RGBColor,
}

/// One chart of a figure.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// The chart's caption.
    pub title: String,
    /// The x-axis label.
    pub x_label: String,
    /// The y-axis label.
    pub y_label: String,
    /// Draw y on a log scale.
    pub log_y: bool,
    /// The series.
    pub series: Vec<Series>,
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if lo == hi {
        let pad = if lo == 0.0 { 0.5 } else { 0.1 * lo.abs() };
        (lo - pad, hi + pad)
    } else {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() {
        (lo / 1.5, hi * 1.5)
    } else {
        (0.1, 10.0)
    }
}

/// A tick label with as many decimals as the axis span needs (none for spans over 100),
/// in scientific notation for tiny values, with as many mantissa digits as tell ticks a
/// tenth of the span apart (a constant learning rate of 1e-3 spans 9e-4..1.1e-3).
fn tick(v: f64, (lo, hi): (f64, f64)) -> String {
    let span = (hi - lo).abs();
    let magnitude = lo.abs().max(hi.abs());
    if magnitude > 0.0 && magnitude < 1e-2 {
        let digits = if span > 0.0 { magnitude.log10().floor() - (span / 10.0).log10().floor() } else { 1.0 };
        let digits = digits.clamp(1.0, 6.0) as usize;
        return format!("{v:.digits$e}");
    }
    let decimals = if span >= 100.0 {
        0
    } else if span >= 10.0 {
        1
    } else if span >= 0.1 {
        2
    } else {
        4
    };
    format!("{v:.decimals$}")
}

/// A label on a logarithmic axis: three significant digits, whatever the decade
/// (a fixed number of decimals would print 0.01 and 0.1 alike as "0").
fn log_tick(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let exponent = v.log10().floor();
    if !(-3.0..5.0).contains(&exponent) {
        return format!("{v:.1e}");
    }
    let decimals = (2.0 - exponent).max(0.0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Colours of the standard series, distinguishable in print.
pub mod colors {
    use plotters::style::RGBColor;
    /// Ground truth.
    pub const TRUTH: RGBColor = RGBColor(20, 20, 20);
    /// Before adaptation / baseline.
    pub const BASE: RGBColor = RGBColor(150, 150, 150);
    /// A categorical palette (Tableau 10).
    pub const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    /// The `i`-th palette colour, cycling.
    pub fn pick(i: usize) -> RGBColor {
        PALETTE[i % PALETTE.len()]
    }
}

/// Draws `panels` side by side in a grid of `columns` and writes a PNG of
/// `width`×`height` pixels to `path`.
pub fn draw_panels(
    path: &Path,
    panels: &[Panel],
    columns: usize,
    (width, height): (u32, u32),
) -> anyhow::Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let rows = panels.len().div_ceil(columns.max(1));
    let areas = root.split_evenly((rows.max(1), columns.max(1)));
    for (panel, area) in panels.iter().zip(areas) {
        draw_panel(panel, &area).with_context(|| format!("drawing panel `{}`", panel.title))?;
    }
    root.present().map_err(|e| anyhow!("{e}")).with_context(|| format!("writing {}", path.display()))
}

fn draw_panel(
    panel: &Panel,
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
) -> anyhow::Result<()> {
    let xs = bounds(panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let positive = |v: f64| if panel.log_y { v > 0.0 } else { true };
    let y_values = panel.series.iter().flat_map(|s| s.points.iter().map(|p| p.1).filter(|&v| positive(v)));
    // A log axis pads by a factor (a linear pad could reach below zero).
    let ys = if panel.log_y { log_bounds(y_values) } else { bounds(y_values) };
    let mut builder = ChartBuilder::on(area);
    builder.caption(&panel.title, (FONT, 18)).margin(10).x_label_area_size(35).y_label_area_size(55);
    if panel.log_y {
        let ys = (ys.0.max(1e-12), ys.1.max(ys.0.max(1e-12) * 1.01));
        let mut chart =
            builder.build_cartesian_2d(xs.0..xs.1, (ys.0..ys.1).log_scale()).map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .y_desc(&panel.y_label)
            .label_style((FONT, 13))
            .x_label_formatter(&|v| tick(*v, xs))
            .y_labels(8)
            .y_label_formatter(&|v| log_tick(*v))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        draw_series(&mut chart, panel, positive)
    } else {
        let mut chart = builder.build_cartesian_2d(xs.0..xs.1, ys.0..ys.1).map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .y_desc(&panel.y_label)
            .label_style((FONT, 13))
            .x_label_formatter(&|v| tick(*v, xs))
            .y_label_formatter(&|v| tick(*v, ys))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        draw_series(&mut chart, panel, positive)
    }
}

fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    panel: &Panel,
    keep: impl Fn(f64) -> bool,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for series in &panel.series {
        let color = series.color;
        let points =
            series.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite() && keep(p.1));
        let anno = match series.mark {
            Mark::Line => chart.draw_series(LineSeries::new(points, color.stroke_width(2)).point_size(2)),
            Mark::Dashed => chart.draw_series(DashedLineSeries::new(points, 6, 4, color.stroke_width(2))),
            Mark::Dots => chart.draw_series(points.map(|p| Circle::new(p, 4, color.filled()))),
        }
        .map_err(|e| anyhow!("{e}"))?;
        anno.label(&series.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_have_sensible_decimals() {
        assert_eq!(tick(2000.0, (0.0, 70000.0)), "2000");
        assert_eq!(tick(-2.5, (-5.0, 5.0)), "-2.5");
        assert_eq!(tick(0.25, (0.0, 1.0)), "0.25");
        assert_eq!(tick(0.001, (0.0009, 0.0011)), "1.00e-3");
        assert_ne!(tick(0.00098, (0.0009, 0.0011)), tick(0.00102, (0.0009, 0.0011)));
        assert_eq!(tick(0.004, (0.0, 0.009)), "4.0e-3");
        assert_eq!(log_tick(0.01), "0.01");
        assert_eq!(log_tick(0.25), "0.25");
        assert_eq!(log_tick(3.0), "3");
        assert_eq!(log_tick(1000.0), "1000");
        assert_eq!(log_tick(2e-5), "2.0e-5");
    }

    #[test]
    fn writes_a_png() {
        let dir = std::env::temp_dir().join(format!("metl-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.png");
        let series = |mark, color| Series {
            label: format!("{mark:?}"),
            points: (1..50).map(|i| (i as f64, 1.0 / i as f64)).collect(),
            mark,
            color: colors::pick(color),
        };
        let panels = [
            Panel {
                title: "linear".into(),
                series: vec![series(Mark::Line, 0), series(Mark::Dots, 1)],
                ..Default::default()
            },
            Panel {
                title: "log".into(),
                log_y: true,
                series: vec![series(Mark::Dashed, 2)],
                ..Default::default()
            },
        ];
        draw_panels(&path, &panels, 2, (800, 300)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
