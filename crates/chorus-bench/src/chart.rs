//! The comparison chart (PNG): one bar panel per headline figure, a bar per server.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::BenchError;
use crate::runner::ScenarioResult;
use crate::server::ServerKind;

/// Fonts tried in order; plotters' pure-Rust text rendering needs a TTF file.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

struct Panel {
    title: &'static str,
    family: &'static str,
    figure: &'static str,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "fan-out: server CPU us per delivery",
        family: "fanout",
        figure: "server_cpu_us_per_delivery",
    },
    Panel {
        title: "paced fan-out: latency p99 (ms)",
        family: "paced",
        figure: "latency_p99_ms",
    },
    Panel {
        title: "idle: server KiB per connection",
        family: "idle",
        figure: "rss_kib_per_connection",
    },
    Panel {
        title: "many channels: server CPU us per delivery",
        family: "channels",
        figure: "server_cpu_us_per_delivery",
    },
];

const COLORS: [RGBColor; 4] = [
    RGBColor(0x2b, 0x6c, 0xb0),
    RGBColor(0x8a, 0x8a, 0x8a),
    RGBColor(0x5f, 0xa0, 0x4e),
    RGBColor(0xc0, 0x7a, 0x2c),
];

fn register_font() -> Result<(), BenchError> {
    let bytes = FONT_PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| BenchError::Chart(format!("no TTF font found (tried {FONT_PATHS:?})")))?;
    // Leaked once per process: plotters keeps fonts for the program's lifetime.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| BenchError::Chart("font not usable".into()))
}

/// Draws the chart to `path`.
pub fn draw(results: &[ScenarioResult], subtitle: &str, path: &Path) -> Result<(), BenchError> {
    register_font()?;
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| BenchError::Chart(e.to_string());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, body) = root.split_vertically(50);
    top.titled(
        &format!("Chorus vs baselines (medians) — {subtitle}"),
        ("sans-serif", 20),
    )
    .map_err(|e| err(&e))?;
    for (area, panel) in body.split_evenly((2, 2)).iter().zip(PANELS.iter()) {
        let bars: Vec<(ServerKind, f64)> = results
            .iter()
            .find(|r| r.scenario.family() == panel.family)
            .map(|r| {
                ServerKind::ALL
                    .iter()
                    .filter_map(|k| Some((*k, r.median(*k, panel.figure)?)))
                    .collect()
            })
            .unwrap_or_default();
        draw_panel(area, panel.title, &bars).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    bars: &[(ServerKind, f64)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.2;
    let caption = if bars.is_empty() {
        format!("{title}: not measured")
    } else {
        title.to_owned()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(bars.len().max(1) as f64 - 0.5), 0f64..max)?;
    let names: Vec<&str> = bars.iter().map(|b| b.0.name()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).copied().unwrap_or("").to_owned()
            } else {
                String::new()
            }
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (kind, v))| {
        let x = i as f64;
        let color = COLORS[ServerKind::ALL.iter().position(|k| k == kind).unwrap_or(0)];
        Rectangle::new([(x - 0.3, 0.0), (x + 0.3, *v)], color.filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
        Text::new(
            crate::report::fmt_value(*v),
            (i as f64 - 0.1, *v + max * 0.02),
            ("sans-serif", 15),
        )
    }))?;
    Ok(())
}
