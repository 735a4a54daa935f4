//! Discovery: list each pipeline's prefix, resuming after the last key seen, plus a lookback
//! re-list of recent time partitions so late writes into an older partition are found, and
//! record what is new in the ledger.
//!
//! Each ListObjectsV2 page is recorded as it arrives and the cursor advances per page, so memory
//! holds one page and a process that dies mid-listing resumes after the last page it recorded.
//! The key layout learned from the keys (see [`KeyLayout`]) is kept in the control database, so
//! after a restart the lookback re-lists only its window, not the whole prefix.

use crate::config::PipelineConfig;
use crate::control::ledger::ListedObject;
use crate::control::{Control, ControlError};
use crate::source::layout::{arrival_from_key, KeyLayout};
use crate::source::s3::{S3Error, S3};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// HEADs made for keys listed without an ETag, and the wall time spent waiting for them.
    heads: HeadStats,
}

/// HEADs made because a listing came without ETags (shared so `with_etags` can take `&self`),
/// and the time spent in lookback re-lists.
#[derive(Default)]
struct HeadStats {
    count: AtomicU64,
    nanos: AtomicU64,
    lookback_nanos: AtomicU64,
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
            heads: HeadStats::default(),
        }
    }

    /// HEADs made so far because the server listed without ETags, and the seconds spent
    /// waiting for them (they go out [`HEADS_AT_ONCE`] at a time). Zero against real S3.
    pub fn head_stats(&self) -> (u64, f64) {
        (
            self.heads.count.load(Ordering::Relaxed),
            self.heads.nanos.load(Ordering::Relaxed) as f64 / 1e9,
        )
    }

    /// Seconds spent so far in lookback re-lists (HEADs made there included).
    pub fn lookback_s(&self) -> f64 {
        self.heads.lookback_nanos.load(Ordering::Relaxed) as f64 / 1e9
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
        let recorded = self
            .list_range(&prefix, cursor.as_deref(), None, true)
            .await?
            .recorded;

        // Late writes land in partitions the cursor has passed; re-list the recent ones.
        let Some(cursor) = cursor else {
            return Ok(recorded);
        };
        let started = std::time::Instant::now();
        let late = self.lookback(&cursor).await;
        self.heads
            .lookback_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(recorded + late?)
    }

    /// The lookback: re-lists the partitions of the last `lookback_s` before `cursor` (or the
    /// whole prefix when the keys carry no time) for late writes. Returns objects recorded.
    async fn lookback(&mut self, cursor: &str) -> Result<u64, DiscoverError> {
        let prefix = self.pipeline.source.prefix.clone();
        let mut recorded = 0;
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
                let late = self.list_range(&prefix, None, Some(cursor), false).await?;
                self.last_full_relist = Some((std::time::Instant::now(), late.keys));
                recorded += late.recorded;
            }
            return Ok(recorded);
        }
        let time_start = layout.time_start(since, self.pipeline.source.key_time_zone);
        for dir in self.lookback_dirs(&layout).await? {
            let start = format!("{dir}{time_start}");
            if start.as_str() < cursor {
                recorded += self
                    .list_range(&dir, Some(&start), Some(cursor), false)
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
        for name in layout.leading_names() {
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
        self.with_etags_of(entries, false).await
    }

    /// [`Self::with_etags`], or, with `known_too` (`backfill --reload`, which must name the
    /// ledger's rows by key and ETag), a HEAD for every key listed without one.
    pub(crate) async fn with_etags_of(
        &self,
        entries: Vec<ListedObject>,
        known_too: bool,
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
        let known = if known_too {
            Default::default()
        } else {
            self.control
                .known_keys(&self.pipeline.name, bucket, &blank)
                .await
                .map_err(|e| self.db_err(e))?
        };
        // The HEADs go out HEADS_AT_ONCE at a time, answers kept in listing order: one at a
        // time, a page of 1,000 new keys took a round trip each.
        let s3 = &self.s3;
        let started = std::time::Instant::now();
        self.heads.count.fetch_add(
            blank.len().saturating_sub(known.len()) as u64,
            Ordering::Relaxed,
        );
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
        self.heads
            .nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
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
        let mut fetched = self
            .s3
            .list_page(&bucket, list_prefix, start_after, None)
            .await;
        loop {
            let (page, next) = fetched.map_err(|e| self.s3_err(e))?;
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
                    self.pipeline.source.key_time_zone,
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
            // The next page is asked for while this one is recorded: against S3 a page takes
            // longer than its ledger insert, and the cursor still moves page by page below.
            let token = next.filter(|_| !past_until);
            let next_page = token.as_deref().map(|t| {
                self.s3
                    .list_page(&bucket, list_prefix, start_after, Some(t))
            });
            let (recorded, upcoming) = tokio::join!(
                self.control.record_objects(&name, &bucket, &entries),
                futures::future::OptionFuture::from(next_page)
            );
            done.recorded += recorded.map_err(|e| self.db_err(e))?;
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
                if let (Some(ms), true) = (pause_between_pages(), upcoming.is_some()) {
                    info!(pipeline = %name, last_key = %last, "test hook: pausing between listing pages");
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
            }
            match upcoming {
                Some(page) => fetched = page,
                None => return Ok(done),
            }
        }
    }
}

/// Test hook: `STAGELOAD_TEST_PAUSE_BETWEEN_PAGES_MS=<ms>` pauses a listing from the cursor
/// after each page it recorded and moved the cursor past, when another page follows, so tests
/// can kill the process between two pages. Never set in production.
fn pause_between_pages() -> Option<u64> {
    static PAUSE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("STAGELOAD_TEST_PAUSE_BETWEEN_PAGES_MS")
            .ok()?
            .parse()
            .ok()
    })
}

/// The ledger entry for a key under `prefix` (listed, or named by a notification), with the
/// time layout its key shows; None for folder markers and keys under the loader's own `excluded`
/// prefixes. Arrival time comes from the key's partition (its dates in `zone`), else
/// `last_modified`, else now.
pub fn ledger_entry(
    prefix: &str,
    excluded: &[String],
    zone: chrono_tz::Tz,
    key: String,
    etag: String,
    size: i64,
    last_modified: Option<DateTime<Utc>>,
) -> Option<(ListedObject, KeyLayout)> {
    if key.ends_with('/') || excluded.iter().any(|e| key.starts_with(e.as_str())) {
        return None;
    }
    let rest = key.strip_prefix(prefix).unwrap_or(&key);
    let parsed = arrival_from_key(rest, zone);
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
