//! After-load actions through the daemon: loaded objects deleted, moved or tagged once, a
//! skipped object left alone, a newer object written to the same key never touched, and each
//! of the crash points (kill -9 between the settle and the action, between the action and its
//! record, and for Redshift between the COPY's commit and the settle) ending with every object
//! delivered once and acted on once.

mod common;

use common::redshift::*;
use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// A file-destination pipeline `in/<name>/` with `extra` lines in its source table.
fn config(stack: &Stack, db: &str, name: &str, bucket: &str, dir: &Path, extra: &str) -> String {
    stack.base_config(db)
        + &file_pipeline(name, bucket, dir, 30).replace(
            "format = \"json_lines\"\n",
            &format!("format = \"json_lines\"\n{extra}\n"),
        )
}

/// `key=state:after_load_state` of every object in the ledger.
async fn ledger(db: &str) -> Vec<String> {
    query_strings(
        db,
        "SELECT key || '=' || state || ':' || coalesce(after_load_state, '-') \
         FROM staged_objects ORDER BY key, id",
    )
    .await
}

/// Waits until no after-load action is pending and `n` objects are settled.
async fn wait_actions_settled(db: &str, n: i64) {
    wait_for("after-load actions settled", LONG, || async {
        // One query: counted apart, objects recorded between the two would look settled.
        let open = query_i64(
            db,
            &format!(
                "SELECT CASE WHEN count(*) = {n} THEN count(*) FILTER (WHERE state NOT IN \
                 ('loaded', 'skipped') OR after_load_state = 'pending') ELSE -1 END \
                 FROM staged_objects"
            ),
        )
        .await;
        (open == 0).then_some(())
    })
    .await;
}

/// How many times each record id was delivered to the file destination.
fn deliveries(dir: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in delivered_lines(dir) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        *counts
            .entry(v["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

fn assert_delivered_once(dir: &Path, tags: &[&str], n: usize) {
    let counts = deliveries(dir);
    for tag in tags {
        for i in 0..n {
            let id = format!("{tag}-{i}");
            assert_eq!(counts.get(&id), Some(&1), "{id} delivered once");
        }
    }
    assert_eq!(counts.len(), tags.len() * n, "nothing else delivered");
}

#[tokio::test]
async fn loaded_objects_are_deleted_and_a_skipped_one_stays() {
    let stack = Stack::get();
    let db = stack.fresh_database("aldel").await;
    let s3 = stack.s3().await;
    let bucket = stack.bucket("aldel").await;
    let dir = tempfile::tempdir().unwrap();
    put(&s3, &bucket, "in/del/a.json", json_lines("a", 10, 60)).await;
    put(&s3, &bucket, "in/del/b.json", json_lines("b", 10, 60)).await;
    // Not gzip although named so: the file is skipped with a row, and must stay.
    put(
        &s3,
        &bucket,
        "in/del/c.json.gz",
        b"not gzip at all\n".to_vec(),
    )
    .await;
    let daemon = Daemon::start(&config(
        &stack,
        &db,
        "del",
        &bucket,
        dir.path(),
        "after_load = \"delete\"",
    ));
    wait_actions_settled(&db, 3).await;
    assert_eq!(
        ledger(&db).await,
        vec![
            "in/del/a.json=loaded:done",
            "in/del/b.json=loaded:done",
            "in/del/c.json.gz=skipped:-"
        ]
    );
    assert_eq!(
        keys(&s3, &bucket, "in/del/").await,
        vec!["in/del/c.json.gz"]
    );
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM load_errors WHERE filename LIKE '%c.json.gz'"
        )
        .await,
        1,
        "the skipped object has its row"
    );
    // Three more listings: nothing deleted comes back, nothing is loaded twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        3
    );
    assert_delivered_once(dir.path(), &["a", "b"], 10);
    assert!(daemon.log_text().contains("after-load action applied"));
}

#[tokio::test]
async fn a_move_killed_between_the_action_and_its_record_is_recorded_once() {
    let stack = Stack::get();
    let db = stack.fresh_database("almv").await;
    let s3 = stack.s3().await;
    let bucket = stack.bucket("almv").await;
    let dir = tempfile::tempdir().unwrap();
    let a = json_lines("a", 10, 60);
    put(&s3, &bucket, "in/mv/a.json", a.clone()).await;
    put(&s3, &bucket, "in/mv/b.json", json_lines("b", 10, 60)).await;
    let text = config(
        &stack,
        &db,
        "mv",
        &bucket,
        dir.path(),
        "after_load = \"move\"\nafter_load_prefix = \"archive/\"",
    );
    let mut first =
        Daemon::start_with_env(&text, &[("STAGELOAD_TEST_AFTER_LOAD_PAUSE", "after:60000")]);
    wait_log(
        || first.log_text(),
        &["test hook: pausing after-load action after"],
    )
    .await;
    // Both moves ran (they go in parallel) and neither was recorded.
    wait_for("both objects copied", LONG, || async {
        (keys(&s3, &bucket, "archive/").await.len() == 2).then_some(())
    })
    .await;
    first.kill9();
    assert_eq!(
        ledger(&db).await,
        vec!["in/mv/a.json=loaded:pending", "in/mv/b.json=loaded:pending"]
    );
    let _second = Daemon::start(&text);
    wait_actions_settled(&db, 2).await;
    assert_eq!(
        ledger(&db).await,
        vec!["in/mv/a.json=loaded:done", "in/mv/b.json=loaded:done"]
    );
    assert_eq!(
        query_strings(
            &db,
            "SELECT after_load_key FROM staged_objects ORDER BY key"
        )
        .await,
        vec![
            format!("{bucket}/archive/in/mv/a.json"),
            format!("{bucket}/archive/in/mv/b.json")
        ]
    );
    assert!(keys(&s3, &bucket, "in/mv/").await.is_empty());
    assert_eq!(
        keys(&s3, &bucket, "archive/").await,
        vec!["archive/in/mv/a.json", "archive/in/mv/b.json"]
    );
    assert_eq!(
        get(&s3, &bucket, "archive/in/mv/a.json").await.unwrap(),
        a,
        "moved intact"
    );
    // The archive is outside what the pipeline stages: two more listings stage nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        2
    );
    assert_delivered_once(dir.path(), &["a", "b"], 10);
}

#[tokio::test]
async fn a_kill_before_the_delete_leaves_the_object_and_a_newer_write_is_never_deleted_unloaded() {
    let stack = Stack::get();
    let db = stack.fresh_database("alnew").await;
    let s3 = stack.s3().await;
    let bucket = stack.bucket("alnew").await;
    let dir = tempfile::tempdir().unwrap();
    put(&s3, &bucket, "in/new/a.json", json_lines("a", 10, 60)).await;
    let text = config(
        &stack,
        &db,
        "new",
        &bucket,
        dir.path(),
        "after_load = \"delete\"",
    );
    let mut first = Daemon::start_with_env(
        &text,
        &[("STAGELOAD_TEST_AFTER_LOAD_PAUSE", "before:60000")],
    );
    wait_log(
        || first.log_text(),
        &["test hook: pausing after-load action before"],
    )
    .await;
    assert_eq!(ledger(&db).await, vec!["in/new/a.json=loaded:pending"]);
    let (code, status, err) = first.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status[0]["after_load_pending"], 1, "{status}");
    assert_eq!(status[0]["after_load_failed"], 0, "{status}");
    // The key is written again before the delete: the newer object is not the loaded one.
    put(&s3, &bucket, "in/new/a.json", json_lines("a2", 10, 60)).await;
    first.kill9();
    assert_eq!(keys(&s3, &bucket, "in/new/").await, vec!["in/new/a.json"]);
    let second = Daemon::start(&text);
    wait_actions_settled(&db, 1).await;
    assert_eq!(
        ledger(&db).await,
        vec!["in/new/a.json=loaded:superseded"],
        "the loaded object's delete found another ETag at the key"
    );
    assert_eq!(
        get(&s3, &bucket, "in/new/a.json").await.unwrap(),
        json_lines("a2", 10, 60),
        "the newer object is still there"
    );
    // s3s-fs lists without ETags, so a listing cannot tell the key was written again (on S3
    // it can); a reload HEADs the key and stages the newer object, which is then loaded and
    // deleted in its turn.
    let (code, _, err) = second.cli(&["backfill", "--pipeline", "new", "--reload"]);
    assert_eq!(code, 0, "{err}");
    wait_actions_settled(&db, 2).await;
    assert_eq!(
        ledger(&db).await,
        vec![
            "in/new/a.json=loaded:superseded",
            "in/new/a.json=loaded:done"
        ]
    );
    assert!(keys(&s3, &bucket, "in/new/").await.is_empty());
    assert_delivered_once(dir.path(), &["a", "a2"], 10);
}

/// An S3 client for moto's server (which implements object tagging and versioning; s3s-fs
/// answers tagging with NotImplemented).
async fn moto_s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn a_tag_is_added_beside_the_objects_own_tags_on_the_loaded_version() {
    let stack = Stack::get();
    let Ok(moto) = std::env::var("STAGELOAD_SQS_ENDPOINT") else {
        panic!("moto's server is part of the local stack (scripts/stack.sh up)");
    };
    let db = stack.fresh_database("altag").await;
    let s3 = moto_s3(&moto).await;
    let bucket = Stack::unique("altag");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket(&bucket)
        .key("in/tag/a.json")
        .tagging("team=data")
        .body(json_lines("a", 10, 60).into())
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = config(
        &stack,
        &db,
        "tag",
        &bucket,
        dir.path(),
        "after_load = \"tag\"\nafter_load_tag = \"lifecycle=expire\"",
    )
    .replace(&stack.s3_endpoint, &moto);
    let _daemon = Daemon::start(&text);
    wait_actions_settled(&db, 1).await;
    assert_eq!(ledger(&db).await, vec!["in/tag/a.json=loaded:done"]);
    let tags = s3
        .get_object_tagging()
        .bucket(&bucket)
        .key("in/tag/a.json")
        .send()
        .await
        .unwrap();
    let mut got: Vec<String> = tags
        .tag_set()
        .iter()
        .map(|t| format!("{}={}", t.key(), t.value()))
        .collect();
    got.sort();
    assert_eq!(got, vec!["lifecycle=expire", "team=data"]);
    assert_delivered_once(dir.path(), &["a"], 10);
}

#[tokio::test]
async fn a_redshift_object_is_deleted_only_after_the_copy_committed_and_settled() {
    let s = setup("alrs", EVENTS).await;
    put(&s.s3, &s.bucket, "in/al/a.json", json_lines("a", 10, 60)).await;
    put(&s.s3, &s.bucket, "in/al/b.json", json_lines("b", 10, 60)).await;
    let config = s.json_config("al", 120, "").replace(
        "format = \"json_lines\"\n",
        "format = \"json_lines\"\nafter_load = \"delete\"\n",
    );
    let mut first = Daemon::start_with_env(
        &config,
        &[("STAGELOAD_TEST_REDSHIFT_PAUSE", "after_commit:30000")],
    );
    wait_log(|| first.log_text(), &["test hook: pausing", "after_commit"]).await;
    assert_eq!(s.rows("SELECT count(*) FROM public.events").await, 20);
    first.kill9();
    assert_eq!(
        keys(&s.s3, &s.bucket, "in/al/").await.len(),
        2,
        "committed but not settled: the objects stay"
    );
    let _second = Daemon::start(&config);
    wait_actions_settled(&s.control, 2).await;
    assert_eq!(
        ledger(&s.control).await,
        vec!["in/al/a.json=loaded:done", "in/al/b.json=loaded:done"]
    );
    assert!(keys(&s.s3, &s.bucket, "in/al/").await.is_empty());
    s.assert_exactly_once(20).await;
}

#[test]
fn after_load_settings_are_checked_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let base =
        "[control]\ndatabase_url = \"postgres://u@localhost/db\"\n[s3]\nregion = \"us-east-1\"\n";
    let pipe = |name: &str, prefix: &str, extra: &str| {
        format!(
            "[[pipeline]]\nname = \"{name}\"\n[pipeline.source]\nbucket = \"b\"\nprefix = \"{prefix}\"\n{extra}\n\
             [pipeline.destination]\ntype = \"file\"\ndirectory = \"/tmp/x\"\n"
        )
    };
    let cases = [
        (
            pipe("p", "in/", "after_load = \"move\""),
            "pipeline \"p\".source.after_load_prefix: after_load = \"move\" needs a prefix",
        ),
        (
            pipe(
                "p",
                "in/",
                "after_load = \"delete\"\nafter_load_tag = \"a=b\"",
            ),
            "pipeline \"p\".source.after_load_tag: is only read with after_load = \"tag\"",
        ),
        (
            pipe(
                "p",
                "in/",
                "after_load = \"tag\"\nafter_load_tag = \"aws:x=1\"",
            ),
            "pipeline \"p\".source.after_load_tag: tag keys starting with aws: are reserved",
        ),
        (pipe("p", "in/", "after_load = \"shred\""), "after_load"),
        (
            pipe(
                "p",
                "in/",
                "after_load = \"move\"\nafter_load_prefix = \"done/\"",
            ) + &pipe("q", "done/", ""),
            "s3://b/done/ is watched by pipeline \"q\"",
        ),
        (
            pipe(
                "p",
                "in/",
                "after_load = \"move\"\nafter_load_prefix = \"\"\nafter_load_bucket = \"c\"",
            ),
            "needs a prefix",
        ),
    ];
    for (pipes, expected) in cases {
        let stderr = check_config_refused(dir.path(), &format!("{base}{pipes}"));
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
}
