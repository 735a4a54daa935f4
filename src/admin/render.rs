//! The status page's HTML: one self-contained document with inline CSS, no scripts, refreshed by
//! the browser every ten seconds. Every string from configuration or the database goes through
//! [`escape`].

use super::chart::{bar_chart, ChartStyle};
use super::html::{ago, bytes, count, duration, escape, time, truncate};
use super::page::{PageData, PipelineView, THROUGHPUT_BUCKET_S};
use std::fmt::Write as _;

const CSS: &str = r#"
:root{--bg:#f4f6f9;--card:#fff;--ink:#0f172a;--muted:#64748b;--line:#e5e9f0;--ok:#16a34a;--warn:#d97706;--bad:#dc2626;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#0f172a;color:#e2e8f0;padding:14px 28px;display:flex;align-items:center;gap:16px}
header h1{font-size:18px;margin:0;color:#fff;letter-spacing:.2px}
header .sub{color:#94a3b8;font-size:13px}
header nav{margin-left:auto;display:flex;gap:14px;align-items:center}
header nav a{color:#cbd5e1;text-decoration:none;font-size:13px}
header nav a:hover{color:#fff}
main{padding:20px 28px 40px;max-width:1600px;margin:0 auto}
.pill{display:inline-flex;align-items:center;gap:6px;border-radius:999px;padding:3px 10px;font-size:12px;font-weight:600}
.pill.ok{background:#dcfce7;color:#166534}.pill.bad{background:#fee2e2;color:#991b1b}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;box-shadow:0 1px 2px rgba(15,23,42,.04);margin-bottom:20px;overflow-x:auto}
.card h2{font-size:13px;text-transform:uppercase;letter-spacing:.6px;color:var(--muted);margin:0;padding:12px 16px;border-bottom:1px solid var(--line);display:flex;gap:8px;align-items:baseline}
.card h2 .count{font-weight:500;text-transform:none;letter-spacing:0}
.callout{border-radius:8px;padding:10px 14px;margin-bottom:16px;font-size:13px}
.callout.bad{background:#fef2f2;border:1px solid #fecaca;color:#7f1d1d}
.callout.warn{background:#fffbeb;border:1px solid #fde68a;color:#78350f}
.callout ul{margin:6px 0 0;padding-left:18px}
table{width:100%;border-collapse:collapse}
th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.5px;color:var(--muted);font-weight:600;padding:8px 10px;background:#f8fafc;border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:10px 10px;border-bottom:1px solid var(--line);vertical-align:top}
tr:last-child td{border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.name{font-weight:600;font-size:15px;display:flex;align-items:center;gap:8px}
.dot{width:9px;height:9px;border-radius:50%;display:inline-block;flex:none}
.dot.ok{background:var(--ok)}.dot.warn{background:var(--warn)}.dot.bad{background:var(--bad)}
.small{font-size:12px;color:var(--muted)}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.kind{display:inline-block;font-size:11px;font-weight:600;padding:1px 7px;border-radius:4px;background:#eef2ff;color:#3730a3;text-transform:uppercase;letter-spacing:.4px}
.chips{display:grid;grid-template-columns:auto auto;gap:4px;justify-content:start}
.chip{font-size:11px;padding:1px 6px;border-radius:4px;background:#f1f5f9;color:#334155;white-space:nowrap;font-variant-numeric:tabular-nums}
.chip.delivering{background:#dbeafe;color:#1e40af}.chip.loaded{background:#dcfce7;color:#166534}.chip.skipped{background:#fee2e2;color:#991b1b}
.zero{color:#cbd5e1}
.chips .chip.zero{background:#f8fafc;color:#cbd5e1}
.src{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:180px}
.tiles{display:grid;grid-template-columns:repeat(4,1fr);gap:16px;margin-bottom:20px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;box-shadow:0 1px 2px rgba(15,23,42,.04)}
.tile .label{font-size:11px;text-transform:uppercase;letter-spacing:.6px;color:var(--muted);font-weight:600}
.tile .value{font-size:24px;font-weight:650;margin-top:2px;font-variant-numeric:tabular-nums}
.tile .value.err{color:var(--bad)}
.tile .small{margin-top:2px}
.err{color:var(--bad)}
.lasterr{min-width:150px;max-width:240px;font-size:12px;word-break:break-word}
.retrying{display:inline-block;font-size:10px;font-weight:700;color:#fff;background:var(--warn);border-radius:3px;padding:0 5px;margin-right:4px;text-transform:uppercase}
.chart{display:block}
.fname{word-break:break-all;max-width:380px}
.raw{display:block;margin-top:3px;color:var(--muted);word-break:break-all;max-width:520px}
.code{font-weight:600;font-variant-numeric:tabular-nums}
.empty{padding:18px 16px;color:var(--muted)}
"#;

/// A pipeline's health at a glance: `bad` when a batch is failing or a readiness check fails,
/// `warn` when it had errors in the last hour, an after-load action was given up, or its oldest
/// object has waited much longer than the buffer interval, `ok` otherwise.
pub fn pipeline_health(p: &PipelineView, readiness_failed: bool) -> &'static str {
    let stale_after = (p.interval_s * 2 + 60) as f64;
    if readiness_failed || p.last_error.as_ref().is_some_and(|e| e.retrying) {
        "bad"
    } else if p.status.errors_last_hour > 0
        || p.status.after_load_failed > 0
        || p.status.freshness_s.is_some_and(|f| f > stale_after)
    {
        "warn"
    } else {
        "ok"
    }
}

fn header(out: &mut String, d: &PageData) {
    let ready = d.readiness.ready;
    let failed = d.readiness.failures().count();
    let _ = write!(
        out,
        r#"<header><h1>stageload</h1><span class="sub">{} pipeline{} · updated {} · refreshes every 10s</span><nav><span class="pill {}">{}</span><a href="/readyz">/readyz</a><a href="/metrics">/metrics</a><a href="/healthz">/healthz</a></nav></header>"#,
        d.pipelines.len(),
        if d.pipelines.len() == 1 { "" } else { "s" },
        escape(&time(d.now)),
        if ready { "ok" } else { "bad" },
        if ready {
            "● ready".to_string()
        } else {
            format!("● not ready · {failed} failing")
        },
    );
}

fn callouts(out: &mut String, d: &PageData) {
    if !d.readiness.ready {
        out.push_str(r#"<div class="callout bad"><strong>Not ready.</strong> Failing checks:<ul>"#);
        for c in d.readiness.failures() {
            let _ = write!(
                out,
                "<li><strong>{}</strong>{} <span class=\"mono\">{}</span>: {}</li>",
                escape(c.check.name()),
                c.pipeline
                    .as_deref()
                    .map(|p| format!(" · {}", escape(p)))
                    .unwrap_or_default(),
                escape(&c.target),
                escape(&truncate(c.error.as_deref().unwrap_or(""), 300)),
            );
        }
        out.push_str("</ul></div>");
    }
    if !d.problems.is_empty() {
        out.push_str(r#"<div class="callout warn"><strong>Some figures are missing:</strong><ul>"#);
        for p in &d.problems {
            let _ = write!(out, "<li>{}</li>", escape(&truncate(p, 300)));
        }
        out.push_str("</ul></div>");
    }
}

fn tile(out: &mut String, label: &str, value: &str, class: &str, note: &str) {
    let _ = write!(
        out,
        r#"<div class="tile"><div class="label">{}</div><div class="value {class}">{}</div><div class="small">{}</div></div>"#,
        escape(label),
        escape(value),
        escape(note)
    );
}

/// Totals over every pipeline, as four tiles above the table.
fn tiles(out: &mut String, d: &PageData) {
    let delivered: i64 = d.pipelines.iter().flat_map(|p| &p.throughput).sum();
    let pending: i64 = d.pipelines.iter().map(|p| p.status.pending_objects).sum();
    let pending_bytes: i64 = d.pipelines.iter().map(|p| p.status.pending_bytes).sum();
    let errors: i64 = d.pipelines.iter().map(|p| p.status.errors_last_hour).sum();
    let oldest = d
        .pipelines
        .iter()
        .filter_map(|p| p.status.freshness_s.map(|f| (f, &p.name)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let failing = d
        .pipelines
        .iter()
        .filter(|p| p.last_error.as_ref().is_some_and(|e| e.retrying))
        .count();
    out.push_str(r#"<div class="tiles">"#);
    tile(
        out,
        "Delivered, last hour",
        &count(delivered),
        "",
        "records",
    );
    tile(
        out,
        "Pending",
        &count(pending),
        "",
        &format!("objects · {}", bytes(pending_bytes)),
    );
    match oldest {
        Some((f, name)) => tile(
            out,
            "Oldest waiting",
            &duration(f),
            "",
            &format!("in {name}"),
        ),
        None => tile(out, "Oldest waiting", "–", "", "nothing waiting"),
    }
    tile(
        out,
        "Errors, last hour",
        &count(errors),
        if errors > 0 { "err" } else { "" },
        &if failing > 0 {
            format!("{failing} pipeline(s) retrying a batch")
        } else {
            "load_errors rows".to_string()
        },
    );
    out.push_str("</div>");
}

fn chip(state: &str, n: i64) -> String {
    let class = if n == 0 { "chip zero" } else { "chip" };
    format!(
        r#"<span class="{class} {state}">{state} {}</span>"#,
        count(n)
    )
}

fn pipeline_row(out: &mut String, p: &PipelineView, d: &PageData) {
    let s = &p.status;
    let readiness_failed = d
        .readiness
        .failures()
        .any(|c| c.pipeline.as_deref() == Some(p.name.as_str()));
    let health = pipeline_health(p, readiness_failed);
    let freshness = match s.freshness_s {
        Some(f) => format!(
            r#"{}<div class="small">oldest waiting</div>"#,
            escape(&duration(f))
        ),
        None => r#"<span class="small">nothing waiting</span>"#.to_string(),
    };
    let last_loaded = match s.last_loaded_at {
        Some(t) => format!(
            r#"<span title="{}">{}</span>"#,
            escape(&time(t)),
            escape(&ago(t, d.now))
        ),
        None => r#"<span class="small">never</span>"#.to_string(),
    };
    let mut errors = if s.errors_last_hour > 0 {
        format!(r#"<span class="err">{}</span>"#, count(s.errors_last_hour))
    } else {
        r#"<span class="zero">0</span>"#.to_string()
    };
    if s.after_load_failed > 0 {
        let _ = write!(
            errors,
            r#"<div class="small err">{} after-load failed</div>"#,
            count(s.after_load_failed)
        );
    }
    if s.after_load_pending > 0 {
        let _ = write!(
            errors,
            r#"<div class="small">{} after-load pending</div>"#,
            count(s.after_load_pending)
        );
    }
    let total: i64 = p.throughput.iter().sum();
    let last_error = match &p.last_error {
        Some(e) => format!(
            r#"<div class="lasterr" title="{}">{}{}<div class="small">{}</div></div>"#,
            escape(&truncate(&e.text, 2000)),
            if e.retrying {
                r#"<span class="retrying">retrying</span>"#
            } else {
                ""
            },
            escape(&truncate(&e.text, 140)),
            e.at.map(|t| escape(&ago(t, d.now))).unwrap_or_default(),
        ),
        None => r#"<span class="small">none</span>"#.to_string(),
    };
    let _ = write!(
        out,
        r#"<tr><td><div class="name"><span class="dot {health}" title="{health}"></span>{}</div><div class="small mono src" title="{}">{}</div></td><td><span class="kind">{}</span><div class="small mono">{}</div></td><td class="num">{freshness}</td><td class="num">{}<div class="small">{}</div></td><td><div class="chips">{}{}{}{}</div></td><td class="num">{last_loaded}</td><td class="num">{errors}</td><td>{}<div class="small">{} records</div></td><td>{last_error}</td></tr>"#,
        escape(&p.name),
        escape(&p.source),
        escape(&p.source),
        escape(&p.kind),
        escape(&truncate(&p.target, 60)),
        count(s.pending_objects),
        escape(&bytes(s.pending_bytes)),
        chip("sealed", s.batches_sealed),
        chip("delivering", s.batches_delivering),
        chip("loaded", s.batches_loaded),
        chip("skipped", s.batches_skipped),
        bar_chart(&p.throughput, THROUGHPUT_BUCKET_S, ChartStyle::default()),
        count(total),
    );
}

fn pipelines(out: &mut String, d: &PageData) {
    let _ = write!(
        out,
        r#"<section class="card"><h2>Pipelines <span class="count">{}</span></h2>"#,
        d.pipelines.len()
    );
    if d.pipelines.is_empty() {
        out.push_str(r#"<div class="empty">No pipelines are configured.</div></section>"#);
        return;
    }
    out.push_str(r#"<table><thead><tr><th>Pipeline</th><th>Destination</th><th class="num">Freshness</th><th class="num">Pending</th><th>Batches</th><th class="num">Last delivery</th><th class="num">Errors 1h</th><th>Throughput 1h</th><th>Last error</th></tr></thead><tbody>"#);
    for p in &d.pipelines {
        pipeline_row(out, p, d);
    }
    out.push_str("</tbody></table></section>");
}

fn recent_errors(out: &mut String, d: &PageData) {
    let _ = write!(
        out,
        r#"<section class="card"><h2>Recent errors <span class="count">newest {}</span></h2>"#,
        d.errors.len()
    );
    if d.errors.is_empty() {
        out.push_str(r#"<div class="empty">No load errors recorded.</div></section>"#);
        return;
    }
    out.push_str(r#"<table><thead><tr><th>Time</th><th>Pipeline</th><th class="num">Batch</th><th>File</th><th class="num">Line</th><th>Column</th><th class="num">Code</th><th>Reason</th></tr></thead><tbody>"#);
    for e in &d.errors {
        let raw = if e.raw_line.is_empty() {
            String::new()
        } else {
            format!(
                r#"<span class="raw mono">{}</span>"#,
                escape(&truncate(&e.raw_line, 160))
            )
        };
        let _ = write!(
            out,
            r#"<tr><td class="mono"><span title="{}">{}</span><div class="small">{}</div></td><td>{}</td><td class="num">{}</td><td class="mono fname">{}</td><td class="num">{}</td><td class="mono">{}</td><td class="num code">{}</td><td>{}{raw}</td></tr>"#,
            escape(&time(e.recorded_at)),
            escape(&e.recorded_at.format("%H:%M:%S").to_string()),
            escape(&ago(e.recorded_at, d.now)),
            escape(&e.pipeline),
            e.batch_id.map(|b| b.to_string()).unwrap_or_default(),
            escape(&e.filename),
            if e.line_number > 0 {
                count(e.line_number)
            } else {
                String::new()
            },
            escape(&e.colname),
            e.err_code,
            escape(&truncate(&e.err_reason, 300)),
        );
    }
    out.push_str("</tbody></table></section>");
}

/// The whole page.
pub fn page(d: &PageData) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><meta name="viewport" content="width=device-width, initial-scale=1"><title>stageload{}</title><style>{CSS}</style></head><body>"#,
        if d.readiness.ready {
            ""
        } else {
            " (not ready)"
        }
    );
    header(&mut out, d);
    out.push_str("<main>");
    callouts(&mut out, d);
    tiles(&mut out, d);
    pipelines(&mut out, d);
    recent_errors(&mut out, d);
    out.push_str("</main></body></html>\n");
    out
}

#[cfg(test)]
mod tests;
