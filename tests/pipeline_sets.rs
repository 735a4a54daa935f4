//! Pipelines written once for many prefixes, through the daemon: an `include_dir` file holding a
//! `[[pipeline_set]]` over account/region items becomes one pipeline per item, each loading its
//! own prefix into its own directory; an included file with anything else is refused at startup.

mod common;

use common::*;
use std::time::Duration;

#[tokio::test]
async fn a_pipeline_set_in_an_included_file_runs_one_pipeline_per_item() {
    let stack = Stack::get();
    let db = stack.fresh_database("sets").await;
    let s3 = stack.s3().await;
    let bucket = stack.bucket("sets").await;
    let dir = tempfile::tempdir().unwrap();
    let items = [
        "111122223333/eu-west-1",
        "111122223333/us-east-1",
        "444455556666/eu-west-1",
    ];
    for (n, item) in items.iter().enumerate() {
        put(
            &s3,
            &bucket,
            &format!("AWSLogs/{item}/2026/12/07/a.json"),
            json_lines(&format!("i{n}"), 5 + n, 60),
        )
        .await;
    }
    let conf_dir = dir.path().join("conf");
    std::fs::create_dir_all(conf_dir.join("pipelines.d")).unwrap();
    let listed = items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        conf_dir.join("pipelines.d/alb.toml"),
        format!(
            r#"
[[pipeline_set]]
items = [{listed}]
[pipeline_set.pipeline]
name = "alb-{{slug}}"
error_prefix = "errors/{{slug}}/"
[pipeline_set.pipeline.source]
bucket = "{bucket}"
prefix = "AWSLogs/{{item}}/"
poll_interval_s = 1
[pipeline_set.pipeline.buffer]
interval_s = 1
[pipeline_set.pipeline.destination]
type = "file"
directory = "{}/out/{{slug}}"
"#,
            dir.path().display()
        ),
    )
    .unwrap();
    // An absolute path; a relative one is read from the config file's directory.
    let config = format!(
        "include_dir = \"{}\"\n{}",
        conf_dir.join("pipelines.d").display(),
        stack.base_config(&db)
    );
    let daemon = Daemon::start(&config);
    for (n, item) in items.iter().enumerate() {
        let out = dir.path().join("out").join(item.replace('/', "-"));
        wait_for(
            &format!("the pipeline of {item}"),
            Duration::from_secs(40),
            || async { (delivered_lines(&out).len() == 5 + n).then_some(()) },
        )
        .await;
    }
    let (code, status, err) = daemon.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let mut names: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pipeline"].as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "alb-111122223333-eu-west-1",
            "alb-111122223333-us-east-1",
            "alb-444455556666-eu-west-1"
        ]
    );

    std::fs::write(
        conf_dir.join("pipelines.d/zz-bad.toml"),
        "[control]\ndatabase_url = \"postgres://elsewhere/db\"\n",
    )
    .unwrap();
    let (code, _, err) = daemon.cli(&["check-config"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("include_dir")
            && err.contains("zz-bad.toml")
            && err.contains("only [[pipeline]]"),
        "{err}"
    );
}
