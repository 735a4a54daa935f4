//! Index rotation with Firehose's suffixes, computed in UTC: `-YYYY-MM-DD-HH`, `-YYYY-MM-DD`,
//! `-YYYY-wWW` (ISO-8601 week and week-year) and `-YYYY-MM`; and reading a record's own time.

use crate::config::IndexRotation;
use crate::source::pointer::Scalar;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

/// The rotated index name for a time.
pub fn rotated_name(base: &str, rotation: IndexRotation, t: DateTime<Utc>) -> String {
    match rotation {
        IndexRotation::None => base.to_string(),
        IndexRotation::Hour => format!("{base}-{}", t.format("%Y-%m-%d-%H")),
        IndexRotation::Day => format!("{base}-{}", t.format("%Y-%m-%d")),
        IndexRotation::Week => {
            let w = t.iso_week();
            format!("{base}-{:04}-w{:02}", w.year(), w.week())
        }
        IndexRotation::Month => format!("{base}-{}", t.format("%Y-%m")),
    }
}

/// The half-open range of epoch seconds that share `t`'s index name.
fn period(rotation: IndexRotation, t: DateTime<Utc>) -> (i64, i64) {
    let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"));
    let (start, len) = match rotation {
        IndexRotation::None => return (i64::MIN, i64::MAX),
        IndexRotation::Hour => (
            t.with_minute(0).and_then(|t| t.with_second(0)).unwrap_or(t),
            Duration::hours(1),
        ),
        IndexRotation::Day => (midnight(t.date_naive()), Duration::days(1)),
        IndexRotation::Week => {
            let back = t.weekday().num_days_from_monday() as i64;
            (
                midnight(t.date_naive() - Duration::days(back)),
                Duration::weeks(1),
            )
        }
        IndexRotation::Month => {
            let first = NaiveDate::from_ymd_opt(t.year(), t.month(), 1).expect("first of month");
            let next = first
                .checked_add_months(chrono::Months::new(1))
                .expect("next month");
            let start = midnight(first);
            (start, midnight(next) - start)
        }
    };
    let start = start.timestamp();
    (start, start + len.num_seconds())
}

/// Names indexes for records, caching the current period's name (already JSON-quoted for the
/// action line) so most records cost one range comparison.
pub struct IndexNamer {
    base: String,
    rotation: IndexRotation,
    cached: Option<(i64, i64, String, String)>,
}

impl IndexNamer {
    /// A namer for `base` rotated by `rotation`.
    pub fn new(base: &str, rotation: IndexRotation) -> Self {
        IndexNamer {
            base: base.to_string(),
            rotation,
            cached: None,
        }
    }

    /// The index for a time in epoch seconds, as (name, JSON string literal of the name).
    pub fn at(&mut self, secs: i64) -> (&str, &str) {
        let hit = matches!(&self.cached, Some((s, e, _, _)) if (*s..*e).contains(&secs));
        if !hit {
            let t = DateTime::from_timestamp(secs, 0).unwrap_or_default();
            let name = rotated_name(&self.base, self.rotation, t);
            let quoted = serde_json::to_string(&name).expect("string serializes");
            let (s, e) = period(self.rotation, t);
            self.cached = Some((s, e, name, quoted));
        }
        let (_, _, name, quoted) = self.cached.as_ref().expect("just filled");
        (name, quoted)
    }
}

/// A record's time in epoch seconds from a timestamp field: numbers are epoch seconds, or
/// milliseconds when larger than 10^11 (the year 5138 in seconds); strings are RFC 3339 or a
/// number written as a string.
pub fn timestamp_secs(value: &Scalar) -> Option<i64> {
    let from_number = |n: f64| {
        if !n.is_finite() {
            None
        } else if n.abs() >= 1e11 {
            Some((n / 1000.0).floor() as i64)
        } else {
            Some(n.floor() as i64)
        }
    };
    match value {
        Scalar::Int(n) => from_number(*n as f64),
        Scalar::Uint(n) => from_number(*n as f64),
        Scalar::Float(f) => from_number(*f),
        Scalar::Str(s) => match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Some(t.timestamp()),
            Err(_) => s.trim().parse::<f64>().ok().and_then(from_number),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn firehose_documented_examples() {
        let t = utc("2016-02-25T13:00:00Z");
        let name = |r| rotated_name("myindex", r, t);
        assert_eq!(name(IndexRotation::None), "myindex");
        assert_eq!(name(IndexRotation::Hour), "myindex-2016-02-25-13");
        assert_eq!(name(IndexRotation::Day), "myindex-2016-02-25");
        assert_eq!(name(IndexRotation::Week), "myindex-2016-w08");
        assert_eq!(name(IndexRotation::Month), "myindex-2016-02");
    }

    #[test]
    fn week_uses_the_iso_week_year() {
        let week = |s| rotated_name("i", IndexRotation::Week, utc(s));
        assert_eq!(week("2016-01-01T00:00:00Z"), "i-2015-w53");
        assert_eq!(week("2018-12-31T12:00:00Z"), "i-2019-w01");
        assert_eq!(week("2020-08-10T00:00:00Z"), "i-2020-w33");
    }

    #[test]
    fn the_cache_follows_period_boundaries() {
        for rotation in [
            IndexRotation::Hour,
            IndexRotation::Day,
            IndexRotation::Week,
            IndexRotation::Month,
        ] {
            let mut namer = IndexNamer::new("x", rotation);
            let start = utc("2015-12-27T22:00:00Z").timestamp();
            // Every 17 minutes across about ten weeks: the cached name must always equal the
            // freshly computed one.
            for step in 0..6000 {
                let secs = start + step * 17 * 60;
                let fresh = rotated_name("x", rotation, DateTime::from_timestamp(secs, 0).unwrap());
                let (name, quoted) = namer.at(secs);
                assert_eq!(name, fresh, "{rotation:?} at {secs}");
                assert_eq!(quoted, format!("\"{fresh}\""));
            }
        }
    }

    #[test]
    fn timestamps_in_seconds_millis_and_rfc3339() {
        let t = 1_456_405_200; // 2016-02-25T13:00:00Z
        assert_eq!(timestamp_secs(&Scalar::Int(t)), Some(t));
        assert_eq!(timestamp_secs(&Scalar::Int(t * 1000 + 999)), Some(t));
        assert_eq!(timestamp_secs(&Scalar::Float(t as f64 + 0.5)), Some(t));
        assert_eq!(
            timestamp_secs(&Scalar::Str("2016-02-25T14:00:00+01:00".into())),
            Some(t)
        );
        assert_eq!(timestamp_secs(&Scalar::Str(t.to_string())), Some(t));
        assert_eq!(timestamp_secs(&Scalar::Str("yesterday".into())), None);
    }
}
