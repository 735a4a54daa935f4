//! A role per pipeline and a region per bucket, through the daemon, against a verifier that
//! plays STS and S3's identity checks (`tests/proxy/sts_s3_verifier.py`): the role is assumed
//! with the external id its trust policy requires and the pipeline's session name, the bucket
//! is read only with the role's temporary credentials signed for the bucket's own region, a
//! wrong external id is refused by STS, and a pipeline that does not name its bucket's region
//! is refused by S3 with the region it expects.

mod common;

use common::*;

const ROLE: &str = "arn:aws:iam::222233334444:role/logs-reader";

/// The verifier, with the stack's S3 behind it and the buckets' regions.
fn verifier(stack: &Stack, regions: &[(&str, &str)]) -> PyServer {
    let key = stack_key();
    let mut args: Vec<String> = [
        "--s3-upstream",
        &stack.s3_endpoint,
        "--upstream-key",
        &key,
        "--base-key",
        &key,
        "--role",
        &format!("{ROLE}=acme-7f3a"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (bucket, region) in regions {
        args.push("--bucket-region".into());
        args.push(format!("{bucket}={region}"));
    }
    PyServer::start("sts_s3_verifier.py", &args)
}

#[tokio::test]
async fn a_role_with_its_external_id_reads_a_bucket_in_its_region_and_a_wrong_id_or_region_is_refused(
) {
    let stack = Stack::get();
    let db = stack.fresh_database("roles").await;
    let s3 = stack.s3().await;
    let (cross, wrong_id, no_region) = (
        stack.bucket("rolecross").await,
        stack.bucket("rolewrong").await,
        stack.bucket("rolenoreg").await,
    );
    for bucket in [&cross, &wrong_id, &no_region] {
        put(&s3, bucket, "in/p/a.json", json_lines("a", 30, 60)).await;
    }
    let verifier = verifier(&stack, &[(&cross, "eu-west-1"), (&no_region, "eu-west-2")]);
    let dir = tempfile::tempdir().unwrap();
    let pipe = |name: &str, bucket: &str, source: &str| {
        file_pipeline(name, bucket, &dir.path().join(name), 60)
            .replace(&format!("prefix = \"in/{name}/\""), "prefix = \"in/p/\"")
            .replace(
                "format = \"json_lines\"\n",
                &format!("format = \"json_lines\"\n{source}\n"),
            )
    };
    let role = format!("role_arn = \"{ROLE}\"");
    let config = stack
        .base_config(&db)
        .replace(&stack.s3_endpoint, &verifier.url)
        + &pipe(
            "cross",
            &cross,
            &format!("{role}\nexternal_id = \"acme-7f3a\"\nregion = \"eu-west-1\""),
        )
        + &pipe(
            "wrongid",
            &wrong_id,
            &format!("{role}\nexternal_id = \"guess\""),
        )
        + &pipe(
            "noregion",
            &no_region,
            &format!("{role}\nexternal_id = \"acme-7f3a\"\nsession_name = \"audit-1\""),
        );
    let daemon = Daemon::start_with_env(&config, &[("AWS_ENDPOINT_URL_STS", &verifier.url)]);
    wait_for("the cross-account pipeline loaded", LONG, || async {
        (delivered_lines(&dir.path().join("cross")).len() == 30).then_some(())
    })
    .await;
    wait_log(
        || daemon.log_text(),
        &["is not authorized to perform: sts:AssumeRole"],
    )
    .await;
    wait_log(|| daemon.log_text(), &["expecting 'eu-west-2'"]).await;
    assert_eq!(
        query_strings(
            &db,
            "SELECT pipeline || '=' || count(*) FROM staged_objects GROUP BY pipeline"
        )
        .await,
        vec!["cross=1"],
        "nothing read where STS or S3 refused"
    );
    let stats = verifier.stats().await;
    let assumed = stats["assumed"].as_array().unwrap();
    assert!(
        assumed.iter().any(|a| a["role"] == ROLE
            && a["external_id"] == "acme-7f3a"
            && a["session"] == "stageload-cross"),
        "{stats}"
    );
    assert!(
        assumed.iter().any(|a| a["session"] == "audit-1"),
        "the configured session name: {stats}"
    );
    assert!(
        assumed.iter().all(|a| a["external_id"] != "guess"),
        "a wrong external id gets no credentials: {stats}"
    );
    assert!(stats["s3_accepted"].as_u64().unwrap() > 0);
}

const LONG: std::time::Duration = std::time::Duration::from_secs(40);
