//! HEC replies: the JSON body, what a status and code mean for the request that got them
//! (Splunk's "Troubleshoot HTTP Event Collector", its table of status codes), and the Firehose `errorCode` names used in failed-event records.

use serde::Deserialize;

/// A HEC reply body: `{"text":"Success","code":0,"ackId":3}` or an error with
/// `invalid-event-number`.
#[derive(Debug, Default, Deserialize)]
pub struct HecReply {
    /// Human text.
    #[serde(default)]
    pub text: String,
    /// HEC code (or the HTTP status for 404, 413, 429 bodies).
    #[serde(default)]
    pub code: Option<i64>,
    /// The request's ack id, when the token uses indexer acknowledgement.
    #[serde(default, rename = "ackId")]
    pub ack_id: Option<u64>,
    /// Zero-based index of the first refused event; the ones before it were indexed.
    #[serde(default, rename = "invalid-event-number")]
    pub invalid_event: Option<usize>,
}

impl HecReply {
    /// Parses a body; anything that is not a HEC reply (an HTML error page) gives `None`.
    pub fn parse(body: &[u8]) -> Option<HecReply> {
        serde_json::from_slice(body).ok()
    }
}

/// What one reply means for the request that got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; with an ack id when acknowledgement is on.
    Accepted {
        /// The id to poll on `/ack`.
        ack_id: Option<u64>,
    },
    /// An event was refused (codes 6, 12, 13, 15); the ones before `at` were indexed.
    BadEvent {
        /// Zero-based index of the refused event, when the server said.
        at: Option<usize>,
        /// HEC code.
        code: i32,
        /// HEC text.
        text: String,
    },
    /// 413: the body is over the server's limit; nothing was indexed.
    TooLarge,
    /// Busy, internal error, 429, 5xx: send again later.
    Transient {
        /// HEC code, or the HTTP status when the body has none.
        code: i32,
        /// Text for logs.
        text: String,
    },
    /// Token, index, channel or URL problems: retried until the budget ends, since an operator
    /// may fix them.
    Permanent {
        /// HEC code, or the HTTP status when the body has none.
        code: i32,
        /// Text for logs.
        text: String,
    },
}

/// Classifies a reply by HTTP status and HEC code.
pub fn classify(status: u16, reply: Option<&HecReply>) -> Verdict {
    let code = reply.and_then(|r| r.code).map(|c| c as i32);
    let text = reply
        .map(|r| r.text.clone())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("HTTP {status}"));
    match (status, code) {
        (200..=299, None | Some(0)) => Verdict::Accepted {
            ack_id: reply.and_then(|r| r.ack_id),
        },
        (_, Some(c @ (6 | 12 | 13 | 15))) => Verdict::BadEvent {
            at: reply.and_then(|r| r.invalid_event),
            code: c,
            text,
        },
        (413, _) => Verdict::TooLarge,
        (_, Some(c @ (8 | 9))) => Verdict::Transient { code: c, text },
        (408 | 429 | 500..=599, c) => Verdict::Transient {
            code: c.unwrap_or(status as i32),
            text,
        },
        (_, c) => Verdict::Permanent {
            code: c.unwrap_or(status as i32),
            text,
        },
    }
}

/// The Firehose `errorCode` (Firehose's Splunk error codes,
/// <https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-logs.html>) for a HEC code or HTTP status.
pub fn firehose_error_code(code: i32) -> &'static str {
    match code {
        1 => "Splunk.DisabledToken",
        2..=4 => "Splunk.InvalidToken",
        5 | 6 | 12 | 13 | 15 | 413 => "Splunk.InvalidDataFormat",
        7 => "Splunk.InvalidIndex",
        14 => "Splunk.DisabledAck",
        8 | 9 | 429 | 500..=599 => "Splunk.ServerError",
        _ => "Splunk.InvalidEndpoint",
    }
}

/// Firehose's code for a request that was never acknowledged.
pub const ACK_TIMEOUT: &str = "Splunk.AckTimeout";
/// Firehose's code for a connection that failed or closed.
pub const CONNECTION_CLOSED: &str = "Splunk.ConnectionClosed";
/// Firehose's code for a request that timed out.
pub const CONNECTION_TIMEOUT: &str = "Splunk.ConnectionTimeout";

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> HecReply {
        HecReply::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn success_carries_the_ack_id() {
        let r = reply(r#"{"text":"Success","code":0,"ackId":7}"#);
        assert_eq!(
            classify(200, Some(&r)),
            Verdict::Accepted { ack_id: Some(7) }
        );
        assert_eq!(classify(200, None), Verdict::Accepted { ack_id: None });
    }

    #[test]
    fn a_bad_event_names_its_index() {
        let r = reply(r#"{"text":"Invalid data format","code":6,"invalid-event-number":2}"#);
        assert_eq!(
            classify(400, Some(&r)),
            Verdict::BadEvent {
                at: Some(2),
                code: 6,
                text: "Invalid data format".into()
            }
        );
        let r = reply(r#"{"text":"Event field cannot be blank","code":13}"#);
        assert!(matches!(
            classify(400, Some(&r)),
            Verdict::BadEvent {
                at: None,
                code: 13,
                ..
            }
        ));
    }

    #[test]
    fn busy_errors_and_throttling_are_transient() {
        for (status, body) in [
            (503, r#"{"text":"Server is busy","code":9}"#),
            (500, r#"{"text":"Internal server error","code":8}"#),
            (429, r#"{"text":"Too many requests","code":429}"#),
            (502, "<html>bad gateway</html>"),
        ] {
            let r = HecReply::parse(body.as_bytes());
            assert!(
                matches!(classify(status, r.as_ref()), Verdict::Transient { .. }),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn token_index_and_url_errors_are_permanent() {
        for (status, body, code) in [
            (403, r#"{"text":"Invalid token","code":4}"#, 4),
            (403, r#"{"text":"Token disabled","code":1}"#, 1),
            (401, r#"{"text":"Token is required","code":2}"#, 2),
            (
                400,
                r#"{"text":"Incorrect index","code":7,"invalid-event-number":0}"#,
                7,
            ),
            (404, "not json", 404),
        ] {
            let r = HecReply::parse(body.as_bytes());
            match classify(status, r.as_ref()) {
                Verdict::Permanent { code: c, .. } => assert_eq!(c, code),
                v => panic!("{status} {body}: {v:?}"),
            }
        }
        assert_eq!(classify(413, None), Verdict::TooLarge);
    }

    #[test]
    fn firehose_names() {
        assert_eq!(firehose_error_code(6), "Splunk.InvalidDataFormat");
        assert_eq!(firehose_error_code(4), "Splunk.InvalidToken");
        assert_eq!(firehose_error_code(9), "Splunk.ServerError");
        assert_eq!(firehose_error_code(7), "Splunk.InvalidIndex");
    }
}
