//! Latency against offered load, drawn into a PNG: log-log axes, one colour per agent mode and
//! traffic mix, p99 solid with round markers, p50 dashed, the flat-out point as a square, and
//! the 1 ms p99 target as a red line. Text uses a built-in 5x7 pixel font (upper case).
//!
//! Owns: layout, axes and the font. Must not: compute statistics (it draws what it is given).

use crate::harness::png::Indexed;

/// One curve family (one agent mode on one mix).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// (offered requests/s, p50 µs, p99 µs) at the fixed rates.
    pub points: Vec<(f64, f64, f64)>,
    /// Fixed-rate points where the load generator was the bottleneck: drawn hollow, unjoined.
    pub bound: Vec<(f64, f64, f64)>,
    /// (achieved requests/s, p50 µs, p99 µs) flat out.
    pub saturation: Option<(f64, f64, f64)>,
}

const W: usize = 1100;
const H: usize = 680;
const LEFT: i64 = 100;
const RIGHT: i64 = 820;
const TOP: i64 = 60;
const BOTTOM: i64 = 600;

// Colour 0, white, is the background.
const BLACK: u8 = 1;
const GRID: u8 = 2;
const RED: u8 = 3;
const GREY: u8 = 4;
/// Series colours start here.
const SERIES: u8 = 5;

fn palette() -> Vec<[u8; 3]> {
    vec![
        [255, 255, 255],
        [20, 20, 20],
        [225, 225, 225],
        [215, 40, 40],
        [120, 120, 120],
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [148, 103, 189],
        [140, 86, 75],
        [23, 190, 207],
    ]
}

struct Axis {
    lo: f64,
    hi: f64,
    from: i64,
    to: i64,
}

impl Axis {
    /// Decades that cover `values`.
    fn log(values: impl Iterator<Item = f64>, from: i64, to: i64) -> Axis {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            (lo, hi) = (1.0, 10.0);
        }
        let lo = 10f64.powf(lo.log10().floor());
        let mut hi = 10f64.powf(hi.log10().ceil());
        if hi <= lo {
            hi = lo * 10.0;
        }
        Axis { lo, hi, from, to }
    }

    fn at(&self, v: f64) -> i64 {
        let f =
            (v.max(self.lo * 1e-3).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        self.from + ((self.to - self.from) as f64 * f).round() as i64
    }

    fn decades(&self) -> Vec<f64> {
        let mut v = Vec::new();
        let mut d = self.lo;
        while d <= self.hi * 1.0001 {
            v.push(d);
            d *= 10.0;
        }
        v
    }
}

/// Draws the plot; `title` goes on top.
pub fn render(title: &str, series: &[Series]) -> Vec<u8> {
    let mut img = Indexed::new(W, H, palette());
    let xs = series.iter().flat_map(|s| {
        s.points
            .iter()
            .chain(&s.bound)
            .map(|p| p.0)
            .chain(s.saturation.map(|p| p.0))
    });
    let ys = series.iter().flat_map(|s| {
        s.points
            .iter()
            .chain(&s.bound)
            .flat_map(|p| [p.1, p.2])
            .chain(s.saturation.into_iter().flat_map(|p| [p.1, p.2]))
            .chain([1000.0])
    });
    let x = Axis::log(xs, LEFT, RIGHT);
    let y = Axis::log(ys, BOTTOM, TOP);

    // Grid: decades, and 2x/5x minor lines.
    for d in x.decades() {
        for m in [1.0, 2.0, 5.0] {
            let v = d * m;
            if v <= x.hi * 1.0001 {
                let px = x.at(v);
                vline(&mut img, px, TOP, BOTTOM, GRID);
            }
        }
        let px = x.at(d);
        text_centered(&mut img, px, BOTTOM + 10, &si(d, "/S"), BLACK, 2);
    }
    for d in y.decades() {
        for m in [1.0, 2.0, 5.0] {
            let v = d * m;
            if v <= y.hi * 1.0001 {
                hline(&mut img, LEFT, RIGHT, y.at(v), GRID);
            }
        }
        let label = duration(d);
        let py = y.at(d);
        text(
            &mut img,
            LEFT - 10 - width(&label, 2),
            py - 7,
            &label,
            BLACK,
            2,
        );
    }
    // Frame.
    hline(&mut img, LEFT, RIGHT, TOP, BLACK);
    hline(&mut img, LEFT, RIGHT, BOTTOM, BLACK);
    vline(&mut img, LEFT, TOP, BOTTOM, BLACK);
    vline(&mut img, RIGHT, TOP, BOTTOM, BLACK);
    // The 1 ms p99 target.
    let target = y.at(1000.0);
    for px in (LEFT..RIGHT).step_by(12) {
        for dx in 0..7 {
            img.set(px + dx, target, RED);
            img.set(px + dx, target + 1, RED);
        }
    }
    text(
        &mut img,
        RIGHT - width("P99 TARGET 1 MS", 1) - 4,
        target - 12,
        "P99 TARGET 1 MS",
        RED,
        1,
    );

    for (i, s) in series.iter().enumerate() {
        let c = SERIES + (i as u8 % 6);
        let mut pts = s.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for w in pts.windows(2) {
            line(
                &mut img,
                (x.at(w[0].0), y.at(w[0].2)),
                (x.at(w[1].0), y.at(w[1].2)),
                c,
                3,
                None,
            );
            line(
                &mut img,
                (x.at(w[0].0), y.at(w[0].1)),
                (x.at(w[1].0), y.at(w[1].1)),
                c,
                1,
                Some(8),
            );
        }
        for p in &pts {
            disc(&mut img, x.at(p.0), y.at(p.2), 5, c);
            disc(&mut img, x.at(p.0), y.at(p.1), 3, c);
        }
        for p in &s.bound {
            ring(&mut img, x.at(p.0), y.at(p.2), 5, c);
            ring(&mut img, x.at(p.0), y.at(p.1), 3, c);
        }
        if let Some(sat) = s.saturation {
            if let Some(last) = pts.last() {
                line(
                    &mut img,
                    (x.at(last.0), y.at(last.2)),
                    (x.at(sat.0), y.at(sat.2)),
                    c,
                    1,
                    Some(4),
                );
            }
            square(&mut img, x.at(sat.0), y.at(sat.2), 6, c);
        }
        // Legend.
        let ly = TOP + 10 + i as i64 * 28;
        for dy in 0..4 {
            hline(&mut img, RIGHT + 20, RIGHT + 50, ly + 6 + dy, c);
        }
        text(&mut img, RIGHT + 58, ly, &s.label, BLACK, 2);
    }
    let notes_y = TOP + 20 + series.len() as i64 * 28;
    for (k, note) in [
        "SOLID, DOT: P99",
        "DASHED, SMALL DOT: P50",
        "SQUARE: FLAT OUT (P99)",
        "AT THE RATE REACHED",
        "HOLLOW: LOAD GENERATOR",
        "BOUND (NOT THE AGENT)",
    ]
    .iter()
    .enumerate()
    {
        text(&mut img, RIGHT + 20, notes_y + k as i64 * 16, note, GREY, 1);
    }
    text_centered(&mut img, (LEFT + RIGHT) / 2, 18, title, BLACK, 2);
    text_centered(
        &mut img,
        (LEFT + RIGHT) / 2,
        BOTTOM + 40,
        "OFFERED LOAD (REQUESTS PER SECOND, LOG)",
        BLACK,
        2,
    );
    text(&mut img, 10, TOP - 22, "LATENCY (LOG)", BLACK, 2);
    img.encode()
}

/// 1000 → "1K", 250000 → "250K".
fn si(v: f64, unit: &str) -> String {
    let (n, s) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "K")
    } else {
        (v, "")
    };
    format!("{}{s}{unit}", trim(n))
}

/// Microseconds as a short duration label.
fn duration(us: f64) -> String {
    if us >= 1e6 {
        format!("{} S", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{} MS", trim(us / 1e3))
    } else {
        format!("{} US", trim(us))
    }
}

fn trim(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn hline(img: &mut Indexed, x0: i64, x1: i64, y: i64, c: u8) {
    for x in x0..=x1 {
        img.set(x, y, c);
    }
}

fn vline(img: &mut Indexed, x: i64, y0: i64, y1: i64, c: u8) {
    for y in y0.min(y1)..=y0.max(y1) {
        img.set(x, y, c);
    }
}

fn disc(img: &mut Indexed, cx: i64, cy: i64, r: i64, c: u8) {
    for dy in -r..=r {
        for dx in -r..=r {
            if dx * dx + dy * dy <= r * r {
                img.set(cx + dx, cy + dy, c);
            }
        }
    }
}

fn ring(img: &mut Indexed, cx: i64, cy: i64, r: i64, c: u8) {
    for dy in -r..=r {
        for dx in -r..=r {
            let d = dx * dx + dy * dy;
            if d <= r * r && d > (r - 2) * (r - 2) {
                img.set(cx + dx, cy + dy, c);
            }
        }
    }
}

fn square(img: &mut Indexed, cx: i64, cy: i64, r: i64, c: u8) {
    for dy in -r..=r {
        for dx in -r..=r {
            if dx.abs() == r || dy.abs() == r || (dx.abs() < r - 2 && dy.abs() < r - 2) {
                img.set(cx + dx, cy + dy, c);
            }
        }
    }
}

/// A line `thick` pixels wide; `dash`: on/off period in pixels along the line.
fn line(img: &mut Indexed, a: (i64, i64), b: (i64, i64), c: u8, thick: i64, dash: Option<i64>) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).max(1);
    for i in 0..=steps {
        if let Some(d) = dash {
            if (i / d) % 2 == 1 {
                continue;
            }
        }
        let x = a.0 + (b.0 - a.0) * i / steps;
        let y = a.1 + (b.1 - a.1) * i / steps;
        for dy in 0..thick {
            for dx in 0..thick {
                img.set(x + dx - thick / 2, y + dy - thick / 2, c);
            }
        }
    }
}

fn width(s: &str, scale: i64) -> i64 {
    s.chars().count() as i64 * 6 * scale
}

fn text_centered(img: &mut Indexed, cx: i64, y: i64, s: &str, c: u8, scale: i64) {
    text(img, cx - width(s, scale) / 2, y, s, c, scale);
}

fn text(img: &mut Indexed, x: i64, y: i64, s: &str, c: u8, scale: i64) {
    for (i, ch) in s.chars().enumerate() {
        let g = glyph(ch.to_ascii_uppercase());
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            img.set(
                                x + (i as i64 * 6 + col) * scale + dx,
                                y + row as i64 * scale + dy,
                                c,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// 5x7 glyphs, one byte per row, bit 4 = leftmost column.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '*' => [0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0],
        '|' => [0x04; 7],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04], // '?'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_cover_the_data_in_decades() {
        let a = Axis::log([340.0, 52_000.0].into_iter(), 0, 300);
        assert_eq!((a.lo, a.hi), (100.0, 100_000.0));
        assert_eq!(a.at(100.0), 0);
        assert_eq!(a.at(100_000.0), 300);
        assert_eq!(a.at(1000.0), 100);
        assert_eq!(si(250_000.0, "/S"), "250K/S");
        assert_eq!(duration(1500.0), "1.5 MS");
    }

    #[test]
    fn renders_a_png_with_the_series_colours() {
        let s = vec![
            Series {
                label: "noop benign".into(),
                points: vec![(1e4, 40.0, 90.0), (5e4, 45.0, 120.0)],
                bound: vec![(9e4, 4e4, 5e4)],
                saturation: Some((1e5, 900.0, 2000.0)),
            },
            Series {
                label: "waf attacks".into(),
                points: vec![(300.0, 400.0, 900.0)],
                bound: Vec::new(),
                saturation: None,
            },
        ];
        let png = render("test", &s);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let idat_at = png.windows(4).position(|w| w == b"IDAT").unwrap();
        let len = u32::from_be_bytes(png[idat_at - 4..idat_at].try_into().unwrap()) as usize;
        let raw = crate::harness::png::tests::inflate(&png[idat_at + 6..idat_at + 4 + len - 4]);
        assert_eq!(raw.len(), H * (W + 1));
        for colour in [SERIES, SERIES + 1, RED, BLACK] {
            assert!(raw.contains(&colour), "colour {colour} drawn");
        }
    }
}
