//! Dashboards: pages declared in `dashboards/*.toml`, rendered on the server as plain HTML
//! with the charts inline (SVG drawn by [`crate::charts`]), filters as a form, headline
//! numbers with the change against the previous period, links to the conversations behind
//! every chart and number, CSV export and auto-refresh. No script, no external request.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

use crate::charts::{self, ChartKind, ChartOptions, ImageFormat};
use crate::metrics::{Dimension, Metric, MetricResult};

pub use crate::html::esc;
pub use crate::metrics::summary::{headline, show_change, show_value};

/// The dashboards shipped in the binary, from `dashboards/`.
pub const BUILTIN: [(&str, &str); 4] = [
    ("overview", include_str!("../../dashboards/overview.toml")),
    ("sla", include_str!("../../dashboards/sla.toml")),
    ("agents", include_str!("../../dashboards/agents.toml")),
    ("csat", include_str!("../../dashboards/csat.toml")),
];

fn default_range() -> u32 {
    7
}
fn default_refresh() -> u32 {
    60
}
fn default_chart() -> String {
    "line".into()
}
fn default_interval() -> String {
    "day".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Days shown when the page is opened without a range.
    #[serde(default = "default_range")]
    pub range_days: u32,
    /// The page reloads itself this often (0: never).
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u32,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    pub metric: String,
    pub title: String,
    /// `line`, `bar` or `stacked`.
    #[serde(default = "default_chart")]
    pub chart: String,
    pub group_by: Option<String>,
    /// `hour`, `day`, `week` or `month`.
    #[serde(default = "default_interval")]
    pub interval: String,
    /// A target line, in the metric's unit (seconds or percent).
    pub target: Option<f64>,
}

/// Parses and checks one dashboard file: every metric, chart kind, grouping and interval
/// must exist, so a typo fails at start, not on a manager's screen.
pub fn parse(name: &str, text: &str) -> Result<Dashboard, String> {
    let d: Dashboard = toml::from_str(text).map_err(|e| format!("dashboards/{name}.toml: {e}"))?;
    if d.panels.is_empty() {
        return Err(format!("dashboards/{name}.toml: no [[panels]]"));
    }
    for (i, p) in d.panels.iter().enumerate() {
        let at = format!("dashboards/{name}.toml: panels[{i}]");
        p.metric
            .parse::<Metric>()
            .map_err(|e| format!("{at}.metric: {e}"))?;
        p.chart
            .parse::<ChartKind>()
            .map_err(|e| format!("{at}.chart: {e}"))?;
        p.interval
            .parse::<crate::interval::Interval>()
            .map_err(|e| format!("{at}.interval: {e}"))?;
        if let Some(g) = &p.group_by {
            g.parse::<Dimension>()
                .map_err(|e| format!("{at}.group_by: {e}"))?;
        }
    }
    Ok(d)
}

/// The shipped dashboards, checked.
pub fn builtin() -> Result<Vec<(String, Dashboard)>, String> {
    BUILTIN
        .iter()
        .map(|(n, t)| parse(n, t).map(|d| ((*n).to_owned(), d)))
        .collect()
}

/// Percent-encodes a query-string value.
pub fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// A query string from pairs, skipping empty values.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub const STYLE: &str = "body{font-family:sans-serif;margin:0;color:#222;background:#f6f7f9}\
header{background:#1f3a5f;color:#fff;padding:10px 20px}header a{color:#fff;margin-right:14px}\
main{padding:16px 20px}form.filters{background:#fff;padding:10px;border:1px solid #ddd;margin-bottom:14px}\
form.filters label{margin-right:10px}.headlines{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:14px}\
.headline{background:#fff;border:1px solid #ddd;padding:10px 14px;min-width:150px;text-decoration:none;color:#222}\
.headline .v{font-size:26px;font-weight:bold}.headline .c{font-size:12px;color:#555}\
.panel{background:#fff;border:1px solid #ddd;padding:10px;margin-bottom:14px}\
.panel h2{font-size:16px;margin:0 0 6px}.panel .links a{font-size:12px;margin-right:10px}\
table{border-collapse:collapse;background:#fff;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px}";

/// The page frame: title, navigation, optional auto-refresh.
pub fn frame(title: &str, nav: &[(String, String)], refresh: u32, body: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{} — supportlake</title>",
        esc(title)
    );
    if refresh > 0 {
        let _ = write!(h, "<meta http-equiv=\"refresh\" content=\"{refresh}\">");
    }
    let _ = write!(
        h,
        "<style>{STYLE}</style></head><body><header><a href=\"/\"><b>supportlake</b></a>"
    );
    for (name, t) in nav {
        let _ = write!(h, "<a href=\"/dashboards/{}\">{}</a>", enc(name), esc(t));
    }
    let _ = write!(h, "</header><main>{body}</main></body></html>");
    h
}

/// An inline chart: the SVG document without its XML prolog, or a note on failure.
pub fn inline_chart(r: &MetricResult, p: &Panel) -> String {
    let opts = ChartOptions {
        kind: p.chart.parse().unwrap_or(ChartKind::Line),
        width: 900,
        height: 320,
        target: p.target,
        title: p.title.clone(),
    };
    match charts::render(r, &opts, ImageFormat::Svg) {
        Ok(bytes) => {
            let s = String::from_utf8_lossy(&bytes).into_owned();
            match s.find("<svg") {
                Some(i) => s[i..].to_owned(),
                None => s,
            }
        }
        Err(e) => format!("<p>chart unavailable: {}</p>", esc(&e.to_string())),
    }
}

/// The filter values a page was opened with, as strings.
pub type Filters = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_dashboards_parse_and_name_real_metrics() {
        let all = builtin().unwrap();
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["overview", "sla", "agents", "csat"]);
        assert!(all.iter().all(|(_, d)| !d.panels.is_empty()));
    }

    #[test]
    fn a_typo_in_a_dashboard_is_named() {
        let e = parse(
            "x",
            "title = \"X\"\n[[panels]]\nmetric = \"wiat\"\ntitle = \"t\"\n",
        )
        .unwrap_err();
        assert!(e.contains("dashboards/x.toml: panels[0].metric"), "{e}");
        let e = parse(
            "x",
            "title = \"X\"\n[[panels]]\nmetric = \"wait\"\ntitle = \"t\"\nchart = \"pie\"\n",
        )
        .unwrap_err();
        assert!(e.contains("panels[0].chart"), "{e}");
        let e = parse(
            "x",
            "title = \"X\"\ncolour = 1\n[[panels]]\nmetric = \"wait\"\ntitle = \"t\"\n",
        )
        .unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn escaping_and_changes() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            query(&[("team", "billing & co"), ("agent", "")]),
            "team=billing%20%26%20co"
        );
        assert_eq!(show_value(Some(90.0), "seconds"), "1.5 min");
        assert_eq!(show_value(Some(7200.0), "seconds"), "2.0 h");
        assert_eq!(
            show_change(Some(110.0), Some(100.0), "seconds"),
            "+10.0% vs previous period"
        );
        assert_eq!(
            show_change(Some(80.0), Some(85.5), "percent"),
            "-5.5 pts vs previous period"
        );
    }
}
