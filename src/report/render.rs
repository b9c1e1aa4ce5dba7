//! A report's numbers, and the email made of them: HTML (tables and inline styles only, so
//! Gmail and Outlook show it as designed; charts are PNG images referenced by Content-ID),
//! a plain-text part, and the CSV of breached SLA targets.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::ReportError;
use super::spec::{Language, ReportSpec};
use crate::charts::{ChartKind, ChartOptions, ImageFormat};
use crate::metrics::rows::Detail;
use crate::metrics::summary::{headline, show_value};
use crate::metrics::{Dimension, Filters, Metric, MetricRequest, MetricResult};
use crate::query::Engine;

/// One headline number, beside the same-length period before.
#[derive(Debug, Clone)]
pub struct Headline {
    /// Stable key: `tme`, `tma`, `service_level`, `sla`, `breaches`, `csat`, `open_at_end`.
    pub key: &'static str,
    pub unit: &'static str,
    pub now: Option<f64>,
    pub before: Option<f64>,
}

/// A chart, as a PNG attached inline.
#[derive(Debug, Clone)]
pub struct Chart {
    pub cid: String,
    pub title: String,
    pub png: Vec<u8>,
}

/// A rendered report.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub subject: String,
    pub html: String,
    pub text: String,
    pub headlines: Vec<Headline>,
    /// Per team: the headline values in the order of [`TEAM_COLUMNS`].
    pub teams: BTreeMap<String, Vec<Option<f64>>>,
    pub charts: Vec<Chart>,
    pub breached_csv: Vec<u8>,
    pub breached_rows: usize,
}

/// The metrics of the per-team table.
pub const TEAM_COLUMNS: [(&str, Metric); 5] = [
    ("tme", Metric::Wait),
    ("tma", Metric::Handle),
    ("service_level", Metric::ServiceLevel),
    ("sla", Metric::Sla),
    ("csat", Metric::Csat),
];

struct Words {
    title: &'static str,
    period: &'static str,
    previous: &'static str,
    team: &'static str,
    no_team: &'static str,
    charts_tme: &'static str,
    charts_sla: &'static str,
    csv: &'static str,
    no_breaches: &'static str,
    no_data: &'static str,
    footer: &'static str,
}

const EN: Words = Words {
    title: "SLA report",
    period: "Period",
    previous: "vs previous period",
    team: "Team",
    no_team: "(no team)",
    charts_tme: "TME by team",
    charts_sla: "SLA achievement",
    csv: "breached SLA targets are in the attached CSV",
    no_breaches: "No SLA target was breached.",
    no_data: "no data",
    footer: "Sent by supportlake. Numbers are those of /api/v1/metrics for the same period.",
};

const PT: Words = Words {
    title: "Relatório de SLA",
    period: "Período",
    previous: "vs período anterior",
    team: "Equipe",
    no_team: "(sem equipe)",
    charts_tme: "TME por equipe",
    charts_sla: "Cumprimento de SLA",
    csv: "metas de SLA violadas estão no CSV anexo",
    no_breaches: "Nenhuma meta de SLA foi violada.",
    no_data: "sem dados",
    footer: "Enviado pelo supportlake. Os números são os de /api/v1/metrics para o mesmo período.",
};

fn words(l: Language) -> &'static Words {
    match l {
        Language::En => &EN,
        Language::Pt => &PT,
    }
}

fn label(key: &str, l: Language) -> &'static str {
    match (key, l) {
        ("tme", _) => "TME",
        ("tma", _) => "TMA",
        ("service_level", Language::En) => "Service level",
        ("service_level", Language::Pt) => "Nível de serviço",
        ("sla", Language::En) => "SLA achieved",
        ("sla", Language::Pt) => "SLA cumprido",
        ("breaches", Language::En) => "SLA breaches",
        ("breaches", Language::Pt) => "Violações de SLA",
        ("csat", _) => "CSAT",
        ("open_at_end", Language::En) => "Open at period end",
        ("open_at_end", Language::Pt) => "Abertas no fim do período",
        _ => "?",
    }
}

/// A value as the report shows it (Portuguese uses a decimal comma).
pub fn show(v: Option<f64>, unit: &str, l: Language, no_data: &str) -> String {
    if v.is_none() {
        return no_data.to_owned();
    }
    let s = show_value(v, unit);
    match l {
        Language::En => s,
        Language::Pt => s.replace('.', ","),
    }
}

fn change(now: Option<f64>, before: Option<f64>, unit: &str, l: Language) -> String {
    let w = words(l);
    let text = match (now, before) {
        (Some(a), Some(b)) if unit == "percent" => format!("{:+.1} pts {}", a - b, w.previous),
        (Some(a), Some(b)) if b != 0.0 => format!("{:+.1}% {}", 100.0 * (a - b) / b, w.previous),
        _ => String::from("—"),
    };
    match l {
        Language::En => text,
        Language::Pt => text.replace('.', ","),
    }
}

/// The breaches (breached + active_breached) of an `sla` result.
fn breaches(r: &MetricResult) -> Option<f64> {
    let mut n = 0u64;
    let mut any = false;
    for p in r.series.iter().flat_map(|s| s.points.iter()) {
        if let Detail::Sla {
            breached,
            active_breached,
            ..
        } = &p.detail
        {
            any = true;
            n += breached + active_breached;
        }
    }
    any.then_some(n as f64)
}

/// The request the API would make for this metric and range.
pub fn request(
    spec: &ReportSpec,
    metric: Metric,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    group_by: Option<Dimension>,
) -> MetricRequest {
    MetricRequest {
        metric,
        from,
        to,
        interval: spec.period.chart_interval(from, to),
        group_by,
        tz: spec.tz,
        business_hours: false,
        filters: Filters::default(),
        now,
        sla_metric: None,
    }
}

/// Computes and renders the report for `[from, to)`, with the same-length period before it
/// for comparison. `note` (e.g. "sent late: the server was down at 08:00") heads the text.
pub async fn build(
    engine: &Engine,
    spec: &ReportSpec,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    note: Option<&str>,
) -> Result<Report, ReportError> {
    let span = to - from;
    let (pfrom, pto) = (from - span, from);
    let run = |metric: Metric, a: DateTime<Utc>, b: DateTime<Utc>, g: Option<Dimension>| {
        let req = request(spec, metric, a, b, now, g);
        async move { crate::metrics::run(engine, &req).await }
    };
    // Headlines, now and before.
    let mut headlines = Vec::new();
    for (key, metric) in [
        ("tme", Metric::Wait),
        ("tma", Metric::Handle),
        ("service_level", Metric::ServiceLevel),
        ("sla", Metric::Sla),
        ("csat", Metric::Csat),
    ] {
        let a = run(metric, from, to, None).await?;
        let b = run(metric, pfrom, pto, None).await?;
        headlines.push(Headline {
            key,
            unit: metric.unit(),
            now: headline(&a),
            before: headline(&b),
        });
        if key == "sla" {
            headlines.push(Headline {
                key: "breaches",
                unit: "count",
                now: breaches(&a),
                before: breaches(&b),
            });
        }
    }
    // The backlog at the end of each period: its last sample.
    let open_now = run(Metric::OpenConversations, from, to, None).await?;
    let open_before = run(Metric::OpenConversations, pfrom, pto, None).await?;
    headlines.push(Headline {
        key: "open_at_end",
        unit: "conversations",
        now: headline(&open_now),
        before: headline(&open_before),
    });

    // Per team.
    let mut teams: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let w = words(spec.language);
    for (i, (_, metric)) in TEAM_COLUMNS.iter().enumerate() {
        let r = run(*metric, from, to, Some(Dimension::Team)).await?;
        for s in &r.series {
            let team = s.group.clone().unwrap_or_else(|| w.no_team.to_owned());
            if !spec.teams.is_empty() && !spec.teams.contains(&team) {
                continue;
            }
            let one = MetricResult {
                series: vec![s.clone()],
                ..r.clone()
            };
            teams
                .entry(team)
                .or_insert_with(|| vec![None; TEAM_COLUMNS.len()])[i] = headline(&one);
        }
    }

    // Charts.
    let mut charts = Vec::new();
    for (cid, title, metric, kind, group) in [
        (
            "tme",
            w.charts_tme,
            Metric::Wait,
            ChartKind::Line,
            Some(Dimension::Team),
        ),
        ("sla", w.charts_sla, Metric::Sla, ChartKind::Bar, None),
    ] {
        let r = run(metric, from, to, group).await?;
        let opts = ChartOptions {
            kind,
            width: 720,
            height: 300,
            target: None,
            title: title.to_owned(),
        };
        charts.push(Chart {
            cid: format!("{cid}@supportlake"),
            title: title.to_owned(),
            png: crate::charts::render(&r, &opts, ImageFormat::Png)?,
        });
    }

    // Breached targets.
    let req = request(spec, Metric::Sla, from, to, now, None);
    let batches = crate::metrics::sla_breaches(engine, &req).await?;
    let breached_rows = batches.iter().map(|b| b.num_rows()).sum();
    let mut breached_csv = Vec::new();
    {
        let mut wr = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut breached_csv);
        for b in &batches {
            wr.write(b)
                .map_err(|e| ReportError::Mail(format!("writing the CSV: {e}")))?;
        }
    }

    let period = period_label(from, to, spec);
    let sla_now = headlines
        .iter()
        .find(|h| h.key == "sla")
        .and_then(|h| h.now);
    let subject = format!(
        "[supportlake] {} {} — SLA {}",
        w.title,
        period,
        show(sla_now, "percent", spec.language, w.no_data)
    );
    let mut report = Report {
        name: spec.name.clone(),
        from,
        to,
        subject,
        html: String::new(),
        text: String::new(),
        headlines,
        teams,
        charts,
        breached_csv,
        breached_rows,
    };
    report.html = html(&report, spec, &period, note);
    report.text = text(&report, spec, &period, note);
    Ok(report)
}

/// "2026-11-24", or "2026-11-16 – 2026-11-22" (the last day included), in the report's zone.
pub fn period_label(from: DateTime<Utc>, to: DateTime<Utc>, spec: &ReportSpec) -> String {
    let a = from.with_timezone(&spec.tz);
    let b = (to - Duration::microseconds(1)).with_timezone(&spec.tz);
    let fmt = match spec.language {
        Language::En => "%Y-%m-%d",
        Language::Pt => "%d/%m/%Y",
    };
    if a.date_naive() == b.date_naive() {
        a.format(fmt).to_string()
    } else {
        format!("{} – {}", a.format(fmt), b.format(fmt))
    }
}

fn esc(s: &str) -> String {
    crate::html::esc(s)
}

const CELL: &str = "padding:6px 10px;border-bottom:1px solid #e5e5e5;font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222";

fn html(r: &Report, spec: &ReportSpec, period: &str, note: Option<&str>) -> String {
    let l = spec.language;
    let w = words(l);
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head>");
    h.push_str("<body style=\"margin:0;padding:0;background:#f4f4f4\">");
    h.push_str("<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#f4f4f4\"><tr><td align=\"center\" style=\"padding:16px\">");
    h.push_str("<table role=\"presentation\" width=\"760\" cellpadding=\"0\" cellspacing=\"0\" style=\"background:#ffffff;border:1px solid #dddddd\">");
    h.push_str(&format!(
        "<tr><td style=\"padding:16px 20px;background:#1f4e79;color:#ffffff;font-family:Arial,Helvetica,sans-serif\"><div style=\"font-size:20px;font-weight:bold\">{}</div><div style=\"font-size:14px\">{}: {} ({})</div></td></tr>",
        esc(w.title),
        esc(w.period),
        esc(period),
        esc(spec.tz.name())
    ));
    if let Some(n) = note {
        h.push_str(&format!(
            "<tr><td style=\"padding:10px 20px;background:#fff4ce;font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#5c4400\">{}</td></tr>",
            esc(n)
        ));
    }
    // Headlines: a row of cells.
    h.push_str("<tr><td style=\"padding:14px 20px\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\"><tr>");
    for (i, hl) in r.headlines.iter().enumerate() {
        if i == 4 {
            h.push_str("</tr><tr>");
        }
        h.push_str(&format!(
            "<td width=\"25%\" valign=\"top\" style=\"padding:8px;border:1px solid #e5e5e5;font-family:Arial,Helvetica,sans-serif\"><div style=\"font-size:12px;color:#555\">{}</div><div style=\"font-size:22px;font-weight:bold;color:#222\">{}</div><div style=\"font-size:11px;color:#666\">{}</div></td>",
            esc(label(hl.key, l)),
            esc(&show(hl.now, hl.unit, l, w.no_data)),
            esc(&change(hl.now, hl.before, hl.unit, l)),
        ));
    }
    h.push_str("</tr></table></td></tr>");
    // Per team.
    h.push_str("<tr><td style=\"padding:6px 20px 14px\"><table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"border-collapse:collapse\"><tr>");
    h.push_str(&format!(
        "<th align=\"left\" style=\"{CELL};background:#f0f4f8\">{}</th>",
        esc(w.team)
    ));
    for (key, _) in TEAM_COLUMNS {
        h.push_str(&format!(
            "<th align=\"right\" style=\"{CELL};background:#f0f4f8\">{}</th>",
            esc(label(key, l))
        ));
    }
    h.push_str("</tr>");
    for (team, values) in &r.teams {
        h.push_str(&format!("<tr><td style=\"{CELL}\">{}</td>", esc(team)));
        for ((_, metric), v) in TEAM_COLUMNS.iter().zip(values) {
            h.push_str(&format!(
                "<td align=\"right\" style=\"{CELL}\">{}</td>",
                esc(&show(*v, metric.unit(), l, "—"))
            ));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></td></tr>");
    for c in &r.charts {
        h.push_str(&format!(
            "<tr><td style=\"padding:6px 20px\"><img src=\"cid:{}\" width=\"720\" height=\"300\" alt=\"{}\" style=\"display:block;border:0\"></td></tr>",
            esc(&c.cid),
            esc(&c.title)
        ));
    }
    let breaches = if r.breached_rows == 0 {
        w.no_breaches.to_owned()
    } else {
        format!("{} {}.", r.breached_rows, w.csv)
    };
    h.push_str(&format!(
        "<tr><td style=\"padding:10px 20px;font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">{}</td></tr>",
        esc(&breaches)
    ));
    h.push_str(&format!(
        "<tr><td style=\"padding:10px 20px;font-family:Arial,Helvetica,sans-serif;font-size:11px;color:#888\">{}</td></tr>",
        esc(w.footer)
    ));
    h.push_str("</table></td></tr></table></body></html>");
    h
}

fn text(r: &Report, spec: &ReportSpec, period: &str, note: Option<&str>) -> String {
    let l = spec.language;
    let w = words(l);
    let mut t = format!(
        "{} — {}: {} ({})\n\n",
        w.title,
        w.period,
        period,
        spec.tz.name()
    );
    if let Some(n) = note {
        t.push_str(&format!("{n}\n\n"));
    }
    for hl in &r.headlines {
        t.push_str(&format!(
            "{}: {} ({})\n",
            label(hl.key, l),
            show(hl.now, hl.unit, l, w.no_data),
            change(hl.now, hl.before, hl.unit, l)
        ));
    }
    t.push('\n');
    t.push_str(w.team);
    for (key, _) in TEAM_COLUMNS {
        t.push_str(&format!(" | {}", label(key, l)));
    }
    t.push('\n');
    for (team, values) in &r.teams {
        t.push_str(team);
        for ((_, metric), v) in TEAM_COLUMNS.iter().zip(values) {
            t.push_str(&format!(" | {}", show(*v, metric.unit(), l, "—")));
        }
        t.push('\n');
    }
    t.push('\n');
    if r.breached_rows == 0 {
        t.push_str(w.no_breaches);
    } else {
        t.push_str(&format!("{} {}.", r.breached_rows, w.csv));
    }
    t.push_str(&format!("\n\n{}\n", w.footer));
    t
}
