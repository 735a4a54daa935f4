//! DATEFORMAT / TIMEFORMAT handling: the defaults, `'auto'`, epoch forms and Redshift datetime
//! patterns (`YYYY-MM-DD HH24:MI:SS`), producing canonical PostgreSQL literals.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};

use crate::copy_parse::TimeSpec;

const DATE_AUTO: &[&str] = &[
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%d %b %Y",
    "%b %d %Y",
    "%d-%b-%Y",
    "%Y%m%d",
    "%B %d, %Y",
];

const TS_AUTO_TZ: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f %#z",
    "%Y-%m-%dT%H:%M%#z",
];

const TS_AUTO: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S%.f",
    "%m/%d/%Y %H:%M:%S%.f",
    "%d %b %Y %H:%M:%S%.f",
    "%b %d %Y %H:%M:%S%.f",
    "%Y%m%d %H%M%S",
    "%Y%m%dT%H%M%S",
];

/// Parses a DATE value; the error is Redshift's err_reason.
pub fn date(t: &str, spec: &TimeSpec) -> Result<String, String> {
    let bad = || "Invalid date format - Invalid digit encountered".to_string();
    let d = match spec {
        TimeSpec::Default | TimeSpec::EpochSecs | TimeSpec::EpochMillis => {
            // Default DATEFORMAT is 'YYYY-MM-DD' (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html); a trailing time part is ignored.
            if t.len() < 10 {
                return Err("Invalid Date Format - length must be 10 or more".into());
            }
            let head = t.get(..10).ok_or_else(bad)?;
            let tail = &t[10..];
            if !(tail.is_empty() || tail.starts_with([' ', 'T'])) {
                return Err(bad());
            }
            NaiveDate::parse_from_str(head, "%Y-%m-%d").map_err(|_| bad())?
        }
        TimeSpec::Auto => {
            let head = t.split(['T', ' ']).next().unwrap_or(t);
            DATE_AUTO
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
                .or_else(|| {
                    DATE_AUTO
                        .iter()
                        .find_map(|f| NaiveDate::parse_from_str(head, f).ok())
                })
                .ok_or_else(bad)?
        }
        TimeSpec::Pattern(p) => {
            let f = pattern(p);
            NaiveDate::parse_from_str(t, &f)
                .or_else(|_| NaiveDateTime::parse_from_str(t, &f).map(|d| d.date()))
                .map_err(|_| bad())?
        }
    };
    Ok(d.format("%Y-%m-%d").to_string())
}

/// Parses a TIMESTAMP (`tz = false`) or TIMESTAMPTZ value into a canonical literal (UTC for tz).
pub fn timestamp(t: &str, spec: &TimeSpec, tz: bool) -> Result<String, String> {
    let bad = || {
        let fmt = match spec {
            TimeSpec::Pattern(p) => p.clone(),
            _ if tz => "YYYY-MM-DD HH24:MI:SSOF".into(),
            _ => "YYYY-MM-DD HH24:MI:SS".into(),
        };
        format!("Invalid timestamp format or value [{fmt}]")
    };
    let utc: NaiveDateTime = match spec {
        TimeSpec::EpochSecs => {
            let v: f64 = t.parse().map_err(|_| bad())?;
            let micros = (v * 1e6).round() as i64;
            DateTime::<Utc>::from_timestamp_micros(micros)
                .ok_or_else(bad)?
                .naive_utc()
        }
        TimeSpec::EpochMillis => {
            let v: i64 = t.parse().map_err(|_| bad())?;
            DateTime::<Utc>::from_timestamp_millis(v)
                .ok_or_else(bad)?
                .naive_utc()
        }
        // The default is YYYY-MM-DD HH:MI:SS (with an offset for TIMESTAMPTZ); the emulator also
        // takes 'T' as separator and fractional seconds, and a bare date as midnight.
        TimeSpec::Default => parse_any(t, tz, &TS_AUTO[..4], &DATE_AUTO[..1]).ok_or_else(bad)?,
        TimeSpec::Auto => parse_any(t, true, TS_AUTO, DATE_AUTO).ok_or_else(bad)?,
        TimeSpec::Pattern(p) => {
            let f = pattern(p);
            DateTime::<FixedOffset>::parse_from_str(t, &f)
                .map(|d| d.naive_utc())
                .or_else(|_| NaiveDateTime::parse_from_str(t, &f))
                .or_else(|_| {
                    NaiveDate::parse_from_str(t, &f).map(|d| d.and_time(Default::default()))
                })
                .map_err(|_| bad())?
        }
    };
    let s = utc.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    Ok(if tz { s + "+00" } else { s })
}

fn parse_any(t: &str, allow_offset: bool, naive: &[&str], dates: &[&str]) -> Option<NaiveDateTime> {
    if allow_offset {
        let z = t
            .strip_suffix('Z')
            .or_else(|| t.strip_suffix(" UTC"))
            .map(|s| format!("{s}+00:00"));
        let s = z.as_deref().unwrap_or(t);
        if let Some(d) = TS_AUTO_TZ
            .iter()
            .find_map(|f| DateTime::<FixedOffset>::parse_from_str(s, f).ok())
        {
            return Some(d.naive_utc());
        }
    }
    naive
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| {
            dates
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(t, f).ok())
                .map(|d| d.and_time(Default::default()))
        })
}

/// Translates a Redshift datetime pattern into a chrono format string.
pub fn pattern(p: &str) -> String {
    const MAP: &[(&str, &str)] = &[
        ("YYYY", "%Y"),
        ("MONTH", "%B"),
        ("HH24", "%H"),
        ("HH12", "%I"),
        ("MON", "%b"),
        ("YY", "%y"),
        ("MM", "%m"),
        ("DD", "%d"),
        ("HH", "%H"),
        ("MI", "%M"),
        ("SS", "%S"),
        ("AM", "%p"),
        ("PM", "%p"),
        ("OF", "%#z"),
    ];
    let mut out = String::new();
    let mut rest = p;
    'outer: while !rest.is_empty() {
        // Fractional seconds written as .S, .SS, ... .SSSSSS after the seconds field.
        if out.ends_with("%S") && rest.starts_with(".S") {
            out.push_str("%.f");
            rest = rest[1..].trim_start_matches('S');
            continue;
        }
        for (k, v) in MAP {
            if rest.len() >= k.len() && rest[..k.len()].eq_ignore_ascii_case(k) {
                out.push_str(v);
                rest = &rest[k.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            date("2020-02-29", &TimeSpec::Default).unwrap(),
            "2020-02-29"
        );
        assert_eq!(
            date("2020-02-29 10:00:00", &TimeSpec::Default).unwrap(),
            "2020-02-29"
        );
        assert!(date("2020-2-1", &TimeSpec::Default)
            .unwrap_err()
            .contains("length must be 10"));
        assert!(date("2021-02-29", &TimeSpec::Default).is_err());
        assert_eq!(date("03/04/2021", &TimeSpec::Auto).unwrap(), "2021-03-04");
        assert_eq!(
            date("04.03.2021", &TimeSpec::Pattern("DD.MM.YYYY".into())).unwrap(),
            "2021-03-04"
        );
    }

    #[test]
    fn timestamps() {
        let d = TimeSpec::Default;
        assert_eq!(
            timestamp("2020-01-02 03:04:05", &d, false).unwrap(),
            "2020-01-02 03:04:05.000000"
        );
        assert_eq!(
            timestamp("2020-01-02T03:04:05.25", &d, false).unwrap(),
            "2020-01-02 03:04:05.250000"
        );
        assert_eq!(
            timestamp("2020-01-02 03:04:05+02", &d, true).unwrap(),
            "2020-01-02 01:04:05.000000+00"
        );
        assert_eq!(
            timestamp("2020-01-02 03:04:05+02", &d, false).unwrap_err(),
            "Invalid timestamp format or value [YYYY-MM-DD HH24:MI:SS]"
        );
        assert_eq!(
            timestamp("2020-01-02T03:04:05Z", &TimeSpec::Auto, false).unwrap(),
            "2020-01-02 03:04:05.000000"
        );
        assert_eq!(
            timestamp("1577934245", &TimeSpec::EpochSecs, false).unwrap(),
            "2020-01-02 03:04:05.000000"
        );
        assert_eq!(
            timestamp("1577934245123", &TimeSpec::EpochMillis, true).unwrap(),
            "2020-01-02 03:04:05.123000+00"
        );
        let p = TimeSpec::Pattern("MM/DD/YYYY HH24:MI:SS.SSS".into());
        assert_eq!(
            timestamp("01/02/2020 03:04:05.5", &p, false).unwrap(),
            "2020-01-02 03:04:05.500000"
        );
    }
}
