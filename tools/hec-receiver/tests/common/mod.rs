//! Starts the `hec-receiver` binary on a free port for one test and stops it afterwards.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A token every test receiver accepts.
pub const TOKEN: &str = "00000000-0000-0000-0000-000000000001";
/// A well-formed channel id.
pub const CHANNEL: &str = "FE0ECFAD-13D5-401B-847D-77833BD77131";

/// A running receiver and a client for it.
pub struct Receiver {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

impl Receiver {
    /// Starts the binary with `--token TOKEN` plus `args` and waits for `listening on ADDR`.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hec-receiver"))
            .args(["--listen", "127.0.0.1:0", "--token", TOKEN])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hec-receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Receiver {
            child,
            base: format!("http://{addr}"),
            client,
        }
    }

    /// The URL of a path on the receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a body with `Authorization: Splunk TOKEN` and optional channel header; returns
    /// the status and the JSON reply.
    pub async fn post(&self, path: &str, channel: Option<&str>, body: &str) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url(path))
            .header("Authorization", format!("Splunk {TOKEN}"))
            .body(body.to_string());
        if let Some(c) = channel {
            req = req.header("X-Splunk-Request-Channel", c);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GETs a control endpoint as JSON.
    pub async fn get(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Sets fault switches.
    pub async fn faults(&self, json: Value) -> Value {
        self.client
            .post(self.url("/_receiver/faults"))
            .json(&json)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// All stored events.
    pub async fn events(&self) -> Vec<Value> {
        self.get("/_receiver/events")
            .await
            .as_array()
            .cloned()
            .unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
