//! The envelope's `time`: one field of a record read by JSON pointer without building a tree
//! (every other field is skipped by the parser), understood as epoch seconds, milliseconds,
//! nanoseconds or an RFC 3339 string, and written as `<seconds>[.<fraction>]`.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt::{self, Write as _};

/// An event time in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime(pub i64);

impl EventTime {
    /// From a chrono time.
    pub fn from_datetime(t: chrono::DateTime<chrono::Utc>) -> EventTime {
        EventTime(t.timestamp_micros())
    }

    /// `1426279439` or `1426279439.123`: seconds with the fraction trimmed, as HEC wants.
    pub fn write(self, out: &mut String) {
        let (secs, micros) = (self.0.div_euclid(1_000_000), self.0.rem_euclid(1_000_000));
        let _ = write!(out, "{secs}");
        if micros != 0 {
            let frac = format!("{micros:06}");
            out.push('.');
            out.push_str(frac.trim_end_matches('0'));
        }
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

/// A parsed JSON pointer (`/a/b/0`), reference tokens unescaped.
#[derive(Debug, Clone)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// Parses a pointer; it must start with `/`.
    pub fn parse(s: &str) -> Result<Pointer, String> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!(
                "{s:?} is not a JSON pointer (it must start with '/')"
            ));
        };
        Ok(Pointer(
            rest.split('/')
                .map(|t| t.replace("~1", "/").replace("~0", "~"))
                .collect(),
        ))
    }

    /// The time at this pointer in a JSON record; `None` when absent or not a time.
    pub fn time_in(&self, record: &[u8]) -> Option<EventTime> {
        let mut de = serde_json::Deserializer::from_slice(record);
        Seek(&self.0).deserialize(&mut de).ok().flatten()
    }
}

/// Walks the remaining tokens; at the end reads the time.
struct Seek<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<EventTime>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = Option<EventTime>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let Some((head, rest)) = self.0.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        while let Some(matched) = map.next_key_seed(KeyIs(head))? {
            if matched && found.is_none() {
                found = Some(map.next_value_seed(Seek(rest))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found.flatten())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let target = self.0.first().and_then(|t| t.parse::<usize>().ok());
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == target {
                match seq.next_element_seed(Seek(&self.0[1..]))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| from_integer(v)).flatten())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v)
            .ok()
            .and_then(|v| self.0.is_empty().then(|| from_integer(v)).flatten()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| from_number(v)).flatten())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| from_str(v)).flatten())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Compares a map key with a token without allocating.
struct KeyIs<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pointer: &str, record: &str) -> Option<i64> {
        Pointer::parse(pointer)
            .unwrap()
            .time_in(record.as_bytes())
            .map(|t| t.0)
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
        assert_eq!(s, "1426279439 1426279439.12 1426279439.000001");
    }
}
