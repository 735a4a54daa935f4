//! JSON pointers (RFC 6901) evaluated over a record's raw bytes without building a tree: the
//! walk skips every value off the path, so fetching an id or a timestamp costs one scan of
//! the record at most and no allocation besides the value found.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// A parsed JSON pointer such as `/event/id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    tokens: Vec<String>,
}

/// The scalar a pointer found.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer too big for `i64`.
    Uint(u64),
    /// A floating point number.
    Float(f64),
}

impl Pointer {
    /// Parses `/a/b~1c`; the empty pointer (the whole record) is refused.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON pointer: it must start with '/'"
            ));
        };
        let tokens = rest
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(Pointer { tokens })
    }

    /// The scalar at this pointer in `json`, or `None` when it is absent, not a scalar, or the
    /// JSON breaks before it. Reading stops at the value found: records were validated whole
    /// by the framer, and the rest of a record is not read again.
    pub fn lookup(&self, json: &[u8]) -> Option<Scalar> {
        if let Some(found) = self.top_level(json) {
            return found;
        }
        let mut de = serde_json::Deserializer::from_slice(json);
        let found = Cell::new(None);
        // Ends with the `Found` error when the value was found, which stops the parse there.
        let _ = Find(&self.tokens, &found).deserialize(&mut de);
        found.into_inner()
    }
}

impl Pointer {
    /// The common case without serde's walk (whose stop-on-found error costs an allocation per
    /// record): a one-token pointer into an object whose members before the one wanted have
    /// unescaped keys and string, number, `true`, `false` or `null` values. `None` when the
    /// record has another shape: the caller then takes the general walk, which gives the same
    /// answer for every record the framer let through.
    fn top_level(&self, json: &[u8]) -> Option<Option<Scalar>> {
        let [token] = self.tokens.as_slice() else {
            return None;
        };
        let mut at = skip_ws(json, 0);
        if json.get(at) != Some(&b'{') {
            return None;
        }
        loop {
            at = skip_ws(json, at + 1);
            match json.get(at)? {
                b'"' => {}
                b'}' => return Some(None),
                _ => return None,
            }
            let len = memchr::memchr2(b'"', b'\\', &json[at + 1..])?;
            let key_end = at + 1 + len;
            if json[key_end] != b'"' {
                return None; // an escaped key: serde decodes it
            }
            let key = &json[at + 1..key_end];
            at = skip_ws(json, key_end + 1);
            if json.get(at) != Some(&b':') {
                return None;
            }
            at = skip_ws(json, at + 1);
            if key == token.as_bytes() {
                let mut de = serde_json::Deserializer::from_slice(&json[at..]);
                return de.deserialize_any(ScalarVisitor).ok();
            }
            at = skip_scalar(json, at)?;
            at = skip_ws(json, at);
            match json.get(at)? {
                b',' => {}
                b'}' => return Some(None),
                _ => return None,
            }
        }
    }
}

fn skip_ws(json: &[u8], mut at: usize) -> usize {
    while json
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        at += 1;
    }
    at
}

/// The end of the string or bare scalar at `at`; `None` for an object or array.
fn skip_scalar(json: &[u8], at: usize) -> Option<usize> {
    match json.get(at)? {
        b'"' => {
            let mut i = at + 1;
            loop {
                i += memchr::memchr2(b'"', b'\\', &json[i..])?;
                if json[i] == b'"' {
                    return Some(i + 1);
                }
                i += 2; // an escape: the next byte never ends the string
            }
        }
        b'{' | b'[' => None,
        _ => {
            let len = json[at..]
                .iter()
                .take_while(
                    |b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'a'..=b'z'),
                )
                .count();
            (len > 0).then_some(at + len)
        }
    }
}

/// The error that stops the parse once the value is in hand.
const FOUND: &str = "found";

struct Find<'p>(&'p [String], &'p Cell<Option<Scalar>>);

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if !self.0.is_empty() {
            return d.deserialize_any(self);
        }
        match d.deserialize_any(ScalarVisitor)? {
            Some(v) => {
                self.1.set(Some(v));
                Err(de::Error::custom(FOUND))
            }
            None => Ok(()),
        }
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or array on the pointer's path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (token, rest) = (&self.0[0], &self.0[1..]);
        let mut seen = false;
        while let Some(hit) = map.next_key_seed(KeyIs(token))? {
            // The first of duplicate keys wins, as it did when the whole record was read.
            if hit && !seen {
                seen = true;
                map.next_value_seed(Find(rest, self.1))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (token, rest) = (&self.0[0], &self.0[1..]);
        let Ok(wanted) = token.parse::<usize>() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut i = 0;
        loop {
            if i == wanted {
                if seq.next_element_seed(Find(rest, self.1))?.is_none() {
                    break;
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(())
    }
}

/// Compares an object key with a token without allocating.
struct KeyIs<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Option<Scalar>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Str(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(i64::try_from(v).map_or(Scalar::Uint(v), Scalar::Int)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Scalar::Float(v)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: &str, json: &str) -> Option<Scalar> {
        Pointer::parse(p).unwrap().lookup(json.as_bytes())
    }

    #[test]
    fn finds_nested_values_and_skips_the_rest() {
        let doc =
            r#"{"a":{"skip":[1,{"x":2}],"b":"hi"},"n":12,"arr":[10,{"c":1.5}],"w/s":"esc","t~":7}"#;
        assert_eq!(at("/a/b", doc), Some(Scalar::Str("hi".into())));
        assert_eq!(at("/n", doc), Some(Scalar::Int(12)));
        assert_eq!(at("/arr/1/c", doc), Some(Scalar::Float(1.5)));
        assert_eq!(at("/w~1s", doc), Some(Scalar::Str("esc".into())));
        assert_eq!(at("/t~0", doc), Some(Scalar::Int(7)));
        assert_eq!(at("/a", doc), None);
        assert_eq!(at("/missing", doc), None);
        assert_eq!(at("/arr/9", doc), None);
        assert_eq!(at("/a/b", "not json"), None);
    }

    #[test]
    fn reading_stops_at_the_value_and_the_first_duplicate_wins() {
        // Nothing after the value is read, so what follows does not matter.
        assert_eq!(at("/ts", r#"{"ts":5,"rest":[1,2,"#), Some(Scalar::Int(5)));
        assert_eq!(
            at("/a/1", r#"{"a":[0,"x",{"#),
            Some(Scalar::Str("x".into()))
        );
        assert_eq!(at("/k", r#"{"k":1,"k":2}"#), Some(Scalar::Int(1)));
        assert_eq!(at("/k", r#"{"k":{"deep":1},"k":2}"#), None);
    }

    #[test]
    fn the_top_level_shortcut_agrees_with_the_walk() {
        let docs = [
            r#"{"event_id":"a-1","ts":1764300000123,"user":"u","q":"x \"y\" \\"}"#,
            r#" { "s" : "with \\\" quote" , "n" : -1.5e3 , "t" : true , "z" : null , "ts" : "2016-02-25T13:00:00Z" } "#,
            r#"{"a":{"ts":1},"ts":2}"#,
            r#"{"a":[1,2],"ts":3}"#,
            r#"{"t\u0073":4,"ts":5}"#,
            r#"{"ts":6,"ts":7}"#,
            r#"{"ts":{"deep":1}}"#,
            r#"{"ts":[1]}"#,
            r#"{"ts":true}"#,
            r#"{"other":1}"#,
            r#"{}"#,
            r#"[1,2]"#,
            r#""ts""#,
            r#"{"ts":"18446744073709551615"}"#,
            r#"{"ts":18446744073709551615}"#,
        ];
        for p in ["/ts", "/n", "/s", "/z", "/missing"] {
            let pointer = Pointer::parse(p).unwrap();
            for doc in docs {
                let mut de = serde_json::Deserializer::from_slice(doc.as_bytes());
                let found = Cell::new(None);
                let _ = Find(&pointer.tokens, &found).deserialize(&mut de);
                let walked = found.into_inner();
                assert_eq!(pointer.lookup(doc.as_bytes()), walked, "{p} in {doc}");
            }
        }
        // The shortcut answers the flat records it is for, and leaves nested ones to the walk.
        let ts = Pointer::parse("/ts").unwrap();
        assert_eq!(
            ts.top_level(docs[0].as_bytes()),
            Some(Some(Scalar::Int(1_764_300_000_123)))
        );
        assert_eq!(ts.top_level(docs[2].as_bytes()), None);
        assert_eq!(ts.top_level(docs[4].as_bytes()), None);
    }

    #[test]
    fn escaped_keys_still_match() {
        assert_eq!(
            at("/k\"ey", r#"{"k\"ey":"v"}"#),
            Some(Scalar::Str("v".into()))
        );
        assert!(Pointer::parse("id").is_err());
    }
}
