//! The Redshift harness: the emulator (tools/redshift-emu) in front of a database of the stack's
//! PostgreSQL, a target table, a control database and a bucket, and what a user checks there.

use super::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

pub const LONG: Duration = Duration::from_secs(40);
pub const ROLE: &str = "arn:aws:iam::123456789012:role/loader";

/// A running emulator in front of one database of the stack's PostgreSQL; killed on drop.
pub struct Emu {
    /// `127.0.0.1:port` it listens on.
    pub addr: String,
    /// The backend database it serves.
    pub db_url: String,
    child: Option<tokio::process::Child>,
}

fn emu_binary() -> PathBuf {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let bin = dir.join("debug/redshift-emu");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "-p", "redshift-emu"])
            .status()
            .expect("cargo build -p redshift-emu");
        assert!(ok.success(), "cargo build -p redshift-emu failed");
    }
    bin
}

impl Emu {
    /// Starts an emulator on `listen` (`127.0.0.1:0` for any port) for database `db_url`.
    pub async fn start(stack: &Stack, db_url: &str, listen: &str) -> Emu {
        Emu::start_with(stack, db_url, listen, &[]).await
    }

    /// [`Emu::start`] with extra flags (`--serverless`, `--isolation serializable`).
    pub async fn start_with(stack: &Stack, db_url: &str, listen: &str, flags: &[&str]) -> Emu {
        let mut child = tokio::process::Command::new(emu_binary())
            .args(["--listen", listen, "--backend", &stack.pg_host_port])
            .args(flags)
            .args(["--admin-url", db_url, "--s3-endpoint", &stack.s3_endpoint])
            .args(["--s3-region", "us-east-1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redshift-emu");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("emulator did not start in 30s")
            .unwrap()
            .expect("emulator exited before listening");
        let addr = line
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        Emu {
            addr,
            db_url: db_url.to_string(),
            child: Some(child),
        }
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// The loader's URL through the emulator (no TLS: the emulator answers 'N').
    pub fn url(&self) -> String {
        let db = self.db_url.rsplit('/').next().unwrap();
        format!(
            "postgres://stageload:stageload@{}/{db}?sslmode=disable",
            self.addr
        )
    }
}

/// A Redshift database with the target table, an emulator in front, a control database and a
/// bucket.
pub struct Setup {
    /// The local stack.
    pub stack: Stack,
    /// The control database's URL.
    pub control: String,
    /// The Redshift database's URL (direct, not through the emulator).
    pub rs: String,
    /// The source bucket.
    pub bucket: String,
    /// An S3 client.
    pub s3: aws_sdk_s3::Client,
    /// The emulator.
    pub emu: Emu,
}

pub async fn setup(tag: &str, ddl: &str) -> Setup {
    setup_with(tag, ddl, &[]).await
}

/// [`setup`] with extra emulator flags.
pub async fn setup_with(tag: &str, ddl: &str, flags: &[&str]) -> Setup {
    let stack = Stack::get();
    let control = stack.fresh_database(&format!("{tag}ctl")).await;
    let rs = stack.fresh_database(&format!("{tag}rs")).await;
    exec(&rs, ddl).await;
    let bucket = stack.bucket(tag).await;
    let s3 = stack.s3().await;
    let emu = Emu::start_with(&stack, &rs, "127.0.0.1:0", flags).await;
    Setup {
        stack,
        control,
        rs,
        bucket,
        s3,
        emu,
    }
}

pub const EVENTS: &str = "CREATE TABLE public.events (id varchar(64) NOT NULL, user_id integer, \
                      action varchar(16), ts timestamp, pad varchar(2000))";

impl Setup {
    pub fn config(&self, name: &str, format: &str, copy_options: &str, retry_s: u64) -> String {
        let destination = format!(
            "type = \"redshift\"\nurl = \"{}\"\ntable = \"public.events\"\ncopy_options = \"{copy_options}\"\n\
             iam_role = \"{ROLE}\"\nmanifest_prefix = \"manifests/{name}/\"\nconnect_timeout_s = 2",
            self.emu.url()
        );
        self.stack.base_config(&self.control)
            + &pipeline_block(name, &self.bucket, format, retry_s, &destination)
    }

    /// A JSON-lines pipeline with `JSON 'auto' TIMEFORMAT 'epochsecs'` and `extra` destination
    /// lines.
    pub fn json_config(&self, name: &str, retry_s: u64, extra: &str) -> String {
        self.config(
            name,
            "json_lines",
            "JSON 'auto' TIMEFORMAT 'epochsecs'",
            retry_s,
        )
        .replace(
            "type = \"redshift\"",
            &format!("type = \"redshift\"\n{extra}"),
        )
    }

    pub async fn rows(&self, sql: &str) -> i64 {
        query_i64(&self.rs, sql).await
    }

    pub async fn wait_rows(&self, n: i64) {
        wait_for(&format!("{n} rows in public.events"), LONG, || async {
            (self.rows("SELECT count(*) FROM public.events").await >= n).then_some(())
        })
        .await;
    }

    pub async fn wait_batches_settled(&self, what: &str) {
        wait_for(what, LONG, || async {
            // One query: a batch sealed between two would read as "none open, one in all".
            let settled = query_i64(
                &self.control,
                "SELECT (count(*) > 0 AND count(*) FILTER (WHERE state IN ('sealed','delivering')) = 0)::int \
                 FROM batches",
            )
            .await;
            (settled == 1).then_some(())
        })
        .await;
    }

    /// Waits for `n` rows and every batch settled, then checks each row is there once.
    pub async fn settled_with(&self, n: i64) {
        self.wait_rows(n).await;
        self.wait_batches_settled("batch settled").await;
        self.assert_exactly_once(n).await;
    }

    /// `key=state` of every staged object, by key.
    pub async fn object_states(&self) -> Vec<String> {
        query_strings(
            &self.control,
            "SELECT key || '=' || state FROM staged_objects ORDER BY key",
        )
        .await
    }

    /// Every id in the table appears once, and there are `n` of them.
    pub async fn assert_exactly_once(&self, n: i64) {
        let dups = self
            .rows("SELECT count(*) FROM (SELECT id FROM public.events GROUP BY id HAVING count(*) > 1) d")
            .await;
        assert_eq!(dups, 0, "some rows were loaded twice");
        assert_eq!(self.rows("SELECT count(*) FROM public.events").await, n);
    }
}
