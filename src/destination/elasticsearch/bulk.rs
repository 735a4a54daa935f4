//! `_bulk` bodies built by hand into reusable buffers: an action line naming the index and id,
//! then the record's original bytes as the source line. Records are never parsed here.

use crate::source::framing::Framing;

/// Bytes an action line adds besides the index name and the id.
const ACTION_OVERHEAD: usize = 40;

/// One document inside a [`Body`]: where its lines are and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Index of the object in the batch.
    pub object: usize,
    /// Line of the record in the object.
    pub line: u64,
    /// Ordinal of the record in the object.
    pub ordinal: u64,
    /// Offset of the action line.
    pub start: usize,
    /// Offset of the source line.
    pub src: usize,
    /// Offset one past the source line's newline.
    pub end: usize,
}

/// A document copied out of its request, to be sent again or reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Index of the object in the batch.
    pub object: usize,
    /// Line of the record in the object.
    pub line: u64,
    /// Ordinal of the record in the object.
    pub ordinal: u64,
    /// The action line and the source line, each ending in a newline.
    pub lines: Vec<u8>,
    /// Where the source line starts in `lines`.
    pub src: usize,
    /// The last status the server gave it (0 when the request never got an answer).
    pub status: u16,
    /// The last error about it.
    pub reason: String,
}

impl Pending {
    /// The source line without its newline: the record as sent.
    pub fn source(&self) -> &[u8] {
        let s = &self.lines[self.src..];
        s.strip_suffix(b"\n").unwrap_or(s)
    }

    /// The index and the id (when one was sent) named by the action line.
    pub fn index_and_id(&self) -> (String, Option<String>) {
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(rename = "_index")]
            index: String,
            #[serde(rename = "_id")]
            id: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(alias = "create")]
            index: Meta,
        }
        match serde_json::from_slice::<Line>(&self.lines[..self.src]) {
            Ok(a) => (a.index.index, a.index.id),
            Err(_) => (String::new(), None),
        }
    }
}

/// How a document's id is written into its action line.
#[derive(Debug, Clone, Copy)]
pub enum DocId<'a> {
    /// No `_id`: the server assigns one.
    Auto,
    /// Characters that need no JSON escaping (a deterministic id).
    Plain(&'a [u8]),
    /// Any text (a record's own field), escaped as a JSON string.
    Text(&'a str),
}

/// What one document's action line says, and what its source line gains.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// The index name as a JSON string literal.
    pub quoted_index: &'a str,
    /// The `_id`.
    pub id: DocId<'a>,
    /// `create` instead of `index`.
    pub create: bool,
    /// A JSON string literal to add to the source as `@timestamp`, or None to leave it as is.
    pub stamp: Option<&'a str>,
}

#[cfg(test)]
impl<'a> Action<'a> {
    /// An `index` action.
    pub fn index(quoted_index: &'a str, id: DocId<'a>) -> Self {
        Action {
            quoted_index,
            id,
            create: false,
            stamp: None,
        }
    }
}

/// One `_bulk` request body being filled.
#[derive(Debug, Default)]
pub struct Body {
    /// NDJSON: action and source lines.
    pub buf: Vec<u8>,
    /// The documents, in order.
    pub items: Vec<Item>,
}

impl Body {
    /// An empty body reusing a buffer from an earlier request.
    pub fn reusing(mut buf: Vec<u8>) -> Self {
        buf.clear();
        Body {
            buf,
            items: Vec::new(),
        }
    }

    /// True when it holds no documents.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether a document of `source_len` bytes should go into the next request instead,
    /// given the limits on bytes and documents per request.
    pub fn is_full_for(&self, source_len: usize, max_bytes: usize, max_docs: usize) -> bool {
        !self.is_empty()
            && (self.items.len() >= max_docs
                || self.buf.len() + source_len + ACTION_OVERHEAD + 64 > max_bytes)
    }

    /// Appends a record with its action line.
    pub fn push_record(
        &mut self,
        action: Action<'_>,
        source: &[u8],
        framing: Framing,
        object: usize,
        line: u64,
        ordinal: u64,
    ) {
        let start = self.buf.len();
        let b = &mut self.buf;
        b.extend_from_slice(if action.create {
            b"{\"create\":{\"_index\":"
        } else {
            b"{\"index\":{\"_index\":"
        });
        b.extend_from_slice(action.quoted_index.as_bytes());
        match action.id {
            DocId::Auto => {}
            DocId::Plain(id) => {
                b.extend_from_slice(b",\"_id\":\"");
                b.extend_from_slice(id);
                b.push(b'"');
            }
            DocId::Text(id) => {
                b.extend_from_slice(b",\"_id\":");
                serde_json::to_writer(&mut *b, id).expect("string serializes");
            }
        }
        b.extend_from_slice(b"}}\n");
        let src = b.len();
        match action.stamp {
            None => push_source(b, framing, source),
            Some(stamp) => {
                push_source(b, framing, source);
                stamp_source(b, src, stamp);
            }
        }
        self.items.push(Item {
            object,
            line,
            ordinal,
            start,
            src,
            end: self.buf.len(),
        });
    }

    /// Appends a document sent before.
    pub fn push_pending(&mut self, p: &Pending) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&p.lines);
        self.items.push(Item {
            object: p.object,
            line: p.line,
            ordinal: p.ordinal,
            start,
            src: start + p.src,
            end: self.buf.len(),
        });
    }
}

/// Copies one document out of a request body.
pub fn pending(buf: &[u8], item: &Item, status: u16, reason: String) -> Pending {
    Pending {
        object: item.object,
        line: item.line,
        ordinal: item.ordinal,
        lines: buf[item.start..item.end].to_vec(),
        src: item.src - item.start,
        status,
        reason,
    }
}

/// Adds `"@timestamp":<stamp>` as the first key of the source line written at `src` when it is
/// a JSON object (a line that is not one is left for the server to refuse).
fn stamp_source(b: &mut Vec<u8>, src: usize, stamp: &str) {
    let Some(open) = b[src..]
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .map(|i| src + i)
        .filter(|&i| b[i] == b'{')
    else {
        return;
    };
    let empty = b[open + 1..]
        .iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|&c| c == b'}');
    let mut field = Vec::with_capacity(stamp.len() + 16);
    field.extend_from_slice(b"\"@timestamp\":");
    field.extend_from_slice(stamp.as_bytes());
    if !empty {
        field.push(b',');
    }
    b.splice(open + 1..open + 1, field);
}

/// Writes a record as one source line. JSON records go as they are: a raw newline can only be
/// whitespace between tokens in valid JSON (inside strings it must be escaped), so a
/// concatenated-JSON value spanning lines becomes one line by turning newlines into spaces.
/// Text lines become `{"message": "<line>"}`.
fn push_source(b: &mut Vec<u8>, framing: Framing, source: &[u8]) {
    match framing {
        Framing::Lines => {
            b.extend_from_slice(b"{\"message\":");
            serde_json::to_writer(&mut *b, &String::from_utf8_lossy(source))
                .expect("string serializes");
            b.push(b'}');
        }
        // A JSON line holds no newline (the framer cut it there): no need to look for one.
        Framing::JsonLines => b.extend_from_slice(source),
        _ if !source.contains(&b'\n') => b.extend_from_slice(source),
        _ => b.extend(source.iter().map(|&c| if c == b'\n' { b' ' } else { c })),
    }
    b.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_ndjson_with_original_bytes() {
        let mut body = Body::default();
        body.push_record(
            Action::index("\"logs-2016-02-25\"", DocId::Plain(b"abc")),
            br#"{"a":1}"#,
            Framing::JsonLines,
            0,
            1,
            0,
        );
        body.push_record(
            Action::index("\"logs\"", DocId::Auto),
            b"{\n \"b\": [1,\n2]}",
            Framing::JsonConcat,
            1,
            3,
            7,
        );
        body.push_record(
            Action::index("\"logs\"", DocId::Text("x\"y")),
            b"plain \"t\"",
            Framing::Lines,
            1,
            4,
            8,
        );
        assert_eq!(
            String::from_utf8(body.buf.clone()).unwrap(),
            concat!(
                "{\"index\":{\"_index\":\"logs-2016-02-25\",\"_id\":\"abc\"}}\n{\"a\":1}\n",
                "{\"index\":{\"_index\":\"logs\"}}\n{  \"b\": [1, 2]}\n",
                "{\"index\":{\"_index\":\"logs\",\"_id\":\"x\\\"y\"}}\n{\"message\":\"plain \\\"t\\\"\"}\n",
            )
        );
        let p = pending(&body.buf, &body.items[2], 429, "busy".into());
        assert_eq!(p.source(), br#"{"message":"plain \"t\""}"#);
        assert_eq!(p.index_and_id(), ("logs".into(), Some("x\"y".into())));
        assert_eq!((p.object, p.line, p.ordinal), (1, 4, 8));

        let mut again = Body::reusing(body.buf);
        again.push_pending(&p);
        assert_eq!(again.buf, p.lines);
        assert_eq!(
            &again.buf[again.items[0].src..again.items[0].end - 1],
            p.source()
        );
    }

    #[test]
    fn creates_carry_a_timestamp_when_asked() {
        let mut body = Body::default();
        let create = |id| Action {
            quoted_index: "\"ds\"",
            id: DocId::Plain(id),
            create: true,
            stamp: Some("\"2026-12-07T10:00:00Z\""),
        };
        body.push_record(create(b"a"), br#" {"m":1}"#, Framing::JsonLines, 0, 1, 0);
        body.push_record(create(b"b"), b"{ }", Framing::JsonLines, 0, 2, 1);
        body.push_record(create(b"c"), b"text", Framing::Lines, 0, 3, 2);
        body.push_record(create(b"d"), b"[1]", Framing::JsonLines, 0, 4, 3);
        assert_eq!(
            String::from_utf8(body.buf.clone()).unwrap(),
            concat!(
                "{\"create\":{\"_index\":\"ds\",\"_id\":\"a\"}}\n {\"@timestamp\":\"2026-12-07T10:00:00Z\",\"m\":1}\n",
                "{\"create\":{\"_index\":\"ds\",\"_id\":\"b\"}}\n{\"@timestamp\":\"2026-12-07T10:00:00Z\" }\n",
                "{\"create\":{\"_index\":\"ds\",\"_id\":\"c\"}}\n{\"@timestamp\":\"2026-12-07T10:00:00Z\",\"message\":\"text\"}\n",
                "{\"create\":{\"_index\":\"ds\",\"_id\":\"d\"}}\n[1]\n",
            )
        );
        let p = pending(&body.buf, &body.items[0], 409, String::new());
        assert_eq!(p.index_and_id(), ("ds".into(), Some("a".into())));
    }

    #[test]
    fn limits_leave_room_for_the_first_document() {
        let mut body = Body::default();
        assert!(!body.is_full_for(10_000, 1024, 1));
        body.push_record(
            Action::index("\"i\"", DocId::Auto),
            b"{}",
            Framing::JsonLines,
            0,
            1,
            0,
        );
        assert!(body.is_full_for(1, 1024, 1));
        assert!(!body.is_full_for(100, 1024, 2));
        assert!(body.is_full_for(1000, 1024, 2));
    }
}
