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
}
