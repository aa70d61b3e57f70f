//! A run as one self-contained HTML file: the figures, the insights, a Gantt
//! chart (SVG, one lane per agent or step, the critical path highlighted) and
//! the tables. No external resources: it opens anywhere, offline.

use std::fmt::Write;

use super::history::RunRecord;
use super::profile::{StepOutcome, StepRecord, money};
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
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
svg text{font-size:12px;fill:#1b1f23}.lane-bg{fill:#f6f8fa}.tick{stroke:#d0d7de}
.bar{fill:#8fb8de}.bar.critical{fill:#d9480f}.bar.cached{fill:#b2f2bb}.bar.failed{fill:#e03131}
.bar.skipped{fill:#adb5bd;opacity:.6}.bar{stroke:#fff;stroke-width:1}.bar:hover{stroke:#1b1f23;stroke-width:1.5}
.bar-label{font-size:11px;fill:#fff;pointer-events:none}
.res.cpu{fill:#5c7cfa}.res.mem{fill:#ae3ec9}.res{opacity:.8}.why{color:#57606a;font-size:13px}
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
  var lane = document.getElementById('resource-lane');
  var res = lane.querySelectorAll('rect.res');
  var resDrawn = 0;
  res.forEach(function (b) { if (b.getBBox().width > 0 && b.getBBox().height > 0) resDrawn++; });
  lane.setAttribute('data-res-bars', String(res.length));
  lane.setAttribute('data-res-drawn', String(resDrawn));
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

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// CPU (with `~` when approximate) and peak memory of a step, for tables and titles.
fn resource_text(s: &StepRecord) -> (String, String) {
    match &s.resources {
        None => ("—".into(), "—".into()),
        Some(r) => (
            format!("{}{}", if r.approximate { "~" } else { "" }, ms(r.cpu_ms())),
            r.peak_rss_bytes.map_or_else(|| "—".into(), mib),
        ),
    }
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
         <div class=\"card\">cache hits<b>{}</b></div>",
        ms(a.wall_ms),
        ms(a.critical_path_ms),
        pct(a.parallel_efficiency),
        pct(a.cache_hit_rate),
    );
    let t = &a.totals;
    let _ = write!(
        h,
        "<div class=\"card\" id=\"cpu-total\">CPU{}<b>{}</b></div>",
        if t.cpu_approximate { " (approx.)" } else { "" },
        ms(t.cpu_ms)
    );
    if let Some(rss) = t.peak_rss_bytes {
        let _ = write!(h, "<div class=\"card\">peak memory<b>{}</b></div>", mib(rss));
    }
    if let Some(cost) = t.cost {
        let _ = write!(h, "<div class=\"card\" id=\"cost\">estimated cost<b>{}</b></div>", money(cost));
    }
    if let Some(saved) = t.saved_cost {
        let _ = write!(h, "<div class=\"card\" id=\"saved\">cache saved<b>{}</b></div>", money(saved));
    }
    if !t.usage.is_empty() {
        let usage: Vec<String> = t.usage.iter().map(|(k, v)| format!("{} {v}", esc(k))).collect();
        let _ = write!(h, "<div class=\"card\" id=\"usage\">reported usage<b>{}</b></div>", usage.join(", "));
    }
    h.push_str("</div>");
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
    resource_lane(&mut h, record);
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
            "{} — {} ({:?}{}{}){}",
            step.id,
            ms(step.duration_ms),
            step.outcome,
            if step.cache_hit { ", cache hit" } else { "" },
            step.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default(),
            step.why.as_ref().map(|w| format!(" — {}", w.describe())).unwrap_or_default()
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

/// Two lanes on the Gantt's time axis: each step's CPU (bar height = CPU ÷
/// duration, full at one core) and its peak memory (height relative to the
/// run's largest).
fn resource_lane(h: &mut String, record: &RunRecord) {
    let span = record.wall_ms.max(1.0);
    let scale = (CHART_WIDTH - LABEL_WIDTH - 10.0) / span;
    let height = LANE_HEIGHT * 2.0 + 4.0;
    let max_rss = record.analysis.totals.peak_rss_bytes.unwrap_or(0).max(1) as f64;
    let _ = write!(
        h,
        "<h2>Resources</h2><div class=\"legend muted\">per step, on the timeline's axis\
         <span style=\"background:#5c7cfa\"></span>CPU ÷ duration (full height: one core)\
         <span style=\"background:#ae3ec9\"></span>peak memory (full height: {})</div>\
         <svg id=\"resource-lane\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {CHART_WIDTH} {height}\" role=\"img\" aria-label=\"CPU and memory of each step\">\
         <rect class=\"lane-bg\" x=\"0\" y=\"0\" width=\"{CHART_WIDTH}\" height=\"{LANE_HEIGHT}\"/>\
         <text x=\"4\" y=\"16\">CPU</text><text x=\"4\" y=\"{}\">memory</text>",
        mib(max_rss as u64),
        LANE_HEIGHT + 16.0
    );
    for step in &record.steps {
        let (Some(r), Some(start)) = (&step.resources, step.started_ms) else { continue };
        let x = LABEL_WIDTH + start * scale;
        let width = (step.duration_ms * scale).max(2.0);
        let (cpu, rss) = resource_text(step);
        let busy = (r.cpu_ms() / step.duration_ms.max(1.0)).clamp(0.05, 1.0);
        let bar = busy * (LANE_HEIGHT - 4.0);
        let _ = write!(
            h,
            "<rect class=\"res cpu\" data-step=\"{id}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{bar:.1}\">\
             <title>{id}: CPU {cpu}{approx}</title></rect>",
            id = esc(&step.id),
            y = LANE_HEIGHT - 2.0 - bar,
            approx = if r.approximate { " (approximate: the agent served other calls too)" } else { "" },
        );
        if let Some(bytes) = r.peak_rss_bytes {
            let bar = (bytes as f64 / max_rss).clamp(0.05, 1.0) * (LANE_HEIGHT - 4.0);
            let _ = write!(
                h,
                "<rect class=\"res mem\" data-step=\"{id}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{bar:.1}\">\
                 <title>{id}: peak memory {rss}</title></rect>",
                id = esc(&step.id),
                y = 2.0 * LANE_HEIGHT - 2.0 - bar,
            );
        }
    }
    h.push_str("</svg>");
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
        let _ = write!(h, "<h2>Regressions against {}</h2>", esc(other));
        if a.regressions.is_empty() {
            h.push_str("<p>None: no step that ran is slower than before past both thresholds.</p>");
        } else {
            h.push_str(
                "<table id=\"regressions\"><tr><th>what</th><th class=\"num\">before (median)</th>\
                 <th class=\"num\">runs</th><th class=\"num\">now</th><th class=\"num\">change</th></tr>",
            );
            for r in &a.regressions {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                     <td class=\"num\">+{:.0}%</td></tr>",
                    esc(&r.what),
                    ms(r.before_ms),
                    r.runs,
                    ms(r.after_ms),
                    r.change() * 100.0
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str(
        "<h2>Steps</h2><table id=\"steps\"><tr><th>step</th><th>outcome</th><th>agent</th>\
         <th class=\"num\">queued</th><th class=\"num\">started</th><th class=\"num\">duration</th>\
         <th class=\"num\">wait for agent</th><th class=\"num\">CPU</th><th class=\"num\">peak memory</th>\
         <th class=\"num\">cost</th><th class=\"num\">bytes in/out</th><th>why</th><th>note</th></tr>",
    );
    for s in &record.steps {
        let outcome = s.outcome_label();
        let (cpu, rss) = resource_text(s);
        let cost = match (s.cost, s.saved_cost) {
            (Some(c), _) => money(c),
            (None, Some(saved)) => format!("saved {}", money(saved)),
            (None, None) => "—".into(),
        };
        let _ = write!(
            h,
            "<tr data-step=\"{id}\"><td>{id}</td><td>{outcome}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{cpu}</td><td class=\"num\">{rss}</td>\
             <td class=\"num\">{cost}</td><td class=\"num\">{} / {}</td><td class=\"why\">{}</td><td>{}</td></tr>",
            esc(s.agent.as_deref().or(s.role.as_deref()).unwrap_or("command")),
            ms(s.queued_ms),
            s.started_ms.map_or_else(|| "—".into(), ms),
            ms(s.duration_ms),
            ms(s.wait_ms),
            s.bytes_in,
            s.bytes_out,
            esc(&s.why.as_ref().map(|w| w.describe()).unwrap_or_default()),
            esc(s.error.as_deref().unwrap_or("")),
            id = esc(&s.id),
        );
    }
    h.push_str("</table>");
}
