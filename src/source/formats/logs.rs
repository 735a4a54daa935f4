//! AWS log layouts, one JSON object per log line, keyed by the documented field names and typed
//! where AWS documents a number (a `-` in a numeric field is `null`; string fields keep their text
//! as written, `-` included). Lines starting with `#` are skipped in every layout (CloudFront's
//! `#Version:` and `#Fields:` directives; `#Fields:` names the fields that follow). A line with
//! fewer fields than its layout needs, an unclosed quote, or a number field that is not a number
//! is a `load_errors` row (9110) and the object goes on.
//!
//! - `alb`: <https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-access-logs.html>
//!   ("Access log entries"): space-separated, some fields quoted. Fields AWS adds later go at the
//!   end and are ignored, as the page asks; lines need the first 18 fields (to `trace_id`), older
//!   files lack the later ones, which are then left out of the object.
//! - `elb`: <https://docs.aws.amazon.com/elasticloadbalancing/latest/classic/access-log-collection.html>
//!   ("Access log entries"): the Classic Load Balancer's 15 fields (at least 13).
//! - `vpc_flow`: <https://docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html>: the
//!   version 2 default fields, or the custom list the file's header line names (flow logs
//!   delivered to S3 begin with one); a line must have as many fields as the header.
//! - `cloudfront`: <https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/standard-logs-reference.html>
//!   (standard logs, legacy): W3C, tab-separated, fields named by `#Fields:` (the documented 33
//!   fields when a file has no such line); a line must have as many fields as `#Fields:` names.
//! - `s3_access`: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/LogFormat.html>:
//!   space-separated, quoted and bracketed (`[time]`) fields, named in snake_case after the
//!   page's headings; trailing fields AWS adds later are ignored, as the page asks; lines need
//!   the first 18 fields (to `version_id`).

use std::collections::VecDeque;

use super::{malformed, push_json_str, Convert};
use crate::source::framing::{Framing, RecordError};

/// How a field's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Float,
}

use Ty::{Float as F, Int as I, Str as S};

const ALB: &[(&str, Ty)] = &[
    ("type", S),
    ("time", S),
    ("elb", S),
    ("client:port", S),
    ("target:port", S),
    ("request_processing_time", F),
    ("target_processing_time", F),
    ("response_processing_time", F),
    ("elb_status_code", I),
    ("target_status_code", I),
    ("received_bytes", I),
    ("sent_bytes", I),
    ("request", S),
    ("user_agent", S),
    ("ssl_cipher", S),
    ("ssl_protocol", S),
    ("target_group_arn", S),
    ("trace_id", S),
    ("domain_name", S),
    ("chosen_cert_arn", S),
    ("matched_rule_priority", I),
    ("request_creation_time", S),
    ("actions_executed", S),
    ("redirect_url", S),
    ("error_reason", S),
    ("target:port_list", S),
    ("target_status_code_list", S),
    ("classification", S),
    ("classification_reason", S),
    ("conn_trace_id", S),
];

const ELB: &[(&str, Ty)] = &[
    ("timestamp", S),
    ("elb", S),
    ("client:port", S),
    ("backend:port", S),
    ("request_processing_time", F),
    ("backend_processing_time", F),
    ("response_processing_time", F),
    ("elb_status_code", I),
    ("backend_status_code", I),
    ("received_bytes", I),
    ("sent_bytes", I),
    ("request", S),
    ("user_agent", S),
    ("ssl_cipher", S),
    ("ssl_protocol", S),
];

const S3_ACCESS: &[(&str, Ty)] = &[
    ("bucket_owner", S),
    ("bucket", S),
    ("time", S),
    ("remote_ip", S),
    ("requester", S),
    ("request_id", S),
    ("operation", S),
    ("key", S),
    ("request_uri", S),
    ("http_status", I),
    ("error_code", S),
    ("bytes_sent", I),
    ("object_size", I),
    ("total_time", I),
    ("turn_around_time", I),
    ("referer", S),
    ("user_agent", S),
    ("version_id", S),
    ("host_id", S),
    ("signature_version", S),
    ("cipher_suite", S),
    ("authentication_type", S),
    ("host_header", S),
    ("tls_version", S),
    ("access_point_arn", S),
    ("acl_required", S),
];

/// The version 2 default format.
const VPC_DEFAULT: &[&str] = &[
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// Every documented flow log field; the numeric ones are typed.
const VPC_FIELDS: &[(&str, Ty)] = &[
    ("version", I),
    ("account-id", S),
    ("interface-id", S),
    ("srcaddr", S),
    ("dstaddr", S),
    ("srcport", I),
    ("dstport", I),
    ("protocol", I),
    ("packets", I),
    ("bytes", I),
    ("start", I),
    ("end", I),
    ("action", S),
    ("log-status", S),
    ("vpc-id", S),
    ("subnet-id", S),
    ("instance-id", S),
    ("tcp-flags", I),
    ("type", S),
    ("pkt-srcaddr", S),
    ("pkt-dstaddr", S),
    ("region", S),
    ("az-id", S),
    ("sublocation-type", S),
    ("sublocation-id", S),
    ("pkt-src-aws-service", S),
    ("pkt-dst-aws-service", S),
    ("flow-direction", S),
    ("traffic-path", I),
    ("ecs-cluster-arn", S),
    ("ecs-cluster-name", S),
    ("ecs-container-instance-arn", S),
    ("ecs-container-instance-id", S),
    ("ecs-container-id", S),
    ("ecs-second-container-id", S),
    ("ecs-service-name", S),
    ("ecs-task-definition-arn", S),
    ("ecs-task-arn", S),
    ("ecs-task-id", S),
    ("reject-reason", S),
];

/// The fields of a file without `#Fields:`.
const CLOUDFRONT_DEFAULT: &[&str] = &[
    "date",
    "time",
    "x-edge-location",
    "sc-bytes",
    "c-ip",
    "cs-method",
    "cs(Host)",
    "cs-uri-stem",
    "sc-status",
    "cs(Referer)",
    "cs(User-Agent)",
    "cs-uri-query",
    "cs(Cookie)",
    "x-edge-result-type",
    "x-edge-request-id",
    "x-host-header",
    "cs-protocol",
    "cs-bytes",
    "time-taken",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-response-result-type",
    "cs-protocol-version",
    "fle-status",
    "fle-encrypted-fields",
    "c-port",
    "time-to-first-byte",
    "x-edge-detailed-result-type",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
];

/// CloudFront's numeric fields; the others are strings.
const CLOUDFRONT_TYPES: &[(&str, Ty)] = &[
    ("sc-bytes", I),
    ("sc-status", I),
    ("cs-bytes", I),
    ("time-taken", F),
    ("c-port", I),
    ("time-to-first-byte", F),
    ("sc-content-len", I),
    ("sc-range-start", I),
    ("sc-range-end", I),
];

/// A field of the current layout: its name (already `"name":`) and type.
struct Field {
    name: String,
    key: Vec<u8>,
    ty: Ty,
}

fn fields<'a>(names: impl IntoIterator<Item = &'a str>, types: &[(&str, Ty)]) -> Vec<Field> {
    names
        .into_iter()
        .map(|name| {
            let mut key = Vec::with_capacity(name.len() + 3);
            push_json_str(&mut key, name.as_bytes());
            key.push(b':');
            Field {
                name: name.to_string(),
                key,
                ty: types
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(S, |&(_, t)| t),
            }
        })
        .collect()
}

/// A log-layout converter.
pub struct Log {
    framing: Framing,
    fields: Vec<Field>,
    /// Fewest fields a line may have.
    min: usize,
    /// More fields than named is a row (else they are ignored).
    exact: bool,
    sep: u8,
    quotes: bool,
    brackets: bool,
    /// `vpc_flow`: the header line may still come.
    header_possible: bool,
    tokens: Vec<(usize, usize)>,
}

impl Log {
    /// A converter for `framing` (one of the log layouts).
    pub fn new(framing: Framing) -> Self {
        let (fields, min, exact, sep, quotes, brackets) = match framing {
            Framing::Alb => (
                fields(ALB.iter().map(|f| f.0), ALB),
                18,
                false,
                b' ',
                true,
                false,
            ),
            Framing::Elb => (
                fields(ELB.iter().map(|f| f.0), ELB),
                13,
                false,
                b' ',
                true,
                false,
            ),
            Framing::S3Access => {
                let f = fields(S3_ACCESS.iter().map(|f| f.0), S3_ACCESS);
                (f, 18, false, b' ', true, true)
            }
            Framing::VpcFlow => (
                fields(VPC_DEFAULT.iter().copied(), VPC_FIELDS),
                VPC_DEFAULT.len(),
                true,
                b' ',
                false,
                false,
            ),
            Framing::Cloudfront => (
                fields(CLOUDFRONT_DEFAULT.iter().copied(), CLOUDFRONT_TYPES),
                CLOUDFRONT_DEFAULT.len(),
                true,
                b'\t',
                false,
                false,
            ),
            other => panic!("{other:?} is not a log layout"),
        };
        Log {
            framing,
            fields,
            min,
            exact,
            sep,
            quotes,
            brackets,
            header_possible: framing == Framing::VpcFlow,
            tokens: Vec::new(),
        }
    }

    /// Splits `line` into `self.tokens`; the error names what is wrong.
    fn split(&mut self, line: &[u8]) -> Result<(), String> {
        self.tokens.clear();
        let (sep, len) = (self.sep, line.len());
        let mut i = 0;
        loop {
            if sep == b' ' {
                while i < len && line[i] == b' ' {
                    i += 1;
                }
                if i >= len {
                    return Ok(());
                }
            }
            let close = match line.get(i) {
                Some(b'"') if self.quotes => Some(b'"'),
                Some(b'[') if self.brackets => Some(b']'),
                _ => None,
            };
            let end = match close {
                Some(c) => {
                    // The closing character is the one followed by a separator or the end.
                    let found = (i + 1..len)
                        .find(|&j| line[j] == c && (j + 1 == len || line[j + 1] == sep));
                    let Some(j) = found else {
                        return Err(format!(
                            "field {} opens with {:?} and is not closed",
                            self.tokens.len() + 1,
                            line[i] as char
                        ));
                    };
                    self.tokens.push((i + 1, j));
                    j + 1
                }
                None => {
                    let j = line[i..]
                        .iter()
                        .position(|&b| b == sep)
                        .map_or(len, |p| i + p);
                    self.tokens.push((i, j));
                    j
                }
            };
            if end >= len {
                return Ok(());
            }
            i = end + 1;
            if i == len {
                // A separator at the very end: one more, empty field (tab-separated layouts).
                if sep != b' ' {
                    self.tokens.push((len, len));
                }
                return Ok(());
            }
        }
    }

    /// `vpc_flow`'s header line: every token a documented field name.
    fn vpc_header(&mut self, line: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(line) else {
            return false;
        };
        let names: Vec<&str> = text.split(' ').filter(|s| !s.is_empty()).collect();
        let known = |n: &&str| VPC_FIELDS.iter().any(|(f, _)| f == n);
        if names.is_empty() || !names.iter().all(known) {
            return false;
        }
        self.fields = fields(names.iter().copied(), VPC_FIELDS);
        self.min = self.fields.len();
        true
    }

    fn write(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        out.push(b'{');
        for (n, (field, &(a, b))) in self.fields.iter().zip(&self.tokens).enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&field.key);
            let v = &line[a..b];
            if field.ty != S && v == b"-" {
                out.extend_from_slice(b"null");
                continue;
            }
            let text = std::str::from_utf8(v).unwrap_or("");
            match field.ty {
                S => push_json_str(out, v),
                I => match text.parse::<i64>() {
                    Ok(n) => out.extend_from_slice(n.to_string().as_bytes()),
                    Err(_) => return Err(not_a(field, v, "an integer")),
                },
                F => match text.parse::<f64>() {
                    Ok(x) if x.is_finite() => {
                        // Serializing a finite f64 into a Vec cannot fail.
                        let _ = serde_json::to_writer(&mut *out, &x);
                    }
                    _ => return Err(not_a(field, v, "a number")),
                },
            }
        }
        out.push(b'}');
        Ok(())
    }
}

fn not_a(field: &Field, v: &[u8], what: &str) -> String {
    format!(
        "field {} is {:?}, not {what}",
        field.name,
        String::from_utf8_lossy(v)
    )
}

impl Convert for Log {
    fn line(
        &mut self,
        line: u64,
        _gap: u64,
        bytes: &[u8],
        out: &mut Vec<u8>,
        rows: &mut VecDeque<RecordError>,
    ) -> Option<u64> {
        if let Some(rest) = bytes.strip_prefix(b"#") {
            if self.framing == Framing::Cloudfront {
                if let Some(names) = rest.strip_prefix(b"Fields:") {
                    let names = String::from_utf8_lossy(names);
                    self.fields = fields(names.split_whitespace(), CLOUDFRONT_TYPES);
                    self.min = self.fields.len();
                }
            }
            return None;
        }
        if std::mem::take(&mut self.header_possible) && self.vpc_header(bytes) {
            return None;
        }
        if let Err(reason) = self.split(bytes) {
            rows.push_back(malformed(reason, line, bytes));
            return None;
        }
        let (n, layout) = (self.tokens.len(), self.framing.name());
        if n < self.min || (self.exact && n > self.fields.len()) {
            let want = if self.exact {
                format!("{}", self.fields.len())
            } else {
                format!("at least {}", self.min)
            };
            let reason = format!("the line has {n} fields, the {layout} layout has {want}");
            rows.push_back(malformed(reason, line, bytes));
            return None;
        }
        match self.write(bytes, out) {
            Ok(()) => Some(line),
            Err(reason) => {
                rows.push_back(malformed(reason, line, bytes));
                None
            }
        }
    }

    fn finish(&mut self, _out: &mut Vec<u8>, _rows: &mut VecDeque<RecordError>) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;
    use crate::source::framing::{Frame, Framer};
    use serde_json::{json, Value};

    /// Records (as JSON) and rows (code, line, reason) of `input` read as `framing`.
    fn read(input: &str, framing: Framing) -> (Vec<Value>, Vec<(i32, u64, String)>) {
        let mut f = Framer::new(input.as_bytes(), framing, 1 << 20);
        let (mut records, mut rows) = (Vec::new(), Vec::new());
        while let Some(frame) = f.next_frame().unwrap() {
            match frame {
                Frame::Record(r) => records.push(serde_json::from_slice(r.bytes).unwrap()),
                Frame::Error(e) => rows.push((e.err_code, e.line, e.reason)),
            }
        }
        (records, rows)
    }

    // The documented example entries, one per layout, then malformed lines.

    const ALB_HTTP: &str = "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 \
        192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 \
        \"GET http://www.example.com:80/ HTTP/1.1\" \"curl/7.46.0\" - - \
        arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067 \
        \"Root=1-58337262-36d228ad5d99923122bbe354\" \"-\" \"-\" 0 2018-07-02T22:22:48.364000Z \
        \"forward\" \"-\" \"-\" \"10.0.0.1:80\" \"200\" \"-\" \"-\" TID_1234abcd5678ef90";

    #[test]
    fn alb_entries() {
        // A failed dispatch (-1, status -), a future extra field, an older short line.
        let failed =
            "https 2018-07-02T22:23:00.186641Z app/lb/50dc 192.168.131.39:2817 - -1 -1 -1 \
            460 - 34 0 \"GET https://www.example.com:443/ HTTP/1.1\" \"curl/7.46.0\" \
            ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 - \"Root=1-58337\" \"www.example.com\" \
            \"arn:aws:acm:cert\" 1 2018-07-02T22:22:48.364000Z \"forward\" \"-\" \"-\" \"-\" \"-\" \
            \"-\" \"-\" TID_1 \"a future field\"";
        let input = format!(
            "{ALB_HTTP}\n{failed}\nhttp 2018-07-02T22:23:00Z app/lb/1 1.2.3.4:5 - 0.1\n\
             # not a log line\nh2 t e c t x 0 0 200 200 1 1 \"r\" \"u\" - - arn \"Root\"\n"
        );
        let (records, rows) = read(&input, Framing::Alb);
        assert_eq!(records.len(), 2, "{rows:?}");
        let r = &records[0];
        assert_eq!(r["type"], "http");
        assert_eq!(r["client:port"], "192.168.131.39:2817");
        assert_eq!(r["request_processing_time"], json!(0.0));
        assert_eq!(r["elb_status_code"], 200);
        assert_eq!(r["sent_bytes"], 366);
        assert_eq!(r["request"], "GET http://www.example.com:80/ HTTP/1.1");
        assert_eq!(r["user_agent"], "curl/7.46.0");
        assert_eq!(r["matched_rule_priority"], 0);
        assert_eq!(r["conn_trace_id"], "TID_1234abcd5678ef90");
        assert_eq!(r.as_object().unwrap().len(), 30);
        let r = &records[1];
        assert_eq!(r["target_processing_time"], json!(-1.0));
        assert_eq!(r["target_status_code"], Value::Null);
        assert_eq!(r["target:port"], "-");
        assert_eq!(
            r.as_object().unwrap().len(),
            30,
            "the extra field is ignored"
        );
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(
            rows[0],
            (
                codes::MALFORMED_RECORD,
                3,
                "the line has 6 fields, the alb layout has at least 18".into()
            )
        );
        assert_eq!(rows[1].1, 5);
        assert!(rows[1]
            .2
            .contains("field request_processing_time is \"x\", not a number"));
    }

    #[test]
    fn elb_entries() {
        let http = "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 \
            0.000073 0.001048 0.000057 200 200 0 29 \"GET http://www.example.com:80/ HTTP/1.1\" \
            \"curl/7.38.0\" - -";
        let tcp = "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 \
            0.001069 0.000028 0.000041 - - 82 305 \"- - - \" \"-\" - -";
        let unclosed = "2015-05-13T23:39:43Z lb 1.2.3.4:1 - 0 0 0 200 200 0 0 \"GET / HTTP/1.1";
        let (records, rows) = read(&format!("{http}\n{tcp}\n{unclosed}\n"), Framing::Elb);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["timestamp"], "2015-05-13T23:39:43.945958Z");
        assert_eq!(records[0]["backend:port"], "10.0.0.1:80");
        assert_eq!(records[0]["backend_processing_time"], json!(0.001048));
        assert_eq!(records[0]["ssl_protocol"], "-");
        assert_eq!(records[1]["elb_status_code"], Value::Null);
        assert_eq!(records[1]["request"], "- - - ");
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0, rows[0].1), (codes::MALFORMED_RECORD, 3));
        assert!(rows[0].2.contains("not closed"), "{rows:?}");
    }

    #[test]
    fn vpc_flow_default_and_custom_fields() {
        let v2 = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 \
            4249 1418530010 1418530070 ACCEPT OK\n\
            2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA\n\
            2 123456789010 eni-1 1.2.3.4\n";
        let (records, rows) = read(v2, Framing::VpcFlow);
        assert_eq!(records[0]["account-id"], "123456789010");
        assert_eq!(records[0]["srcport"], 20641);
        assert_eq!(records[0]["bytes"], 4249);
        assert_eq!(records[0]["action"], "ACCEPT");
        assert_eq!(records[0]["log-status"], "OK");
        assert_eq!(records[1]["packets"], Value::Null);
        assert_eq!(records[1]["srcaddr"], "-");
        assert_eq!(records[1]["log-status"], "NODATA");
        assert_eq!(
            rows,
            vec![(
                codes::MALFORMED_RECORD,
                3,
                "the line has 4 fields, the vpc_flow layout has 14".into()
            )]
        );
        // Files delivered to S3 begin with a header line naming the (custom) fields.
        let custom = "version vpc-id subnet-id instance-id interface-id account-id type srcaddr \
            dstaddr srcport dstport pkt-srcaddr pkt-dstaddr protocol bytes packets start end \
            action tcp-flags log-status\n\
            3 vpc-abcdefab012345678 subnet-aaaaaaaa012345678 i-01234567890123456 \
            eni-1235b8ca123456789 123456789012 IPv4 52.213.180.42 10.0.0.62 43416 5001 \
            52.213.180.42 10.0.0.62 6 568 8 1566848875 1566848933 ACCEPT 2 OK\n";
        let (records, rows) = read(custom, Framing::VpcFlow);
        assert!(rows.is_empty(), "{rows:?}");
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r["version"], 3);
        assert_eq!(r["vpc-id"], "vpc-abcdefab012345678");
        assert_eq!(r["tcp-flags"], 2);
        assert_eq!(r["pkt-dstaddr"], "10.0.0.62");
        assert_eq!(r.as_object().unwrap().len(), 21);
    }

    #[test]
    fn cloudfront_w3c_with_fields_directive() {
        let fields = CLOUDFRONT_DEFAULT.join(" ");
        let line = "2019-12-04\t21:02:31\tLAX1\t392\t192.0.2.100\tGET\td111111abcdef8.cloudfront.net\t\
            /index.html\t200\t-\tMozilla/5.0%20(Windows%20NT%2010.0;%20Win64;%20x64)\t-\t-\tHit\t\
            SOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==\td111111abcdef8.cloudfront.net\t\
            https\t23\t0.001\t-\tTLSv1.2\tECDHE-RSA-AES128-GCM-SHA256\tHit\tHTTP/2.0\t-\t-\t11040\t\
            0.001\tHit\ttext/html\t78\t-\t-";
        let input =
            format!("#Version: 1.0\n#Fields: {fields}\n{line}\n2019-12-04\t21:02:31\tLAX1\n");
        let (records, rows) = read(&input, Framing::Cloudfront);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r["x-edge-location"], "LAX1");
        assert_eq!(r["sc-bytes"], 392);
        assert_eq!(r["cs(Host)"], "d111111abcdef8.cloudfront.net");
        assert_eq!(r["sc-status"], 200);
        assert_eq!(r["time-taken"], json!(0.001));
        assert_eq!(r["c-port"], 11040);
        assert_eq!(r["sc-range-end"], Value::Null);
        assert_eq!(r["cs(Referer)"], "-");
        assert_eq!(r.as_object().unwrap().len(), 33);
        assert_eq!(
            rows,
            vec![(
                codes::MALFORMED_RECORD,
                4,
                "the line has 3 fields, the cloudfront layout has 33".into()
            )]
        );
        // A #Fields line with fewer fields names them all.
        let (records, _) = read(
            "#Fields: date time sc-status\n2019-12-04\t21:02:31\t304\n",
            Framing::Cloudfront,
        );
        assert_eq!(
            records,
            vec![json!({"date": "2019-12-04", "time": "21:02:31", "sc-status": 304})]
        );
    }

    #[test]
    fn s3_access_entries() {
        let line = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be \
            DOC-EXAMPLE-BUCKET1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 \
            79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE \
            REST.GET.VERSIONING - \"GET /DOC-EXAMPLE-BUCKET1?versioning HTTP/1.1\" 200 - 113 - 7 - \
            \"-\" \"S3Console/0.4\" - \
            s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 \
            ECDHE-RSA-AES128-GCM-SHA256 AuthHeader DOC-EXAMPLE-BUCKET1.s3.us-west-1.amazonaws.com \
            TLSV1.2 - - a-future-field";
        let input = format!("{line}\nowner bucket [06/Feb/2019:00:00:38 +0000] 1.2.3.4\n");
        let (records, rows) = read(&input, Framing::S3Access);
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r["bucket"], "DOC-EXAMPLE-BUCKET1");
        assert_eq!(r["time"], "06/Feb/2019:00:00:38 +0000");
        assert_eq!(r["operation"], "REST.GET.VERSIONING");
        assert_eq!(
            r["request_uri"],
            "GET /DOC-EXAMPLE-BUCKET1?versioning HTTP/1.1"
        );
        assert_eq!(r["http_status"], 200);
        assert_eq!(r["bytes_sent"], 113);
        assert_eq!(r["object_size"], Value::Null);
        assert_eq!(r["total_time"], 7);
        assert_eq!(r["user_agent"], "S3Console/0.4");
        assert_eq!(r["tls_version"], "TLSV1.2");
        assert_eq!(r.as_object().unwrap().len(), 26);
        assert_eq!(
            rows,
            vec![(
                codes::MALFORMED_RECORD,
                2,
                "the line has 4 fields, the s3_access layout has at least 18".into()
            )]
        );
    }
}
