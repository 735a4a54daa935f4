//! Reading `_bulk` answers: the whole request's status first, then `errors`, and the items only
//! when `errors` is true; each failure classified as retry-alone or rejected for good.

use crate::destination::FailureKind;
use memchr::arch::all::packedpair::HeuristicFrequencyRank;
use memchr::memmem::{Finder, FinderBuilder};
use serde::Deserialize;
use serde_json::Value;
use std::sync::LazyLock;

/// What to do with a whole request that did not come back 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Send its documents again: 429, 5xx, or a refusal an operator may fix (401, 403, a
    /// missing index) as [`FailureKind::NeedsOperator`].
    Retry(FailureKind),
    /// 413: split the request in halves and send each.
    Split,
}

/// Classifies a non-200 status of a whole `_bulk` request.
pub fn classify_request(status: u16) -> RequestVerdict {
    match status {
        413 => RequestVerdict::Split,
        408 | 429 | 500..=599 => RequestVerdict::Retry(FailureKind::Transient),
        _ => RequestVerdict::Retry(FailureKind::NeedsOperator),
    }
}

/// What happened to one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemVerdict {
    /// Indexed.
    Done,
    /// Send it again on its own: 429 and 5xx (transient), or an index that does not exist
    /// while auto-creation is off (permanent for the batch, retried until the budget ends).
    Retry(FailureKind, u16, String),
    /// Rejected for good (mapping errors, 409, 404, other 4xx): recorded at once.
    Reject(u16, String),
}

/// The answer to a 200 `_bulk` request.
#[derive(Debug, PartialEq, Eq)]
pub enum BulkAnswer {
    /// `errors` was false: every document was indexed.
    AllDone,
    /// One verdict per document, in request order.
    Items(Vec<ItemVerdict>),
}

/// A 200 answer that could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// Not the JSON of a bulk response.
    #[error("bulk response is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A different number of items than documents sent.
    #[error("bulk response has {got} items for {sent} documents")]
    ItemCount {
        /// Items in the answer.
        got: usize,
        /// Documents sent.
        sent: usize,
    },
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    errors: bool,
}

#[derive(Deserialize)]
struct Full {
    items: Vec<Wrapped>,
}

/// One item, under the name of its action.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Wrapped {
    Index(ItemBody),
    Create(ItemBody),
    Update(ItemBody),
    Delete(ItemBody),
}

#[derive(Deserialize)]
struct ItemBody {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// Parses a 200 answer to a request of `sent` documents.
pub fn parse_bulk(body: &[u8], sent: usize) -> Result<BulkAnswer, ResponseError> {
    // Elasticsearch and OpenSearch write `took` and `errors` before `items`: when the head
    // already says `"errors":false`, the items (about half as long as the request) are not read.
    if errors_false_up_front(body) {
        return Ok(BulkAnswer::AllDone);
    }
    // Items are skipped, not built, unless something failed.
    let head: Head = serde_json::from_slice(body)?;
    if !head.errors {
        return Ok(BulkAnswer::AllDone);
    }
    let full: Full = serde_json::from_slice(body)?;
    if full.items.len() != sent {
        return Err(ResponseError::ItemCount {
            got: full.items.len(),
            sent,
        });
    }
    Ok(BulkAnswer::Items(
        full.items
            .into_iter()
            .map(|w| match w {
                // A create of an `_id` that is there already: an earlier send (whose answer was
                // lost, or a retried batch) delivered it.
                Wrapped::Create(i) if i.status == 409 && is_version_conflict(i.error.as_ref()) => {
                    ItemVerdict::Done
                }
                Wrapped::Index(i)
                | Wrapped::Create(i)
                | Wrapped::Update(i)
                | Wrapped::Delete(i) => classify_item(i.status, i.error.as_ref()),
            })
            .collect(),
    ))
}

/// Byte ranks for finding `"errors"` in an answer asked for with the client's `filter_path`
/// (`{"index":{"status":201}}` per item): `r` and `o` occur there only inside `error` keys, so
/// the search stops on them alone; memchr's default ranks, made for text, pick the quote and
/// `e` and stop on every item.
struct AnswerRanks;

impl HeuristicFrequencyRank for AnswerRanks {
    fn rank(&self, byte: u8) -> u8 {
        match byte {
            b'r' => 0,
            b'o' => 1,
            _ => 255,
        }
    }
}

static ERRORS_KEY: LazyLock<Finder<'static>> =
    LazyLock::new(|| FinderBuilder::new().build_forward_with_ranker(AnswerRanks, b"\"errors\""));

/// True only when `body` is certainly an object whose top-level `errors` is `false`: it opens
/// with `{`, then members whose values are plain numbers (`took`, `ingest_took`), then
/// `"errors": false`, it ends with `]}` (the items array, then the object), and `"errors"`
/// appears nowhere else (a repeated key).
/// Anything else (another key order, an escaped key, a string value first) returns false and
/// the caller parses the whole answer.
fn errors_false_up_front(body: &[u8]) -> bool {
    let mut at = 0;
    let skip_ws = |at: &mut usize| {
        while body
            .get(*at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            *at += 1;
        }
    };
    let eat = |at: &mut usize, c: u8| {
        skip_ws(at);
        let hit = body.get(*at) == Some(&c);
        *at += usize::from(hit);
        hit
    };
    if !eat(&mut at, b'{') {
        return false;
    }
    // A few number-valued members may come first; a body that never gets to `errors` soon
    // is not the shape this looks for.
    for _ in 0..8 {
        if !eat(&mut at, b'"') {
            return false;
        }
        let key_start = at;
        let Some(len) = body[at..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let key = &body[key_start..key_start + len];
        if key.contains(&b'\\') {
            return false;
        }
        at += len + 1;
        if !eat(&mut at, b':') {
            return false;
        }
        skip_ws(&mut at);
        if key == b"errors" {
            if !body[at..].starts_with(b"false") {
                return false;
            }
            at += 5;
            let after_value = at;
            if !(eat(&mut at, b',') || eat(&mut at, b'}')) {
                return false;
            }
            // HTTP framing (Content-Length, chunked) already refuses a cut body; the items
            // array closing the object is a second guard.
            let closed = body
                .trim_ascii_end()
                .strip_suffix(b"}")
                .is_some_and(|b| b.trim_ascii_end().ends_with(b"]"));
            let repeated = ERRORS_KEY.find(&body[after_value..]).is_some();
            return closed && !repeated;
        }
        let number = body[at..]
            .iter()
            .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            .count();
        if number == 0 {
            return false;
        }
        at += number;
        if !eat(&mut at, b',') {
            return false;
        }
    }
    false
}

fn is_version_conflict(error: Option<&Value>) -> bool {
    error.and_then(|e| e.get("type")).and_then(Value::as_str)
        == Some("version_conflict_engine_exception")
}

/// The reason OpenSearch Serverless gives for an `_id` it does not take.
const AOSS_NO_IDS: &str = "Document ID is not supported in create/index operation request";

fn classify_item(status: u16, error: Option<&Value>) -> ItemVerdict {
    if (200..300).contains(&status) && error.is_none() {
        return ItemVerdict::Done;
    }
    let reason = error
        .map(error_text)
        .unwrap_or_else(|| format!("status {status}"));
    let ty = error.and_then(|e| e.get("type")).and_then(Value::as_str);
    match status {
        429 | 500..=599 => ItemVerdict::Retry(FailureKind::Transient, status, reason),
        404 if ty == Some("index_not_found_exception") => {
            ItemVerdict::Retry(FailureKind::NeedsOperator, status, reason)
        }
        // OpenSearch Serverless time-series and vector-search collections refuse an `_id` in
        // `_bulk` (every document alike): the configuration must change, not the records.
        400 if reason.contains(AOSS_NO_IDS) => ItemVerdict::Retry(
            FailureKind::NeedsOperator,
            status,
            format!(
                "{reason}: this OpenSearch Serverless collection (time series or vector search) \
                 takes no document ids; set document_id = \"auto\" (at least once) or load \
                 into a search collection (effectively once)"
            ),
        ),
        _ => ItemVerdict::Reject(status, reason),
    }
}

/// `type: reason (caused by type: reason)` of an Elasticsearch error object.
pub fn error_text(error: &Value) -> String {
    let one = |e: &Value| match (
        e.get("type").and_then(Value::as_str),
        e.get("reason").and_then(Value::as_str),
    ) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        (Some(t), None) => t.to_string(),
        (None, Some(r)) => r.to_string(),
        (None, None) => e.to_string(),
    };
    match error {
        Value::String(s) => s.clone(),
        Value::Object(_) => match error.get("caused_by") {
            Some(cause) => format!("{} (caused by {})", one(error), one(cause)),
            None => one(error),
        },
        other => other.to_string(),
    }
}

/// A short description of a non-200 answer: the error object when there is one, else the
/// start of the body.
pub fn request_error_text(status: u16, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").map(error_text))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            text.trim().to_string()
        });
    if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_false_means_all_done() {
        let body = br#"{"took":3,"errors":false,"items":[{"index":{"status":201}},{"index":{"status":200}}]}"#;
        assert_eq!(parse_bulk(body, 2).unwrap(), BulkAnswer::AllDone);
    }

    #[test]
    fn the_head_alone_decides_a_clean_answer() {
        // The shape Elasticsearch, OpenSearch and tools/bulk-blackhole answer.
        let clean = br#"{"took":0,"errors":false,"items":[{"index":{"_index":"bench","_id":"a","_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}}]}"#;
        assert!(errors_false_up_front(clean));
        let spaced = b" {\n  \"took\" : 12 ,\r\n  \"ingest_took\": 3,\t\"errors\"  :  false ,\n \"items\": []\n}\n";
        assert!(errors_false_up_front(spaced));
        assert!(errors_false_up_front(br#"{"errors":false,"items":[] }"#));
        assert_eq!(parse_bulk(spaced, 0).unwrap(), BulkAnswer::AllDone);
        // The shape asked for with the client's `filter_path` (no `took`, one member per item).
        let filtered =
            br#"{"errors":false,"items":[{"index":{"status":201}},{"create":{"status":201}}]}"#;
        assert!(errors_false_up_front(filtered));
    }

    #[test]
    fn a_filtered_answer_with_errors_keeps_one_item_per_document() {
        let body = br#"{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}},{"index":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}}]}"#;
        let BulkAnswer::Items(items) = parse_bulk(body, 3).unwrap() else {
            panic!("items expected");
        };
        assert_eq!(items[0], ItemVerdict::Done);
        assert_eq!(
            items[1],
            ItemVerdict::Reject(400, "mapper_parsing_exception: failed to parse".into())
        );
        assert!(matches!(
            items[2],
            ItemVerdict::Retry(FailureKind::Transient, 429, _)
        ));
    }

    #[test]
    fn anything_uncertain_goes_to_the_full_parse() {
        let uncertain: [&[u8]; 11] = [
            br#"{"took":1,"errors":true,"items":[]}"#,
            br#"{"items":[],"errors":false}"#,
            br#"{"took":"1","errors":false,"items":[]}"#,
            br#"{"took":1,"err\u006frs":false,"items":[]}"#,
            br#"{"took":1,"errors":falsey,"items":[]}"#,
            br#"{"took":1,"errors":false,"items":[{"index":{"status":201}}"#,
            br#"{"took":1,"errors":false,"items":[],"errors":true}"#,
            br#"{"took":1 "errors":false}"#,
            br#"["errors",false]"#,
            b"",
            br#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"errors":false}"#,
        ];
        for body in uncertain {
            assert!(
                !errors_false_up_front(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // The full parse still reads what the fast check left: the items after a late
        // `errors`, a truncated answer as an error.
        let late = br#"{"items":[{"index":{"status":400,"error":"bad"}}],"errors":true}"#;
        assert!(
            matches!(parse_bulk(late, 1), Ok(BulkAnswer::Items(v)) if matches!(v[0], ItemVerdict::Reject(400, _)))
        );
        let cut = br#"{"took":1,"errors":false,"items":[{"index":{"status":201}}"#;
        assert!(parse_bulk(cut, 1).is_err());
        let late_clean = br#"{"items":[{"index":{"status":201}}],"errors":false}"#;
        assert_eq!(parse_bulk(late_clean, 1).unwrap(), BulkAnswer::AllDone);
    }

    #[test]
    fn failed_items_are_classified() {
        let body = br#"{"errors":true,"items":[
            {"index":{"_id":"a","status":201,"result":"created"}},
            {"index":{"_id":"b","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [user_id]","caused_by":{"type":"number_format_exception","reason":"For input string: \"abc\""}}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
            {"index":{"_id":"d","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
            {"index":{"_id":"e","status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}},
            {"index":{"_id":"f","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [x]"}}}
        ],"took":1}"#;
        let BulkAnswer::Items(items) = parse_bulk(body, 6).unwrap() else {
            panic!("expected items")
        };
        assert_eq!(items[0], ItemVerdict::Done);
        assert_eq!(
            items[1],
            ItemVerdict::Reject(400, "mapper_parsing_exception: failed to parse field [user_id] (caused by number_format_exception: For input string: \"abc\")".into())
        );
        assert!(matches!(
            items[2],
            ItemVerdict::Retry(FailureKind::Transient, 429, _)
        ));
        assert!(matches!(
            items[3],
            ItemVerdict::Retry(FailureKind::Transient, 503, _)
        ));
        assert!(
            matches!(&items[4], ItemVerdict::Reject(409, r) if r.starts_with("version_conflict"))
        );
        assert!(matches!(
            items[5],
            ItemVerdict::Retry(FailureKind::NeedsOperator, 404, _)
        ));
    }

    #[test]
    fn serverless_refusing_document_ids_needs_the_operator() {
        let error = json!({"type": "illegal_argument_exception",
            "reason": "Document ID is not supported in create/index operation request"});
        match classify_item(400, Some(&error)) {
            ItemVerdict::Retry(FailureKind::NeedsOperator, 400, why) => {
                assert!(why.contains("document_id = \"auto\""), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let other = json!({"type": "illegal_argument_exception", "reason": "bad field"});
        assert!(matches!(
            classify_item(400, Some(&other)),
            ItemVerdict::Reject(400, _)
        ));
    }

    #[test]
    fn a_create_of_a_document_already_there_is_delivered() {
        let body = br#"{"errors":true,"items":[
            {"create":{"_id":"a","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a]: version conflict, document already exists (current version [1])"}}},
            {"create":{"_id":"b","status":201,"result":"created"}},
            {"create":{"_id":"c","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}},
            {"index":{"_id":"d","status":409,"error":{"type":"version_conflict_engine_exception","reason":"version conflict"}}}
        ]}"#;
        let BulkAnswer::Items(items) = parse_bulk(body, 4).unwrap() else {
            panic!("items expected")
        };
        assert!(matches!(items[0], ItemVerdict::Done));
        assert!(matches!(items[1], ItemVerdict::Done));
        assert!(matches!(items[2], ItemVerdict::Reject(400, _)));
        // Only a create proves the document was delivered before.
        assert!(matches!(items[3], ItemVerdict::Reject(409, _)));
    }

    #[test]
    fn mismatched_and_broken_answers_are_errors() {
        let body = br#"{"errors":true,"items":[{"index":{"status":400,"error":"bad"}}]}"#;
        assert!(matches!(
            parse_bulk(body, 2),
            Err(ResponseError::ItemCount { got: 1, sent: 2 })
        ));
        assert!(parse_bulk(b"<html>", 1).is_err());
    }

    #[test]
    fn whole_request_statuses() {
        assert_eq!(classify_request(413), RequestVerdict::Split);
        assert_eq!(
            classify_request(429),
            RequestVerdict::Retry(FailureKind::Transient)
        );
        assert_eq!(
            classify_request(502),
            RequestVerdict::Retry(FailureKind::Transient)
        );
        assert_eq!(
            classify_request(401),
            RequestVerdict::Retry(FailureKind::NeedsOperator)
        );
        assert_eq!(
            classify_request(403),
            RequestVerdict::Retry(FailureKind::NeedsOperator)
        );
        let body = br#"{"error":{"root_cause":[],"type":"security_exception","reason":"missing authentication credentials"},"status":401}"#;
        assert_eq!(
            request_error_text(401, body),
            "HTTP 401: security_exception: missing authentication credentials"
        );
        assert_eq!(
            request_error_text(502, b"Bad Gateway\n"),
            "HTTP 502: Bad Gateway"
        );
    }
}
