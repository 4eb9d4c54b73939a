//! SVG charts with plotters.

use std::path::Path;

use plotters::prelude::*;

/// A horizontal-label bar chart on a log-10 value axis: one bar per (label, value).
pub fn log_bars(path: &Path, title: &str, y_label: &str, bars: &[(String, f64)]) -> anyhow::Result<()> {
    let max = bars.iter().map(|b| b.1).fold(1.0_f64, f64::max);
    let min = bars.iter().map(|b| b.1).filter(|v| *v > 0.0).fold(max, f64::min);
    let lo = 10f64.powf(min.log10().floor()).clamp(1e-3, 1.0);
    let hi = 10f64.powf(max.log10().ceil() + 0.0).max(lo * 10.0);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d((0..n).into_segmented(), (lo..hi).log_scale())?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .x_labels(n)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        let v = v.max(lo);
        let mut bar =
            Rectangle::new([(SegmentValue::Exact(i), lo), (SegmentValue::Exact(i + 1), v)], BLUE.mix(0.6).filled());
        bar.set_margin(0, 0, 12, 12);
        bar
    }))?;
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
