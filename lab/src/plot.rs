//! SVG charts with plotters.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use vmscope_technique::{Liveness, Technique};

/// The taxonomy classes charts colour techniques by, with colour-blind-safe colours
/// (Okabe–Ito): live memory access, halted, snapshot, validated (consistent-*), agent.
pub const TAXONOMY: [(&str, RGBColor); 5] = [
    ("live", RGBColor(0x00, 0x72, 0xB2)),
    ("halt", RGBColor(0xE6, 0x9F, 0x00)),
    ("snapshot", RGBColor(0xCC, 0x79, 0xA7)),
    ("consistent", RGBColor(0x00, 0x9E, 0x73)),
    ("agent", RGBColor(0x55, 0x55, 0x55)),
];

/// The taxonomy class (an index into [`TAXONOMY`]) of a technique.
pub fn class_of(t: Technique) -> usize {
    let a = t.axes();
    if t == Technique::Agent {
        4
    } else if t.validates() {
        3
    } else if a.snapshot {
        2
    } else if a.liveness == Liveness::Halt {
        1
    } else {
        0
    }
}

/// The class of a technique named in a table, `live` when the name is unknown.
pub fn class_of_name(name: &str) -> usize {
    name.parse::<Technique>().map_or(0, class_of)
}

/// One bar of [`grouped_bars`].
#[derive(Debug, Clone)]
pub struct Bar {
    /// The group it is drawn in (a guest kernel).
    pub group: String,
    /// Its label on the left (a technique).
    pub label: String,
    /// Its colour: an index into [`TAXONOMY`].
    pub class: usize,
    pub value: f64,
}

const FONT: &str = "sans-serif";

/// `v` with an SI suffix and three significant digits: 12.3 k, 456, 0.78.
pub fn si(v: f64) -> String {
    let (x, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, " G"),
        a if a >= 1e6 => (v / 1e6, " M"),
        a if a >= 1e4 => (v / 1e3, " k"),
        _ => (v, " "),
    };
    let digits = match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        _ => 2,
    };
    format!("{x:.digits$}{suffix}").trim_end().to_owned()
}

/// An axis tick: [`si`] without trailing zeros (10 k, 1, 0.5).
fn tick(v: f64) -> String {
    let s = si(v);
    let (num, suffix) = s.split_once(' ').map_or((s.as_str(), ""), |(n, x)| (n, x));
    let num = if num.contains('.') { num.trim_end_matches('0').trim_end_matches('.') } else { num };
    if suffix.is_empty() { num.to_owned() } else { format!("{num} {suffix}") }
}

/// A horizontal bar chart on a log-10 value axis: bars in groups (one heading per
/// group), coloured by taxonomy class with a legend, each labelled with its value and
/// `unit`. Bars with no positive value are drawn as "n/a".
pub fn grouped_bars(path: &Path, title: &str, x_label: &str, unit: &str, bars: &[Bar]) -> anyhow::Result<()> {
    let mut groups: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
    }
    // Rows top to bottom: a heading per group (when there is more than one group or it
    // has a name), then its bars.
    let headed = groups.len() > 1 || groups.first().is_some_and(|g| !g.is_empty());
    let mut rows: Vec<(Option<&Bar>, &str)> = Vec::new();
    for g in &groups {
        if headed {
            rows.push((None, g));
        }
        rows.extend(bars.iter().filter(|b| b.group == *g).map(|b| (Some(b), b.label.as_str())));
    }
    let n = rows.len().max(1);
    let positive = || bars.iter().map(|b| b.value).filter(|v| v.is_finite() && *v > 0.0);
    let max = positive().fold(1.0_f64, f64::max);
    let min = positive().fold(max, f64::min);
    let lo = 10f64.powf(min.log10().floor() - if min.log10().fract() == 0.0 { 1.0 } else { 0.0 });
    // Room on the right for the value labels: half a decade at least.
    let hi = 10f64.powf((max.log10() + 0.7).ceil()).max(lo * 10.0);
    let used: Vec<usize> = {
        let mut v: Vec<usize> = bars.iter().map(|b| b.class).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let label_w = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(8) as u32 * 8 + 24;
    let (w, row_h) = (960u32, 26u32);
    let height = 120 + 34 + row_h * n as u32;
    let base = SVGBackend::new(path, (w, height)).into_drawing_area();
    base.fill(&WHITE)?;
    let root = base.titled(title, (FONT, 22))?;
    let (legend, plot) = root.split_vertically(34);
    draw_legend(&legend, &used.iter().map(|&c| (TAXONOMY[c].0.to_owned(), TAXONOMY[c].1)).collect::<Vec<_>>())?;
    let mut chart = ChartBuilder::on(&plot)
        .margin_left(8)
        .margin_right(24)
        .margin_bottom(8)
        .x_label_area_size(56)
        .y_label_area_size(label_w)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(x_label)
        .x_label_formatter(&|v| tick(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    let center = |i: usize| n as f64 - i as f64 - 0.5;
    let right = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let heading =
        TextStyle::from((FONT, 15).into_font().style(FontStyle::Bold)).pos(Pos::new(HPos::Left, VPos::Center));
    let value_style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (bar, label)) in rows.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(lo, center(i)));
        match bar {
            None => {
                // The group's heading, across the label column and the plot.
                let (x0, _) = chart.backend_coord(&(lo, 0.0));
                // backend_coord is in the whole image's pixels: draw on `base`.
                base.draw(&Text::new(label.to_string(), (8, py), heading.clone()))?;
                base.draw(&PathElement::new(
                    vec![(x0, py + row_h as i32 / 2), (w as i32 - 24, py + row_h as i32 / 2)],
                    BLACK.mix(0.15),
                ))?;
            }
            Some(b) => {
                base.draw(&Text::new(label.to_string(), (px - 8, py), right.clone()))?;
                let color = TAXONOMY[b.class.min(TAXONOMY.len() - 1)].1;
                let text = if b.value.is_finite() && b.value > 0.0 {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(lo, center(i) - 0.36), (b.value, center(i) + 0.36)],
                        color.filled(),
                    )))?;
                    format!("{} {unit}", si(b.value))
                } else {
                    "n/a".to_owned()
                };
                let v = if b.value.is_finite() && b.value > 0.0 { b.value } else { lo };
                chart.draw_series(std::iter::once(
                    EmptyElement::at((v, center(i))) + Text::new(text, (5, 0), value_style.clone()),
                ))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// A row of coloured swatches and names, centred in `area`.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, RGBColor)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    let widths: Vec<i32> = entries.iter().map(|(n, _)| 14 + 6 + 8 * n.chars().count() as i32 + 20).collect();
    let mut x = (w as i32 - widths.iter().sum::<i32>()) / 2;
    let y = h as i32 / 2;
    let style = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for ((name, color), width) in entries.iter().zip(widths) {
        area.draw(&Rectangle::new([(x, y - 7), (x + 14, y + 7)], color.filled()))?;
        area.draw(&Text::new(name.clone(), (x + 20, y), style.clone()))?;
        x += width;
    }
    Ok(())
}

/// A horizontal bar chart on a log-10 value axis, one bar per (label, value), coloured
/// by the taxonomy class of the technique its label starts with.
#[allow(dead_code, reason = "kept for experiments with one group of bars")]
pub fn log_bars(path: &Path, title: &str, x_label: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    let bars: Vec<Bar> = bars
        .iter()
        .map(|(label, value)| Bar {
            group: String::new(),
            label: label.clone(),
            class: class_of_name(label.split_whitespace().next().unwrap_or("")),
            value: *value,
        })
        .collect();
    grouped_bars(path, title, x_label, "", &bars)
}

/// Histograms of latency samples (microseconds), one outlined series per
/// (label, samples), on log-spaced bins along a log-10 axis and a log-10 count axis,
/// so that a tail of a few slow samples stays visible beside thousands of fast ones.
pub fn latency_histogram(path: &Path, title: &str, x_label: &str, series: &[(String, Vec<f64>)]) -> anyhow::Result<()> {
    const BINS_PER_DECADE: f64 = 10.0;
    let all = || series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| *v > 0.0);
    let lo = 10f64.powf(all().fold(f64::INFINITY, f64::min).log10().floor()).min(1e9);
    let hi = 10f64.powf(all().fold(0.0_f64, f64::max).log10().ceil()).max(lo * 10.0);
    let bins = ((hi / lo).log10() * BINS_PER_DECADE).round().max(1.0) as usize;
    let edge = |i: usize| lo * 10f64.powf(i as f64 / BINS_PER_DECADE);
    let counts: Vec<Vec<u64>> = series
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0u64; bins];
            for x in v.iter().filter(|x| **x > 0.0) {
                let i = ((x / lo).log10() * BINS_PER_DECADE).floor().max(0.0) as usize;
                c[i.min(bins - 1)] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 3.0;
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 22))?;
    let (plot, legend) = root.split_horizontally(720);
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .margin_right(20)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), (0.5..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("samples (log)")
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| if *v < 1.0 { String::new() } else { tick(*v) })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    let mut entries = Vec::new();
    for (k, ((label, samples), c)) in series.iter().zip(&counts).enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let steps = c.iter().enumerate().flat_map(|(i, n)| {
            let y = (*n as f64).max(0.5);
            [(edge(i), y), (edge(i + 1), y)]
        });
        chart.draw_series(LineSeries::new(steps, color.stroke_width(2)))?;
        entries.push((format!("{label} (n={})", samples.len()), color, false));
    }
    draw_legend_column(&legend, &entries)?;
    root.present()?;
    Ok(())
}

/// Distinct colour-blind-safe line colours (Okabe–Ito, then darker shades).
const PALETTE: [RGBColor; 9] = [
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0x00, 0x00, 0x00),
    RGBColor(0xB0, 0xA0, 0x00),
    RGBColor(0x88, 0x88, 0x88),
];

/// A legend as a column of (line sample, name) entries, dashed where the flag says.
fn draw_legend_column<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    entries: &[(String, RGBColor, bool)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, color, dashed)) in entries.iter().enumerate() {
        let y = 24 + 20 * i as i32;
        if *dashed {
            for x in [4, 14] {
                area.draw(&PathElement::new(vec![(x, y), (x + 6, y)], color.stroke_width(2)))?;
            }
        } else {
            area.draw(&PathElement::new(vec![(4, y), (24, y)], color.stroke_width(2)))?;
        }
        area.draw(&Circle::new((14, y), 3, color.filled()))?;
        area.draw(&Text::new(name.clone(), (30, y), style.clone()))?;
    }
    Ok(())
}

/// A line chart: one line per series over categorical x values (`x_labels`), NaN
/// points left out; the x axis is called "churn".
#[allow(dead_code, reason = "kept for experiments whose x axis is churn")]
pub fn lines(
    path: &Path,
    title: &str,
    x_labels: &[String],
    y_label: &str,
    series: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    lines_with(path, title, ("churn", x_labels), y_label, series)
}

/// [`lines`] with a named x axis. Series are named "KIND REST" (technique, guest):
/// one colour per kind, solid for the first REST and dashed for the others; the
/// legend sits beside the plot.
pub fn lines_with(
    path: &Path,
    title: &str,
    (x_desc, x_labels): (&str, &[String]),
    y_label: &str,
    series: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let top = series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite()).fold(1.0_f64, f64::max);
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 22))?;
    let (plot, legend) = root.split_horizontally(740);
    let n = x_labels.len().max(1);
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .margin_right(24)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.25f64..(n as f64 - 0.75), 0f64..top * 1.1)?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                x_labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .disable_x_mesh()
        .y_label_formatter(&|v| tick(*v))
        .x_desc(x_desc)
        .y_desc(y_label)
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    // Colour per technique (the series name's first word), dashes per what follows it
    // (the guest): solid for the first guest, dashed for the others.
    let mut kinds: Vec<&str> = Vec::new();
    let mut rests: Vec<&str> = Vec::new();
    let mut entries = Vec::new();
    for (name, ys) in series {
        let (kind, rest) = name.split_once(' ').unwrap_or((name, ""));
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
        if !rests.contains(&rest) {
            rests.push(rest);
        }
        let k = kinds.iter().position(|x| *x == kind).unwrap_or(0);
        let color = PALETTE[k % PALETTE.len()];
        let dashed = rests.first().is_some_and(|r| *r != rest);
        let pts: Vec<(f64, f64)> =
            ys.iter().enumerate().filter(|(_, y)| y.is_finite()).map(|(i, y)| (i as f64, *y)).collect();
        if dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, color.stroke_width(2)))?;
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
        }
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        entries.push((name.clone(), color, dashed));
    }
    draw_legend_column(&legend, &entries)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_an_svg() {
        let p = std::env::temp_dir().join(format!("vmscope-lab-plot-{}.svg", std::process::id()));
        super::log_bars(&p, "passes per second", "passes/s", &[("live-map".into(), 12000.0), ("agent".into(), 40.0)])
            .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("live-map") && svg.contains("agent"));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn writes_a_histogram() {
        let p = std::env::temp_dir().join(format!("vmscope-lab-hist-{}.svg", std::process::id()));
        let fast: Vec<f64> = (0..500).map(|i| 40.0 + f64::from(i % 20)).collect();
        let slow = vec![45.0, 50.0, 4000.0];
        super::latency_histogram(&p, "latency", "us", &[("fast".into(), fast), ("slow".into(), slow)]).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("fast") && svg.contains("slow"));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn grouped_bars_label_every_bar_with_its_unit() {
        let p = std::env::temp_dir().join(format!("vmscope-lab-grouped-{}.svg", std::process::id()));
        let bar = |group: &str, label: &str, value| super::Bar {
            group: group.into(),
            label: label.into(),
            class: super::class_of_name(label),
            value,
        };
        let bars = [
            bar("linux-6.1", "live-map", 12000.0),
            bar("linux-6.1", "halt-read", 310.0),
            bar("linux-6.1", "agent", 0.0),
            bar("linux-6.12", "live-map", 9000.0),
        ];
        super::grouped_bars(&p, "Monitoring frequency", "passes per second (log)", "passes/s", &bars).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        for text in ["linux-6.12", "12.0 k passes/s", "310 passes/s", "n/a", "live", "halt", "agent"] {
            assert!(svg.contains(text), "{text} missing");
        }
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn si_keeps_three_digits() {
        assert_eq!(super::si(12345.0), "12.3 k");
        assert_eq!(super::si(456.0), "456");
        assert_eq!(super::si(0.781), "0.78");
        assert_eq!(super::si(2.5e6), "2.50 M");
        assert_eq!(
            (super::tick(10_000.0), super::tick(1.0), super::tick(100.0)),
            ("10 k".into(), "1".into(), "100".into())
        );
    }
}
