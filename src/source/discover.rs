//! Discovery: list each pipeline's prefix, resuming after the last key seen, plus a lookback
//! re-list of recent time partitions so late writes into an older partition are found, and
//! record what is new in the ledger.
//!
//! Each ListObjectsV2 page is recorded as it arrives and the cursor advances per page, so memory
//! holds one page and a process that dies mid-listing resumes after the last page it recorded.
//! The key layout learned from the keys (see [`KeyLayout`]) is kept in the control database, so
//! after a restart the lookback re-lists only its window, not the whole prefix.

use super::s3::{S3Error, S3};
use crate::config::PipelineConfig;
use crate::control::ledger::ListedObject;
use crate::control::{Control, ControlError};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, TimeZone, Timelike, Utc};
use futures::StreamExt;
use tracing::{debug, info};

/// A discovery failure for one pipeline.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// Listing failed.
    #[error("pipeline {pipeline}: {source}")]
    S3 {
        /// Pipeline.
        pipeline: String,
        /// The S3 error.
        source: S3Error,
    },
    /// Recording failed.
    #[error("pipeline {pipeline}: {source}")]
    Control {
        /// Pipeline.
        pipeline: String,
        /// The database error.
        source: ControlError,
    },
}

/// A prefix without time in its keys is re-listed whole on every poll up to this many keys.
const FLAT_RELIST_KEYS: usize = 10_000;

/// HEADs in flight at once when a listing came without ETags.
const HEADS_AT_ONCE: usize = 32;

/// At most this many partition directories (`region=*` values) are re-listed per lookback.
const MAX_LOOKBACK_DIRS: usize = 1_000;

/// One directory level of a key, as the layout sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Time fields: `2026` (`{YYYY}`), `year=2026` (`year={YYYY}`), `dt=2026-12-01`
    /// (`dt={YYYY-MM-DD}`), `dt=2026-12-01-03` (`dt={YYYY-MM-DD-HH}`). `name` is the Hive key,
    /// `fields` the time fields carried in order (0 year .. 3 hour), `padded` whether the value
    /// is zero-padded (only then does key order follow time).
    Time {
        name: Option<String>,
        fields: Vec<u8>,
        padded: bool,
    },
    /// Anything else (`region=eu`, `app`): its value varies, its name (before `=`) does not.
    Other { name: Option<String> },
}

const FIELD_TOKENS: [&str; 4] = ["YYYY", "MM", "DD", "HH"];

impl Segment {
    fn template(&self) -> String {
        match self {
            Segment::Time {
                name,
                fields,
                padded,
            } => {
                let tokens: Vec<&str> = fields.iter().map(|&f| FIELD_TOKENS[f as usize]).collect();
                let value = format!("{{{}}}", tokens.join("-"));
                // Lowercase tokens mark values that are not zero-padded (`month=3`).
                let value = if *padded { value } else { value.to_lowercase() };
                match name {
                    Some(n) => format!("{n}={value}"),
                    None => value,
                }
            }
            Segment::Other { name: Some(n) } => format!("{n}=*"),
            Segment::Other { name: None } => "*".into(),
        }
    }

    fn from_template(t: &str) -> Option<Segment> {
        let (name, value) = match t.split_once('=') {
            Some((n, v)) => (Some(n.to_string()), v),
            None => (None, t),
        };
        if value == "*" {
            return Some(Segment::Other { name });
        }
        let inner = value.strip_prefix('{')?.strip_suffix('}')?;
        let padded = !inner.chars().any(|c| c.is_ascii_lowercase());
        let fields = inner
            .split('-')
            .map(|tok| {
                FIELD_TOKENS
                    .iter()
                    .position(|f| f.eq_ignore_ascii_case(tok))
                    .map(|i| i as u8)
            })
            .collect::<Option<Vec<u8>>>()?;
        Some(Segment::Time {
            name,
            fields,
            padded,
        })
    }

    /// This time segment's text for the time `t`.
    fn render(&self, t: DateTime<Utc>) -> String {
        let Segment::Time { name, fields, .. } = self else {
            return String::new();
        };
        let parts: Vec<String> = fields
            .iter()
            .map(|f| match f {
                0 => format!("{:04}", t.year()),
                1 => format!("{:02}", t.month()),
                2 => format!("{:02}", t.day()),
                _ => format!("{:02}", t.hour()),
            })
            .collect();
        let value = parts.join("-");
        match name {
            Some(n) => format!("{n}={value}"),
            None => value,
        }
    }
}

/// How a pipeline's keys encode time, learned from the keys themselves: the directory levels
/// after the prefix up to the last one carrying time. Written as a template:
/// `{YYYY}/{MM}/{DD}/{HH}` (Firehose), `year={YYYY}/month={MM}/day={DD}/hour={HH}` (Hive),
/// `region=*/year={YYYY}/month={MM}` (a leading partition that is not time), `dt={YYYY-MM-DD}`,
/// or `none` for keys without time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    segments: Vec<Segment>,
}

impl KeyLayout {
    /// Keys without time.
    pub fn flat() -> KeyLayout {
        KeyLayout {
            segments: Vec::new(),
        }
    }

    /// Whether the keys carry no time.
    pub fn is_flat(&self) -> bool {
        self.segments.is_empty()
    }

    /// The template, as stored in the control database.
    pub fn template(&self) -> String {
        if self.is_flat() {
            return "none".into();
        }
        let t: Vec<String> = self.segments.iter().map(Segment::template).collect();
        t.join("/")
    }

    /// Reads a stored template; `None` when it is not one this version writes.
    pub fn from_template(t: &str) -> Option<KeyLayout> {
        if t == "none" {
            return Some(KeyLayout::flat());
        }
        let segments = t
            .split('/')
            .map(Segment::from_template)
            .collect::<Option<Vec<_>>>()?;
        segments
            .iter()
            .any(|s| matches!(s, Segment::Time { .. }))
            .then_some(KeyLayout { segments })
    }

    /// How many directory levels come before the first time level (`region=*`).
    fn leading_others(&self) -> usize {
        self.segments
            .iter()
            .take_while(|s| matches!(s, Segment::Other { .. }))
            .count()
    }

    /// The part of a key after the leading varying levels to list after, for a lookback
    /// window starting at `since`: the time levels from the year down, as far as key order
    /// follows time (zero-padded, most significant first, no varying level in between). Every
    /// key of a partition at or after `since` sorts after it.
    pub fn time_start(&self, since: DateTime<Utc>) -> String {
        let mut out = String::new();
        let mut next_field = 0u8;
        for seg in &self.segments[self.leading_others()..] {
            let Segment::Time { fields, padded, .. } = seg else {
                break;
            };
            let in_order = fields
                .iter()
                .enumerate()
                .all(|(i, &f)| f == next_field + i as u8);
            if !in_order || !padded {
                break;
            }
            out.push_str(&seg.render(since));
            out.push('/');
            next_field += fields.len() as u8;
        }
        out
    }
}

/// Classifies one directory level of a key.
fn classify(part: &str) -> Segment {
    let (name, value) = match part.split_once('=') {
        Some((n, v)) => (Some(n.to_string()), v),
        None => (None, part),
    };
    let digits = |s: &str, w: usize| s.len() == w && s.bytes().all(|b| b.is_ascii_digit());
    let field = match name.as_deref() {
        Some("year") => Some(0u8),
        Some("month") => Some(1),
        Some("day") => Some(2),
        Some("hour") => Some(3),
        _ => None,
    };
    if let Some(f) = field {
        if !value.is_empty() && value.len() <= 4 && value.bytes().all(|b| b.is_ascii_digit()) {
            return Segment::Time {
                name,
                fields: vec![f],
                padded: value.len() == if f == 0 { 4 } else { 2 },
            };
        }
    }
    // `YYYY-MM-DD` or `YYYY-MM-DD-HH` under any name (`dt=`, `date=`).
    let parts: Vec<&str> = value.split('-').collect();
    if name.is_some()
        && (parts.len() == 3 || parts.len() == 4)
        && digits(parts[0], 4)
        && parts[1..].iter().all(|p| digits(p, 2))
    {
        let n: Vec<u32> = parts.iter().filter_map(|p| p.parse().ok()).collect();
        if utc(n[0], n[1], n[2], n.get(3).copied().unwrap_or(0), 0, 0).is_some() {
            return Segment::Time {
                name,
                fields: (0..parts.len() as u8).collect(),
                padded: true,
            };
        }
    }
    Segment::Other { name }
}

/// Arrival time and layout from the key after the prefix: Firehose `YYYY/MM/DD/HH/` (the finer
/// object-name timestamp `-YYYY-MM-DD-HH-MM-SS-` when present), or named partitions anywhere
/// among the directory levels (`year=`/`month=`/`day=`/`hour=`, `dt=YYYY-MM-DD[-HH]`), else
/// None.
pub fn arrival_from_key(rest: &str) -> Option<(DateTime<Utc>, KeyLayout)> {
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() >= 5 {
        let nums: Option<Vec<u32>> = parts[..4]
            .iter()
            .zip([4, 2, 2, 2])
            .map(|(p, w)| {
                (p.len() == w && p.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| p.parse().ok())
                    .flatten()
            })
            .collect();
        if let Some(n) = nums {
            let hour = utc(n[0], n[1], n[2], n[3], 0, 0)?;
            let finer = name_timestamp(parts[parts.len() - 1])
                .filter(|t| *t >= hour && *t < hour + ChronoDuration::hours(1));
            let segments = (0..4u8)
                .map(|f| Segment::Time {
                    name: None,
                    fields: vec![f],
                    padded: true,
                })
                .collect();
            return Some((finer.unwrap_or(hour), KeyLayout { segments }));
        }
    }
    let dirs = &parts[..parts.len().saturating_sub(1)];
    let mut segments: Vec<Segment> = dirs.iter().map(|p| classify(p)).collect();
    let last_time = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Time { .. }))?;
    segments.truncate(last_time + 1);
    let mut fields = [None::<u32>; 4];
    for (seg, part) in segments.iter().zip(dirs) {
        if let Segment::Time { fields: fs, .. } = seg {
            let value = part.split_once('=').map_or(*part, |p| p.1);
            for (f, v) in fs.iter().zip(value.split('-')) {
                fields[*f as usize] = v.parse().ok();
            }
        }
    }
    let [Some(y), m, d, h] = fields else {
        return None;
    };
    let t = utc(y, m.unwrap_or(1), d.unwrap_or(1), h.unwrap_or(0), 0, 0)?;
    Some((t, KeyLayout { segments }))
}

/// Firehose names objects `<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>`.
fn name_timestamp(name: &str) -> Option<DateTime<Utc>> {
    let b = name.as_bytes();
    (0..b.len().saturating_sub(19)).find_map(|i| {
        let s = name.get(i..i + 19)?;
        let n: Vec<u32> = s
            .split('-')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        let widths: Vec<usize> = s.split('-').map(str::len).collect();
        if widths != [4, 2, 2, 2, 2, 2] {
            return None;
        }
        utc(n[0], n[1], n[2], n[3], n[4], n[5])
    })
}

fn utc(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<DateTime<Utc>> {
    let date = NaiveDate::from_ymd_opt(y as i32, mo, d)?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(h, mi, s)?))
}

/// Discovers a pipeline's objects; keeps what it learned about the key layout in the control
/// database.
pub struct Discoverer {
    pipeline: PipelineConfig,
    s3: S3,
    control: Control,
    /// The layout, once read from the control database or learned from a key.
    layout: Option<KeyLayout>,
    /// Whether the stored layout has been read.
    layout_loaded: bool,
    /// With `start_at = "now"`: objects last modified before this are not staged.
    not_before: Option<DateTime<Utc>>,
    excluded: Vec<String>,
    /// When a key layout without time last got its full re-list, and how many keys it saw.
    last_full_relist: Option<(std::time::Instant, usize)>,
}

/// What one listing range did.
#[derive(Default)]
struct Listing {
    recorded: u64,
    keys: usize,
}

impl Discoverer {
    /// A discoverer for one pipeline. Keys under `excluded` prefixes (the pipeline's own error
    /// and manifest prefixes) are never staged objects.
    pub fn new(pipeline: PipelineConfig, s3: S3, control: Control, excluded: Vec<String>) -> Self {
        Discoverer {
            pipeline,
            s3,
            control,
            layout: None,
            layout_loaded: false,
            not_before: None,
            excluded,
            last_full_relist: None,
        }
    }

    fn s3_err(&self, source: S3Error) -> DiscoverError {
        DiscoverError::S3 {
            pipeline: self.pipeline.name.clone(),
            source,
        }
    }

    fn db_err(&self, source: ControlError) -> DiscoverError {
        DiscoverError::Control {
            pipeline: self.pipeline.name.clone(),
            source,
        }
    }

    /// One pass: new keys after the cursor, then the lookback window. Returns objects recorded.
    pub async fn run_once(&mut self) -> Result<u64, DiscoverError> {
        let (name, bucket, prefix) = (
            self.pipeline.name.clone(),
            self.pipeline.source.bucket.clone(),
            self.pipeline.source.prefix.clone(),
        );
        if !self.layout_loaded {
            let stored = self
                .control
                .key_layout(&name, &bucket, &prefix)
                .await
                .map_err(|e| self.db_err(e))?;
            self.layout = stored.as_deref().and_then(KeyLayout::from_template);
            if let Some(l) = &self.layout {
                debug!(pipeline = %name, layout = %l.template(), "key layout from the control database");
            }
            if self.pipeline.source.start_at == crate::config::StartAt::Now {
                let started = self
                    .control
                    .pipeline_start(&name, &bucket, &prefix)
                    .await
                    .map_err(|e| self.db_err(e))?;
                debug!(pipeline = %name, started = %started, "start_at = now: older objects are not staged");
                self.not_before = Some(started);
            }
            self.layout_loaded = true;
        }
        let cursor = self
            .control
            .cursor(&name, &bucket, &prefix)
            .await
            .map_err(|e| self.db_err(e))?;
        let mut recorded = self
            .list_range(&prefix, cursor.as_deref(), None, true)
            .await?
            .recorded;

        // Late writes land in partitions the cursor has passed; re-list the recent ones.
        let Some(cursor) = cursor else {
            return Ok(recorded);
        };
        let since = Utc::now() - ChronoDuration::seconds(self.pipeline.source.lookback_s as i64);
        let layout = self.layout.clone().unwrap_or_else(KeyLayout::flat);
        if layout.is_flat() {
            // Without time in the keys a late write can sort anywhere, so the whole prefix is
            // listed again: every poll while it is small, every twelfth of the lookback window
            // once it is large, since listing is then the cost.
            let every =
                (self.pipeline.source.lookback_s / 12).max(self.pipeline.source.poll_interval_s);
            let due = self.last_full_relist.is_none_or(|(at, keys)| {
                keys < FLAT_RELIST_KEYS || at.elapsed().as_secs() >= every
            });
            if due {
                let late = self.list_range(&prefix, None, Some(&cursor), false).await?;
                self.last_full_relist = Some((std::time::Instant::now(), late.keys));
                recorded += late.recorded;
            }
            return Ok(recorded);
        }
        let time_start = layout.time_start(since);
        for dir in self.lookback_dirs(&layout).await? {
            let start = format!("{dir}{time_start}");
            if start < cursor {
                recorded += self
                    .list_range(&dir, Some(&start), Some(&cursor), false)
                    .await?
                    .recorded;
            }
        }
        Ok(recorded)
    }

    /// The directories the lookback lists in: the prefix, or, when the layout has varying
    /// levels before its time levels (`region=*/year=...`), each directory at that depth.
    async fn lookback_dirs(&self, layout: &KeyLayout) -> Result<Vec<String>, DiscoverError> {
        let mut dirs = vec![self.pipeline.source.prefix.clone()];
        for seg in &layout.segments[..layout.leading_others()] {
            let Segment::Other { name } = seg else {
                break;
            };
            let mut next = Vec::new();
            for d in &dirs {
                let found = self
                    .s3
                    .list_dirs(&self.pipeline.source.bucket, d)
                    .await
                    .map_err(|e| self.s3_err(e))?;
                next.extend(found.into_iter().filter(|c| {
                    let level = c[d.len()..].trim_end_matches('/');
                    let named = name
                        .as_ref()
                        .is_none_or(|n| level.split_once('=').is_some_and(|(k, _)| k == n));
                    named && !self.excluded.iter().any(|e| c.starts_with(e.as_str()))
                }));
                if next.len() >= MAX_LOOKBACK_DIRS {
                    next.truncate(MAX_LOOKBACK_DIRS);
                    break;
                }
            }
            dirs = next;
        }
        Ok(dirs)
    }

    /// Some S3-compatible servers list objects without an ETag. Recorded with an empty one, an
    /// object would be a second ledger row beside the one a notification records (with its
    /// ETag, or one taken from a HEAD) and load twice; so a key new to the ledger gets its ETag
    /// from a HEAD, and a known key listed without one is left alone (it is in the ledger).
    pub(crate) async fn with_etags(
        &self,
        entries: Vec<ListedObject>,
    ) -> Result<Vec<ListedObject>, DiscoverError> {
        let blank: Vec<&str> = entries
            .iter()
            .filter(|e| e.etag.is_empty())
            .map(|e| e.key.as_str())
            .collect();
        if blank.is_empty() {
            return Ok(entries);
        }
        let bucket = &self.pipeline.source.bucket;
        let known = self
            .control
            .known_keys(&self.pipeline.name, bucket, &blank)
            .await
            .map_err(|e| self.db_err(e))?;
        // The HEADs go out HEADS_AT_ONCE at a time, answers kept in listing order: one at a
        // time, a page of 1,000 new keys took a round trip each.
        let s3 = &self.s3;
        let looked_up: Vec<Result<Option<ListedObject>, S3Error>> = futures::stream::iter(
            entries
                .into_iter()
                .filter(|e| !(e.etag.is_empty() && known.contains(&e.key))),
        )
        .map(|mut e| async move {
            if !e.etag.is_empty() {
                return Ok(Some(e));
            }
            Ok(s3.head(bucket, &e.key).await?.map(|h| {
                e.etag = h.etag;
                e.size = h.size;
                e
            }))
        })
        .buffered(HEADS_AT_ONCE)
        .collect()
        .await;
        let mut out = Vec::with_capacity(looked_up.len());
        for e in looked_up {
            // None: deleted since the listing.
            if let Some(e) = e.map_err(|x| self.s3_err(x))? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Lists `list_prefix` after `start_after`, up to `until` when given, recording each page in
    /// the ledger as it arrives; with `advance`, the cursor moves past each page once it is
    /// recorded. A layout learned from the keys is stored before the cursor moves past them.
    async fn list_range(
        &mut self,
        list_prefix: &str,
        start_after: Option<&str>,
        until: Option<&str>,
        advance: bool,
    ) -> Result<Listing, DiscoverError> {
        let (name, bucket, prefix) = (
            self.pipeline.name.clone(),
            self.pipeline.source.bucket.clone(),
            self.pipeline.source.prefix.clone(),
        );
        let mut done = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self
                .s3
                .list_page(&bucket, list_prefix, start_after, token.as_deref())
                .await
                .map_err(|e| self.s3_err(e))?;
            debug!(pipeline = %name, prefix = %list_prefix, start_after = start_after.unwrap_or(""), keys = page.len(), "listed page");
            let mut entries = Vec::with_capacity(page.len());
            let mut last = None;
            let mut past_until = false;
            let mut learned = None;
            for o in page {
                if until.is_some_and(|u| o.key.as_str() > u) {
                    past_until = true;
                    break;
                }
                done.keys += 1;
                last = Some(o.key.clone());
                if let (Some(nb), Some(lm)) = (self.not_before, o.last_modified) {
                    if lm < nb {
                        continue;
                    }
                }
                let Some((entry, found)) = ledger_entry(
                    &prefix,
                    &self.excluded,
                    o.key,
                    o.etag,
                    o.size,
                    o.last_modified,
                ) else {
                    continue;
                };
                let better = match (&self.layout, &learned) {
                    (_, Some(_)) => false,
                    (None, None) => true,
                    (Some(l), None) => l.is_flat() && !found.is_flat(),
                };
                if better {
                    learned = Some(found);
                }
                entries.push(entry);
            }
            let entries = self.with_etags(entries).await?;
            done.recorded += self
                .control
                .record_objects(&name, &bucket, &entries)
                .await
                .map_err(|e| self.db_err(e))?;
            if let Some(l) = learned {
                self.control
                    .save_key_layout(&name, &bucket, &prefix, &l.template())
                    .await
                    .map_err(|e| self.db_err(e))?;
                info!(pipeline = %name, layout = %l.template(), "key layout learned");
                self.layout = Some(l);
            }
            if let (true, Some(last)) = (advance, &last) {
                self.control
                    .advance_cursor(&name, &bucket, &prefix, last)
                    .await
                    .map_err(|e| self.db_err(e))?;
            }
            match next {
                Some(t) if !past_until => token = Some(t),
                _ => return Ok(done),
            }
        }
    }
}

/// The ledger entry for a key under `prefix` (listed, or named by a notification), with the
/// time layout its key shows; None for folder markers and keys under the loader's own `excluded`
/// prefixes. Arrival time comes from the key's partition, else `last_modified`, else now.
pub fn ledger_entry(
    prefix: &str,
    excluded: &[String],
    key: String,
    etag: String,
    size: i64,
    last_modified: Option<DateTime<Utc>>,
) -> Option<(ListedObject, KeyLayout)> {
    if key.ends_with('/') || excluded.iter().any(|e| key.starts_with(e.as_str())) {
        return None;
    }
    let rest = key.strip_prefix(prefix).unwrap_or(&key);
    let parsed = arrival_from_key(rest);
    let layout = parsed
        .as_ref()
        .map_or_else(KeyLayout::flat, |p| p.1.clone());
    let arrival_time = parsed
        .as_ref()
        .map(|p| p.0)
        .or(last_modified)
        .unwrap_or_else(Utc::now);
    let entry = ListedObject {
        key,
        etag,
        size,
        last_modified,
        arrival_time,
    };
    Some((entry, layout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(rest: &str) -> String {
        arrival_from_key(rest).map_or("none".into(), |(_, l)| l.template())
    }

    #[test]
    fn firehose_partitions_give_arrival_time() {
        let (t, l) =
            arrival_from_key("2026/11/28/04/clicks-1-2026-11-28-04-05-33-ab12cd.gz").unwrap();
        assert_eq!(l.template(), "{YYYY}/{MM}/{DD}/{HH}");
        assert_eq!(t.to_rfc3339(), "2026-11-28T04:05:33+00:00");
        let (t, _) = arrival_from_key("2026/11/28/04/part-0001.gz").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T04:00:00+00:00");
    }

    #[test]
    fn hive_partitions_give_arrival_time() {
        let (t, l) = arrival_from_key("dt=x/year=2026/month=02/day=25/hour=07/f.json").unwrap();
        assert_eq!(
            l.template(),
            "dt=*/year={YYYY}/month={MM}/day={DD}/hour={HH}"
        );
        assert_eq!(t.to_rfc3339(), "2026-02-25T07:00:00+00:00");
        let (t, _) = arrival_from_key("region=eu/year=2026/month=12/f.json").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        let (t, l) = arrival_from_key("dt=2026-12-01/f.json").unwrap();
        assert_eq!(l.template(), "dt={YYYY-MM-DD}");
        assert_eq!(t.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(
            layout("date=2026-12-01-05/app=web/f.json"),
            "date={YYYY-MM-DD-HH}"
        );
    }

    #[test]
    fn flat_keys_have_no_arrival_time() {
        assert!(arrival_from_key("batch-17.json").is_none());
        assert!(arrival_from_key("2026/13/28/04/f").is_none());
        assert!(arrival_from_key("abcd/11/28/04/f").is_none());
        assert!(arrival_from_key("dt=2026-13-01/f").is_none());
        assert!(arrival_from_key("year=2026/f").is_some());
    }

    #[test]
    fn templates_round_trip() {
        for rest in [
            "2026/11/28/04/f",
            "region=eu/year=2026/month=12/day=01/hour=03/f",
            "dt=2026-12-01/f",
            "a/year=2026/month=3/f",
        ] {
            let l = arrival_from_key(rest).unwrap().1;
            assert_eq!(KeyLayout::from_template(&l.template()), Some(l), "{rest}");
        }
        assert_eq!(KeyLayout::from_template("none"), Some(KeyLayout::flat()));
        assert_eq!(KeyLayout::from_template("{YYYY}/{QQ}"), None);
    }

    #[test]
    fn lookback_starts_at_the_partition() {
        let since = utc(2026, 11, 28, 3, 12, 0).unwrap();
        let start = |rest: &str| arrival_from_key(rest).unwrap().1.time_start(since);
        assert_eq!(start("2026/12/01/00/f"), "2026/11/28/03/");
        assert_eq!(
            start("year=2026/month=12/day=01/hour=00/f"),
            "year=2026/month=11/day=28/hour=03/"
        );
        // A leading partition that is not time: the start applies inside each of its values.
        let l = arrival_from_key("region=eu/year=2026/month=12/day=01/f")
            .unwrap()
            .1;
        assert_eq!(l.leading_others(), 1);
        assert_eq!(l.time_start(since), "year=2026/month=11/day=28/");
        assert_eq!(start("dt=2026-12-01/f"), "dt=2026-11-28/");
        assert_eq!(start("dt=2026-12-01-09/f"), "dt=2026-11-28-03/");
        // Key order stops following time at an unpadded value or a varying level.
        assert_eq!(start("year=2026/month=3/f"), "year=2026/");
        assert_eq!(start("year=2026/app=x/month=03/f"), "year=2026/");
        assert_eq!(start("month=03/year=2026/f"), "");
        // Every key of a partition from `since` on sorts after the start.
        let start = start("dt=2026-12-01/f");
        assert!("dt=2026-11-28/a.json" > start.as_str());
        assert!("dt=2026-11-27/z.json" < start.as_str());
    }
}
