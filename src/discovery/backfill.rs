//! `stageload backfill`: lists a range of objects already under a pipeline's prefix into the
//! same ledger discovery uses, so the running daemon seals and delivers them like any other.
//!
//! Recording is idempotent (the ledger is unique on pipeline, bucket, key and ETag, and what
//! retention removed keeps its digest), so a backfill never stages an object twice, whatever
//! discovery already found, unless `--reload` asks for exactly that. It runs at a bounded
//! rate so live loading keeps priority, saves where it got to after every page (an interrupted
//! run resumes after the last key it recorded), and reports progress: a one-line bar with
//! objects, bytes, rate and ETA on a terminal, JSON lines otherwise.

use super::listing::{ledger_entry, Discoverer};
use crate::config::PipelineConfig;
use crate::control::Control;
use crate::source::s3::S3;
use chrono::{DateTime, NaiveDate, Utc};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// What to backfill.
#[derive(Debug, Clone)]
pub struct Range {
    /// Under the pipeline's prefix: this sub-prefix (appended), or the whole prefix.
    pub prefix: String,
    /// Only objects last modified at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only objects last modified before this.
    pub until: Option<DateTime<Utc>>,
    /// Objects recorded per second at most.
    pub rate: u32,
    /// Keys per listing page.
    pub page_keys: i32,
    /// Stage objects in range again even if they were loaded or skipped before (`--reload`).
    pub reload: bool,
}

impl Range {
    /// The key a run's progress is saved under: the same arguments resume the same run.
    fn key(&self) -> String {
        let t = |d: Option<DateTime<Utc>>| d.map(|d| d.to_rfc3339()).unwrap_or_default();
        let reload = if self.reload { "|reload" } else { "" };
        format!("{}|{}|{}{reload}", self.prefix, t(self.since), t(self.until))
    }

    fn wants(&self, modified: Option<DateTime<Utc>>) -> bool {
        let Some(m) = modified else {
            return self.since.is_none() && self.until.is_none();
        };
        self.since.is_none_or(|s| m >= s) && self.until.is_none_or(|u| m < u)
    }
}

/// A time for `--since` / `--until`: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`,
/// midnight UTC), or an age (`36h`, `7d`) before now.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| {
        format!("{s:?} is not a time: use 2026-11-01, 2026-11-01T00:00:00Z, 36h or 7d")
    })?;
    let hours = match unit {
        "h" => n,
        "d" => n * 24,
        _ => {
            return Err(format!(
                "{s:?} is not a time: use 2026-11-01, 2026-11-01T00:00:00Z, 36h or 7d"
            ))
        }
    };
    Ok(Utc::now() - chrono::Duration::hours(hours))
}

/// Counts so far.
#[derive(Debug, Default, Clone, Copy)]
pub struct Progress {
    /// Objects in range listed so far.
    pub objects: i64,
    /// Of those, newly recorded in the ledger (the rest were known already).
    pub recorded: i64,
    /// Bytes of the objects in range.
    pub bytes: i64,
}

/// Prints progress: a bar on a terminal, JSON lines otherwise.
struct Reporter {
    pipeline: String,
    total: Option<i64>,
    started: Instant,
    at_start: i64,
    tty: bool,
}

impl Reporter {
    fn report(&self, p: Progress, done: bool) {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (p.objects - self.at_start) as f64 / secs;
        let eta = self
            .total
            .filter(|_| rate > 0.0)
            .map(|t| ((t - p.objects).max(0) as f64 / rate).round() as i64);
        if self.tty {
            let total = self.total.map_or("?".into(), |t| t.to_string());
            let width = 30usize;
            let filled = self
                .total
                .filter(|t| *t > 0)
                .map_or(0, |t| (p.objects as usize * width / t as usize).min(width));
            let eta = eta.map_or("?".into(), |e| format!("{e}s"));
            eprint!(
                "\r{} [{}{}] {}/{} objects, {:.1} MiB, {:.0} objects/s, ETA {}{}",
                self.pipeline,
                "#".repeat(filled),
                " ".repeat(width - filled),
                p.objects,
                total,
                p.bytes as f64 / 1_048_576.0,
                rate,
                eta,
                if done { "\n" } else { "" }
            );
            let _ = std::io::stderr().flush();
        } else {
            let line = serde_json::json!({
                "pipeline": self.pipeline,
                "objects": p.objects,
                "total": self.total,
                "recorded": p.recorded,
                "bytes": p.bytes,
                "objects_per_s": (rate * 10.0).round() / 10.0,
                "eta_s": eta,
                "done": done,
            });
            println!("{line}");
        }
    }
}

/// Lists `range` under the pipeline's prefix into the ledger. Returns the final counts.
pub async fn run(
    pipeline: &PipelineConfig,
    s3: &S3,
    control: &Control,
    range: &Range,
    own_prefixes: Vec<String>,
) -> anyhow::Result<Progress> {
    let bucket = &pipeline.source.bucket;
    let list_prefix = format!("{}{}", pipeline.source.prefix, range.prefix);
    let key = range.key();
    let resumed = control.backfill_progress(&pipeline.name, &key).await?;
    // A first pass counts what is in range, for the ETA (listing is cheap next to loading).
    let mut total = 0i64;
    let mut token = None;
    loop {
        let (page, next) = s3
            .list_page_of(
                bucket,
                &list_prefix,
                None,
                token.as_deref(),
                Some(range.page_keys),
            )
            .await?;
        total += page.iter().filter(|o| range.wants(o.last_modified)).count() as i64;
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let (mut start_after, mut p) = match resumed {
        Some((last, objects, recorded, bytes)) => {
            tracing::warn!(pipeline = %pipeline.name, after = %last, objects, "resuming an interrupted backfill");
            (
                Some(last),
                Progress {
                    objects,
                    recorded,
                    bytes,
                },
            )
        }
        None => (None, Progress::default()),
    };
    let reporter = Reporter {
        pipeline: pipeline.name.clone(),
        total: Some(total),
        started: Instant::now(),
        at_start: p.objects,
        tty: std::io::stderr().is_terminal(),
    };
    let discoverer = Discoverer::new(
        pipeline.clone(),
        s3.clone(),
        control.clone(),
        own_prefixes.clone(),
    );
    let per_object = Duration::from_secs_f64(1.0 / f64::from(range.rate.max(1)));
    let mut token: Option<String> = None;
    loop {
        let page_started = Instant::now();
        let (page, next) = s3
            .list_page_of(
                bucket,
                &list_prefix,
                if token.is_none() {
                    start_after.as_deref()
                } else {
                    None
                },
                token.as_deref(),
                Some(range.page_keys),
            )
            .await?;
        let last = page.last().map(|o| o.key.clone());
        let mut entries = Vec::new();
        for o in page {
            if !range.wants(o.last_modified) {
                continue;
            }
            let size = o.size;
            let Some((entry, _)) = ledger_entry(
                &pipeline.source.prefix,
                &own_prefixes,
                o.key,
                o.etag,
                o.size,
                o.last_modified,
            ) else {
                continue;
            };
            p.objects += 1;
            p.bytes += size;
            entries.push(entry);
        }
        let n = entries.len();
        let entries = discoverer.with_etags(entries).await?;
        p.recorded += if range.reload {
            control.reload_objects(&pipeline.name, bucket, &entries).await?
        } else {
            control.record_objects(&pipeline.name, bucket, &entries).await?
        } as i64;
        let finished = next.is_none();
        control
            .save_backfill(
                &pipeline.name,
                &key,
                last.as_deref().or(start_after.as_deref()),
                p.objects,
                p.recorded,
                p.bytes,
                finished,
            )
            .await?;
        reporter.report(p, finished);
        if finished {
            return Ok(p);
        }
        // The bounded rate: live discovery and delivery share the control database and S3.
        let budget = per_object * n as u32;
        if let Some(wait) = budget.checked_sub(page_started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        start_after = last;
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_dates_instants_and_ages() {
        assert_eq!(
            parse_time("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2026-11-01T05:00:00+01:00")
                .unwrap()
                .to_rfc3339(),
            "2026-11-01T04:00:00+00:00"
        );
        let ago = Utc::now() - parse_time("2d").unwrap();
        assert!((ago.num_hours() - 48).abs() <= 1);
        assert!(parse_time("soon").is_err());
        assert!(parse_time("3w").is_err());
    }

    #[test]
    fn the_range_filters_by_last_modified() {
        let r = Range {
            prefix: String::new(),
            since: Some(parse_time("2026-01-01").unwrap()),
            until: Some(parse_time("2026-02-01").unwrap()),
            rate: 10,
            page_keys: 1000,
            reload: false,
        };
        assert!(r.wants(Some(parse_time("2026-01-15").unwrap())));
        assert!(!r.wants(Some(parse_time("2026-02-01").unwrap())));
        assert!(!r.wants(Some(parse_time("2025-12-31").unwrap())));
        assert!(!r.wants(None));
        for other in [
            Range {
                prefix: "x/".into(),
                ..r.clone()
            },
            Range {
                reload: true,
                ..r.clone()
            },
        ] {
            assert_ne!(r.key(), other.key());
        }
    }
}
