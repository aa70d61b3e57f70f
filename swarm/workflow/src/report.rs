//! A run as one self-contained HTML file: the figures, the insights, a Gantt
//! chart (SVG, one lane per agent or step, the critical path highlighted) and
//! the tables. No external resources: it opens anywhere, offline.

use std::fmt::Write;

use super::history::RunRecord;
use super::profile::StepOutcome;
use super::trace::lanes;

const CHART_WIDTH: f64 = 1000.0;
const LABEL_WIDTH: f64 = 180.0;
const LANE_HEIGHT: f64 = 24.0;
const AXIS_HEIGHT: f64 = 28.0;

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f23;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.muted{color:#57606a}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:130px}
.card b{display:block;font-size:20px}.failed-run{color:#b42318}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-size:12px;fill:#1b1f23}.lane-bg{fill:#f6f8fa}.tick{stroke:#d0d7de}
.bar{fill:#8fb8de}.bar.critical{fill:#d9480f}.bar.cached{fill:#b2f2bb}.bar.failed{fill:#e03131}
.bar.skipped{fill:#adb5bd;opacity:.6}.bar{stroke:#fff;stroke-width:1}.bar:hover{stroke:#1b1f23;stroke-width:1.5}
.bar-label{font-size:11px;fill:#fff;pointer-events:none}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;vertical-align:-1px}
";

// Runs in the browser after layout: checks every bar got a box and says so on
// the page (the test suite reads these attributes from the rendered DOM).
const SCRIPT: &str = "
document.addEventListener('DOMContentLoaded', function () {
  var svg = document.getElementById('gantt');
  var bars = svg.querySelectorAll('rect.bar');
  var drawn = 0;
  bars.forEach(function (b) { if (b.getBBox().width > 0) drawn++; });
  svg.setAttribute('data-bars', String(bars.length));
  svg.setAttribute('data-drawn', String(drawn));
  document.getElementById('chart-status').textContent = drawn + ' of ' + bars.length + ' steps drawn';
  document.body.setAttribute('data-rendered', 'true');
});
";

fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn ms(v: f64) -> String {
    if v >= 10_000.0 { format!("{:.1} s", v / 1000.0) } else { format!("{v:.0} ms") }
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// The HTML report of a run.
pub fn render_report(record: &RunRecord) -> String {
    let a = &record.analysis;
    let mut h = String::new();
    let status = if record.ok { "succeeded" } else { "failed" };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>skep run {id}: {name}</title>\
         <style>{STYLE}</style></head><body>\
         <h1>Workflow {name} <span class=\"{cls}\">{status}</span></h1>\
         <div class=\"muted\">run {id} · {file} · {n} steps · jobs {jobs}{cache}</div>",
        id = esc(&record.id),
        name = esc(&record.workflow),
        cls = if record.ok { "muted" } else { "failed-run" },
        file = esc(&record.file),
        n = record.steps.len(),
        jobs = record.jobs,
        cache = if record.cache_used { "" } else { " · cache off" },
    );
    let _ = write!(
        h,
        "<div class=\"cards\"><div class=\"card\">wall time<b>{}</b></div>\
         <div class=\"card\">critical path<b>{}</b></div>\
         <div class=\"card\">parallel efficiency<b>{}</b></div>\
         <div class=\"card\">cache hits<b>{}</b></div></div>",
        ms(a.wall_ms),
        ms(a.critical_path_ms),
        pct(a.parallel_efficiency),
        pct(a.cache_hit_rate),
    );
    h.push_str("<h2>Where the time went</h2><ul id=\"insights\">");
    for insight in &a.insights {
        let _ = write!(h, "<li>{}</li>", esc(insight));
    }
    if a.insights.is_empty() {
        h.push_str("<li>nothing stands out</li>");
    }
    let path: Vec<String> = a.critical_path.iter().map(|s| esc(s)).collect();
    let _ = write!(h, "</ul><p>Critical path: <b>{}</b> ({}).</p>", path.join(" → "), ms(a.critical_path_ms));
    gantt(&mut h, record);
    tables(&mut h, record);
    let _ = write!(h, "<script>{SCRIPT}</script></body></html>");
    h
}

fn gantt(h: &mut String, record: &RunRecord) {
    let (names, lane) = lanes(record);
    let span = record.wall_ms.max(1.0);
    let scale = (CHART_WIDTH - LABEL_WIDTH - 10.0) / span;
    let height = AXIS_HEIGHT + LANE_HEIGHT * names.len() as f64;
    let _ = write!(
        h,
        "<h2>Timeline</h2><div class=\"legend muted\">one lane per agent (or per step when no agent ran it)\
         <span style=\"background:#d9480f\"></span>critical path<span style=\"background:#8fb8de\"></span>other\
         <span style=\"background:#b2f2bb\"></span>from cache<span style=\"background:#e03131\"></span>failed\
         <span style=\"background:#adb5bd\"></span>skipped</div>\
         <svg id=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {CHART_WIDTH} {height}\" role=\"img\" aria-label=\"Gantt chart of the run\">"
    );
    for (k, name) in names.iter().enumerate() {
        let y = AXIS_HEIGHT + LANE_HEIGHT * k as f64;
        if k % 2 == 0 {
            let _ = write!(
                h,
                "<rect class=\"lane-bg\" x=\"0\" y=\"{y}\" width=\"{CHART_WIDTH}\" height=\"{LANE_HEIGHT}\"/>"
            );
        }
        let _ = write!(h, "<text x=\"4\" y=\"{}\">{}</text>", y + 16.0, esc(name));
    }
    for t in 0..=5 {
        let at = span * f64::from(t) / 5.0;
        let x = LABEL_WIDTH + at * scale;
        let _ = write!(
            h,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"18\" x2=\"{x:.1}\" y2=\"{height}\"/>\
             <text x=\"{x:.1}\" y=\"12\" text-anchor=\"{anchor}\">{}</text>",
            ms(at),
            anchor = if t == 5 { "end" } else { "middle" }
        );
    }
    for (i, step) in record.steps.iter().enumerate() {
        let y = AXIS_HEIGHT + LANE_HEIGHT * lane[i] as f64 + 4.0;
        let (start, width, mut class) = match step.started_ms {
            Some(start) => (start, (step.duration_ms * scale).max(2.0), String::from("bar")),
            None => (step.queued_ms, 4.0, String::from("bar skipped")),
        };
        if a_critical(record, &step.id) {
            class.push_str(" critical");
        }
        if step.cache_hit {
            class.push_str(" cached");
        }
        if step.outcome == StepOutcome::Failed {
            class.push_str(" failed");
        }
        let title = format!(
            "{} — {} ({:?}{}{})",
            step.id,
            ms(step.duration_ms),
            step.outcome,
            if step.cache_hit { ", cache hit" } else { "" },
            step.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        let _ = write!(
            h,
            "<rect class=\"{class}\" data-step=\"{id}\" x=\"{x:.1}\" y=\"{y}\" width=\"{width:.1}\" height=\"{bh}\" rx=\"2\">\
             <title>{title}</title></rect>",
            id = esc(&step.id),
            x = LABEL_WIDTH + start * scale,
            bh = LANE_HEIGHT - 8.0,
            title = esc(&title),
        );
        // A name inside the bar when it fits: lanes are agents, so bars need their step's name.
        if width >= 7.0 * step.id.len() as f64 + 8.0 {
            let _ = write!(
                h,
                "<text class=\"bar-label\" x=\"{:.1}\" y=\"{}\">{}</text>",
                LABEL_WIDTH + start * scale + 4.0,
                y + 12.0,
                esc(&step.id)
            );
        }
    }
    h.push_str("</svg><div id=\"chart-status\" class=\"muted\">chart not checked (scripts off)</div>");
}

fn a_critical(record: &RunRecord, id: &str) -> bool {
    record.analysis.critical_path.iter().any(|c| c == id)
}

fn tables(h: &mut String, record: &RunRecord) {
    let a = &record.analysis;
    h.push_str(
        "<h2>Bottlenecks</h2><table id=\"bottlenecks\"><tr><th>step</th><th class=\"num\">duration</th>\
         <th class=\"num\">share of wall</th><th class=\"num\">share of critical path</th></tr>",
    );
    for b in &a.bottlenecks {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&b.id),
            ms(b.duration_ms),
            pct(b.share_of_wall),
            pct(b.share_of_critical_path)
        );
    }
    h.push_str("</table>");
    if let Some(other) = &a.compared_with {
        let _ = write!(h, "<h2>Regressions against run {}</h2>", esc(other));
        if a.regressions.is_empty() {
            h.push_str("<p>None: nothing is more than 20% slower.</p>");
        } else {
            h.push_str("<table id=\"regressions\"><tr><th>what</th><th class=\"num\">before</th><th class=\"num\">now</th></tr>");
            for r in &a.regressions {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&r.what),
                    ms(r.before_ms),
                    ms(r.after_ms)
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str(
        "<h2>Steps</h2><table id=\"steps\"><tr><th>step</th><th>outcome</th><th>agent</th>\
         <th class=\"num\">queued</th><th class=\"num\">started</th><th class=\"num\">duration</th>\
         <th class=\"num\">wait for agent</th><th class=\"num\">bytes in/out</th><th>note</th></tr>",
    );
    for s in &record.steps {
        let outcome = s.outcome_label();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{outcome}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td>{}</td></tr>",
            esc(&s.id),
            esc(s.agent.as_deref().or(s.role.as_deref()).unwrap_or("command")),
            ms(s.queued_ms),
            s.started_ms.map_or_else(|| "—".into(), ms),
            ms(s.duration_ms),
            ms(s.wait_ms),
            s.bytes_in,
            s.bytes_out,
            esc(s.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table>");
}
