//! The bench's and sweep's plots: small SVGs written by hand (bars on a log
//! scale, lines on log-log axes), and PNGs rasterised from them with resvg
//! using egui's built-in font, so no system font is needed.

use anyhow::{Context, bail};
use std::fmt::Write;
use std::path::Path;

const W: f64 = 900.0;
const FONT: &str = "font-family=\"Ubuntu\" font-size=\"13\"";
/// Colour-blind-safe categorical colours (Okabe–Ito).
const COLORS: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG of height `h` on white, with its title.
fn start(h: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" {FONT}>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"24\" font-size=\"15\">{}</text>\n",
        esc(title)
    )
}

/// Powers of ten from below `lo` to above `hi`.
fn decades(lo: f64, hi: f64) -> (f64, f64) {
    (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    )
}

/// Horizontal bars, one per `(label, value)`, on a log axis; the first bar
/// is drawn in the first colour, the rest in the second.
pub fn bars_svg(title: &str, bars: &[(String, f64)]) -> String {
    let (row, left, right, top) = (22.0, 380.0, 90.0, 50.0);
    let h = top + row * bars.len() as f64 + 40.0;
    let vals = bars.iter().map(|b| b.1).filter(|v| *v > 0.0);
    let (lo, hi) = decades(
        vals.clone().fold(f64::INFINITY, f64::min).min(1.0),
        vals.fold(0.0, f64::max).max(10.0),
    );
    let x =
        |v: f64| left + (W - left - right) * (v.log10() - lo.log10()) / (hi.log10() - lo.log10());
    let mut s = start(h, title);
    let mut d = lo;
    while d <= hi * 1.0001 {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            x(d),
            h - 30.0,
            h - 14.0,
            d
        );
        d *= 10.0;
    }
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let w = if *v > 0.0 { x(*v) - left } else { 0.0 };
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><rect x=\"{left}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{:.1}</text>",
            left - 6.0,
            y + 15.0,
            esc(label),
            y + 3.0,
            row - 6.0,
            COLORS[usize::from(i > 0)],
            left + w + 4.0,
            y + 15.0,
            v
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Lines through `(x, y)` points per named series, both axes log scale.
/// One series of a log-log plot: a line through its points when
/// `joined`, else the points alone.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub joined: bool,
}

pub fn lines_svg(title: &str, xl: &str, yl: &str, series: &[Series]) -> String {
    let (h, left, right, top, bottom) = (520.0, 80.0, 240.0, 50.0, 60.0);
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0 > 0.0 && p.1 > 0.0);
    // The data's own decades (one decade at least; 1..10 with no data).
    let span = |lo: f64, hi: f64| {
        let (lo, hi) = if lo.is_finite() {
            (lo, hi)
        } else {
            (1.0, 10.0)
        };
        let (lo, hi) = decades(lo, hi);
        if hi > lo { (lo, hi) } else { (lo, lo * 10.0) }
    };
    let (xlo, xhi) = span(
        pts.clone().map(|p| p.0).fold(f64::INFINITY, f64::min),
        pts.clone().map(|p| p.0).fold(0.0, f64::max),
    );
    let (ylo, yhi) = span(
        pts.clone().map(|p| p.1).fold(f64::INFINITY, f64::min),
        pts.map(|p| p.1).fold(0.0, f64::max),
    );
    let x = |v: f64| {
        left + (W - left - right) * (v.log10() - xlo.log10()) / (xhi.log10() - xlo.log10())
    };
    let y = |v: f64| {
        h - bottom - (h - top - bottom) * (v.log10() - ylo.log10()) / (yhi.log10() - ylo.log10())
    };
    let mut s = start(h, title);
    let mut d = xlo;
    while d <= xhi * 1.0001 {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3:e}</text>",
            x(d),
            h - bottom,
            h - bottom + 18.0,
            d
        );
        d *= 10.0;
    }
    let mut d = ylo;
    while d <= yhi * 1.0001 {
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/><text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            y(d),
            W - right,
            left - 6.0,
            y(d) + 4.0,
            d
        );
        d *= 10.0;
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text><text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{}</text>",
        (left + W - right) / 2.0,
        h - 16.0,
        esc(xl),
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        esc(yl)
    );
    for (
        i,
        Series {
            name,
            points: p,
            joined,
        },
    ) in series.iter().enumerate()
    {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = p
            .iter()
            .filter(|p| p.0 > 0.0 && p.1 > 0.0)
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        if *joined {
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>",
                path.join(" ")
            );
        }
        for q in &path {
            let (a, b) = q.split_once(',').expect("formatted as x,y");
            let _ = writeln!(s, "<circle cx=\"{a}\" cy=\"{b}\" r=\"3\" fill=\"{c}\"/>");
        }
        let ly = top + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - right + 12.0,
            ly,
            W - right + 32.0,
            ly + 5.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Write `svg` to `path`: as is for `.svg`, rasterised for `.png`.
pub fn write(path: &Path, svg: &str) -> anyhow::Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => {
            std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))
        }
        Some("png") => {
            let png = rasterise(svg)?;
            std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
        }
        _ => bail!("--plot {}: name a .svg or .png file", path.display()),
    }
}

fn rasterise(svg: &str) -> anyhow::Result<Vec<u8>> {
    let mut opt = resvg::usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_font_data(epaint_default_fonts::UBUNTU_LIGHT.to_vec());
    db.set_sans_serif_family("Ubuntu");
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("the plot's SVG does not parse")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .context("the plot has no area")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the PNG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_by_decades_and_escape_labels() {
        let s = bars_svg("t", &[("wafer <a&b>".into(), 1000.0), ("gpu".into(), 10.0)]);
        assert!(s.contains("wafer &lt;a&amp;b&gt;"));
        // 10 and 1000 sit on the 1..1000 decades: the wafer's bar is three
        // times as long as the GPU's is from 1.
        let widths: Vec<f64> = s
            .match_indices("width=\"")
            .skip(2)
            .map(|(i, _)| {
                let r = &s[i + 7..];
                r[..r.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(widths.len(), 2);
        assert!((widths[0] / widths[1] - 3.0).abs() < 1e-2, "{widths:?}");
    }

    #[test]
    fn line_axes_span_the_data_decades() {
        let s = lines_svg(
            "t",
            "x",
            "y",
            &[Series {
                name: "a".into(),
                points: vec![(2e5, 250.0), (9e5, 400.0)],
                joined: true,
            }],
        );
        // x from 1e5 to 1e6, y from 100 to 1000: no empty decades.
        assert!(
            s.contains(">1e5<") && s.contains(">1e6<") && !s.contains(">1e4<"),
            "{s}"
        );
        assert!(
            s.contains(">100<") && s.contains(">1000<") && !s.contains(">10<"),
            "{s}"
        );
        let empty = lines_svg("t", "x", "y", &[]);
        assert!(empty.contains(">1<") && empty.contains(">10<"));
    }

    #[test]
    fn a_png_is_rasterised_with_the_builtin_font() {
        let svg = bars_svg("title", &[("a".into(), 5.0)]);
        let png = rasterise(&svg).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(write(Path::new("x.pdf"), &svg).is_err());
    }
}
