//! Reports: the JSON report (`--report`), the terminal summary and a self-contained
//! HTML page (`--html`) whose charts are inline SVG drawn here, so the page needs no
//! network and no script.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::audit::Check;
use crate::client::TimePoint;

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub count: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// One point of the latency distribution: the latency at a percentile.
#[derive(Debug, Clone, Serialize)]
pub struct SpectrumPoint {
    pub percentile: f64,
    pub latency_us: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub load: String,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Orders per second asked for (open loop); null in a closed loop.
    pub offered_rate: Option<f64>,
    /// Placements answered per second.
    pub achieved_rate: f64,
    /// Placements accepted (held, backordered or pending approval).
    pub orders_ok: u64,
    pub orders_ok_rate: f64,
    pub placements: u64,
    /// Placement latency from the intended send time (open loop) or the send (closed).
    pub latency_us: Percentiles,
    /// Placement latency from the actual send.
    pub service_latency_us: Percentiles,
    pub latency_by_op_us: BTreeMap<String, Percentiles>,
    pub outcomes: BTreeMap<String, u64>,
    pub audit: AuditReport,
    pub timeline: Vec<TimePoint>,
    pub latency_distribution: Vec<SpectrumPoint>,
    pub settings: serde_json::Value,
    pub error_samples: Vec<String>,
    pub started_at: String,
}

/// The percentile spectrum of a histogram, for the distribution chart.
pub fn spectrum(h: &Histogram<u64>) -> Vec<SpectrumPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    for v in h.iter_quantiles(2) {
        let p = v.percentile();
        if points
            .last()
            .is_some_and(|l: &SpectrumPoint| (l.percentile - p).abs() < 1e-9)
        {
            continue;
        }
        points.push(SpectrumPoint {
            percentile: p,
            latency_us: h.highest_equivalent(v.value_iterated_to()),
        });
        if p >= 100.0 {
            break;
        }
    }
    points
}

/// RFC 3339 (UTC, milliseconds) for Unix seconds, as the server writes times.
pub fn rfc3339(unix_s: u64) -> String {
    allot_server::rfc3339::format(unix_s.saturating_mul(1000))
}

fn ms(us: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let v = us as f64 / 1000.0;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// The terminal summary.
pub fn terminal(r: &Report) -> String {
    let mut s = String::new();
    let offered = r
        .offered_rate
        .map_or_else(|| "max (closed loop)".to_owned(), |v| format!("{v:.0}/s"));
    let _ = writeln!(
        s,
        "\nallot-load: {} for {:.1} s, offered {offered}",
        r.scenario, r.duration_s
    );
    let _ = writeln!(
        s,
        "  placements {} ({:.0}/s), accepted {} ({:.0}/s)",
        r.placements, r.achieved_rate, r.orders_ok, r.orders_ok_rate
    );
    let l = &r.latency_us;
    let _ = writeln!(
        s,
        "  place latency  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    );
    for (op, p) in &r.latency_by_op_us {
        if op != "place" && p.count > 0 {
            let _ = writeln!(
                s,
                "  {op:<8} n={:<8} p50 {}  p99 {}  max {}",
                p.count,
                ms(p.p50),
                ms(p.p99),
                ms(p.max)
            );
        }
    }
    let outcomes: Vec<String> = r
        .outcomes
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(s, "  outcomes: {}", outcomes.join(", "));
    for e in r.error_samples.iter().take(5) {
        let _ = writeln!(s, "  error sample: {e}");
    }
    let _ = writeln!(s, "  audit: {}", if r.audit.ok { "OK" } else { "FAILED" });
    for c in &r.audit.checks {
        let _ = writeln!(
            s,
            "    [{}] {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    s
}

/// A named, coloured line of (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line chart of several series over shared x values, as an SVG element.
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    log_x: bool,
    series: Vec<Series<'a>>,
}

const W: f64 = 760.0;
const H: f64 = 300.0;
const PAD_L: f64 = 70.0;
const PAD_R: f64 = 20.0;
const PAD_T: f64 = 30.0;
const PAD_B: f64 = 45.0;

impl Chart<'_> {
    fn svg(&self) -> String {
        let points = self.series.iter().flat_map(|s| s.2.iter());
        let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
        for &(x, y) in points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if (x1 - x0).abs() < f64::EPSILON {
            x1 = x0 + 1.0;
        }
        let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
        let sx = |x: f64| PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD_R);
        let sy = |y: f64| H - PAD_B - y / y1 * (H - PAD_T - PAD_B);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(
            s,
            r##"<rect width="{W}" height="{H}" fill="#fff"/><text x="{}" y="18" font-size="14" text-anchor="middle">{}</text>"##,
            W / 2.0,
            esc(self.title)
        );
        for i in 0..=4 {
            let y = y1 * f64::from(i) / 4.0;
            let py = sy(y);
            let _ = write!(
                s,
                r##"<line x1="{PAD_L}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - PAD_R,
                PAD_L - 5.0,
                py + 4.0,
                short(y)
            );
        }
        for i in 0..=5 {
            let x = x0 + (x1 - x0) * f64::from(i) / 5.0;
            let label = if self.log_x { nines(x) } else { short(x) };
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#,
                sx(x),
                H - PAD_B + 15.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
            W / 2.0,
            H - 8.0,
            esc(self.x_label),
            H / 2.0,
            H / 2.0,
            esc(self.y_label)
        );
        for (i, (name, color, pts)) in self.series.iter().enumerate() {
            let path: Vec<String> = pts
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{}"/>"#,
                path.join(" ")
            );
            #[allow(clippy::cast_precision_loss)]
            let lx = PAD_L + 10.0 + i as f64 * 110.0;
            let _ = write!(
                s,
                r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
                PAD_T - 2.0,
                lx + 14.0,
                PAD_T + 7.0,
                esc(name)
            );
        }
        s.push_str("</svg>");
        s
    }
}

fn short(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{:.1}M", v / 1_000_000.0)
    } else if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// An x value of the distribution chart (`-log10(1 - p)`) as a percentile label.
fn nines(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    format!("{p:.3}%")
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML page.
// One page template read top to bottom; splitting it would scatter the markup.
#[allow(clippy::too_many_lines)]
pub fn html(r: &Report) -> String {
    let t = &r.timeline;
    let throughput = Chart {
        title: "Throughput",
        x_label: "seconds",
        y_label: "orders/s",
        log_x: false,
        series: vec![
            (
                "answered",
                "#1f77b4",
                t.iter().map(|p| (p.t_s, p.orders_per_s)).collect(),
            ),
            (
                "accepted",
                "#2ca02c",
                t.iter().map(|p| (p.t_s, p.orders_ok_per_s)).collect(),
            ),
        ],
    };
    #[allow(clippy::cast_precision_loss)]
    let ms_of = |v: u64| v as f64 / 1000.0;
    let latency = Chart {
        title: "Placement latency percentiles per second",
        x_label: "seconds",
        y_label: "ms",
        log_x: false,
        series: vec![
            (
                "p50",
                "#2ca02c",
                t.iter().map(|p| (p.t_s, ms_of(p.p50_us))).collect(),
            ),
            (
                "p99",
                "#ff7f0e",
                t.iter().map(|p| (p.t_s, ms_of(p.p99_us))).collect(),
            ),
            (
                "p99.9",
                "#d62728",
                t.iter().map(|p| (p.t_s, ms_of(p.p999_us))).collect(),
            ),
            (
                "max",
                "#9467bd",
                t.iter().map(|p| (p.t_s, ms_of(p.max_us))).collect(),
            ),
        ],
    };
    let distribution = Chart {
        title: "Placement latency distribution (percentile spectrum)",
        x_label: "percentile",
        y_label: "ms",
        log_x: true,
        series: vec![(
            "latency",
            "#1f77b4",
            r.latency_distribution
                .iter()
                .filter(|p| p.percentile < 100.0)
                .map(|p| (-(1.0 - p.percentile / 100.0).log10(), ms_of(p.latency_us)))
                .collect(),
        )],
    };
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>allot-load: {}</title>\
         <style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}\
         .ok{{color:#2ca02c}}.fail{{color:#d62728;font-weight:bold}}svg{{display:block;margin:12px 0}}</style>\
         </head><body><h1>allot-load: {}</h1>",
        esc(&r.scenario),
        esc(&r.scenario)
    );
    let offered = r
        .offered_rate
        .map_or_else(|| "max (closed loop)".to_owned(), |v| format!("{v:.0}/s"));
    let _ = write!(
        page,
        "<p>Started {}; {:.1} s measured after {:.1} s warm-up; offered {}; answered {:.0}/s; \
         accepted {} orders ({:.0}/s).</p>",
        esc(&r.started_at),
        r.duration_s,
        r.warmup_s,
        esc(&offered),
        r.achieved_rate,
        r.orders_ok,
        r.orders_ok_rate
    );
    page.push_str("<table><tr><th>operation</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    for (op, p) in &r.latency_by_op_us {
        if p.count > 0 {
            let _ = write!(
                page,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(op),
                p.count,
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.p999),
                ms(p.max)
            );
        }
    }
    page.push_str("</table><h2>Outcomes</h2><table>");
    for (k, v) in &r.outcomes {
        let _ = write!(page, "<tr><th>{}</th><td>{v}</td></tr>", esc(k));
    }
    page.push_str("</table>");
    page.push_str(&throughput.svg());
    page.push_str(&latency.svg());
    page.push_str(&distribution.svg());
    let _ = write!(
        page,
        "<h2>Audit: <span class=\"{}\">{}</span></h2><ul>",
        if r.audit.ok { "ok" } else { "fail" },
        if r.audit.ok { "OK" } else { "FAILED" }
    );
    for c in &r.audit.checks {
        let _ = write!(
            page,
            "<li><span class=\"{}\">{}</span> <b>{}</b>: {}</li>",
            if c.ok { "ok" } else { "fail" },
            if c.ok { "ok" } else { "FAIL" },
            esc(&c.name),
            esc(&c.detail)
        );
    }
    let settings = serde_json::to_string_pretty(&r.settings).unwrap_or_default();
    let _ = writeln!(
        page,
        "</ul><h2>Settings</h2><pre>{}</pre></body></html>",
        esc(&settings)
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_spectrum_rises_to_the_max() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for v in 1..=10_000u64 {
            h.record(v).expect("in range");
        }
        let s = spectrum(&h);
        assert!(s.len() > 10);
        assert!(s.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
        assert!(s.last().is_some_and(|p| p.latency_us >= 10_000));
    }
}
