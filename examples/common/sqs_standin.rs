//! Shared by the Redshift path benchmarks: an in-memory SQS stand-in for measuring the
//! loader's side of the notification path at rates moto's server cannot answer (moto scans
//! every message of a queue on each receive and twice on each delete, in one Python process).
//! It speaks the part of SQS's JSON protocol the loader uses (`ReceiveMessage` with long
//! polling, `DeleteMessageBatch`, `GetQueueAttributes`), each in constant time, with an
//! optional delay per call standing in for the network round trip to SQS. Messages are put on
//! it in memory ([`StandIn::push`]); a received message is never received again (no
//! visibility timeout), which a benchmark that deletes everything does not need.

use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// A running stand-in with one queue.
#[derive(Clone)]
pub struct StandIn {
    inner: Arc<Inner>,
    /// The queue's URL.
    pub queue_url: String,
}

struct Inner {
    queue: Mutex<Queue>,
    arrived: Notify,
    delay: Duration,
}

#[derive(Default)]
struct Queue {
    visible: VecDeque<(u64, String)>,
    in_flight: HashMap<String, u64>,
    next: u64,
    received: u64,
    deleted: u64,
}

impl StandIn {
    /// Starts the stand-in on a free loopback port; every call waits `delay` before answering.
    pub async fn start(delay: Duration) -> anyhow::Result<StandIn> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            arrived: Notify::new(),
            delay,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/", post(answer))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(StandIn {
            inner,
            queue_url: format!("http://{addr}/123456789012/standin"),
        })
    }

    /// Puts messages on the queue, as `SendMessageBatch` would.
    pub fn push(&self, bodies: impl IntoIterator<Item = String>) {
        let mut q = self.inner.queue.lock().unwrap();
        for b in bodies {
            let id = q.next;
            q.next += 1;
            q.visible.push_back((id, b));
        }
        drop(q);
        self.inner.arrived.notify_waiters();
    }

    /// (received, deleted, left visible) so far.
    pub fn counts(&self) -> (u64, u64, usize) {
        let q = self.inner.queue.lock().unwrap();
        (q.received, q.deleted, q.visible.len())
    }
}

async fn answer(
    axum::extract::State(inner): axum::extract::State<Arc<Inner>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ([(&'static str, &'static str); 1], String) {
    tokio::time::sleep(inner.delay).await;
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let out = match target.strip_prefix("AmazonSQS.").unwrap_or("") {
        "ReceiveMessage" => receive(&inner, &req).await,
        "DeleteMessageBatch" => delete(&inner, &req),
        "GetQueueAttributes" => {
            let n = inner.queue.lock().unwrap().visible.len();
            json!({"Attributes": {"ApproximateNumberOfMessages": n.to_string()}})
        }
        other => json!({"__type": "InvalidAction", "message": format!("{other} not supported")}),
    };
    (
        [("content-type", "application/x-amz-json-1.0")],
        out.to_string(),
    )
}

async fn receive(inner: &Inner, req: &Value) -> Value {
    let max = req["MaxNumberOfMessages"]
        .as_u64()
        .unwrap_or(1)
        .clamp(1, 10) as usize;
    let wait = Duration::from_secs(req["WaitTimeSeconds"].as_u64().unwrap_or(0));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let arrived = inner.arrived.notified();
        {
            let mut q = inner.queue.lock().unwrap();
            if !q.visible.is_empty() {
                let n = max.min(q.visible.len());
                let taken: Vec<(u64, String)> = q.visible.drain(..n).collect();
                q.received += n as u64;
                let messages: Vec<Value> = taken
                    .into_iter()
                    .map(|(id, body)| {
                        let handle = format!("rh-{id}");
                        q.in_flight.insert(handle.clone(), id);
                        json!({"MessageId": format!("m-{id}"), "ReceiptHandle": handle, "Body": body})
                    })
                    .collect();
                return json!({ "Messages": messages });
            }
        }
        if tokio::time::timeout_at(deadline, arrived).await.is_err() {
            return json!({});
        }
    }
}

fn delete(inner: &Inner, req: &Value) -> Value {
    let mut q = inner.queue.lock().unwrap();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for e in req["Entries"].as_array().into_iter().flatten() {
        let id = e["Id"].as_str().unwrap_or("");
        let handle = e["ReceiptHandle"].as_str().unwrap_or("");
        if q.in_flight.remove(handle).is_some() {
            q.deleted += 1;
            ok.push(json!({ "Id": id }));
        } else {
            failed.push(json!({"Id": id, "SenderFault": true, "Code": "ReceiptHandleIsInvalid", "Message": "unknown receipt handle"}));
        }
    }
    json!({"Successful": ok, "Failed": failed})
}
