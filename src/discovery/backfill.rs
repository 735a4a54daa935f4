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
use crate::control::ledger::BackfillState;
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
    pub since: Option<Bound>,
    /// Only objects last modified before this.
    pub until: Option<Bound>,
    /// Objects recorded per second at most.
    pub rate: u32,
    /// Keys per listing page.
    pub page_keys: i32,
    /// Stage objects in range again even if they were loaded or skipped before (`--reload`).
    pub reload: bool,
}

/// A `--since` / `--until` value: the time it names, and what was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// The time.
    pub at: DateTime<Utc>,
    /// An age (`36h`, `7d`), as written (trimmed); None for a date or an instant.
    pub age: Option<String>,
}

impl Bound {
    /// What a run is keyed by: an age as written, since it names a later time on every run
    /// (keyed by that time, an interrupted run never resumed); a date or instant by its time.
    fn key(&self) -> String {
        self.age.clone().unwrap_or_else(|| self.at.to_rfc3339())
    }
}

impl Range {
    /// The key a run's progress is saved under: the same arguments resume the same run.
    fn key(&self) -> String {
        let t = |b: &Option<Bound>| b.as_ref().map(Bound::key).unwrap_or_default();
        let reload = if self.reload { "|reload" } else { "" };
        format!(
            "{}|{}|{}{reload}",
            self.prefix,
            t(&self.since),
            t(&self.until)
        )
    }

    fn wants(&self, modified: Option<DateTime<Utc>>) -> bool {
        let Some(m) = modified else {
            return self.since.is_none() && self.until.is_none();
        };
        self.since.as_ref().is_none_or(|s| m >= s.at)
            && self.until.as_ref().is_none_or(|u| m < u.at)
    }

    /// This range with the times an interrupted run began with: an age names a later time
    /// now, and the resumed run must cover the same range.
    fn resumed_with(mut self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Range {
        for (bound, at) in [(&mut self.since, since), (&mut self.until, until)] {
            if let (Some(b), Some(at)) = (bound.as_mut(), at) {
                b.at = at;
            }
        }
        self
    }
}

/// A time for `--since` / `--until`: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`,
/// midnight UTC), or an age (`36h`, `7d`) before now.
pub fn parse_time(s: &str) -> Result<Bound, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Bound {
            at: t.with_timezone(&Utc),
            age: None,
        });
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(Bound {
            at: d.and_hms_opt(0, 0, 0).expect("midnight").and_utc(),
            age: None,
        });
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
    Ok(Bound {
        at: Utc::now() - chrono::Duration::hours(hours),
        age: Some(s.to_string()),
    })
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
    let (range, mut start_after, mut p) = match resumed {
        Some(r) => {
            let last = r.last_key.unwrap_or_default();
            tracing::warn!(pipeline = %pipeline.name, after = %last, objects = r.objects, "resuming an interrupted backfill");
            let p = Progress {
                objects: r.objects,
                recorded: r.recorded,
                bytes: r.bytes,
            };
            (range.clone().resumed_with(r.since, r.until), Some(last), p)
        }
        None => (range.clone(), None, Progress::default()),
    };
    // A first pass counts what is left in range, for the ETA (listing is cheap next to
    // loading); a resumed run does not list again what it has done.
    let mut total = p.objects;
    let mut token = None;
    loop {
        let (page, next) = s3
            .list_page_of(
                bucket,
                &list_prefix,
                start_after.as_deref().filter(|_| token.is_none()),
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
                start_after.as_deref().filter(|_| token.is_none()),
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
                pipeline.source.key_time_zone,
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
        let entries = discoverer.with_etags_of(entries, range.reload).await?;
        p.recorded += if range.reload {
            control
                .reload_objects(&pipeline.name, bucket, &entries)
                .await?
        } else {
            control
                .record_objects(&pipeline.name, bucket, &entries)
                .await?
        } as i64;
        let finished = next.is_none();
        let state = BackfillState {
            last_key: last.clone().or_else(|| start_after.clone()),
            objects: p.objects,
            recorded: p.recorded,
            bytes: p.bytes,
            since: range.since.as_ref().map(|b| b.at),
            until: range.until.as_ref().map(|b| b.at),
        };
        control
            .save_backfill(&pipeline.name, &key, &state, finished)
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

    fn at(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap().at
    }

    #[test]
    fn times_parse_as_dates_instants_and_ages() {
        assert_eq!(at("2026-11-01").to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(
            at("2026-11-01T05:00:00+01:00").to_rfc3339(),
            "2026-11-01T04:00:00+00:00"
        );
        let ago = Utc::now() - at("2d");
        assert!((ago.num_hours() - 48).abs() <= 1);
        assert_eq!(parse_time(" 2d ").unwrap().age.as_deref(), Some("2d"));
        assert_eq!(parse_time("2026-11-01").unwrap().age, None);
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
        assert!(r.wants(Some(at("2026-01-15"))));
        assert!(!r.wants(Some(at("2026-02-01"))));
        assert!(!r.wants(Some(at("2025-12-31"))));
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

    #[test]
    fn an_age_keys_the_run_as_written_and_resumes_with_its_first_times() {
        let first = Range {
            prefix: String::new(),
            since: Some(parse_time("30d").unwrap()),
            until: None,
            rate: 10,
            page_keys: 1000,
            reload: false,
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        let again = Range {
            since: Some(parse_time("30d").unwrap()),
            ..first.clone()
        };
        assert_eq!(first.key(), "|30d|");
        assert_eq!(first.key(), again.key(), "the same command, the same run");
        let began = first.since.as_ref().unwrap().at;
        let resumed = again.resumed_with(Some(began), None);
        assert_eq!(resumed.since.unwrap().at, began);
        // A date keys by its time, as before, so runs saved by older versions resume.
        let dated = Range {
            since: Some(parse_time("2026-01-01").unwrap()),
            ..first
        };
        assert_eq!(dated.key(), "|2026-01-01T00:00:00+00:00|");
    }
}
