//! What an object key's path says about time: the key layout (Firehose `YYYY/MM/DD/HH/`, Hive
//! `year=/month=/day=/hour=`, `dt=YYYY-MM-DD`, with levels that are not time among them), the
//! arrival time a key carries, and where a lookback re-list must start. Pure functions over
//! strings: discovery learns a layout from keys and reads time from them.
//!
//! The dates in keys are in the pipeline's `source.key_time_zone` (UTC by default): Firehose
//! writes both its time prefix and the time in its object names in the stream's
//! `CustomTimeZone` when one is set.

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, TimeZone, Timelike,
    Utc,
};
use chrono_tz::Tz;

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

    /// This time segment's text for the local time `t`.
    fn render(&self, t: NaiveDateTime) -> String {
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
    pub fn leading_others(&self) -> usize {
        self.leading_names().len()
    }

    /// The directory levels before the first time level, each by its Hive name (`region` of
    /// `region=*`), or `None` for a level without `=`.
    pub fn leading_names(&self) -> Vec<Option<String>> {
        self.segments
            .iter()
            .map_while(|s| match s {
                Segment::Other { name } => Some(name.clone()),
                Segment::Time { .. } => None,
            })
            .collect()
    }

    /// The part of a key after the leading varying levels to list after, for a lookback
    /// window starting at `since`, with keys dated in `zone`: the time levels from the year
    /// down, as far as key order follows time (zero-padded, most significant first, no varying
    /// level in between). Every key of a partition at or after `since` sorts after it.
    pub fn time_start(&self, since: DateTime<Utc>, zone: Tz) -> String {
        let since = since.with_timezone(&zone).naive_local();
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
        if naive(n[0], n[1], n[2], n.get(3).copied().unwrap_or(0), 0, 0).is_some() {
            return Segment::Time {
                name,
                fields: (0..parts.len() as u8).collect(),
                padded: true,
            };
        }
    }
    Segment::Other { name }
}

/// Arrival time and layout from the key after the prefix, its dates read in `zone`: Firehose
/// `YYYY/MM/DD/HH/` (the finer object-name timestamp `-YYYY-MM-DD-HH-MM-SS-` when present), or
/// named partitions anywhere among the directory levels (`year=`/`month=`/`day=`/`hour=`,
/// `dt=YYYY-MM-DD[-HH]`), else None.
pub fn arrival_from_key(rest: &str, zone: Tz) -> Option<(DateTime<Utc>, KeyLayout)> {
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
            let hour = in_zone(zone, naive(n[0], n[1], n[2], n[3], 0, 0)?);
            let finer = name_timestamp(parts[parts.len() - 1], zone)
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
    let t = naive(y, m.unwrap_or(1), d.unwrap_or(1), h.unwrap_or(0), 0, 0)?;
    Some((in_zone(zone, t), KeyLayout { segments }))
}

/// Firehose names objects `<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>`, in the same time
/// zone as its prefix.
fn name_timestamp(name: &str, zone: Tz) -> Option<DateTime<Utc>> {
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
        Some(in_zone(zone, naive(n[0], n[1], n[2], n[3], n[4], n[5])?))
    })
}

fn naive(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(y as i32, mo, d)?.and_hms_opt(h, mi, s)
}

/// A local time of `zone` as UTC. An hour the clocks go back over happens twice: the first is
/// taken. An hour they skip does not happen; such a key is read as the hour after.
fn in_zone(zone: Tz, t: NaiveDateTime) -> DateTime<Utc> {
    zone.from_local_datetime(&t)
        .earliest()
        .or_else(|| {
            zone.from_local_datetime(&(t + ChronoDuration::hours(1)))
                .earliest()
        })
        .map_or_else(|| Utc.from_utc_datetime(&t), |l| l.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: Tz = chrono_tz::UTC;

    /// Reads keys dated in UTC, the default.
    fn arrival_from_key(rest: &str) -> Option<(DateTime<Utc>, KeyLayout)> {
        super::arrival_from_key(rest, UTC)
    }

    fn utc(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<DateTime<Utc>> {
        naive(y, mo, d, h, mi, s).map(|t| t.and_utc())
    }

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
        let start = |rest: &str| arrival_from_key(rest).unwrap().1.time_start(since, UTC);
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
        assert_eq!(l.time_start(since, UTC), "year=2026/month=11/day=28/");
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

    #[test]
    fn keys_dated_in_another_time_zone() {
        let la: Tz = "America/Los_Angeles".parse().unwrap();
        // Firehose with CustomTimeZone: prefix and object-name time both local (PST, UTC-8).
        let (t, _) =
            super::arrival_from_key("2026/12/07/07/clicks-1-2026-12-07-07-05-33-ab12cd.gz", la)
                .unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-07T15:05:33+00:00");
        let (t, _) = super::arrival_from_key("dt=2026-07-01/f.json", la).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-07-01T07:00:00+00:00", "PDT, UTC-7");
        // The lookback window opens at the local partition.
        let l = arrival_from_key("2026/12/07/07/f").unwrap().1;
        let since = utc(2026, 12, 7, 14, 30, 0).unwrap();
        assert_eq!(l.time_start(since, la), "2026/12/07/06/");
        assert_eq!(l.time_start(since, UTC), "2026/12/07/14/");
        // The hour the clocks go back over is read as its first pass; a skipped hour as the next.
        let (t, _) = super::arrival_from_key("2026/11/01/01/f", la).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-01T08:00:00+00:00");
        let (t, _) = super::arrival_from_key("2026/03/08/02/f", la).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-08T10:00:00+00:00");
    }
}
