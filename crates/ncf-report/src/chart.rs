//! PNG charts drawn with plotters into memory and encoded with `png`: the training curve of one run
//! and grouped throughput bars (ncf beside the PyTorch peer). The font is bundled (DejaVu Sans), so
//! drawing needs no fontconfig or system fonts.

use crate::trainlog::TrainLog;
use crate::{Error, Result};
use ncf_core::train::EpochReport;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// DejaVu Sans (Bitstream Vera licence: assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            result = Err(Error::invalid(
                "the bundled font DejaVuSans.ttf is not a valid font",
            ));
        }
    });
    result
}

fn draw_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::invalid(format!("drawing the chart: {e:?}"))
}

/// The tEXt chunk that marks a PNG as ncf-plot's (so `--force` replaces only those).
const SOFTWARE_KEY: &str = "Software";
const SOFTWARE: &str = "ncf-plot";

/// A chart file as an output: an existing one is replaced (with `--force`) only when it is a PNG
/// ncf-plot wrote ([`written_by_ncf_plot`]).
pub const OUTPUT: ncf_core::io::Output = ncf_core::io::Output {
    what: "PNG chart",
    example: "curve.png",
    dir: false,
    reused: false,
    ours: written_by_ncf_plot,
};

/// `Ok` when `path` is a PNG whose `Software` text chunk (before the image data) says ncf-plot;
/// else why not.
pub fn written_by_ncf_plot(path: &Path) -> std::result::Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read ({e})"))?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err("not a PNG file".into());
    }
    let want = [SOFTWARE_KEY.as_bytes(), b"\0", SOFTWARE.as_bytes()].concat();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = bytes.get(at + 8..(at + 8).saturating_add(len));
        match (kind, data) {
            (b"tEXt", Some(d)) if d == want.as_slice() => return Ok(()),
            (b"IDAT" | b"IEND", _) | (_, None) => break,
            _ => at = at + 12 + len,
        }
    }
    Err("a PNG that ncf-plot did not write".into())
}

/// RGB pixels (`width * height * 3`) to a PNG file's bytes.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.add_text_chunk(SOFTWARE_KEY.into(), SOFTWARE.into())
        .map_err(|e| Error::invalid(format!("PNG: {e}")))?;
    let mut w = enc
        .write_header()
        .map_err(|e| Error::invalid(format!("PNG: {e}")))?;
    w.write_image_data(rgb)
        .map_err(|e| Error::invalid(format!("PNG: {e}")))?;
    w.finish()
        .map_err(|e| Error::invalid(format!("PNG: {e}")))?;
    Ok(out)
}

/// Padded axis range over `values` (never empty, never zero-width), or an error naming `what`
/// when the range is too wide for an f64 axis (the plotting library would never finish).
fn axis_range(values: impl Iterator<Item = f64> + Clone, what: &str) -> Result<(f64, f64)> {
    let (lo, hi) = range_of(values.clone(), false);
    if (hi - lo).is_finite() {
        return Ok((lo, hi));
    }
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        min = min.min(v);
        max = max.max(v);
    }
    Err(Error::invalid(format!(
        "the {what} values range from {min:e} to {max:e}: too wide to draw on one axis"
    )))
}

/// Padded axis range over `values` (never empty, never zero-width; the caller checks the width
/// is finite).
fn range_of(values: impl Iterator<Item = f64>, floor_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if floor_zero {
        lo = lo.min(0.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let lo = if floor_zero && lo >= 0.0 {
        lo
    } else {
        lo - pad
    };
    (lo, hi + pad)
}

/// Training curve: loss per epoch (left) and HR@K / NDCG@K per epoch (right), best epoch marked.
pub fn training_curve(log: &TrainLog, title: &str, width: u32, height: u32) -> Result<Vec<u8>> {
    register_font()?;
    let mut buf = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let root = root
            .titled(title, (FAMILY, 22).into_font())
            .map_err(draw_err)?;
        let (left, right) = root.split_horizontally(width / 2);
        let ep = &log.epochs;
        let k = ep[0].k;
        let x_max = ep.iter().map(|p| p.epoch).max().unwrap_or(0).max(1) as f64;
        let x_range = -0.3..x_max + 0.3;
        let label_font = (FAMILY, 16).into_font();

        let (lo, hi) = axis_range(ep.iter().map(|p| p.loss), "loss")?;
        let mut c = ChartBuilder::on(&left)
            .caption("training loss (binary cross-entropy)", (FAMILY, 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), lo..hi)
            .map_err(draw_err)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .axis_desc_style(label_font.clone())
            .label_style((FAMILY, 14))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(draw_err)?;
        let loss_color = RGBColor(200, 60, 40);
        c.draw_series(LineSeries::new(
            ep.iter().map(|p| (p.epoch as f64, p.loss)),
            loss_color.stroke_width(2),
        ))
        .map_err(draw_err)?;
        c.draw_series(
            ep.iter()
                .map(|p| Circle::new((p.epoch as f64, p.loss), 3, loss_color.filled())),
        )
        .map_err(draw_err)?;

        let (lo, hi) = axis_range(ep.iter().flat_map(|p| [p.hr, p.ndcg]), "HR/NDCG")?;
        let mut c = ChartBuilder::on(&right)
            .caption(
                format!("HR@{k} and NDCG@{k} on the held-out items"),
                (FAMILY, 18),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range, lo.max(0.0)..hi.min(1.05))
            .map_err(draw_err)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc(format!("metric @{k}"))
            .axis_desc_style(label_font)
            .label_style((FAMILY, 14))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(draw_err)?;
        let hr_color = RGBColor(30, 90, 200);
        let ndcg_color = RGBColor(20, 150, 70);
        type Get = fn(&EpochReport) -> f64;
        let series: [(String, RGBColor, Get); 2] = [
            (format!("HR@{k}"), hr_color, |p| p.hr),
            (format!("NDCG@{k}"), ndcg_color, |p| p.ndcg),
        ];
        for (name, color, get) in series {
            c.draw_series(LineSeries::new(
                ep.iter().map(|p| (p.epoch as f64, get(p))),
                color.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
            c.draw_series(
                ep.iter()
                    .map(|p| Circle::new((p.epoch as f64, get(p)), 3, color.filled())),
            )
            .map_err(draw_err)?;
        }
        // The best epoch by HR (first of ties), as ncf-train's summary reports it.
        if let Some(best) = ep.iter().fold(None::<&EpochReport>, |b, p| match b {
            Some(b) if b.hr >= p.hr => Some(b),
            _ => Some(p),
        }) {
            c.draw_series(std::iter::once(
                EmptyElement::at((best.epoch as f64, best.hr))
                    + Circle::new((0, 0), 7, hr_color.stroke_width(2))
                    + Text::new(
                        format!("best {:.4} (epoch {})", best.hr, best.epoch),
                        (-150, -24),
                        (FAMILY, 15).into_font(),
                    ),
            ))
            .map_err(draw_err)?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    encode_png(&buf, width, height)
}

/// One group of bars: `label` (e.g. "bf16" or "bf16, 8 ranks"), ncf's value and the peer's.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub ncf: f64,
    pub peer: Option<f64>,
}

/// Scale for axis and labels: (divisor, suffix).
fn scale_of(max: f64) -> (f64, &'static str) {
    if max >= 1e6 {
        (1e6, "M")
    } else if max >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// Grouped bars: ncf and (where measured) the PyTorch peer per label, value printed on each bar.
pub fn throughput_bars(
    bars: &[Bar],
    title: &str,
    unit: &str,
    width: u32,
    height: u32,
) -> Result<Vec<u8>> {
    if bars.is_empty() {
        return Err(Error::invalid("no throughput figures to plot"));
    }
    register_font()?;
    let max = bars
        .iter()
        .flat_map(|b| [Some(b.ncf), b.peer])
        .flatten()
        .fold(0.0f64, f64::max);
    let (div, suffix) = scale_of(max);
    let mut buf = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let n = bars.len() as f64;
        let mut c = ChartBuilder::on(&root)
            .caption(title, (FAMILY, 22))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..n, 0.0..max / div * 1.18)
            .map_err(draw_err)?;
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(if suffix.is_empty() {
                unit.to_string()
            } else {
                format!("{unit} (millions)").replace("(millions)", &format!("({suffix})"))
            })
            .axis_desc_style((FAMILY, 16))
            .label_style((FAMILY, 14))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(draw_err)?;
        let ours = RGBColor(30, 90, 200);
        let peer = RGBColor(160, 160, 160);
        let value_font = (FAMILY, 14).into_font();
        let mut series: Vec<(f64, f64, f64, RGBColor)> = Vec::new();
        for (i, b) in bars.iter().enumerate() {
            let x = i as f64;
            match b.peer {
                Some(p) => {
                    series.push((x + 0.12, x + 0.48, b.ncf / div, ours));
                    series.push((x + 0.52, x + 0.88, p / div, peer));
                }
                None => series.push((x + 0.25, x + 0.75, b.ncf / div, ours)),
            }
        }
        c.draw_series(
            series
                .iter()
                .map(|&(x0, x1, y, col)| Rectangle::new([(x0, 0.0), (x1, y)], col.filled())),
        )
        .map_err(draw_err)?;
        c.draw_series(series.iter().map(|&(x0, x1, y, _)| {
            let text = format!("{}{suffix}", short(y));
            EmptyElement::at(((x0 + x1) / 2.0, y))
                + Text::new(
                    text.clone(),
                    (-(text.len() as i32) * 4, -18),
                    value_font.clone(),
                )
        }))
        .map_err(draw_err)?;
        c.draw_series(bars.iter().enumerate().map(|(i, b)| {
            EmptyElement::at((i as f64 + 0.5, 0.0))
                + Text::new(
                    b.label.clone(),
                    (-(b.label.len() as i32) * 4, 10),
                    (FAMILY, 16).into_font(),
                )
        }))
        .map_err(draw_err)?;
        // Legend.
        let any_peer = bars.iter().any(|b| b.peer.is_some());
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            ours.filled(),
        )))
        .map_err(draw_err)?
        .label("ncf")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], ours.filled()));
        if any_peer {
            c.draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (0.0, 0.0)],
                peer.filled(),
            )))
            .map_err(draw_err)?
            .label("PyTorch peer (same machine, same run)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], peer.filled()));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    encode_png(&buf, width, height)
}

/// One decimal from 10 up (154.5, 51.6), two below (1.23).
fn short(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_png_of(bytes: &[u8], w: u32, h: u32) -> bool {
        bytes.starts_with(b"\x89PNG\r\n\x1a\n")
            && bytes[16..20] == w.to_be_bytes()
            && bytes[20..24] == h.to_be_bytes()
    }

    #[test]
    fn curve_is_a_png_of_the_requested_size() {
        let log = TrainLog {
            epochs: (0..5)
                .map(|e| EpochReport {
                    epoch: e,
                    loss: 0.5 - 0.03 * e as f64,
                    hr: 0.4 + 0.05 * e as f64,
                    ndcg: 0.2 + 0.03 * e as f64,
                    k: 10,
                    eval: "test".into(),
                    train_s: 0.1,
                    eval_s: 0.01,
                    samples: 10,
                    samples_per_s: 100.0,
                    steps: 1,
                    skipped_steps: 0,
                })
                .collect(),
            summary: None,
        };
        let png = training_curve(&log, "test", 640, 300).unwrap();
        assert!(is_png_of(&png, 640, 300));
        // One epoch only (zero-width x range) still draws.
        let one = TrainLog {
            epochs: log.epochs[..1].to_vec(),
            summary: None,
        };
        assert!(is_png_of(
            &training_curve(&one, "t", 400, 200).unwrap(),
            400,
            200
        ));
    }

    #[test]
    fn bars_need_figures() {
        let png = throughput_bars(
            &[Bar {
                label: "bf16".into(),
                ncf: 1.5e8,
                peer: Some(7e7),
            }],
            "t",
            "samples/s",
            500,
            300,
        )
        .unwrap();
        assert!(is_png_of(&png, 500, 300));
        let e = throughput_bars(&[], "t", "samples/s", 500, 300).unwrap_err();
        assert!(e.to_string().contains("no throughput figures"));
    }

    #[test]
    fn scales() {
        assert_eq!(scale_of(1.5e8), (1e6, "M"));
        assert_eq!(scale_of(1.2e5), (1e3, "k"));
        assert_eq!(scale_of(12.0), (1.0, ""));
    }
}
