//! Shared helpers for the integration tests: reading the local stack's settings, starting the
//! emulator binary in front of its PostgreSQL, S3 buckets and objects, client connections.

#![allow(dead_code, unused_macros)]

/// The local stack, or return from the test (a stack-less run skips; under `make test` a
/// missing stack fails in [`Stack::get`]).
macro_rules! stack_or_skip {
    () => {
        match Stack::get() {
            Some(s) => s,
            None => return,
        }
    };
}

use std::collections::HashMap;
use std::io::Write;
use std::process::Stdio;

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};

/// Settings of the running local stack.
pub struct Stack {
    vars: HashMap<String, String>,
}

impl Stack {
    /// The stack, or `None` (with a printed reason) when STAGELOAD_STACK_ENV is unset. With
    /// `STAGELOAD_REQUIRE_STACK=1` (set by `make test`) a missing stack is a failure instead.
    pub fn get() -> Option<Self> {
        let Ok(path) = std::env::var("STAGELOAD_STACK_ENV") else {
            if std::env::var("STAGELOAD_REQUIRE_STACK").as_deref() == Ok("1") {
                panic!(
                    "STAGELOAD_REQUIRE_STACK=1 but STAGELOAD_STACK_ENV is unset: run `scripts/stack.sh up` and source .stack/env"
                );
            }
            eprintln!(
                "skipping: STAGELOAD_STACK_ENV is unset (run `make test` or source .stack/env)"
            );
            return None;
        };
        // The test runner exports the variables; the env file fills any gap.
        let mut vars = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines() {
                let line = line.trim().trim_start_matches("export ").trim();
                if let Some((k, v)) = line.split_once('=') {
                    vars.insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
        }
        for (k, v) in std::env::vars() {
            if k.starts_with("STAGELOAD_") || k.starts_with("AWS_") {
                vars.insert(k, v);
            }
        }
        Some(Self { vars })
    }

    /// One variable (panics with its name when missing).
    pub fn var(&self, k: &str) -> String {
        self.vars
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing from the stack environment"))
    }

    /// URL of the database the emulator fronts.
    pub fn backend_url(&self) -> String {
        self.vars
            .get("STAGELOAD_REDSHIFT_BACKEND_URL")
            .cloned()
            .unwrap_or_else(|| self.var("STAGELOAD_PG_URL"))
    }

    /// An S3 client for the stack's endpoint.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.var("STAGELOAD_S3_ENDPOINT"))
            .credentials_provider(Credentials::new(
                self.var("AWS_ACCESS_KEY_ID"),
                self.var("AWS_SECRET_ACCESS_KEY"),
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// A running emulator; killed on drop.
pub struct Emu {
    /// host:port it listens on.
    pub addr: String,
    url: String,
    _child: Child,
}

impl Emu {
    /// Starts the binary and waits for its `listening on` line.
    pub async fn start(stack: &Stack) -> Self {
        Self::start_with(stack, &[]).await
    }

    /// Starts the binary with extra flags (`--serverless`, `--isolation serializable`).
    pub async fn start_with(stack: &Stack, extra: &[&str]) -> Self {
        let url = stack.backend_url();
        let hostport = url
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("backend url has host:port")
            .to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_redshift-emu"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--backend",
                &hostport,
                "--admin-url",
                &url,
            ])
            .args([
                "--s3-endpoint",
                &stack.var("STAGELOAD_S3_ENDPOINT"),
                "--s3-region",
                "us-east-1",
            ])
            .args(extra)
            .env("AWS_ACCESS_KEY_ID", stack.var("AWS_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", stack.var("AWS_SECRET_ACCESS_KEY"))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start redshift-emu");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("emulator did not start in 30s")
            .unwrap()
            .expect("emulator exited before listening");
        let addr = line
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        Self {
            addr,
            url,
            _child: child,
        }
    }

    /// A client connected through the emulator, as the backend URL's user and database.
    pub async fn connect(&self) -> Client {
        let rest = self.url.split('@').nth(1).unwrap();
        let db = rest.split('/').nth(1).unwrap_or("postgres");
        let creds = self
            .url
            .trim_start_matches("postgres://")
            .split('@')
            .next()
            .unwrap();
        let (user, pass) = creds.split_once(':').unwrap();
        let (host, port) = self.addr.split_once(':').unwrap();
        let conf = format!("host={host} port={port} user={user} password={pass} dbname={db}");
        let (client, conn) = tokio_postgres::connect(&conf, NoTls)
            .await
            .expect("connect via emulator");
        tokio::spawn(conn);
        client
    }
}

/// A client connected straight to the backend database (no emulator in between).
pub async fn connect_backend(stack: &Stack) -> Client {
    let (client, conn) = tokio_postgres::connect(&stack.backend_url(), NoTls)
        .await
        .expect("connect to the backend");
    tokio::spawn(conn);
    client
}

/// A fresh bucket with a unique name.
pub async fn bucket(s3: &aws_sdk_s3::Client, tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("emu-{tag}-{}-{}", std::process::id(), nanos % 1_000_000_000);
    s3.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    name
}

/// Puts one object.
pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.into()))
        .send()
        .await
        .expect("put object");
}

/// gzip-compresses bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A table name unique to this test run.
pub fn table(tag: &str) -> String {
    format!("emu_{tag}_{}", std::process::id())
}

/// Runs a statement as a simple query and returns the database error, if any.
pub async fn run(c: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    c.batch_execute(sql).await
}

/// Rows in `table`.
pub async fn count(c: &Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count rows")
        .get(0)
}
