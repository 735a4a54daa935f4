//! The HEC wire protocol as the receiver sees it: status codes and their HTTP statuses, the
//! JSON reply bodies, `/event` envelope parsing and validation, `/raw` line splitting, time
//! normalisation, channel ids, and the cheap counting used in blackhole mode.
//!
//! Every behaviour here follows Splunk's HEC documentation ("Format events for HTTP Event
//! Collector", "HTTP Event Collector REST API endpoints", "About HTTP Event Collector Indexer
//! Acknowledgment", "Troubleshoot HTTP Event Collector" for the status codes), quoted where chosen.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// A HEC status code (`code` in the reply body), reference 6.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    TokenDisabled,
    TokenRequired,
    InvalidAuthorization,
    InvalidToken,
    NoData,
    InvalidDataFormat,
    IncorrectIndex,
    InternalError,
    ServerBusy,
    ChannelMissing,
    InvalidChannel,
    EventFieldRequired,
    EventFieldBlank,
    AckDisabled,
    IndexedFieldsError,
    QueryStringAuthDisabled,
    Healthy,
    UnhealthyQueuesFull,
}

impl Code {
    /// The number sent as `code`.
    pub fn number(self) -> u16 {
        match self {
            Code::Success => 0,
            Code::TokenDisabled => 1,
            Code::TokenRequired => 2,
            Code::InvalidAuthorization => 3,
            Code::InvalidToken => 4,
            Code::NoData => 5,
            Code::InvalidDataFormat => 6,
            Code::IncorrectIndex => 7,
            Code::InternalError => 8,
            Code::ServerBusy => 9,
            Code::ChannelMissing => 10,
            Code::InvalidChannel => 11,
            Code::EventFieldRequired => 12,
            Code::EventFieldBlank => 13,
            Code::AckDisabled => 14,
            Code::IndexedFieldsError => 15,
            Code::QueryStringAuthDisabled => 16,
            Code::Healthy => 17,
            Code::UnhealthyQueuesFull => 18,
        }
    }

    /// The message sent as `text`, verbatim from the reference table.
    pub fn text(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::TokenDisabled => "Token disabled",
            Code::TokenRequired => "Token is required",
            Code::InvalidAuthorization => "Invalid authorization",
            Code::InvalidToken => "Invalid token",
            Code::NoData => "No data",
            Code::InvalidDataFormat => "Invalid data format",
            Code::IncorrectIndex => "Incorrect index",
            Code::InternalError => "Internal server error",
            Code::ServerBusy => "Server is busy",
            Code::ChannelMissing => "Data channel is missing",
            Code::InvalidChannel => "Invalid data channel",
            Code::EventFieldRequired => "Event field is required",
            Code::EventFieldBlank => "Event field cannot be blank",
            Code::AckDisabled => "ACK is disabled",
            Code::IndexedFieldsError => "Error in handling indexed fields",
            Code::QueryStringAuthDisabled => "Query string authorization is not enabled",
            Code::Healthy => "HEC is healthy",
            Code::UnhealthyQueuesFull => "HEC is unhealthy, queues are full",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::Success | Code::Healthy => StatusCode::OK,
            Code::TokenRequired | Code::InvalidAuthorization => StatusCode::UNAUTHORIZED,
            Code::TokenDisabled | Code::InvalidToken => StatusCode::FORBIDDEN,
            Code::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Code::ServerBusy | Code::UnhealthyQueuesFull => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A HEC reply: `{"text":..,"code":..}` plus `invalid-event-number` or `ackId` (reference 6.7).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub code: Code,
    pub invalid_event_number: Option<usize>,
    pub ack_id: Option<u64>,
}

impl Reply {
    /// A reply carrying only a code.
    pub fn code(code: Code) -> Self {
        Reply {
            code,
            invalid_event_number: None,
            ack_id: None,
        }
    }
}

#[derive(Serialize)]
struct ReplyBody {
    text: &'static str,
    code: u16,
    #[serde(
        rename = "invalid-event-number",
        skip_serializing_if = "Option::is_none"
    )]
    invalid_event_number: Option<usize>,
    #[serde(rename = "ackId", skip_serializing_if = "Option::is_none")]
    ack_id: Option<u64>,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let body = ReplyBody {
            text: self.code.text(),
            code: self.code.number(),
            invalid_event_number: self.invalid_event_number,
            ack_id: self.ack_id,
        };
        (self.code.status(), axum::Json(body)).into_response()
    }
}

/// A reply outside the HEC code table (404, 405, 413, 415, 429), shaped like Splunk's own
/// 404 body `{"text":"The requested URL was not found on this server.","code":404}` (6.1 [OBS]).
pub fn http_reply(status: StatusCode, text: &'static str) -> Response {
    let body = serde_json::json!({ "text": text, "code": status.as_u16() });
    (status, axum::Json(body)).into_response()
}

/// One accepted `/event` envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub event: Value,
    pub time: Option<f64>,
    pub host: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
    pub fields: Option<Map<String, Value>>,
}

/// The outcome of parsing an `/event` body: the envelopes accepted before any failure, and the
/// failure (code plus zero-based object number) if one stopped the parse.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<Envelope>,
    /// Objects with `fields` but no `event`: accepted and not indexed.
    pub skipped: usize,
    /// Set when an unknown envelope key silently ended the batch (see `parse_event_body`).
    pub truncated_at: Option<usize>,
    pub error: Option<(Code, usize)>,
}

const ENVELOPE_KEYS: [&str; 7] = [
    "time",
    "host",
    "source",
    "sourcetype",
    "index",
    "event",
    "fields",
];

enum Verdict {
    Keep(Envelope),
    Skip,
    UnknownKey,
}

/// Parses concatenated JSON envelopes. `index_allowed` says whether the token may write an index.
///
/// Reference 6.5 [OBS]: "objects are processed in order; on the first bad object the response is
/// 400 with `{"text":"Invalid data format","code":6,"invalid-event-number":N}` (N = zero-based
/// index of the bad object); objects **before** it are indexed, it and all later ones are not.
/// Same pattern for codes 12, 13, 15". Code 7 is reported with the same zero-based N (the
/// reference's single N+1 probe is an open question). "An unknown envelope key in object 1 of 3 →
/// 200 but only object 0 indexed; as the only object → 400 code 5": mirrored via `truncated_at`.
pub fn parse_event_body(body: &[u8], index_allowed: &dyn Fn(&str) -> bool) -> Parsed {
    let mut parsed = Parsed::default();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (n, item) in stream.enumerate() {
        let verdict = match item {
            Ok(Value::Object(map)) => check_envelope(map, index_allowed),
            Ok(_) | Err(_) => Err(Code::InvalidDataFormat),
        };
        match verdict {
            Ok(Verdict::Keep(env)) => parsed.events.push(env),
            Ok(Verdict::Skip) => parsed.skipped += 1,
            Ok(Verdict::UnknownKey) => {
                parsed.truncated_at = Some(n);
                break;
            }
            Err(code) => {
                parsed.error = Some((code, n));
                break;
            }
        }
    }
    // Reference 6.5: "Empty body → 400 code 5"; an unknown key "as the only object → 400 code 5".
    if parsed.error.is_none() && parsed.events.is_empty() && parsed.skipped == 0 {
        parsed.error = Some((Code::NoData, 0));
    }
    parsed
}

fn check_envelope(
    mut map: Map<String, Value>,
    index_allowed: &dyn Fn(&str) -> bool,
) -> Result<Verdict, Code> {
    if map.keys().any(|k| !ENVELOPE_KEYS.contains(&k.as_str())) {
        return Ok(Verdict::UnknownKey);
    }
    let fields = match map.remove("fields") {
        None | Some(Value::Null) => None,
        Some(Value::Object(f)) => Some(check_fields(f)?),
        Some(_) => return Err(Code::IndexedFieldsError),
    };
    let event = match map.remove("event") {
        // 6.4 [OBS]: "object with `fields` and no `event` → 200, skipped"; neither → code 12.
        None if fields.is_some() => return Ok(Verdict::Skip),
        None => return Err(Code::EventFieldRequired),
        // 6.4 [OBS]: "`null` or `false` → 400 code 6".
        Some(Value::Null) | Some(Value::Bool(false)) => return Err(Code::InvalidDataFormat),
        // 6.4 [OBS]: "`" "` (blank) → 400 code 13".
        Some(Value::String(s)) if s.trim().is_empty() => return Err(Code::EventFieldBlank),
        Some(v) => v,
    };
    let time = match map.remove("time") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_time(&v).ok_or(Code::InvalidDataFormat)?),
    };
    let index = string_field(&mut map, "index")?;
    if let Some(idx) = &index {
        if !index_allowed(idx) {
            return Err(Code::IncorrectIndex);
        }
    }
    Ok(Verdict::Keep(Envelope {
        event,
        time,
        host: string_field(&mut map, "host")?,
        source: string_field(&mut map, "source")?,
        sourcetype: string_field(&mut map, "sourcetype")?,
        index,
        fields,
    }))
}

fn string_field(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, Code> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Code::InvalidDataFormat),
    }
}

/// 6.4: indexed fields are "string → string or array-of-strings; nested object → 400 code 15".
/// Numbers and booleans are let through as scalars.
fn check_fields(fields: Map<String, Value>) -> Result<Map<String, Value>, Code> {
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    for v in fields.values() {
        let ok = match v {
            Value::Array(items) => items.iter().all(scalar),
            other => scalar(other),
        };
        if !ok {
            return Err(Code::IndexedFieldsError);
        }
    }
    Ok(fields)
}

/// Parses an envelope or query `time` into epoch seconds.
///
/// 6.4: "epoch seconds; decimals for sub-second ...; number or numeric string" and [OBS] integer
/// milliseconds (13 digits) and nanoseconds (19 digits) "interpreted by magnitude", using the
/// cut-offs the reference gives: "< 13569465600 → seconds, < 253402300800000 → ms, else ns".
pub fn parse_time(v: &Value) -> Option<f64> {
    let t = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !t.is_finite() || t < 0.0 {
        return None;
    }
    Some(if t < 13_569_465_600.0 {
        t
    } else if t < 253_402_300_800_000.0 {
        t / 1e3
    } else {
        t / 1e9
    })
}

/// Splits a `/raw` body into events, one per line.
///
/// 6.6: the default `LINE_BREAKER` is `([\r\n]+)`; Splunk then merges lines by `SHOULD_LINEMERGE`,
/// which this receiver does not do: every non-empty line is one event.
pub fn raw_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == b'\n' || *b == b'\r')
        .filter(|line| !line.is_empty())
}

/// Counts top-level JSON objects without parsing them (blackhole mode); no validation.
///
/// String bodies are skipped with `memchr2` up to the next `"` or `\\`: they are most of an
/// event's bytes, and the blackhole shares the machine with the loader it measures.
pub fn count_envelopes(body: &[u8]) -> usize {
    let (mut depth, mut count, mut at) = (0usize, 0usize, 0usize);
    while at < body.len() {
        match body[at] {
            b'"' => {
                at += 1;
                // Inside a string: jump to the next quote or backslash; a backslash escapes
                // the byte after it.
                loop {
                    let Some(rest) = body.get(at..) else {
                        return count;
                    };
                    match memchr::memchr2(b'"', b'\\', rest) {
                        Some(p) if body[at + p] == b'\\' => at += p + 2,
                        Some(p) => {
                            at += p + 1;
                            break;
                        }
                        None => return count,
                    }
                }
                continue;
            }
            b'{' | b'[' => {
                if depth == 0 {
                    count += 1;
                }
                depth += 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    count
}

/// 6.3: a channel id is a client-generated GUID such as `FE0ECFAD-13D5-401B-847D-77833BD77131`.
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Parsed {
        parse_event_body(body.as_bytes(), &|idx| idx != "forbidden")
    }

    #[test]
    fn concatenated_envelopes_with_whitespace() {
        let p = parse(
            "{\"event\":\"a\"}{\"event\":{\"k\":1},\"time\":\"1426279439.123\"}\n  {\"event\":0}",
        );
        assert!(p.error.is_none());
        assert_eq!(p.events.len(), 3);
        assert_eq!(p.events[1].time, Some(1426279439.123));
        assert_eq!(p.events[2].event, json!(0));
    }

    #[test]
    fn bad_json_in_the_middle_keeps_earlier_events() {
        let p = parse("{\"event\":\"a\"}{\"event\":\"b\"}{\"event\": nope}{\"event\":\"d\"}");
        assert_eq!(p.error, Some((Code::InvalidDataFormat, 2)));
        assert_eq!(p.events.len(), 2);
    }

    #[test]
    fn event_field_rules() {
        assert_eq!(
            parse("{\"host\":\"h\"}").error,
            Some((Code::EventFieldRequired, 0))
        );
        assert_eq!(
            parse("{\"event\":\"x\"}{\"event\":\"  \"}").error,
            Some((Code::EventFieldBlank, 1))
        );
        assert_eq!(
            parse("{\"event\":null}").error,
            Some((Code::InvalidDataFormat, 0))
        );
        assert_eq!(
            parse("{\"event\":false}").error,
            Some((Code::InvalidDataFormat, 0))
        );
        assert_eq!(parse("[1,2]").error, Some((Code::InvalidDataFormat, 0)));
        let p = parse("{\"fields\":{\"a\":\"b\"}}");
        assert_eq!((p.error, p.skipped), (None, 1));
        assert!(parse("{\"event\":{}}").error.is_none());
    }

    #[test]
    fn no_data_and_unknown_keys() {
        assert_eq!(parse("").error, Some((Code::NoData, 0)));
        assert_eq!(parse("  \n ").error, Some((Code::NoData, 0)));
        assert_eq!(
            parse("{\"event\":\"a\",\"bogus\":1}").error,
            Some((Code::NoData, 0))
        );
        let p = parse("{\"event\":\"a\"}{\"event\":\"b\",\"bogus\":1}{\"event\":\"c\"}");
        assert_eq!(
            (p.error, p.events.len(), p.truncated_at),
            (None, 1, Some(1))
        );
    }

    #[test]
    fn fields_index_and_metadata() {
        assert_eq!(
            parse("{\"event\":\"a\",\"fields\":{\"x\":{\"y\":1}}}").error,
            Some((Code::IndexedFieldsError, 0))
        );
        assert!(
            parse("{\"event\":\"a\",\"fields\":{\"x\":[\"1\",\"2\"],\"n\":3}}")
                .error
                .is_none()
        );
        assert_eq!(
            parse("{\"event\":\"a\"}{\"event\":\"a\",\"index\":\"forbidden\"}").error,
            Some((Code::IncorrectIndex, 1))
        );
        assert_eq!(
            parse("{\"event\":\"a\",\"host\":5}").error,
            Some((Code::InvalidDataFormat, 0))
        );
    }

    #[test]
    fn time_by_magnitude() {
        assert_eq!(parse_time(&json!(1426279439)), Some(1426279439.0));
        assert_eq!(parse_time(&json!(1426279439123u64)), Some(1426279439.123));
        assert_eq!(
            parse_time(&json!(1426279439123456789u64)).map(|t| t.round()),
            Some(1426279439.0)
        );
        assert_eq!(parse_time(&json!("12.5")), Some(12.5));
        assert_eq!(parse_time(&json!("soon")), None);
        assert_eq!(parse_time(&json!(-1)), None);
    }

    #[test]
    fn code_mapping() {
        assert_eq!(Code::TokenRequired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Code::InvalidToken.status(), StatusCode::FORBIDDEN);
        assert_eq!(Code::TokenDisabled.status(), StatusCode::FORBIDDEN);
        assert_eq!(Code::ServerBusy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            Code::InternalError.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(Code::ChannelMissing.status(), StatusCode::BAD_REQUEST);
        assert_eq!(Code::Healthy.status(), StatusCode::OK);
        assert_eq!(Code::ChannelMissing.number(), 10);
        assert_eq!(Code::EventFieldBlank.text(), "Event field cannot be blank");
    }

    #[test]
    fn raw_lines_and_counting() {
        let lines: Vec<_> = raw_lines(b"a\r\nb\n\n c\n").collect();
        assert_eq!(lines, vec![&b"a"[..], b"b", b" c"]);
        assert_eq!(
            count_envelopes(b"{\"event\":\"}{\"}{\"event\":{\"a\":[1]}}\n{}"),
            3
        );
    }

    /// The byte-at-a-time count `count_envelopes` replaced, as the reference.
    fn count_slowly(body: &[u8]) -> usize {
        let (mut depth, mut in_string, mut escaped, mut count) = (0usize, false, false, 0usize);
        for &b in body {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    if depth == 0 {
                        count += 1;
                    }
                    depth += 1;
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        count
    }

    #[test]
    fn counting_skips_strings_as_the_byte_loop_did() {
        let bodies: [&[u8]; 9] = [
            b"{\"event\":\"a\\\"}{\"}{\"event\":1}",
            b"{\"event\":\"a\\\\\"}{\"event\":1}",
            b"{\"event\":\"[{\"}[1,{\"x\":\"}\"}]",
            b"{\"event\":\"unterminated",
            b"{\"event\":\"ends in a backslash\\",
            b"\"",
            b"",
            b"}}{}{{}}{\"a\":\"\\\\\\\"\"}",
            b"{\"event\":{\"k\":\"v\"}}\r\n{\"event\":[1,2]}\n{\"event\":\"x\"}",
        ];
        for body in bodies {
            assert_eq!(
                count_envelopes(body),
                count_slowly(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Every prefix of a realistic body, so cuts land inside strings and escapes.
        let body = br#"{"time":1.5,"event":{"msg":"a \"quoted\" {brace}","tags":["x","y\\"]}}{"event":"z"}"#;
        for n in 0..=body.len() {
            assert_eq!(
                count_envelopes(&body[..n]),
                count_slowly(&body[..n]),
                "prefix {n}"
            );
        }
        assert_eq!(count_envelopes(body), 2);
    }

    #[test]
    fn guid_channels() {
        assert!(is_guid("FE0ECFAD-13D5-401B-847D-77833BD77131"));
        assert!(!is_guid("FE0ECFAD13D5401B847D77833BD77131"));
        assert!(!is_guid("not-a-guid"));
    }
}
