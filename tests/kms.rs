//! SSE-KMS on everything stageload writes, behind a bucket policy that refuses any object not
//! encrypted with the one key (the proxy in `tests/proxy/s3_policy.rs` checks it as S3 does):
//! failed records written whole (PutObject) and in parts (CreateMultipartUpload, then parts
//! that carry no encryption header of their own), and the same write refused when no key is
//! configured, the rows in `load_errors` standing all the same.

mod common;
#[path = "proxy/s3_policy.rs"]
mod s3_policy;

use common::*;
use s3_policy::S3Policy;
use std::time::Duration;

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// An Elasticsearch destination nobody answers at, so the 2 s budget runs out.
async fn dead_elasticsearch(name: &str) -> String {
    let addr = closed_port().await;
    format!(
        "type = \"elasticsearch\"\nendpoints = [\"http://{addr}\"]\nindex = \"{name}\"\nrequest_timeout_s = 5"
    )
}

/// The config for `pipelines`, talking to S3 through the policy proxy, `kms` added to `[s3]`.
fn config(stack: &Stack, db: &str, proxy: &S3Policy, kms: &str, pipelines: &str) -> String {
    stack
        .base_config(db)
        .replace(&stack.s3_endpoint, &proxy.endpoint())
        .replace(
            "force_path_style = true",
            &format!("force_path_style = true\n{kms}"),
        )
        + pipelines
}

async fn wait_rows(db: &str, n: i64) {
    wait_for(
        &format!("{n} written-off rows and every batch skipped"),
        Duration::from_secs(120),
        || async {
            let rows =
                query_i64(db, "SELECT count(*) FROM load_errors WHERE err_code = 9100").await;
            let open = query_i64(
                db,
                "SELECT count(*) FROM batches WHERE state NOT IN ('skipped', 'loaded')",
            )
            .await;
            (rows >= n && open == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn every_object_written_carries_the_kms_key_the_bucket_policy_demands() {
    let stack = Stack::get();
    let db = stack.fresh_database("kms").await;
    let bucket = stack.bucket("kms").await;
    let s3 = stack.s3().await;
    let proxy = S3Policy::start(&stack.s3_endpoint, KEY).await;
    let small = Stack::unique("kmss");
    let big = Stack::unique("kmsb");
    put(
        &s3,
        &bucket,
        &format!("in/{small}/a.json"),
        json_lines("s", 30, 80),
    )
    .await;
    // About 9 MB of failed records: more than one 8 MiB part.
    put(
        &s3,
        &bucket,
        &format!("in/{big}/a.json.gz"),
        gzip(&json_lines("b", 15_000, 600)),
    )
    .await;
    let pipelines = pipeline_block(
        &small,
        &bucket,
        "json_lines",
        2,
        &dead_elasticsearch(&small).await,
    ) + &pipeline_block(
        &big,
        &bucket,
        "json_lines",
        2,
        &dead_elasticsearch(&big).await,
    );
    let cfg = config(
        &stack,
        &db,
        &proxy,
        &format!("kms_key_id = \"{KEY}\""),
        &pipelines,
    );
    let _daemon = Daemon::start(&cfg);
    wait_rows(&db, 15_030).await;
    for (name, n) in [(&small, 30), (&big, 15_000)] {
        let lines = wait_for(
            "the failed-record object",
            Duration::from_secs(30),
            || async {
                let mut lines = 0;
                for key in keys(
                    &s3,
                    &bucket,
                    &format!("errors/{name}/elasticsearch-failed/"),
                )
                .await
                {
                    let body = get(&s3, &bucket, &key).await.unwrap_or_default();
                    lines += body
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .count();
                }
                (lines >= n).then_some(lines)
            },
        )
        .await;
        assert_eq!(lines, n, "{name}: one failed record per record");
    }
    let seen = proxy.seen();
    let refused: Vec<_> = seen
        .iter()
        .filter(|s| s.status == 403 || s.status == 400)
        .collect();
    assert!(refused.is_empty(), "nothing refused: {refused:#?}");
    let puts = seen.iter().filter(|s| s.is_put_object()).count();
    let uploads = seen.iter().filter(|s| s.is_create_upload()).count();
    let parts = seen.iter().filter(|s| s.is_upload_part()).count();
    assert!(
        puts >= 1 && uploads >= 1 && parts >= 2,
        "{puts} puts, {uploads} uploads, {parts} parts"
    );
    for s in seen
        .iter()
        .filter(|s| s.is_put_object() || s.is_create_upload())
    {
        assert_eq!(
            (s.sse.as_deref(), s.kms_key.as_deref()),
            (Some("aws:kms"), Some(KEY)),
            "{s:?}"
        );
    }
}

#[tokio::test]
async fn without_the_key_the_policy_refuses_the_artifact_and_the_rows_stand() {
    let stack = Stack::get();
    let db = stack.fresh_database("kmsno").await;
    let bucket = stack.bucket("kmsno").await;
    let s3 = stack.s3().await;
    let proxy = S3Policy::start(&stack.s3_endpoint, KEY).await;
    let name = Stack::unique("kmsno");
    put(
        &s3,
        &bucket,
        &format!("in/{name}/a.json"),
        json_lines("n", 30, 80),
    )
    .await;
    let pipelines = pipeline_block(
        &name,
        &bucket,
        "json_lines",
        2,
        &dead_elasticsearch(&name).await,
    );
    let daemon = Daemon::start(&config(&stack, &db, &proxy, "", &pipelines));
    wait_rows(&db, 30).await;
    wait_log(|| daemon.log_text(), &["failed records not written to S3"]).await;
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.is_put_object() && s.status == 403 && s.sse.is_none()),
        "the unencrypted PutObject was denied"
    );
    assert!(keys(&s3, &bucket, &format!("errors/{name}/"))
        .await
        .is_empty());
}
