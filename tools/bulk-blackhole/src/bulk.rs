//! Answering one `_bulk` body without storing it: only the action lines are parsed (each is
//! followed by one source line, except `delete`), and the answer is written by hand into a
//! buffer, one item per action, as Elasticsearch/OpenSearch answer a request that fully succeeded.

use crate::filter::{Filter, ITEM_FIELDS};
use serde::Deserialize;
use std::borrow::Cow;

/// The metadata of one action line that the answer repeats.
#[derive(Debug, Default, Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default, rename = "_index")]
    index: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "_id")]
    id: Option<Cow<'a, str>>,
}

/// The four bulk actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `index`: create or replace.
    Index,
    /// `create`: create only.
    Create,
    /// `update`: partial update (its source line is the update body).
    Update,
    /// `delete`: no source line follows.
    Delete,
}

impl Action {
    fn parse(name: &str) -> Option<Action> {
        match name {
            "index" => Some(Action::Index),
            "create" => Some(Action::Create),
            "update" => Some(Action::Update),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Index => "index",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    /// `result` and HTTP status of the item, as a server that stores nothing can honestly say.
    fn outcome(self) -> (&'static str, u16) {
        match self {
            Action::Index | Action::Create => ("created", 201),
            Action::Update => ("updated", 200),
            Action::Delete => ("deleted", 200),
        }
    }
}

/// A body that is not a valid `_bulk` request; answered with 400 as Elasticsearch does.
#[derive(Debug, PartialEq, Eq)]
pub struct BulkError {
    /// Zero-based line of the problem.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl BulkError {
    /// The Elasticsearch-style error body: `{"error":{...},"status":400}`.
    pub fn to_json(&self) -> Vec<u8> {
        let reason = format!("line [{}]: {}", self.line + 1, self.reason);
        serde_json::to_vec(&serde_json::json!({
            "error": {
                "root_cause": [{"type": "illegal_argument_exception", "reason": reason}],
                "type": "illegal_argument_exception",
                "reason": reason,
            },
            "status": 400,
        }))
        .expect("json serializes")
    }
}

/// What one request held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Actions (documents) in the request.
    pub docs: u64,
}

/// Splits off the next line (without its `\n`), returning it and the rest.
fn next_line(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\n', s) {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, &[]),
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|c| c.is_ascii_whitespace())
}

/// Writes `s` as a JSON string literal.
fn push_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("string serializes");
}

/// Answers `body` into `out` (cleared first), keeping what `filter` keeps. `path_index` is the
/// `{index}` of `/{index}/_bulk`, used for actions without `_index`. Actions without `_id` get
/// one made of `id_prefix` and a counter. `seq_no` numbers the items across requests.
pub fn answer(
    body: &[u8],
    path_index: Option<&str>,
    id_prefix: &str,
    seq_no: &mut u64,
    filter: &Filter,
    out: &mut Vec<u8>,
) -> Result<Answered, BulkError> {
    out.clear();
    let mut head = Vec::new();
    if filter.took {
        head.push(&b"\"took\":0"[..]);
    }
    if filter.errors {
        head.push(b"\"errors\":false");
    }
    if filter.items() {
        head.push(b"\"items\":[");
    }
    out.push(b'{');
    out.extend_from_slice(&head.join(&b","[..]));
    let mut rest = body;
    let mut line_no = 0usize;
    let mut docs = 0u64;
    while !rest.is_empty() {
        let (line, after) = next_line(rest);
        rest = after;
        let this_line = line_no;
        line_no += 1;
        if is_blank(line) {
            continue;
        }
        let (action, meta) = parse_action(line).map_err(|reason| BulkError {
            line: this_line,
            reason,
        })?;
        if action != Action::Delete {
            if rest.is_empty() {
                return Err(BulkError {
                    line: this_line,
                    reason: format!("the {} action has no source line", action.name()),
                });
            }
            let (_source, after) = next_line(rest);
            rest = after;
            line_no += 1;
        }
        let index = match (&meta.index, path_index) {
            (Some(i), _) => i.as_ref(),
            (None, Some(i)) => i,
            (None, None) => {
                return Err(BulkError {
                    line: this_line,
                    reason: "index is missing".into(),
                })
            }
        };
        if docs > 0 && filter.items() {
            out.push(b',');
        }
        if filter.items() {
            let item = Item {
                action,
                index,
                id: meta.id.as_deref(),
                id_prefix,
                seq_no: *seq_no,
            };
            push_item(out, &item, filter);
        }
        *seq_no += 1;
        docs += 1;
    }
    if filter.items() {
        out.push(b']');
    }
    out.push(b'}');
    Ok(Answered { docs })
}

/// Reads `{"<action>":{"_index":..,"_id":..,...}}`.
fn parse_action(line: &[u8]) -> Result<(Action, Meta<'_>), String> {
    #[derive(Deserialize)]
    struct One<'a> {
        #[serde(borrow, default)]
        index: Option<Meta<'a>>,
        #[serde(borrow, default)]
        create: Option<Meta<'a>>,
        #[serde(borrow, default)]
        update: Option<Meta<'a>>,
        #[serde(borrow, default)]
        delete: Option<Meta<'a>>,
    }
    let one: One<'_> = serde_json::from_slice(line).map_err(|e| {
        let text = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        format!("malformed action/metadata line: {e}: {text}")
    })?;
    let found = [
        (Action::Index, one.index),
        (Action::Create, one.create),
        (Action::Update, one.update),
        (Action::Delete, one.delete),
    ]
    .into_iter()
    .filter_map(|(a, m)| m.map(|m| (a, m)))
    .collect::<Vec<_>>();
    match <[_; 1]>::try_from(found) {
        Ok([one]) => Ok(one),
        Err(_) => {
            // Either no known action or several: name what the line had.
            let keys: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
                .map_err(|e| format!("malformed action/metadata line: {e}"))?;
            let names: Vec<&str> = keys.keys().map(String::as_str).collect();
            match names.iter().find(|n| Action::parse(n).is_none()) {
                Some(n) => Err(format!("unknown action [{n}]")),
                None => Err(format!(
                    "malformed action/metadata line: expected one action, found {names:?}"
                )),
            }
        }
    }
}

/// One item of the answer.
struct Item<'a> {
    action: Action,
    index: &'a str,
    id: Option<&'a str>,
    id_prefix: &'a str,
    seq_no: u64,
}

fn push_item(out: &mut Vec<u8>, item: &Item<'_>, filter: &Filter) {
    let (result, status) = item.action.outcome();
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(item.action.name().as_bytes());
    out.extend_from_slice(b"\":{");
    let mut first = true;
    for (name, keep) in ITEM_FIELDS.iter().zip(filter.item_fields) {
        if !keep {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_str(out, name);
        out.push(b':');
        match *name {
            "_index" => push_str(out, item.index),
            "_id" => match item.id {
                Some(id) => push_str(out, id),
                None => push_str(out, &format!("{}{}", item.id_prefix, item.seq_no)),
            },
            "_version" | "_primary_term" => out.push(b'1'),
            "result" => push_str(out, result),
            "_shards" => out.extend_from_slice(b"{\"total\":1,\"successful\":1,\"failed\":0}"),
            "_seq_no" => out.extend_from_slice(item.seq_no.to_string().as_bytes()),
            _ => out.extend_from_slice(status.to_string().as_bytes()),
        }
    }
    out.extend_from_slice(b"}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn run(body: &str, path_index: Option<&str>) -> (Value, u64) {
        let mut out = Vec::new();
        let mut seq = 0;
        let a = answer(
            body.as_bytes(),
            path_index,
            "bh-",
            &mut seq,
            &Filter::default(),
            &mut out,
        )
        .unwrap();
        (serde_json::from_slice(&out).unwrap(), a.docs)
    }

    #[test]
    fn one_item_per_action_with_index_and_id_from_the_action_line() {
        let body = concat!(
            "{\"index\":{\"_index\":\"clicks-2024-05-01\",\"_id\":\"a1\"}}\n",
            "{\"user\":\"x\",\"nested\":{\"index\":{\"_index\":\"not-an-action\"}}}\n",
            "{\"create\":{\"_index\":\"c\",\"_id\":\"q\\\"uote\"}}\n",
            "{\"a\":1}\n",
        );
        let (v, docs) = run(body, None);
        assert_eq!(docs, 2);
        assert_eq!(v["errors"], json!(false));
        assert_eq!(v["took"], json!(0));
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["index"]["_index"], "clicks-2024-05-01");
        assert_eq!(items[0]["index"]["_id"], "a1");
        assert_eq!(items[0]["index"]["status"], 201);
        assert_eq!(items[0]["index"]["result"], "created");
        assert_eq!(items[1]["create"]["_index"], "c");
        assert_eq!(items[1]["create"]["_id"], "q\"uote");
        assert_eq!(items[1]["create"]["_seq_no"], 1);
    }

    #[test]
    fn path_index_auto_ids_delete_and_blank_lines() {
        let body = "{\"index\":{}}\n{\"a\":1}\n\n{\"delete\":{\"_id\":\"d\"}}\n{\"update\":{\"_index\":\"u\",\"_id\":\"x\"}}\n{\"doc\":{}}";
        let (v, docs) = run(body, Some("logs"));
        assert_eq!(docs, 3);
        let items = v["items"].as_array().unwrap();
        assert_eq!(items[0]["index"]["_index"], "logs");
        assert_eq!(items[0]["index"]["_id"], "bh-0");
        assert_eq!(items[1]["delete"]["_index"], "logs");
        assert_eq!(items[1]["delete"]["result"], "deleted");
        assert_eq!(items[2]["update"]["_index"], "u");
        assert_eq!(items[2]["update"]["status"], 200);
    }

    #[test]
    fn filter_path_keeps_only_what_it_names() {
        let body = "{\"index\":{\"_index\":\"i\",\"_id\":\"a\"}}\n{}\n{\"create\":{\"_index\":\"i\"}}\n{}\n";
        let mut out = Vec::new();
        let mut seq = 0;
        let filter = Filter::parse("errors,items.*.status,items.*.error");
        let a = answer(body.as_bytes(), None, "bh-", &mut seq, &filter, &mut out).unwrap();
        assert_eq!(a.docs, 2);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"errors":false,"items":[{"index":{"status":201}},{"create":{"status":201}}]}"#
        );
        let filter = Filter::parse("items.*.error");
        answer(body.as_bytes(), None, "bh-", &mut seq, &filter, &mut out).unwrap();
        assert_eq!(out, b"{}");
        let filter = Filter::parse("took,items.*._id");
        answer(body.as_bytes(), None, "bh-", &mut seq, &filter, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"took":0,"items":[{"index":{"_id":"a"}},{"create":{"_id":"bh-5"}}]}"#
        );
    }

    #[test]
    fn empty_body_answers_no_items() {
        let (v, docs) = run("", None);
        assert_eq!(docs, 0);
        assert_eq!(v["items"], json!([]));
    }

    #[test]
    fn bad_bodies_are_400_with_the_line() {
        let mut out = Vec::new();
        let mut seq = 0;
        let cases = [
            ("{\"index\":{\"_id\":\"1\"}}\n{}\n", 0, "index is missing"),
            ("{\"index\":{\"_index\":\"i\"}}\n", 0, "no source line"),
            ("{\"upsert\":{}}\n{}\n", 0, "unknown action [upsert]"),
            (
                "{\"index\":{\"_index\":\"i\"}}\n{}\nnot json\n",
                2,
                "malformed",
            ),
        ];
        for (body, line, reason) in cases {
            let e = answer(
                body.as_bytes(),
                None,
                "",
                &mut seq,
                &Filter::default(),
                &mut out,
            )
            .unwrap_err();
            assert_eq!(e.line, line, "{body}");
            assert!(e.reason.contains(reason), "{body}: {}", e.reason);
            let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
            assert_eq!(v["status"], 400);
        }
    }
}
