//! The envelope's `time`: one field of a record read by JSON pointer without building a tree
//! ([`crate::source::pointer`]), understood as epoch seconds, milliseconds,
//! nanoseconds or an RFC 3339 string, and written as `<seconds>[.<fraction>]`.

use crate::source::pointer::{Pointer, Scalar};

/// An event time in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime(pub i64);

impl EventTime {
    /// From a chrono time.
    pub fn from_datetime(t: chrono::DateTime<chrono::Utc>) -> EventTime {
        EventTime(t.timestamp_micros())
    }

    /// `1426279439` or `1426279439.123`: seconds with the fraction trimmed, as HEC wants.
    pub fn write(self, out: &mut impl std::fmt::Write) {
        // Digits written backwards into a stack buffer: `write!` with its padding machinery
        // was about 3% of the HEC path's CPU. 19 digits, a sign, a point and 6 digits fit.
        let mut buf = [0u8; 28];
        let mut at = buf.len();
        let mut put = |byte: u8| {
            at -= 1;
            buf[at] = byte;
        };
        let abs = self.0.unsigned_abs();
        let (mut secs, micros) = (abs / 1_000_000, abs % 1_000_000);
        if micros != 0 {
            let (mut frac, mut width) = (micros, 6);
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            for _ in 0..width {
                put(b'0' + (frac % 10) as u8);
                frac /= 10;
            }
            put(b'.');
        }
        loop {
            put(b'0' + (secs % 10) as u8);
            secs /= 10;
            if secs == 0 {
                break;
            }
        }
        if self.0 < 0 {
            put(b'-');
        }
        let _ = out.write_str(std::str::from_utf8(&buf[at..]).expect("ASCII digits"));
    }
}

// Cut-offs between seconds, milliseconds and nanoseconds by magnitude: seconds below the year
// 2400, milliseconds below the year 10000, nanoseconds above.
const MAX_SECONDS: f64 = 13_569_465_600.0;
const MAX_MILLIS: f64 = 253_402_300_800_000.0;

fn from_number(v: f64) -> Option<EventTime> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let micros = if v < MAX_SECONDS {
        v * 1e6
    } else if v < MAX_MILLIS {
        v * 1e3
    } else {
        v / 1e3
    };
    Some(EventTime(micros.round() as i64))
}

fn from_integer(v: u64) -> Option<EventTime> {
    let micros = if (v as f64) < MAX_SECONDS {
        v.checked_mul(1_000_000)?
    } else if (v as f64) < MAX_MILLIS {
        v.checked_mul(1_000)?
    } else {
        v / 1_000
    };
    i64::try_from(micros).ok().map(EventTime)
}

/// Reads a time from a string: a number in any of the numeric forms, or RFC 3339.
pub fn from_str(s: &str) -> Option<EventTime> {
    let s = s.trim();
    if let Ok(v) = s.parse::<u64>() {
        return from_integer(v);
    }
    if let Ok(v) = s.parse::<f64>() {
        return from_number(v);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| EventTime(t.timestamp_micros()))
}

/// The time at `pointer` in a JSON record; `None` when absent or not a time.
pub fn time_at(pointer: &Pointer, record: &[u8]) -> Option<EventTime> {
    match pointer.lookup(record)? {
        Scalar::Str(s) => from_str(&s),
        Scalar::Int(v) => u64::try_from(v).ok().and_then(from_integer),
        Scalar::Uint(v) => from_integer(v),
        Scalar::Float(v) => from_number(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pointer: &str, record: &str) -> Option<i64> {
        time_at(&Pointer::parse(pointer).unwrap(), record.as_bytes()).map(|t| t.0)
    }

    #[test]
    fn numeric_forms_by_magnitude() {
        assert_eq!(
            at("/ts", r#"{"ts":1426279439}"#),
            Some(1_426_279_439_000_000)
        );
        assert_eq!(
            at("/ts", r#"{"ts":1426279439123}"#),
            Some(1_426_279_439_123_000)
        );
        assert_eq!(
            at("/ts", r#"{"ts":1426279439123456789}"#),
            Some(1_426_279_439_123_456)
        );
        assert_eq!(
            at("/ts", r#"{"ts":1426279439.25}"#),
            Some(1_426_279_439_250_000)
        );
        assert_eq!(
            at("/ts", r#"{"ts":"1426279439.5"}"#),
            Some(1_426_279_439_500_000)
        );
    }

    #[test]
    fn rfc3339_strings() {
        assert_eq!(
            at("/t", r#"{"t":"2015-03-13T20:43:59.5Z"}"#),
            Some(1_426_279_439_500_000)
        );
        assert_eq!(
            at("/t", r#"{"t":"2015-03-13T21:43:59+01:00"}"#),
            Some(1_426_279_439_000_000)
        );
        assert_eq!(at("/t", r#"{"t":"yesterday"}"#), None);
    }

    #[test]
    fn nested_escaped_and_array_pointers() {
        let rec = r#"{"a":[1,{"x":"y"}],"m/k":{"t~":{"ts":7}},"meta":{"ts":1426279439}}"#;
        assert_eq!(at("/meta/ts", rec), Some(1_426_279_439_000_000));
        assert_eq!(at("/m~1k/t~0/ts", rec), Some(7_000_000));
        assert_eq!(at("/a/0", rec), Some(1_000_000));
        assert_eq!(at("/a/1/x", rec), None);
        assert_eq!(at("/missing", rec), None);
        assert_eq!(at("/meta", rec), None);
        assert_eq!(at("/ts", "[1,2]"), None);
        assert_eq!(at("/ts", r#"{"ts":null}"#), None);
        assert_eq!(at("/ts", r#"{"ts":-5}"#), None);
        assert!(Pointer::parse("ts").is_err());
    }

    #[test]
    fn keys_with_escapes_still_match() {
        assert_eq!(at("/ts", r#"{"\u0074s":3}"#), Some(3_000_000));
    }

    #[test]
    fn written_as_seconds_with_a_trimmed_fraction() {
        let mut s = String::new();
        EventTime(1_426_279_439_000_000).write(&mut s);
        s.push(' ');
        EventTime(1_426_279_439_120_000).write(&mut s);
        s.push(' ');
        EventTime(1_426_279_439_000_001).write(&mut s);
        s.push(' ');
        EventTime(0).write(&mut s);
        s.push(' ');
        EventTime(-1_500_000).write(&mut s);
        s.push(' ');
        EventTime(i64::MIN).write(&mut s);
        assert_eq!(
            s,
            "1426279439 1426279439.12 1426279439.000001 0 -1.5 -9223372036854.775808"
        );
    }
}
