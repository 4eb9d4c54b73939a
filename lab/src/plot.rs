//! SVG charts with plotters.

use std::path::Path;

use plotters::prelude::*;

/// A horizontal bar chart on a log-10 value axis, one bar per (label, value), labels
/// on the left so long technique names stay readable.
pub fn log_bars(path: &Path, title: &str, x_label: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    let max = bars.iter().map(|b| b.1).fold(1.0_f64, f64::max);
    let min = bars.iter().map(|b| b.1).filter(|v| *v > 0.0).fold(max, f64::min);
    let lo = 10f64.powf(min.log10().floor()).clamp(1e-3, 1.0);
    let hi = 10f64.powf(max.log10().ceil()).max(lo * 10.0);
    let n = bars.len().max(1);
    let height = 90 + 30 * n as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(300)
        .build_cartesian_2d((lo..hi).log_scale(), (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_label)
        .y_labels(n)
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let v = v.max(lo);
        let mut bar =
            Rectangle::new([(lo, SegmentValue::Exact(i)), (v, SegmentValue::Exact(i + 1))], BLUE.mix(0.6).filled());
        bar.set_margin(5, 5, 0, 0);
        bar
    }))?;
    root.present()?;
    Ok(())
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
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 2.0;
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), (0.5..top).log_scale())?;
    chart.configure_mesh().x_desc(x_label).y_desc("samples (log)").draw()?;
    for (k, ((label, _), c)) in series.iter().zip(&counts).enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let steps = c.iter().enumerate().flat_map(|(i, n)| {
            let y = (*n as f64).max(0.5);
            [(edge(i), y), (edge(i + 1), y)]
        });
        chart
            .draw_series(LineSeries::new(steps, color.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}

/// A line chart: one line per series over categorical x values (`x_labels`), NaN
/// points left out.
pub fn lines(
    path: &Path,
    title: &str,
    x_labels: &[String],
    y_label: &str,
    series: &[(String, Vec<f64>)],
) -> anyhow::Result<()> {
    let top = series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite()).fold(1.0_f64, f64::max);
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = x_labels.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
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
        .x_desc("churn")
        .y_desc(y_label)
        .draw()?;
    for (k, (name, ys)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let pts: Vec<(f64, f64)> =
            ys.iter().enumerate().filter(|(_, y)| y.is_finite()).map(|(i, y)| (i as f64, *y)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
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
}
