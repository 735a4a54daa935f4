//! Redshift with columnar input and SUPER documents, against the local stack and the emulator:
//! `source.format = "parquet"` loads a batch of Parquet objects through `FORMAT AS PARQUET`
//! exactly once, a corrupt or mismatched file is left out alone with a `load_errors` row while
//! the rest of its batch loads (named by the error, or found by halves when it is not), `JSON 'noshred'` loads drifting shapes into one SUPER column and
//! rejects a malformed line with a row, and bad `copy_options` are refused at startup.

mod common;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use common::redshift::*;
use common::*;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

/// A Parquet object for `public.events` (id, user_id, action, ts, pad): `n` rows, ids
/// `<tag>-<i>`, row groups of 10.
fn events_parquet(tag: &str, n: usize) -> Vec<u8> {
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    write(vec![
        ("id", Arc::new(StringArray::from(ids)) as ArrayRef),
        (
            "user_id",
            Arc::new(Int32Array::from((0..n as i32).collect::<Vec<_>>())),
        ),
        (
            "action",
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| (i % 3 != 0).then_some("click"))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(
                (0..n as i64)
                    .map(|i| 1_764_300_000_000_000 + i * 1_000_000)
                    .collect::<Vec<_>>(),
            )),
        ),
        ("pad", Arc::new(StringArray::from(vec![Some("x"); n]))),
    ])
}

fn write(cols: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(10))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

/// A Redshift pipeline reading `format` into `table` with `copy_options`.
fn config(s: &Setup, name: &str, format: &str, table: &str, copy_options: &str) -> String {
    let destination = format!(
        "type = \"redshift\"\nurl = \"{}\"\ntable = \"{table}\"\ncopy_options = \"{copy_options}\"\n\
         iam_role = \"{ROLE}\"\nmanifest_prefix = \"manifests/{name}/\"\nconnect_timeout_s = 2",
        s.emu.url()
    );
    s.stack.base_config(&s.control) + &pipeline_block(name, &s.bucket, format, 60, &destination)
}

#[tokio::test]
async fn a_batch_of_parquet_objects_loads_every_row_once() {
    let s = setup("rspq", EVENTS).await;
    for i in 0..4 {
        let body = events_parquet(&format!("p{i}"), 25);
        put(&s.s3, &s.bucket, &format!("in/pq/part-{i}.parquet"), body).await;
    }
    let d = Daemon::start(&config(&s, "pq", "parquet", "public.events", ""));
    s.settled_with(100).await;
    let got = query_strings(
        &s.rs,
        "SELECT id || '|' || user_id || '|' || coalesce(action, 'null') || '|' || ts::text \
         FROM public.events WHERE id IN ('p2-0', 'p2-7') ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        vec![
            "p2-0|0|null|2025-11-28 03:20:00",
            "p2-7|7|click|2025-11-28 03:20:07"
        ]
    );
    let loaded = query_i64(
        &s.control,
        "SELECT count(*) FROM batches WHERE state = 'loaded'",
    )
    .await;
    assert_eq!(
        s.rows("SELECT count(*) FROM public.stageload_commits")
            .await,
        loaded,
        "one marker per loaded batch"
    );
    assert_eq!(
        query_i64(&s.control, "SELECT count(*) FROM load_errors").await,
        0
    );
    // The manifest carries every object's size, which a columnar COPY needs.
    let manifests = keys(&s.s3, &s.bucket, "manifests/pq/").await;
    let body = String::from_utf8(get(&s.s3, &s.bucket, &manifests[0]).await.unwrap()).unwrap();
    assert!(body.contains("\"content_length\""), "{body}");
    drop(d);
}

#[tokio::test]
async fn a_corrupt_and_a_mismatched_parquet_file_are_skipped_and_the_rest_loads() {
    let s = setup("rspqbad", EVENTS).await;
    let mut corrupt = events_parquet("b", 20);
    corrupt.truncate(corrupt.len() / 2);
    let narrow = write(vec![(
        "id",
        Arc::new(StringArray::from(vec!["n-0", "n-1"])) as ArrayRef,
    )]);
    put(
        &s.s3,
        &s.bucket,
        "in/bad/a.parquet",
        events_parquet("a", 20),
    )
    .await;
    put(&s.s3, &s.bucket, "in/bad/b.parquet", corrupt).await;
    put(
        &s.s3,
        &s.bucket,
        "in/bad/c.parquet",
        events_parquet("c", 20),
    )
    .await;
    put(&s.s3, &s.bucket, "in/bad/d.parquet", narrow).await;
    let d = Daemon::start(&config(&s, "bad", "parquet", "public.events", ""));
    s.settled_with(40).await;
    assert_eq!(
        s.rows("SELECT count(*) FROM public.events WHERE id LIKE 'a-%' OR id LIKE 'c-%'")
            .await,
        40
    );
    assert_eq!(
        s.object_states().await,
        vec![
            "in/bad/a.parquet=loaded",
            "in/bad/b.parquet=skipped",
            "in/bad/c.parquet=loaded",
            "in/bad/d.parquet=skipped",
        ]
    );
    let rows = query_strings(
        &s.control,
        "SELECT filename || '|' || err_code || '|' || err_reason FROM load_errors ORDER BY filename",
    )
    .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].starts_with(&format!(
            "s3://{}/in/bad/b.parquet|15001|Spectrum Scan Error: ",
            s.bucket
        )),
        "{rows:?}"
    );
    assert!(rows[0].contains("is not a valid Parquet file"), "{rows:?}");
    assert!(
        rows[1].starts_with(&format!(
            "s3://{}/in/bad/d.parquet|15007|Spectrum Scan Error: ",
            s.bucket
        )),
        "{rows:?}"
    );
    assert!(
        rows[1].contains("Table columns: 5, Data columns: 1"),
        "{rows:?}"
    );
    // The skipped files are left in the error manifest, the good ones are not.
    let errs = keys(&s.s3, &s.bucket, "errors/bad/errors/manifests/").await;
    assert_eq!(errs.len(), 1, "{errs:?}");
    let body = String::from_utf8(get(&s.s3, &s.bucket, &errs[0]).await.unwrap()).unwrap();
    assert!(body.contains("in/bad/b.parquet") && body.contains("in/bad/d.parquet"));
    assert!(!body.contains("in/bad/a.parquet"), "{body}");
    drop(d);
}

#[tokio::test]
async fn a_bad_parquet_file_the_error_does_not_name_is_found_by_halves() {
    let s = setup("rspqhalf", EVENTS).await;
    // Every failing columnar COPY into events answers without the file's name.
    exec(
        &s.rs,
        "INSERT INTO redshift_emu_faults VALUES ('scan_unnamed', 100, 'events')",
    )
    .await;
    for name in ["a", "b", "c", "d", "e"] {
        let mut body = events_parquet(name, 10);
        if name == "d" {
            body.truncate(body.len() / 2);
        }
        put(&s.s3, &s.bucket, &format!("in/half/{name}.parquet"), body).await;
    }
    let d = Daemon::start(&config(&s, "half", "parquet", "public.events", ""));
    s.settled_with(40).await;
    assert_eq!(
        s.object_states().await,
        vec![
            "in/half/a.parquet=loaded",
            "in/half/b.parquet=loaded",
            "in/half/c.parquet=loaded",
            "in/half/d.parquet=skipped",
            "in/half/e.parquet=loaded",
        ]
    );
    assert_eq!(
        s.rows("SELECT count(*) FROM public.events WHERE id LIKE 'd-%'")
            .await,
        0
    );
    let rows = query_strings(
        &s.control,
        "SELECT filename || '|' || err_code || '|' || err_reason FROM load_errors",
    )
    .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with(&format!(
            "s3://{}/in/half/d.parquet|15001|Spectrum Scan Error",
            s.bucket
        )),
        "{rows:?}"
    );
    assert!(
        rows[0].contains("found by loading the batch's files in halves"),
        "{rows:?}"
    );
    assert!(
        d.log_text().contains("probe copy failed"),
        "the halves were probed"
    );
    let left = keys(&s.s3, &s.bucket, "").await;
    assert!(
        left.iter().any(|k| k.ends_with(".manifest")),
        "the batch's manifest stays: {left:?}"
    );
    assert!(
        !left.iter().any(|k| k.ends_with(".probe")),
        "the probe manifest is deleted once the search ends: {left:?}"
    );
    drop(d);
}

#[tokio::test]
async fn noshred_loads_drifting_shapes_into_super_and_rejects_a_malformed_line() {
    let s = setup("rsnoshred", EVENTS).await;
    // The emulator maps SUPER to jsonb once it has started.
    exec(&s.rs, "CREATE TABLE public.docs (doc super)").await;
    let first = "{\"id\":\"a\",\"user\":{\"name\":\"ann\"}}\n\
                 {\"id\":\"b\",\"tags\":[\"x\",\"y\"],\"n\":2}\n\
                 {\"id\":\"c\",\"user\":tru}\n\
                 {\"id\":\"d\"}\n";
    let second = "{\"id\":\"e\",\"user\":{\"name\":\"eve\",\"age\":30},\"extra\":null}";
    put(
        &s.s3,
        &s.bucket,
        "in/docs/1.json",
        first.as_bytes().to_vec(),
    )
    .await;
    put(
        &s.s3,
        &s.bucket,
        "in/docs/2.json",
        second.as_bytes().to_vec(),
    )
    .await;
    let d = Daemon::start(&config(
        &s,
        "docs",
        "json_lines",
        "public.docs",
        "FORMAT AS JSON 'noshred' MAXERROR 10",
    ));
    wait_for("four documents", LONG, || async {
        (s.rows("SELECT count(*) FROM public.docs").await == 4).then_some(())
    })
    .await;
    s.wait_batches_settled("noshred batch settled").await;
    let docs = query_strings(
        &s.rs,
        "SELECT doc->>'id' || '|' || (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(doc) k) \
         FROM public.docs ORDER BY 1",
    )
    .await;
    assert_eq!(
        docs,
        vec!["a|id,user", "b|id,n,tags", "d|id", "e|extra,id,user"]
    );
    let errors = query_strings(
        &s.control,
        "SELECT filename || '|' || line_number || '|' || err_code || '|' || raw_line FROM load_errors",
    )
    .await;
    assert_eq!(
        errors,
        vec![format!(
            "s3://{}/in/docs/1.json|3|1224|{{\"id\":\"c\",\"user\":tru}}",
            s.bucket
        )]
    );
    assert_eq!(
        s.object_states().await,
        vec!["in/docs/1.json=loaded", "in/docs/2.json=loaded"]
    );
    drop(d);
}

#[tokio::test]
async fn noshred_into_a_table_of_several_columns_fails_the_startup_check() {
    let s = setup("rsnoshred5", EVENTS).await;
    let d = Daemon::start(&config(
        &s,
        "wide",
        "json_lines",
        "public.events",
        "JSON 'noshred'",
    ));
    wait_log(
        || d.log_text(),
        &[
            "destination check failed",
            "JSON 'noshred' loads each document into one SUPER column, but public.events has 5 columns",
        ],
    )
    .await;
    drop(d);
}

#[test]
fn copy_options_columnar_input_cannot_take_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let base = |format: &str, options: &str, extra: &str| {
        format!(
            r#"
[control]
database_url = "postgres://u:p@127.0.0.1:1/db"
[[pipeline]]
name = "cols"
[pipeline.source]
bucket = "b"
format = "{format}"
[pipeline.destination]
type = "redshift"
url = "postgres://u@127.0.0.1:1/dev"
table = "public.t"
iam_role = "default"
copy_options = "{options}"
{extra}
"#
        )
    };
    let cases = [
        (
            base("parquet", "MAXERROR 10", ""),
            "pipeline \"cols\".destination.copy_options: MAXERROR is not supported with PARQUET input",
        ),
        (
            base("orc", "IGNOREHEADER 1", ""),
            "pipeline \"cols\".destination.copy_options: IGNOREHEADER is not supported with ORC input",
        ),
        (
            base("parquet", "JSON 'auto'", ""),
            "pipeline \"cols\".destination.copy_options: JSON contradicts source.format = \\\"parquet\\\"",
        ),
        (
            base("json_lines", "FORMAT AS PARQUET", ""),
            "pipeline \"cols\".destination.copy_options: PARQUET contradicts",
        ),
        (
            base("parquet", "", "region = \"us-west-2\""),
            "pipeline \"cols\".destination.region",
        ),
        (
            base("lines", "JSON 'noshred'", ""),
            "pipeline \"cols\".source.format",
        ),
        (
            base("json_lines", "JSON 'noshred'", "columns = [\"a\", \"b\"]"),
            "pipeline \"cols\".destination.columns",
        ),
    ];
    for (text, expected) in cases {
        let stderr = check_config_refused(dir.path(), &text);
        let expected = expected.replace("\\\"", "\"");
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in: {stderr}"
        );
    }
    for ok in [
        base("parquet", "ACCEPTINVCHARS FILLRECORD STATUPDATE OFF", ""),
        base("orc", "FORMAT AS ORC", ""),
        base("json_concat", "FORMAT JSON 'noshred' MAXERROR 5", ""),
    ] {
        let path = dir.path().join("ok.toml");
        std::fs::write(&path, &ok).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stageload"))
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{ok}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
