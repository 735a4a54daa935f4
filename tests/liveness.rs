//! Who may take a batch over before its lease ends: only a process whose owner's session on the
//! control database is gone. Two live processes sharing a `worker_id`, or a host name and pid
//! (containers that are all pid 1), never take each other's batches; a process killed with -9
//! has its batch taken over by another replica within seconds, not after its lease; a live
//! owner keeps its batch across a PostgreSQL restart. Delivery goes to the HEC receiver, which
//! cannot deduplicate: a second delivery of a batch shows as events received twice.

mod common;

use common::*;
use std::process::Child;
use std::time::{Duration, Instant};

const TOKEN: &str = "00000000-0000-0000-0000-0000000000B7";
const RECORDS: u64 = 40;

/// These tests restart PostgreSQL or lean on timings: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A HEC receiver with acknowledgements, killed on drop.
struct Hec {
    child: Child,
    url: String,
}

impl Hec {
    fn start() -> Hec {
        let (child, addr) = start_hec_receiver("127.0.0.1:0", TOKEN, &["--ack"]);
        Hec {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// Events the receiver has stored.
    async fn events(&self) -> u64 {
        let stats: serde_json::Value = reqwest::get(format!("{}/_receiver/stats", self.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["events"].as_u64().unwrap_or(0)
    }
}

impl Drop for Hec {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A control database, a bucket holding one object of [`RECORDS`] records, a receiver, and a
/// config with a 60 s lease (so nothing here is decided by a lease ending) and `daemon_extra`
/// in `[daemon]`.
async fn setup(tag: &str, daemon_extra: &str) -> (String, Hec, String) {
    let stack = Stack::get();
    let db = stack.fresh_database(tag).await;
    let bucket = stack.bucket(tag).await;
    let s3 = stack.s3().await;
    let hec = Hec::start();
    put(
        &s3,
        &bucket,
        &format!("in/{tag}/a.json"),
        json_lines(tag, RECORDS as usize, 60),
    )
    .await;
    let config = stack
        .base_config(&db)
        .replace("lease_s = 6", &format!("lease_s = 60\n{daemon_extra}"))
        + &pipeline_block(
            tag,
            &bucket,
            "json_lines",
            120,
            &format!(
                "type = \"splunk\"\nurl = \"{}\"\ntoken = \"{TOKEN}\"\nack_poll_interval_s = 0.2\nrequest_timeout_s = 5",
                hec.url
            ),
        );
    (db, hec, config)
}

async fn loaded(db: &str) -> bool {
    query_i64(db, "SELECT count(*) FROM batches WHERE state = 'loaded'").await == 1
}

/// The first process delivers the batch and pauses before settling; a second one starts with
/// `second_env` meanwhile. The first must settle its own batch, and the receiver hold each
/// event once.
async fn a_live_owner_keeps_its_batch(tag: &str, daemon_extra: &str, env: &[(&str, &str)]) {
    let (db, hec, config) = setup(tag, daemon_extra).await;
    let mut first_env = env.to_vec();
    first_env.push(("STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS", "7000"));
    let first = Daemon::start_with_env(&config, &first_env);
    wait_log(|| first.log_text(), &["test hook: pausing before settling"]).await;
    let second = Daemon::start_with_env(&config, env);
    wait_log(|| second.log_text(), &["stageload running"]).await;
    wait_for("the batch settled", Duration::from_secs(30), || async {
        loaded(&db).await.then_some(())
    })
    .await;
    assert!(
        first.log_text().contains("batch settled"),
        "the live owner settled its own batch"
    );
    assert!(!first.log_text().contains("settlement refused"));
    assert_eq!(
        query_i64(&db, "SELECT attempts::bigint FROM batches").await,
        1,
        "one attempt: the second process never took the batch"
    );
    assert_eq!(hec.events().await, RECORDS, "each event received once");
}

#[tokio::test]
async fn a_second_process_with_the_same_worker_id_never_takes_a_live_owners_batch() {
    let _serial = SERIAL.lock().await;
    a_live_owner_keeps_its_batch("lvname", "worker_id = \"loader-1\"", &[]).await;
}

#[tokio::test]
async fn a_second_process_with_the_same_host_and_pid_never_takes_a_live_owners_batch() {
    let _serial = SERIAL.lock().await;
    // Both show `box:1`, as two containers with one host name and pid 1 would.
    a_live_owner_keeps_its_batch("lvpid", "", &[("STAGELOAD_TEST_HOST_PID", "box:1")]).await;
}

#[tokio::test]
async fn a_killed_owners_batch_is_taken_over_by_another_replica_within_15_s() {
    let _serial = SERIAL.lock().await;
    let (db, hec, config) = setup("lvkill", "").await;
    let mut owner = Daemon::start_with_env(
        &config.replace("lease_s = 60", "lease_s = 60\nworker_id = \"owner\""),
        &[("STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS", "60000")],
    );
    wait_log(|| owner.log_text(), &["test hook: pausing before settling"]).await;
    let replica =
        Daemon::start(&config.replace("lease_s = 60", "lease_s = 60\nworker_id = \"replica\""));
    wait_log(|| replica.log_text(), &["stageload running"]).await;
    assert_eq!(
        query_strings(&db, "SELECT split_part(lease_owner, '/', 1) FROM batches").await,
        vec!["owner"]
    );
    owner.kill9();
    let killed = Instant::now();
    wait_for(
        "the replica took the batch over and settled it",
        Duration::from_secs(15),
        || async { loaded(&db).await.then_some(()) },
    )
    .await;
    println!(
        "taken over and settled {:?} after kill -9 (lease 60 s)",
        killed.elapsed()
    );
    let log = replica.log_text();
    assert!(
        log.contains("taking over a batch before its lease ends: its owner's session is gone"),
        "{log}"
    );
    assert!(log.contains("batch settled"));
    // Splunk HEC is at least once: the dead owner's delivery and the replica's both arrived.
    assert_eq!(hec.events().await, 2 * RECORDS);
}

#[tokio::test]
async fn a_live_owner_keeps_its_batch_across_a_control_database_restart() {
    let _serial = SERIAL.lock().await;
    let (db, hec, config) = setup("lvpg", "").await;
    let owner = Daemon::start_with_env(
        &config.replace("lease_s = 60", "lease_s = 60\nworker_id = \"owner\""),
        &[("STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS", "9000")],
    );
    wait_log(|| owner.log_text(), &["test hook: pausing before settling"]).await;
    let replica =
        Daemon::start(&config.replace("lease_s = 60", "lease_s = 60\nworker_id = \"replica\""));
    wait_log(|| replica.log_text(), &["stageload running"]).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stack.sh");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(script)
            .args(["restart", "pg", "0"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the batch settled", Duration::from_secs(40), || async {
        loaded(&db).await.then_some(())
    })
    .await;
    let log = owner.log_text();
    assert!(
        log.contains("took this worker's lock back after its connection broke"),
        "{log}"
    );
    assert!(
        log.contains("batch settled"),
        "the owner settled its own batch"
    );
    assert!(!replica.log_text().contains("taking over a batch"));
    assert_eq!(
        query_i64(&db, "SELECT attempts::bigint FROM batches").await,
        1
    );
    assert_eq!(hec.events().await, RECORDS, "each event received once");
}
