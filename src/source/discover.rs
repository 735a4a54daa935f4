//! Discovery: list each pipeline's prefix, resuming after the last key seen, plus a lookback
//! re-list of recent time partitions so late writes into an older partition are found, and
//! record what is new in the ledger.

use super::s3::{Listed, S3Error, S3};
use crate::config::PipelineConfig;
use crate::control::ledger::ListedObject;
use crate::control::{Control, ControlError};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, TimeZone, Timelike, Utc};

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
    /// Receiving or deleting notifications failed.
    #[error("pipeline {pipeline}: sqs queue {queue}: {message}")]
    Sqs {
        /// Pipeline.
        pipeline: String,
        /// Queue URL.
        queue: String,
        /// What failed, with the SDK's causes.
        message: String,
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

/// How a pipeline's keys encode time, learned from the keys themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// `prefix/YYYY/MM/DD/HH/name` (Firehose).
    Firehose,
    /// `prefix/year=YYYY/month=MM/day=DD/hour=HH/name` (Hive).
    Hive,
    /// No time in the key.
    Flat,
}

/// Arrival time from the key after the prefix: Firehose or Hive time partitions (the finer
/// Firehose object-name timestamp `-YYYY-MM-DD-HH-MM-SS-` when present), else None.
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
            return Some((finer.unwrap_or(hour), KeyLayout::Firehose));
        }
    }
    let mut fields = [None::<u32>; 4];
    for part in &parts {
        if let Some((k, v)) = part.split_once('=') {
            let slot = match k {
                "year" => 0,
                "month" => 1,
                "day" => 2,
                "hour" => 3,
                _ => continue,
            };
            fields[slot] = v.parse().ok();
        }
    }
    if let [Some(y), Some(m), Some(d), h] = fields {
        return Some((utc(y, m, d, h.unwrap_or(0), 0, 0)?, KeyLayout::Hive));
    }
    None
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

/// The key to list after for a lookback window starting at `since`, for the layout seen.
pub fn lookback_start(prefix: &str, layout: KeyLayout, since: DateTime<Utc>) -> Option<String> {
    // Listing starts *after* this key, and every key in the partition sorts after it.
    match layout {
        KeyLayout::Firehose => Some(format!(
            "{prefix}{:04}/{:02}/{:02}/{:02}/",
            since.year(),
            since.month(),
            since.day(),
            since.hour()
        )),
        KeyLayout::Hive => Some(format!(
            "{prefix}year={:04}/month={:02}/day={:02}/hour={:02}/",
            since.year(),
            since.month(),
            since.day(),
            since.hour()
        )),
        KeyLayout::Flat => None,
    }
}

/// Discovers a pipeline's objects; keeps what it learned about the key layout between calls.
pub struct Discoverer {
    pipeline: PipelineConfig,
    s3: S3,
    control: Control,
    layout: Option<KeyLayout>,
    excluded: Vec<String>,
    /// When a key layout without time last got its full re-list, and how many keys it saw.
    last_full_relist: Option<(std::time::Instant, usize)>,
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
            excluded,
            last_full_relist: None,
        }
    }

    /// One pass: new keys after the cursor, then the lookback window. Returns objects recorded.
    pub async fn run_once(&mut self) -> Result<u64, DiscoverError> {
        let name = self.pipeline.name.clone();
        let (bucket, prefix) = (
            self.pipeline.source.bucket.clone(),
            self.pipeline.source.prefix.clone(),
        );
        let s3_err = |source| DiscoverError::S3 {
            pipeline: name.clone(),
            source,
        };
        let db_err = |source| DiscoverError::Control {
            pipeline: name.clone(),
            source,
        };

        let cursor = self
            .control
            .cursor(&name, &bucket, &prefix)
            .await
            .map_err(db_err)?;
        let fresh = self
            .collect(&bucket, &prefix, cursor.as_deref(), None)
            .await
            .map_err(s3_err)?;
        let mut recorded = self.record(&fresh).await.map_err(db_err)?;
        if let Some(last) = fresh.iter().map(|o| o.key.as_str()).max() {
            self.control
                .advance_cursor(&name, &bucket, &prefix, last)
                .await
                .map_err(db_err)?;
        }

        // Late writes land in partitions the cursor has passed; re-list the recent ones.
        let since = Utc::now() - ChronoDuration::seconds(self.pipeline.source.lookback_s as i64);
        let layout = self.layout.unwrap_or(KeyLayout::Flat);
        if let Some(cursor) = cursor {
            let start = match layout {
                KeyLayout::Flat => None,
                l => lookback_start(&prefix, l, since),
            };
            // Without time in the keys a late write can sort anywhere, so the whole prefix is
            // listed again: every poll while it is small, every twelfth of the lookback window
            // once it is large, since listing is then the cost.
            let every =
                (self.pipeline.source.lookback_s / 12).max(self.pipeline.source.poll_interval_s);
            let full_due = self.last_full_relist.is_none_or(|(at, keys)| {
                keys < FLAT_RELIST_KEYS || at.elapsed().as_secs() >= every
            });
            let due = layout != KeyLayout::Flat || full_due;
            if due && start.as_deref().is_none_or(|s| s < cursor.as_str()) {
                let late = self
                    .collect(&bucket, &prefix, start.as_deref(), Some(&cursor))
                    .await
                    .map_err(s3_err)?;
                if layout == KeyLayout::Flat {
                    self.last_full_relist = Some((std::time::Instant::now(), late.len()));
                }
                recorded += self.record(&late).await.map_err(db_err)?;
            }
        }
        Ok(recorded)
    }

    async fn collect(
        &mut self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        until: Option<&str>,
    ) -> Result<Vec<ListedObject>, S3Error> {
        let mut out = Vec::new();
        let excluded = &self.excluded;
        let mut layout = self.layout;
        self.s3
            .list(bucket, prefix, start_after, |page: Vec<Listed>| {
                for o in page {
                    if until.is_some_and(|u| o.key.as_str() > u) {
                        return false;
                    }
                    let Some((entry, found)) =
                        ledger_entry(prefix, excluded, o.key, o.etag, o.size, o.last_modified)
                    else {
                        continue;
                    };
                    layout.get_or_insert(found);
                    out.push(entry);
                }
                true
            })
            .await?;
        self.layout = layout;
        Ok(out)
    }

    async fn record(&self, objects: &[ListedObject]) -> Result<u64, ControlError> {
        let mut n = 0;
        for chunk in objects.chunks(1000) {
            n += self
                .control
                .record_objects(&self.pipeline.name, &self.pipeline.source.bucket, chunk)
                .await?;
        }
        Ok(n)
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
    let layout = parsed.map_or(KeyLayout::Flat, |p| p.1);
    let arrival_time = parsed
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

    #[test]
    fn firehose_partitions_give_arrival_time() {
        let (t, l) =
            arrival_from_key("2026/11/28/04/clicks-1-2026-11-28-04-05-33-ab12cd.gz").unwrap();
        assert_eq!(l, KeyLayout::Firehose);
        assert_eq!(t.to_rfc3339(), "2026-11-28T04:05:33+00:00");
        let (t, _) = arrival_from_key("2026/11/28/04/part-0001.gz").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-28T04:00:00+00:00");
    }

    #[test]
    fn hive_partitions_give_arrival_time() {
        let (t, l) = arrival_from_key("dt=x/year=2026/month=02/day=25/hour=07/f.json").unwrap();
        assert_eq!(l, KeyLayout::Hive);
        assert_eq!(t.to_rfc3339(), "2026-02-25T07:00:00+00:00");
    }

    #[test]
    fn flat_keys_have_no_arrival_time() {
        assert!(arrival_from_key("batch-17.json").is_none());
        assert!(arrival_from_key("2026/13/28/04/f").is_none());
        assert!(arrival_from_key("abcd/11/28/04/f").is_none());
    }

    #[test]
    fn lookback_starts_at_the_partition() {
        let since = utc(2026, 11, 28, 3, 12, 0).unwrap();
        assert_eq!(
            lookback_start("fh/", KeyLayout::Firehose, since).unwrap(),
            "fh/2026/11/28/03/"
        );
        assert_eq!(lookback_start("fh/", KeyLayout::Flat, since), None);
    }
}
