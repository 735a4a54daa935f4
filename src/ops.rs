//! The operator commands: `errors`, `batches`, `replay`, `ignore`, `status`. Human tables by
//! default, `--json` for scripts. They read and write the control database only; a running
//! daemon picks replayed batches up like any sealed batch.

use crate::config::Config;
use crate::control::status::{BatchRow, ErrorFilter, ErrorRow, PipelineStatus};
use crate::control::Control;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

/// `stageload errors`.
#[derive(Debug, Args)]
pub struct ErrorsArgs {
    /// `show ID` prints one row whole, raw line included.
    #[command(subcommand)]
    pub show: Option<ShowCommand>,
    /// Only this pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only rows recorded within this long (`30m`, `1h`, `2d`).
    #[arg(long, value_parser = parse_age)]
    pub since: Option<chrono::Duration>,
    /// Only this batch.
    #[arg(long)]
    pub batch: Option<i64>,
    /// Only this err_code.
    #[arg(long)]
    pub code: Option<i32>,
    /// At most this many rows.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `show ID`.
#[derive(Debug, Subcommand)]
pub enum ShowCommand {
    /// Print one row whole.
    Show {
        /// Its id.
        id: i64,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `stageload batches`.
#[derive(Debug, Args)]
pub struct BatchesArgs {
    /// `show ID` prints one batch with its objects and errors.
    #[command(subcommand)]
    pub show: Option<ShowCommand>,
    /// Only this pipeline.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Only this state: sealed, delivering, loaded, skipped.
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `stageload replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Skipped batches to replay.
    pub batch_ids: Vec<i64>,
    /// Replay this pipeline's skipped batches ...
    #[arg(long, requires = "since")]
    pub pipeline: Option<String>,
    /// ... settled within this long (`24h`).
    #[arg(long, value_parser = parse_age)]
    pub since: Option<chrono::Duration>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Parses `90s`, `30m`, `1h`, `2d`, `1w`.
pub fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 1h or 2d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{s:?}: unit must be s, m, h, d or w")),
    };
    Ok(chrono::Duration::seconds(n * secs))
}

/// A duration as `parse_age` reads it: `90s`, `30m`, `1h`, `2d`, in its largest whole unit.
fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    [(604_800, "w"), (86_400, "d"), (3600, "h"), (60, "m")]
        .iter()
        .find(|(unit, _)| s != 0 && s % unit == 0)
        .map_or_else(|| format!("{s}s"), |(unit, u)| format!("{}{u}", s / unit))
}

/// Prints rows as an aligned text table.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut width: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    line(width.iter().map(|w| "-".repeat(*w)).collect());
    for r in rows {
        line(r);
    }
}

fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}…", one_line.chars().take(n - 1).collect::<String>())
    }
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `stageload errors [show ID]`.
pub async fn errors(control: &Control, a: ErrorsArgs) -> anyhow::Result<()> {
    if let Some(ShowCommand::Show { id, json }) = a.show {
        let Some(e) = control.error(id).await? else {
            anyhow::bail!("no load_errors row with id {id}");
        };
        return if json || a.json {
            print_json(&e)
        } else {
            show_error(&e);
            Ok(())
        };
    }
    let filter = ErrorFilter {
        pipeline: a.pipeline,
        since: a.since.map(|d| Utc::now() - d),
        batch_id: a.batch,
        err_code: a.code,
        limit: a.limit,
    };
    let rows = control.errors(&filter).await?;
    if a.json {
        return print_json(&rows);
    }
    table(
        &[
            "id",
            "recorded",
            "pipeline",
            "batch",
            "filename",
            "line",
            "column",
            "code",
            "reason",
            "resolution",
        ],
        rows.iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    time(Some(e.recorded_at)),
                    e.pipeline.clone(),
                    e.batch_id.map(|b| b.to_string()).unwrap_or_default(),
                    clip(&e.filename, 60),
                    e.line_number.to_string(),
                    e.colname.clone(),
                    e.err_code.to_string(),
                    clip(&e.err_reason, 60),
                    e.resolution.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    Ok(())
}

fn show_error(e: &ErrorRow) {
    let fields: [(&str, String); 20] = [
        ("id", e.id.to_string()),
        ("recorded_at", e.recorded_at.to_rfc3339()),
        ("pipeline", e.pipeline.clone()),
        ("destination", e.destination.clone()),
        ("target", e.target.clone()),
        (
            "batch_id",
            e.batch_id.map(|b| b.to_string()).unwrap_or_default(),
        ),
        ("query", e.query.to_string()),
        ("filename", e.filename.clone()),
        ("line_number", e.line_number.to_string()),
        ("colname", e.colname.clone()),
        ("type", e.r#type.clone()),
        ("col_length", e.col_length.clone()),
        ("position", e.position.to_string()),
        ("err_code", e.err_code.to_string()),
        ("err_reason", e.err_reason.clone()),
        ("attempts", e.attempts.to_string()),
        ("first_attempt_at", time(e.first_attempt_at)),
        (
            "resolution",
            e.resolution.clone().unwrap_or_else(|| "open".into()),
        ),
        ("raw_field_value", e.raw_field_value.clone()),
        ("raw_line", e.raw_line.clone()),
    ];
    for (k, v) in fields {
        println!("{k:>16}: {v}");
    }
    if let Some(r) = e.record_ordinal {
        println!("{:>16}: {r}", "record_ordinal");
    }
    if let Some(r) = e.replay_batch_id {
        println!("{:>16}: {r}", "replay_batch_id");
    }
}

/// `stageload batches [show ID]`.
pub async fn batches(control: &Control, a: BatchesArgs) -> anyhow::Result<()> {
    if let Some(ShowCommand::Show { id, json }) = a.show {
        let Some(b) = control.batch(id).await? else {
            anyhow::bail!("no batch with id {id}");
        };
        let objects = control.objects_of(id).await?;
        let errors = control
            .errors(&ErrorFilter {
                batch_id: Some(id),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        if json || a.json {
            #[derive(Serialize)]
            struct Whole<'a> {
                batch: &'a BatchRow,
                objects: Vec<serde_json::Value>,
                errors: &'a [ErrorRow],
            }
            let objects = objects
                .iter()
                .map(|o| serde_json::json!({"id": o.id, "url": o.url(), "etag": o.etag, "size": o.size, "arrival_time": o.arrival_time}))
                .collect();
            return print_json(&Whole {
                batch: &b,
                objects,
                errors: &errors,
            });
        }
        batch_table(std::slice::from_ref(&b));
        println!("\nlast error: {}", b.last_error.as_deref().unwrap_or("-"));
        println!(
            "first attempt: {}  last attempt: {}  settled: {}",
            time(b.first_attempt_at),
            time(b.last_attempt_at),
            time(b.settled_at)
        );
        println!("\nobjects:");
        table(
            &["id", "url", "size", "arrival"],
            objects
                .iter()
                .map(|o| {
                    vec![
                        o.id.to_string(),
                        o.url(),
                        o.size.to_string(),
                        time(Some(o.arrival_time)),
                    ]
                })
                .collect(),
        );
        println!("\nerrors: {}", errors.len());
        for e in errors.iter().take(20) {
            println!(
                "  #{} {} line {} code {}: {}",
                e.id,
                e.filename,
                e.line_number,
                e.err_code,
                clip(&e.err_reason, 100)
            );
        }
        return Ok(());
    }
    let rows = control
        .batches(a.pipeline.as_deref(), a.state.as_deref(), a.limit)
        .await?;
    if a.json {
        return print_json(&rows);
    }
    batch_table(&rows);
    Ok(())
}

fn batch_table(rows: &[BatchRow]) {
    table(
        &[
            "id",
            "pipeline",
            "state",
            "reason",
            "objects",
            "bytes",
            "attempts",
            "delivered",
            "rejected",
            "sealed",
            "settled",
            "replay_of",
        ],
        rows.iter()
            .map(|b| {
                vec![
                    b.id.to_string(),
                    b.pipeline.clone(),
                    b.state.clone(),
                    b.seal_reason.clone(),
                    b.object_count.to_string(),
                    b.total_bytes.to_string(),
                    b.attempts.to_string(),
                    b.records_delivered.to_string(),
                    b.records_rejected.to_string(),
                    time(Some(b.sealed_at)),
                    time(b.settled_at),
                    b.replay_of.map(|r| r.to_string()).unwrap_or_default(),
                ]
            })
            .collect(),
    );
}

/// `stageload replay`.
pub async fn replay(control: &Control, a: ReplayArgs) -> anyhow::Result<()> {
    let mut ids = a.batch_ids.clone();
    if let (Some(p), Some(since)) = (&a.pipeline, a.since) {
        ids.extend(control.skipped_batches(p, Utc::now() - since).await?);
        // A scheduled replay that finds everything replayed already has done its job.
        if ids.is_empty() {
            if a.json {
                return print_json(&Vec::<serde_json::Value>::new());
            }
            println!(
                "nothing to replay: pipeline {p} has no skipped batch settled in the last {} that is not replayed already",
                age(since)
            );
            return Ok(());
        }
    }
    if ids.is_empty() {
        anyhow::bail!("nothing to replay: give batch ids, or --pipeline P --since 24h");
    }
    let done = control.replay(&ids).await?;
    if a.json {
        let pairs: Vec<_> = done
            .iter()
            .map(|(old, new)| serde_json::json!({"batch": old, "replay_batch": new}))
            .collect();
        return print_json(&pairs);
    }
    for (old, new) in &done {
        println!("batch {old} replayed as batch {new}");
    }
    for id in ids.iter().filter(|id| !done.iter().any(|(o, _)| o == *id)) {
        println!(
            "batch {id} not replayed: not skipped, already replayed, or no skipped objects left"
        );
    }
    Ok(())
}

/// `stageload ignore ERROR_ID`.
pub async fn ignore(control: &Control, id: i64) -> anyhow::Result<()> {
    if control.ignore_error(id).await? {
        println!("load_errors row {id} marked ignored");
        Ok(())
    } else {
        anyhow::bail!("no open load_errors row with id {id}")
    }
}

/// `stageload status`.
pub async fn status(control: &Control, config: &Config, json: bool) -> anyhow::Result<()> {
    let names: Vec<String> = config.pipelines.iter().map(|p| p.name.clone()).collect();
    let rows: Vec<PipelineStatus> = control.pipeline_status(&names).await?;
    if json {
        return print_json(&rows);
    }
    table(
        &[
            "pipeline",
            "pending",
            "pending_bytes",
            "in_batches",
            "freshness",
            "sealed",
            "delivering",
            "loaded",
            "skipped",
            "last_loaded",
            "errors_1h",
            "after_load",
        ],
        rows.iter()
            .map(|s| {
                vec![
                    s.pipeline.clone(),
                    s.pending_objects.to_string(),
                    s.pending_bytes.to_string(),
                    s.batched_objects.to_string(),
                    s.freshness_s
                        .map(|f| format!("{f:.0}s"))
                        .unwrap_or_else(|| "-".into()),
                    s.batches_sealed.to_string(),
                    s.batches_delivering.to_string(),
                    s.batches_loaded.to_string(),
                    s.batches_skipped.to_string(),
                    time(s.last_loaded_at),
                    s.errors_last_hour.to_string(),
                    match (s.after_load_pending, s.after_load_failed) {
                        (0, 0) => "-".into(),
                        (p, 0) => format!("{p} pending"),
                        (p, f) => format!("{p} pending, {f} failed"),
                    },
                ]
            })
            .collect(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("90s").unwrap().num_seconds(), 90);
        assert_eq!(parse_age("24h").unwrap().num_seconds(), 86_400);
        assert_eq!(parse_age("2d").unwrap().num_seconds(), 172_800);
        assert!(parse_age("h").is_err());
        assert!(parse_age("3y").is_err());
        for a in ["90s", "30m", "1h", "36h", "2d", "1w", "0s"] {
            assert_eq!(age(parse_age(a).unwrap()), a);
        }
    }

    #[test]
    fn clip_keeps_short_text_and_marks_cuts() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
