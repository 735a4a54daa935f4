//! Operator commands against the control database's schema version, through the CLI binary:
//! they never migrate, and a schema older or newer than the binary is refused with both
//! versions and what to do; `migrate` still migrates.

mod common;

use common::*;
use std::process::Command;

/// Runs `stageload <args> --config <config>`; returns (exit code, stdout, stderr).
fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stageload"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run stageload");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn table_exists(db: &str, table: &str) -> bool {
    query_i64(
        db,
        &format!("SELECT count(*) FROM pg_tables WHERE tablename = '{table}'"),
    )
    .await
        == 1
}

/// The migration files' versions in `migrations/`, in order.
fn binary_versions() -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix('V')?.split("__").next()?.parse().ok()
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn read_only_commands_never_migrate_and_name_both_versions() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("schema").await,
        stack.bucket("schema").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stageload.toml");
    let text = stack.base_config(&db) + &file_pipeline("schema", &bucket, dir.path(), 60);
    std::fs::write(&config, text).unwrap();
    let versions = binary_versions();
    let (binary, previous) = (versions[versions.len() - 1], versions[versions.len() - 2]);

    // An empty database: refused, and left empty.
    for args in [
        &["status"][..],
        &["errors"][..],
        &["batches"][..],
        &["ignore", "1"][..],
    ] {
        let (code, _, stderr) = cli(&config, args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("schema is at version 0")
                && stderr.contains(&format!("needs version {binary}"))
                && stderr.contains("stageload migrate"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!table_exists(&db, "refinery_schema_history").await);
    assert!(!table_exists(&db, "staged_objects").await);

    // `migrate` migrates; then the operator commands work.
    let (code, stdout, stderr) = cli(&config, &["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("applied"), "{stdout}");
    let (code, stdout, stderr) = cli(&config, &["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status --json");
    assert!(status.to_string().contains("schema"), "{stdout}");

    // A schema one version behind (as if this binary were newer): refused, not upgraded.
    exec(
        &db,
        &format!("DELETE FROM refinery_schema_history WHERE version = {binary}"),
    )
    .await;
    let (code, _, stderr) = cli(&config, &["status"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "schema is at version {previous}, this stageload needs version {binary}"
        )) && stderr.contains("stageload migrate"),
        "{stderr}"
    );
    assert_eq!(
        query_i64(
            &db,
            &format!("SELECT count(*) FROM refinery_schema_history WHERE version = {binary}")
        )
        .await,
        0,
        "status migrated the database"
    );

    // A schema from a newer binary: refused by operator commands and by `migrate`.
    let (code, _, stderr) = cli(&config, &["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    exec(
        &db,
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum)
         VALUES (999, 'from_the_future', now()::text, '0')",
    )
    .await;
    for args in [&["batches"][..], &["migrate"][..]] {
        let (code, _, stderr) = cli(&config, args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "schema is at version 999, newer than this stageload's version {binary}"
            )),
            "{args:?}: {stderr}"
        );
    }
}
