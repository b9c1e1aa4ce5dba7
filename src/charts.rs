//! Charts of metric results, drawn by the app itself: SVG for pages, PNG for mail.
//!
//! One function, [`render`], draws any [`MetricResult`] as a line, grouped-bar or stacked-bar
//! chart with a title, the unit on the y axis (durations in seconds, minutes or hours,
//! whichever reads best for the largest value), the interval starts on the x axis, one
//! colour and legend entry per group, and an optional target line (an SLA target, a
//! service-level goal). The font (DejaVu Sans, `assets/fonts/`) is embedded in the binary,
//! so a PNG looks the same on a machine without fonts.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::metrics::MetricResult;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding the PNG failed: {0}")]
    Png(String),
    #[error("chart size {0}×{1} is outside 200×150 .. 4000×3000")]
    Size(u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Line,
    Bar,
    Stacked,
}

impl std::str::FromStr for ChartKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "line" => Ok(ChartKind::Line),
            "bar" => Ok(ChartKind::Bar),
            "stacked" => Ok(ChartKind::Stacked),
            _ => Err(format!(
                "unknown chart kind {s:?}: use line, bar or stacked"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Svg,
    Png,
}

#[derive(Debug, Clone)]
pub struct ChartOptions {
    pub kind: ChartKind,
    pub width: u32,
    pub height: u32,
    /// A horizontal target line, in the metric's unit (seconds for durations).
    pub target: Option<f64>,
    pub title: String,
}

/// How values are shown: durations are scaled to a readable unit.
fn display_unit(unit: &str, max: f64) -> (f64, &'static str) {
    match unit {
        "seconds" if max >= 3.0 * 3600.0 => (3600.0, "hours"),
        "seconds" if max >= 180.0 => (60.0, "minutes"),
        "seconds" => (1.0, "seconds"),
        "percent" => (1.0, "%"),
        "messages" => (1.0, "messages"),
        _ => (1.0, "conversations"),
    }
}

/// A short x label from an RFC 3339 bucket start: the date, or date and hour.
fn short_label(start: &str, interval: &str) -> String {
    let date = start.get(5..10).unwrap_or(start);
    match interval {
        "hour" => format!("{date} {}h", start.get(11..13).unwrap_or("")),
        "month" => start.get(0..7).unwrap_or(start).to_owned(),
        _ => date.to_owned(),
    }
}

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(e.to_string())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    result: &MetricResult,
    opts: &ChartOptions,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let n = result.series.first().map_or(0, |s| s.points.len());
    let labels: Vec<String> = result
        .series
        .first()
        .map(|s| {
            s.points
                .iter()
                .map(|p| short_label(&p.start, &result.interval))
                .collect()
        })
        .unwrap_or_default();
    // Hours within one day: the date once in the title is enough, "08h" on the axis.
    let labels: Vec<String> = if result.interval == "hour"
        && labels
            .iter()
            .all(|l| l.get(..5) == labels.first().and_then(|f| f.get(..5)))
    {
        labels
            .iter()
            .map(|l| l.get(6..).unwrap_or(l).to_owned())
            .collect()
    } else {
        labels
    };
    // As many x labels as fit side by side (about 7.5 px a character, and a gap).
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(5) as f64;
    let fit = ((f64::from(opts.width) - 90.0) / (widest * 7.5 + 18.0)).floor() as usize;
    // Largest bar (stacked: largest sum) decides the scale.
    let mut max: f64 = opts.target.unwrap_or(0.0);
    for j in 0..n {
        let column: Vec<f64> = result
            .series
            .iter()
            .filter_map(|s| s.points.get(j).and_then(|p| p.value))
            .collect();
        let m = match opts.kind {
            ChartKind::Stacked => column.iter().sum(),
            _ => column.iter().cloned().fold(0.0, f64::max),
        };
        max = max.max(m);
    }
    let (scale, unit) = display_unit(result.unit, max);
    let top = if max > 0.0 { max / scale * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(&opts.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..(n.max(1) as f64 - 0.5), 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.clamp(1, fit.clamp(2, 12)))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(unit)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let groups = result.series.len().max(1);
    let mut base = vec![0.0f64; n];
    for (i, s) in result.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let name = s
            .group
            .clone()
            .unwrap_or_else(|| crate::metrics::NOT_NAMED.into());
        let values: Vec<Option<f64>> = s
            .points
            .iter()
            .map(|p| p.value.map(|v| v / scale))
            .collect();
        let anno = match opts.kind {
            ChartKind::Line => {
                let pts: Vec<(f64, f64)> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(j, v)| v.map(|v| (j as f64, v)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(err)?;
                chart
                    .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?
            }
            ChartKind::Bar => {
                let w = 0.8 / groups as f64;
                chart
                    .draw_series(values.iter().enumerate().filter_map(|(j, v)| {
                        let x0 = j as f64 - 0.4 + i as f64 * w;
                        v.map(|v| Rectangle::new([(x0, 0.0), (x0 + w * 0.9, v)], color.filled()))
                    }))
                    .map_err(err)?
            }
            ChartKind::Stacked => {
                let rects: Vec<_> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(j, v)| {
                        let v = (*v)?;
                        let r = Rectangle::new(
                            [(j as f64 - 0.4, base[j]), (j as f64 + 0.4, base[j] + v)],
                            color.filled(),
                        );
                        base[j] += v;
                        Some(r)
                    })
                    .collect();
                chart.draw_series(rects).map_err(err)?
            }
        };
        anno.label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    if let Some(t) = opts.target {
        let t = t / scale;
        chart
            .draw_series(LineSeries::new(
                vec![(-0.5, t), (n.max(1) as f64 - 0.5, t)],
                BLACK.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!(
                "target {}",
                target_label(t * scale, result.unit, unit)
            ))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(2)));
    }
    if result.series.len() > 1 || opts.target.is_some() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
    }
    if n == 0
        || result
            .series
            .iter()
            .all(|s| s.points.iter().all(|p| p.value.is_none()))
    {
        root.draw(&Text::new(
            "no data in this range",
            (opts.width as i32 / 2 - 70, opts.height as i32 / 2),
            ("sans-serif", 16),
        ))
        .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// The target in its own most readable unit ("target 5 min", not "0.1 hours").
fn target_label(raw: f64, unit: &str, shown: &str) -> String {
    if unit == "seconds" {
        return if raw >= 3.0 * 3600.0 {
            format!("{} h", trim(raw / 3600.0))
        } else if raw >= 120.0 {
            format!("{} min", trim(raw / 60.0))
        } else {
            format!("{} s", trim(raw))
        };
    }
    format!("{} {shown}", trim(raw))
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

/// Draws a metric result as an SVG document or a PNG image.
pub fn render(
    result: &MetricResult,
    opts: &ChartOptions,
    format: ImageFormat,
) -> Result<Vec<u8>, ChartError> {
    if !(200..=4000).contains(&opts.width) || !(150..=3000).contains(&opts.height) {
        return Err(ChartError::Size(opts.width, opts.height));
    }
    REGISTER.call_once(|| {
        // The embedded font is valid; a failure here would show as missing text, not a
        // crash.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let size = (opts.width, opts.height);
    match format {
        ImageFormat::Svg => {
            let mut svg = String::new();
            draw(
                SVGBackend::with_string(&mut svg, size).into_drawing_area(),
                result,
                opts,
            )?;
            Ok(svg.into_bytes())
        }
        ImageFormat::Png => {
            let mut rgb = vec![0u8; opts.width as usize * opts.height as usize * 3];
            draw(
                BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area(),
                result,
                opts,
            )?;
            let mut out = Vec::new();
            let mut enc = png::Encoder::new(&mut out, opts.width, opts.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc
                .write_header()
                .map_err(|e| ChartError::Png(e.to_string()))?;
            w.write_image_data(&rgb)
                .map_err(|e| ChartError::Png(e.to_string()))?;
            w.finish().map_err(|e| ChartError::Png(e.to_string()))?;
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Series;
    use crate::metrics::rows::{Detail, Point};

    fn result(values: &[(&str, &[Option<f64>])]) -> MetricResult {
        let series = values
            .iter()
            .map(|(g, vs)| Series {
                group: Some((*g).to_owned()),
                points: vs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Point {
                        start: format!("2026-11-{:02}T00:00:00-03:00", i + 2),
                        end: format!("2026-11-{:02}T00:00:00-03:00", i + 3),
                        value: *v,
                        detail: Detail::Duration {
                            count: 1,
                            p50: *v,
                            p90: *v,
                            p95: *v,
                            max: *v,
                        },
                    })
                    .collect(),
            })
            .collect();
        MetricResult {
            metric: "wait",
            unit: "seconds",
            business_hours: false,
            from: "2026-11-02T00:00:00-03:00".into(),
            to: "2026-11-05T00:00:00-03:00".into(),
            interval: "day".into(),
            group_by: None,
            tz: "America/Sao_Paulo".into(),
            series,
        }
    }

    fn opts(kind: ChartKind, target: Option<f64>) -> ChartOptions {
        ChartOptions {
            kind,
            width: 640,
            height: 320,
            target,
            title: "TME by team".into(),
        }
    }

    #[test]
    fn svg_has_title_unit_legend_labels_and_target() {
        // 300 s .. 900 s: shown in minutes; the target of 600 s reads "target 10 min".
        let r = result(&[
            ("billing", &[Some(300.0), None, Some(900.0)]),
            ("sales", &[Some(420.0), Some(480.0), None]),
        ]);
        for kind in [ChartKind::Line, ChartKind::Bar, ChartKind::Stacked] {
            let svg =
                String::from_utf8(render(&r, &opts(kind, Some(600.0)), ImageFormat::Svg).unwrap())
                    .unwrap();
            assert!(svg.starts_with("<svg"), "{kind:?}");
            for needle in [
                "TME by team",
                "minutes",
                "billing",
                "sales",
                "target 10 min",
                "11-02",
                "11-04",
            ] {
                assert!(svg.contains(needle), "{kind:?}: no {needle:?} in the SVG");
            }
            assert!(
                !svg.contains("http://")
                    || svg.matches("http://").all(|_| svg.contains("www.w3.org")),
                "no external reference"
            );
        }
    }

    #[test]
    fn hours_for_long_durations_and_a_note_when_empty() {
        let r = result(&[("all", &[Some(4.0 * 3600.0), Some(5.0 * 3600.0)])]);
        let svg =
            String::from_utf8(render(&r, &opts(ChartKind::Line, None), ImageFormat::Svg).unwrap())
                .unwrap();
        assert!(svg.contains("hours"));
        let empty = result(&[("all", &[None, None])]);
        let svg = String::from_utf8(
            render(&empty, &opts(ChartKind::Line, None), ImageFormat::Svg).unwrap(),
        )
        .unwrap();
        assert!(svg.contains("no data in this range"));
    }

    #[test]
    fn png_decodes_to_the_asked_size_with_drawn_text() {
        let r = result(&[("billing", &[Some(30.0), Some(45.0), Some(60.0)])]);
        let png_bytes = render(&r, &opts(ChartKind::Bar, None), ImageFormat::Png).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (640, 320));
        // Not a blank image: the title and bars put dark and coloured pixels on the white.
        let non_white = buf[..info.buffer_size()]
            .chunks(3)
            .filter(|p| p != &[255, 255, 255])
            .count();
        assert!(non_white > 2000, "only {non_white} drawn pixels");
        assert!(matches!(
            render(
                &r,
                &ChartOptions {
                    width: 10,
                    ..opts(ChartKind::Bar, None)
                },
                ImageFormat::Png
            ),
            Err(ChartError::Size(10, 320))
        ));
    }
}
