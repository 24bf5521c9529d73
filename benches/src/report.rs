//! What the load harness makes of its runs: latency percentiles from pgbench's
//! per-transaction logs, and SVG charts (written by hand: a line chart for a
//! client-count sweep, a bar chart for a single point; no plotting crate).

use std::fmt::Write as _;
use std::path::Path;

/// Latencies (µs) of every transaction in the pgbench logs whose file names
/// start with `prefix` in `dir` (`pgbench -l --log-prefix=dir/prefix`: one
/// file per thread; the third field of each line is the latency). The files
/// are removed.
pub fn read_latencies(dir: &Path, prefix: &str) -> std::io::Result<Vec<u64>> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(prefix) {
            continue;
        }
        let text = std::fs::read_to_string(e.path())?;
        all.extend(text.lines().filter_map(|l| l.split_whitespace().nth(2)).filter_map(|v| v.parse::<u64>().ok()));
        std::fs::remove_file(e.path())?;
    }
    Ok(all)
}

/// The `q` quantile (0..=1) of `sorted` latencies, nearest rank; 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One data series of a chart.
pub struct Series {
    /// Legend.
    pub name: String,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn header(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        (LEFT + W - RIGHT) / 2.0,
        escape(title)
    )
}

/// A round step for about five gridlines up to `max`.
fn step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

fn y_axis(svg: &mut String, y_label: &str, max: f64) -> f64 {
    let s = step(max);
    let top = (max / s).ceil().max(1.0) * s;
    let plot_h = H - TOP - BOTTOM;
    let mut v = 0.0;
    while v <= top + s / 2.0 {
        let y = H - BOTTOM - v / top * plot_h;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            if v >= 1000.0 { format!("{:.0}k", v / 1000.0) } else { format!("{v}") }
        );
        v += s;
    }
    let _ = writeln!(
        svg,
        "<text x=\"18\" y=\"{:.1}\" transform=\"rotate(-90 18 {:.1})\" text-anchor=\"middle\">{}</text>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    top
}

fn legend(svg: &mut String, names: &[&str]) {
    for (i, n) in names.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 20.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            W - RIGHT + 14.0,
            y - 10.0,
            COLORS[i % COLORS.len()],
            W - RIGHT + 32.0,
            y,
            escape(n)
        );
    }
}

/// A line chart of `series` over a logarithmic x axis (client counts).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    let mut svg = header(title);
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let (x_min, x_max) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let y_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    let top = y_axis(&mut svg, y_label, y_max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let lx = |x: f64| {
        let (a, b) = (x_min.max(1.0).ln(), x_max.max(1.0).ln());
        if b > a {
            LEFT + (x.max(1.0).ln() - a) / (b - a) * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let ly = |y: f64| H - BOTTOM - y / top * plot_h;
    let mut ticks: Vec<f64> = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for x in ticks {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\">{4}</text>",
            lx(x),
            TOP,
            H - BOTTOM,
            H - BOTTOM + 18.0,
            x
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        LEFT + plot_w / 2.0,
        H - 16.0,
        escape(x_label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", lx(x), ly(y))).collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>", lx(x), ly(y));
        }
    }
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(&mut svg, &names);
    svg.push_str("</svg>\n");
    svg
}

/// A bar chart: one bar per (name, value).
pub fn bar_chart(title: &str, y_label: &str, bars: &[(String, f64)]) -> String {
    let mut svg = header(title);
    let y_max = bars.iter().map(|b| b.1).fold(0.0, f64::max);
    let top = y_axis(&mut svg, y_label, y_max);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / bars.len().max(1) as f64;
    for (i, (_, v)) in bars.iter().enumerate() {
        let h = v / top * plot_h;
        let x = LEFT + i as f64 * slot + slot * 0.15;
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>",
            H - BOTTOM - h,
            slot * 0.7,
            COLORS[i % COLORS.len()],
            x + slot * 0.35,
            H - BOTTOM - h - 4.0,
            v
        );
    }
    let names: Vec<&str> = bars.iter().map(|b| b.0.as_str()).collect();
    legend(&mut svg, &names);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(quantile(&v, 0.5), 500);
        assert_eq!(quantile(&v, 0.99), 990);
        assert_eq!(quantile(&v, 0.999), 999);
        assert_eq!(quantile(&v, 1.0), 1000);
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[7], 0.999), 7);
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let s = line_chart(
            "t<1>",
            "clients",
            "tps",
            &[Series { name: "a&b".into(), points: vec![(1.0, 10.0), (16.0, 2000.0), (1000.0, 1500.0)] }],
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("t&lt;1&gt;") && s.contains("a&amp;b") && s.contains("<polyline"));
        let b = bar_chart("x", "tps", &[("direct".into(), 100.0), ("pooler".into(), 80.0)]);
        assert_eq!(b.matches("<rect x=").count(), 2 + 2, "two bars and two legend boxes");
    }

    #[test]
    fn pgbench_logs_give_the_third_field() {
        let dir = std::env::temp_dir().join(format!("report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tx.1"), "0 0 120 0 1700000000 1\n0 1 95 0 1700000000 2\n").unwrap();
        std::fs::write(dir.join("tx.1.1"), "1 0 300 0 1700000000 3\n").unwrap();
        std::fs::write(dir.join("other"), "9 9 9999 0 0 0\n").unwrap();
        let mut l = read_latencies(&dir, "tx").unwrap();
        l.sort_unstable();
        assert_eq!(l, vec![95, 120, 300]);
        assert!(!dir.join("tx.1").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
