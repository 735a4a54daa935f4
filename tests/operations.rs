//! The operator surface against the real stack: a skipped batch seen in `stageload errors`,
//! replayed once the destination is healthy (and not twice), the systemd notify protocol on a
//! real datagram socket, and SIGHUP reloads.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_skipped_batch_is_listed_replayed_once_and_marked() {
    let stack = Stack::get();
    let (db, bucket) = (stack.fresh_database("ops").await, stack.bucket("ops").await);
    let s3 = stack.s3().await;
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    std::fs::write(&out, b"blocks the directory").unwrap();
    let config = stack.base_config(&db) + &file_pipeline("ops", &bucket, &out, 2);
    put(&s3, &bucket, "in/ops/a.json", json_lines("a", 30, 50)).await;
    put(&s3, &bucket, "in/ops/b.json", json_lines("b", 20, 50)).await;
    let daemon = Daemon::start(&config);
    wait_for("the batch to be skipped", LONG, || async {
        (query_i64(&db, "SELECT count(*) FROM batches WHERE state = 'skipped'").await == 1)
            .then_some(())
    })
    .await;
    let batch = query_i64(&db, "SELECT id FROM batches WHERE state = 'skipped'").await;

    let (code, stdout, _) = daemon.cli(&["errors", "--pipeline", "ops", "--json"]);
    assert_eq!(code, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows.len(), 2, "one row per skipped object: {stdout}");
    assert!(rows
        .iter()
        .all(|r| r["err_code"] == 9100 && r["batch_id"] == batch));
    let (code, table, _) = daemon.cli(&["errors", "--since", "1h"]);
    assert_eq!(code, 0);
    assert!(
        table.contains(&format!("s3://{bucket}/in/ops/a.json")) && table.contains("9100"),
        "{table}"
    );
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    let (code, one, _) = daemon.cli(&["errors", "show", &id]);
    assert_eq!(code, 0);
    assert!(
        one.contains("err_reason: retry duration of 2s exhausted"),
        "{one}"
    );
    let (code, shown, _) = daemon.cli(&["batches", "show", &batch.to_string()]);
    assert_eq!(code, 0);
    assert!(
        shown.contains("skipped") && shown.contains("in/ops/b.json"),
        "{shown}"
    );

    // The destination is healthy again: replay delivers the batch once.
    std::fs::remove_file(&out).unwrap();
    let (code, said, err) = daemon.cli(&["replay", &batch.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        said.contains(&format!("batch {batch} replayed as batch")),
        "{said}"
    );
    wait_for("the replayed records", LONG, || async {
        (delivered_lines(&out).len() >= 50).then_some(())
    })
    .await;
    // Everything is replayed already: a scheduled replay says so and succeeds, so it pages no
    // one; without batch ids or a pipeline it is still refused.
    let (code, again, err) = daemon.cli(&["replay", "--pipeline", "ops", "--since", "1h"]);
    assert_eq!(code, 0, "{again}{err}");
    assert_eq!(
        again.trim(),
        "nothing to replay: pipeline ops has no skipped batch settled in the last 1h that is not replayed already"
    );
    let (code, again, _) = daemon.cli(&["replay", "--pipeline", "ops", "--since", "1h", "--json"]);
    assert_eq!((code, again.trim()), (0, "[]"));
    let (code, _, err) = daemon.cli(&["replay"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("give batch ids, or --pipeline P --since 24h"),
        "{err}"
    );
    let (_, again_by_id, _) = daemon.cli(&["replay", &batch.to_string()]);
    assert!(
        again_by_id.contains(&format!("batch {batch} not replayed")),
        "{again_by_id}"
    );
    wait_all_settled(&db).await;
    assert_eq!(
        delivered_lines(&out).len(),
        50,
        "replaying twice delivers once"
    );

    let marked = query_strings(
        &db,
        "SELECT resolution || ' ' || (replay_batch_id IS NOT NULL)::text FROM load_errors",
    )
    .await;
    assert_eq!(marked, vec!["replayed true", "replayed true"]);
    let (code, status, _) = daemon.cli(&["status", "--json"]);
    assert_eq!(code, 0);
    let status: Vec<serde_json::Value> = serde_json::from_str(&status).unwrap();
    assert_eq!(status[0]["pipeline"], "ops");
    assert_eq!(status[0]["batches_skipped"], 1);
    assert_eq!(status[0]["batches_loaded"], 1);
    let (code, _, _) = daemon.cli(&["ignore", &id]);
    assert_ne!(code, 0, "a replayed row is no longer open");
}

#[tokio::test]
async fn systemd_notify_gets_ready_then_stopping() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("notify").await,
        stack.bucket("notify").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let config =
        stack.base_config(&db) + &file_pipeline("notify", &bucket, &dir.path().join("out"), 5);
    let mut daemon = Daemon::start_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.iter().any(|m: &String| m.contains("READY=1")) {
        let n = socket
            .recv(&mut buf)
            .expect("a notification before the timeout");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    // The watchdog pings at half of WATCHDOG_USEC while the database answers.
    let n = socket.recv(&mut buf).unwrap();
    got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(got.last().unwrap().contains("WATCHDOG=1"), "{got:?}");
    assert_eq!(daemon.terminate(), Some(0));
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(n) = socket.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = got.iter().position(|m| m.contains("READY=1")).unwrap();
    let stopping = got
        .iter()
        .position(|m| m.contains("STOPPING=1"))
        .expect("STOPPING=1 sent");
    assert!(ready < stopping, "READY=1 before STOPPING=1: {got:?}");
    assert!(
        got[ready].contains("STATUS=running 1 pipeline(s)"),
        "{got:?}"
    );
}

#[tokio::test]
async fn sighup_adds_pipelines_and_refuses_a_bad_config() {
    let stack = Stack::get();
    let (db, bucket) = (stack.fresh_database("hup").await, stack.bucket("hup").await);
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let first = stack.base_config(&db) + &file_pipeline("one", &bucket, &one, 30);
    let mut daemon = Daemon::start(&first);
    put(&s3, &bucket, "in/one/a.json", json_lines("a", 5, 40)).await;
    put(&s3, &bucket, "in/two/b.json", json_lines("b", 7, 40)).await;
    wait_for("pipeline one", LONG, || async {
        (delivered_lines(&one).len() == 5).then_some(())
    })
    .await;
    assert!(
        delivered_lines(&two).is_empty(),
        "pipeline two is not configured yet"
    );

    std::fs::write(
        &daemon.config,
        first.clone() + &file_pipeline("two", &bucket, &two, 30),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("pipeline two after SIGHUP", LONG, || async {
        (delivered_lines(&two).len() == 7).then_some(())
    })
    .await;

    std::fs::write(
        &daemon.config,
        first.replace("size_mib = 5", "size_mib = 0"),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("the refusal in the log", LONG, || async {
        daemon
            .log_text()
            .contains("config reload refused")
            .then_some(())
    })
    .await;
    assert!(
        daemon.log_text().contains("buffer.size_mib"),
        "the refusal names the field"
    );
    put(&s3, &bucket, "in/two/c.json", json_lines("c", 3, 40)).await;
    wait_for("pipeline two still running", LONG, || async {
        (delivered_lines(&two).len() == 10).then_some(())
    })
    .await;
    assert!(daemon.running());
    assert_eq!(daemon.terminate(), Some(0));
}
