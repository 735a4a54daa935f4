//! S3 event notifications as they arrive in an SQS message body: S3's own notification JSON
//! (`{"Records":[{"eventName":"ObjectCreated:Put","s3":{...}}]}`), the same wrapped in an SNS
//! envelope (`{"Type":"Notification","Message":"<that JSON as a string>"}`), or an EventBridge
//! event (`{"detail-type":"Object Created","detail":{...}}`). Pure parsing; `sqs` receives.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// One object that was created.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedObject {
    /// Bucket.
    pub bucket: String,
    /// Key, decoded (S3 notifications URL-encode it, with `+` for a space).
    pub key: String,
    /// Size in bytes.
    pub size: i64,
    /// ETag without quotes.
    pub etag: String,
    /// When the object was created, by the event.
    pub event_time: Option<DateTime<Utc>>,
}

/// What a message body holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// Objects created (one message may carry several records).
    Created(Vec<CreatedObject>),
    /// Something to acknowledge and drop: `s3:TestEvent`, a removal, a restore.
    Other(String),
}

/// Why a message body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not an S3 event notification: {0}")]
pub struct NotAnEvent(String);

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records")]
    records: Option<Vec<S3Record>>,
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName")]
    event_name: String,
    #[serde(rename = "eventTime")]
    event_time: Option<DateTime<Utc>>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Named,
    object: S3Object,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: i64,
    #[serde(rename = "eTag", alias = "etag", default)]
    etag: String,
}

#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

#[derive(Deserialize)]
struct EventBridge {
    #[serde(rename = "detail-type")]
    detail_type: String,
    time: Option<DateTime<Utc>>,
    detail: EventBridgeDetail,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Named,
    object: S3Object,
}

/// Reads one SQS message body.
pub fn parse(body: &str) -> Result<Notification, NotAnEvent> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| NotAnEvent(format!("invalid JSON: {e}")))?;
    if value.get("Type").is_some() && value.get("Message").is_some() {
        let sns: SnsEnvelope =
            serde_json::from_value(value).map_err(|e| NotAnEvent(format!("SNS envelope: {e}")))?;
        if sns.kind != "Notification" {
            return Ok(Notification::Other(format!("SNS {}", sns.kind)));
        }
        return parse(&sns.message);
    }
    if value.get("detail-type").is_some() {
        let eb: EventBridge =
            serde_json::from_value(value).map_err(|e| NotAnEvent(format!("EventBridge: {e}")))?;
        if eb.detail_type != "Object Created" {
            return Ok(Notification::Other(eb.detail_type));
        }
        // EventBridge carries the key as written, not URL-encoded.
        return Ok(Notification::Created(vec![created(
            eb.detail.bucket.name,
            eb.detail.object,
            eb.time,
            false,
        )]));
    }
    let n: S3Notification =
        serde_json::from_value(value).map_err(|e| NotAnEvent(format!("S3 notification: {e}")))?;
    if let Some(event) = n.event {
        return Ok(Notification::Other(event));
    }
    let records = n.records.ok_or_else(|| NotAnEvent("no Records".into()))?;
    let mut out = Vec::new();
    let mut other = Vec::new();
    for r in records {
        if r.event_name.starts_with("ObjectCreated:") {
            out.push(created(r.s3.bucket.name, r.s3.object, r.event_time, true));
        } else {
            other.push(r.event_name);
        }
    }
    if out.is_empty() {
        return Ok(Notification::Other(other.join(", ")));
    }
    Ok(Notification::Created(out))
}

fn created(
    bucket: String,
    o: S3Object,
    event_time: Option<DateTime<Utc>>,
    encoded: bool,
) -> CreatedObject {
    let key = if encoded { decode_key(&o.key) } else { o.key };
    CreatedObject {
        bucket,
        key,
        size: o.size,
        etag: o.etag.trim_matches('"').to_string(),
        event_time,
    }
}

/// An S3 notification key: form-encoded, so `+` is a space and `%2B` a plus.
pub fn decode_key(key: &str) -> String {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3",
        "awsRegion":"us-east-1","eventTime":"2026-11-28T04:05:06.789Z",
        "eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0",
        "bucket":{"name":"stage","arn":"arn:aws:s3:::stage"},
        "object":{"key":"in/2026/11/28/04/caf%C3%A9+menu%2B1.json","size":1024,
        "eTag":"0123abcd","sequencer":"0A1B2C3D4E5F678901"}}}]}"#;

    #[test]
    fn an_s3_notification_gives_the_decoded_key() {
        let Notification::Created(objs) = parse(PUT).unwrap() else {
            panic!("created")
        };
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].bucket, "stage");
        assert_eq!(objs[0].key, "in/2026/11/28/04/café menu+1.json");
        assert_eq!(objs[0].size, 1024);
        assert_eq!(objs[0].etag, "0123abcd");
        assert_eq!(
            objs[0].event_time.unwrap().to_rfc3339(),
            "2026-11-28T04:05:06.789+00:00"
        );
    }

    #[test]
    fn an_sns_envelope_is_opened() {
        let body = serde_json::json!({"Type": "Notification", "MessageId": "m",
            "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": PUT})
        .to_string();
        assert_eq!(parse(&body).unwrap(), parse(PUT).unwrap());
    }

    #[test]
    fn an_eventbridge_event_keeps_its_key_as_written() {
        let body = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3",
            "time":"2026-11-28T04:05:06Z","detail":{"bucket":{"name":"stage"},
            "object":{"key":"in/a+b.json","size":5,"etag":"e1"}}}"#;
        let Notification::Created(objs) = parse(body).unwrap() else {
            panic!("created")
        };
        assert_eq!(objs[0].key, "in/a+b.json");
        assert_eq!(objs[0].etag, "e1");
    }

    #[test]
    fn test_events_and_removals_are_other() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-28T04:05:06Z",
            "Bucket":"stage","RequestId":"r","HostId":"h"}"#;
        assert_eq!(
            parse(test).unwrap(),
            Notification::Other("s3:TestEvent".into())
        );
        let removed = PUT.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert!(matches!(parse(&removed).unwrap(), Notification::Other(_)));
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"hello":"world"}"#).is_err());
    }
}
