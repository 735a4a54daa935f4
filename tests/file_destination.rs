//! The file destination's promises under the faults that break them: a frozen owner that
//! wakes after a takeover never publishes a file another owner is still writing, and a control
//! database that is recreated or restored from a dump writes only what the directory lacks.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Record ids in every published file, with how many times each was seen.
fn id_counts(dir: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in delivered_lines(dir) {
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a published line is not JSON ({e}): {line:?}"));
        *counts
            .entry(v["id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    counts
}

/// Asserts every record of `tags` (each `n` records) was published exactly once.
fn assert_each_once(dir: &Path, tags: &[&str], n: usize) {
    let counts = id_counts(dir);
    let twice: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(twice.is_empty(), "records published twice: {twice:?}");
    for tag in tags {
        for i in 0..n {
            let id = format!("{tag}-{i}");
            assert!(counts.contains_key(&id), "record {id} missing");
        }
    }
    assert_eq!(counts.len(), tags.len() * n, "no other records");
}

fn temporary_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

async fn wait_file(path: &Path) {
    wait_for(&path.display().to_string(), LONG, || async {
        path.exists().then_some(())
    })
    .await
}

/// Item 8 of the guarantees: owner A is frozen with its file written and synced, right before
/// publishing; B takes the batch over and is held halfway through writing its own file; A
/// wakes. A must not publish anything (its lease is B's), and no published file may ever be
/// partial. With one temporary name per batch, A renamed B's half-written file into place.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_owner_never_publishes_over_a_takeover() {
    let stack = Stack::get();
    let db = stack.fresh_database("file_fence").await;
    let bucket = stack.bucket("file-fence").await;
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("out");
    let (hold_a, hold_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "fenced";
    // Two objects of about 1.5 MiB each: several 1 MiB blocks, so B is held mid-file.
    for tag in ["a", "b"] {
        put(
            &s3,
            &bucket,
            &format!("in/{name}/{tag}.json"),
            json_lines(tag, 5000, 300),
        )
        .await;
    }
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        file_pipeline(name, &bucket, &dir, 300)
    );
    let hold = |point: &str, d: &Path| format!("{point}:{}", d.display());
    let mut first = Daemon::start_with_env(
        &config,
        &[(
            "STAGELOAD_TEST_FILE_HOLD",
            &hold("before_publish", hold_a.path()),
        )],
    );
    wait_file(&hold_a.path().join("before_publish.reached")).await;
    first.signal("STOP");
    let second = Daemon::start_with_env(
        &config,
        &[(
            "STAGELOAD_TEST_FILE_HOLD",
            &hold("mid_write", hold_b.path()),
        )],
    );
    wait_file(&hold_b.path().join("mid_write.reached")).await;
    // B holds the lease and is halfway through its file. Wake A and let it go on.
    first.signal("CONT");
    std::fs::write(hold_a.path().join("before_publish.go"), b"").unwrap();
    wait_for("the woken owner to stop", LONG, || async {
        let log = first.log_text();
        (log.contains("not publishing")
            || log.contains("lease ran out while this worker was stalled"))
        .then_some(())
    })
    .await;
    // Give a wrongful rename every chance to happen before looking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let published = delivered_lines(&dir);
    assert!(
        published.is_empty(),
        "nothing may be published while B still writes: {} lines are (a file is whole or absent)",
        published.len()
    );
    std::fs::write(hold_b.path().join("mid_write.go"), b"").unwrap();
    wait_all_settled(&db).await;
    assert_each_once(&dir, &["a", "b"], 5000);
    assert_eq!(
        query_strings(&db, "SELECT state FROM batches").await,
        vec!["loaded"]
    );
    assert!(second.log_text().contains("batch settled"));
    assert!(
        temporary_files(&dir).is_empty(),
        "temporary files left: {:?}",
        temporary_files(&dir)
    );
    first.kill9();
}

async fn stage_and_settle(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    name: &str,
    db: &str,
    tag: &str,
    batches: i64,
) {
    put(
        s3,
        bucket,
        &format!("in/{name}/{tag}.json"),
        json_lines(tag, 50, 60),
    )
    .await;
    wait_for("the object's batch to settle", LONG, || async {
        let loaded = query_i64(db, "SELECT count(*) FROM batches WHERE state = 'loaded'").await;
        (loaded == batches).then_some(())
    })
    .await;
    wait_all_settled(db).await;
}

/// Item 3 for the file destination: the control database is dropped and created again while
/// the objects are still in S3. The new database lists them all again; the directory already
/// holds two batches of them and must get only the object that landed meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_control_database_writes_only_what_the_directory_lacks() {
    let stack = Stack::get();
    let db = stack.fresh_database("file_recreate").await;
    let bucket = stack.bucket("file-recreate").await;
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let name = "recreated";
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        file_pipeline(name, &bucket, out.path(), 300)
    );
    let mut daemon = Daemon::start(&config);
    stage_and_settle(&s3, &bucket, name, &db, "old1", 1).await;
    stage_and_settle(&s3, &bucket, name, &db, "old2", 2).await;
    daemon.kill9();
    assert!(recreate_database(&stack, &db, None).await, "recreate");
    put(
        &s3,
        &bucket,
        &format!("in/{name}/new.json"),
        json_lines("new", 50, 60),
    )
    .await;
    daemon.spawn();
    wait_loaded_objects(&db, 3).await;
    assert_each_once(out.path(), &["old1", "old2", "new"], 50);
    assert!(daemon
        .log_text()
        .contains("objects already published to the directory, leaving them out"));
}

/// Waits until `n` objects are loaded and everything is settled.
async fn wait_loaded_objects(db: &str, n: i64) {
    wait_for("the objects recorded again and loaded", LONG, || async {
        let loaded = query_i64(
            db,
            "SELECT count(*) FROM staged_objects WHERE state = 'loaded'",
        );
        (loaded.await == n).then_some(())
    })
    .await;
    wait_all_settled(db).await;
}

/// Item 3 for the file destination, restored from a backup: `pg_dump` is taken after the first
/// batch, two more batches are published, and the database is restored from the dump. The
/// restored ledger knows the first object only; the other two are listed again and land in
/// one new batch whose id the old run already used.
#[tokio::test(flavor = "multi_thread")]
async fn a_control_database_restored_from_a_dump_writes_only_what_the_directory_lacks() {
    let stack = Stack::get();
    let db = stack.fresh_database("file_restore").await;
    let bucket = stack.bucket("file-restore").await;
    let s3 = stack.s3().await;
    let out = tempfile::tempdir().unwrap();
    let dump = out.path().join("control.sql");
    let dir = out.path().join("files");
    let name = "restored";
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        file_pipeline(name, &bucket, &dir, 300)
    );
    let mut daemon = Daemon::start(&config);
    stage_and_settle(&s3, &bucket, name, &db, "first", 1).await;
    assert!(dump_database(&db, &dump), "pg_dump failed");
    stage_and_settle(&s3, &bucket, name, &db, "second", 2).await;
    stage_and_settle(&s3, &bucket, name, &db, "third", 3).await;
    daemon.kill9();
    assert!(
        recreate_database(&stack, &db, Some(&dump)).await,
        "restore failed"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM staged_objects").await,
        1,
        "the restored ledger knows the first object only"
    );
    daemon.spawn();
    wait_loaded_objects(&db, 3).await;
    assert_each_once(&dir, &["first", "second", "third"], 50);
}
