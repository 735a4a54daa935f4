//! Tokens, the event and raw endpoints, gzip, partial failures, size limits, blackhole mode and
//! the HTTP edges, against the real binary.

mod common;

use std::io::Write;

use common::{Receiver, CHANNEL, TOKEN};
use serde_json::{json, Value};

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap()
}

#[tokio::test]
async fn token_checks() {
    let r = Receiver::start(&[
        "--token",
        "secret-2:disabled",
        "--token",
        "secret-3:name=web:index=web,web2",
    ]);
    let url = r.url("/services/collector/event");
    let body = r#"{"event":"x"}"#;
    let send = |auth: Option<&str>| {
        let mut req = r.client.post(&url).body(body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = send(None).await;
    assert_eq!(
        (s, code(&v), v["text"].as_str()),
        (401, 2, Some("Token is required"))
    );
    let (s, v) = send(Some(TOKEN)).await;
    assert_eq!((s, code(&v)), (401, 3));
    let (s, v) = send(Some("Splunk wrong")).await;
    assert_eq!(
        (s, code(&v), v["text"].as_str()),
        (403, 4, Some("Invalid token"))
    );
    let (s, v) = send(Some("Splunk secret-2")).await;
    assert_eq!((s, code(&v)), (403, 1));
    // Basic auth, any user, token as password: "x:secret-3".
    let (s, v) = send(Some("Basic eDpzZWNyZXQtMw==")).await;
    assert_eq!((s, v), (200, json!({"text":"Success","code":0})));

    let resp = r
        .client
        .post(&url)
        .header("Authorization", "Splunk secret-3")
        .body(r#"{"event":"a","index":"web2"}{"event":"b","index":"main"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"text":"Incorrect index","code":7,"invalid-event-number":1})
    );

    let events = r.events().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["token"], "web");
    assert_eq!(
        events[0]["index"], "web",
        "first allowed index is the default"
    );
    assert_eq!(events[0]["source"], "http:web");
    assert_eq!(events[1]["index"], "web2");
}

#[tokio::test]
async fn event_and_raw_are_stored_with_metadata() {
    let r = Receiver::start(&[]);
    let body = concat!(
        r#"{"event":{"msg":"one"},"time":1426279439.5,"host":"h1","source":"s1","sourcetype":"st","index":"idx","fields":{"f":"v","l":["a","b"]}}"#,
        "\n  ",
        r#"{"event":"two","time":"1426279440"}"#,
        r#"{"event":"three","time":1426279441123}"#,
    );
    let (s, v) = r
        .post("/services/collector/event", Some(CHANNEL), body)
        .await;
    assert_eq!((s, v), (200, json!({"text":"Success","code":0})));
    let (s, _) = r
        .post("/services/collector", None, r#"{"event":"four"}"#)
        .await;
    assert_eq!(s, 200);
    let (s, _) = r
        .post("/services/collector/event/1.0", None, r#"{"event":"five"}"#)
        .await;
    assert_eq!(s, 200);

    let raw = "/services/collector/raw?sourcetype=access&source=file&host=web1&index=logs&time=1500000000";
    let (s, v) = r
        .post(raw, Some(CHANNEL), "line one\r\nline two\n\nline three\n")
        .await;
    assert_eq!((s, code(&v)), (200, 0));

    let events = r.events().await;
    assert_eq!(events.len(), 8);
    let e = &events[0];
    assert_eq!(e["event"], json!({"msg":"one"}));
    assert_eq!(
        (e["host"].as_str(), e["source"].as_str()),
        (Some("h1"), Some("s1"))
    );
    assert_eq!(
        (e["sourcetype"].as_str(), e["index"].as_str()),
        (Some("st"), Some("idx"))
    );
    assert_eq!(e["time"], 1426279439.5);
    assert_eq!(e["fields"], json!({"f":"v","l":["a","b"]}));
    assert_eq!(
        (e["channel"].as_str(), e["request"].as_u64()),
        (Some(CHANNEL), Some(1))
    );
    assert_eq!(events[1]["time"], 1426279440.0);
    assert_eq!(events[2]["time"], 1426279441.123);
    let d = &events[3];
    assert_eq!(
        (d["sourcetype"].as_str(), d["index"].as_str()),
        (Some("httpevent"), Some("main"))
    );
    assert_eq!(
        (d["source"].as_str(), d["host"].as_str()),
        (Some("http:token1"), Some("127.0.0.1"))
    );
    assert_eq!(d["time_given"], false);
    let raws: Vec<_> = events[5..]
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(raws, vec!["line one", "line two", "line three"]);
    let l = &events[5];
    assert_eq!(
        (l["endpoint"].as_str(), l["sourcetype"].as_str()),
        (Some("raw"), Some("access"))
    );
    assert_eq!(
        (l["host"].as_str(), l["index"].as_str()),
        (Some("web1"), Some("logs"))
    );
    assert_eq!(
        (l["time"].as_f64(), l["request"].as_u64()),
        (Some(1.5e9), Some(4))
    );

    let (s, _) = r
        .post(
            "/services/collector/event",
            None,
            r#"{"event":"two","time":"1426279440"}"#,
        )
        .await;
    assert_eq!(s, 200);
    let stats = r.get("/_receiver/stats").await;
    assert_eq!(
        (stats["requests"].as_u64(), stats["events"].as_u64()),
        (Some(5), Some(9))
    );
    assert_eq!(stats["duplicates"], 1);
    assert_eq!(stats["channels"][CHANNEL]["events"], 6);

    let reset = r
        .client
        .post(r.url("/_receiver/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status().as_u16(), 200);
    assert!(r.events().await.is_empty());
    assert_eq!(r.get("/_receiver/stats").await["requests"], 0);
}

#[tokio::test]
async fn gzip_bodies() {
    let r = Receiver::start(&[]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"event":"zipped 1"}{"event":"zipped 2"}"#)
        .unwrap();
    let body = gz.finish().unwrap();
    let send = |encoding: &'static str, body: Vec<u8>| {
        r.client
            .post(r.url("/services/collector/event"))
            .header("Authorization", format!("Splunk {TOKEN}"))
            .header("Content-Encoding", encoding)
            .body(body)
            .send()
    };
    let resp = send("gzip", body.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(r.events().await.len(), 2);
    let resp = send("gzip", b"not gzip".to_vec()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(code(&resp.json().await.unwrap()), 6);
    let resp = send("deflate", body).await.unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let stats = r.get("/_receiver/stats").await;
    assert!(stats["decoded_bytes"].as_u64() > Some(0));
}

#[tokio::test]
async fn bad_event_in_the_middle_keeps_the_earlier_ones() {
    let r = Receiver::start(&[]);
    let body = r#"{"event":"a"}{"event":"b"}{"event": oops}{"event":"d"}"#;
    let (s, v) = r.post("/services/collector/event", None, body).await;
    assert_eq!(s, 400);
    assert_eq!(
        v,
        json!({"text":"Invalid data format","code":6,"invalid-event-number":2})
    );
    let stored: Vec<_> = r
        .events()
        .await
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(stored, vec![json!("a"), json!("b")]);

    let (s, v) = r
        .post(
            "/services/collector/event",
            None,
            r#"{"event":"c"}{"host":"h"}"#,
        )
        .await;
    assert_eq!(
        (s, code(&v), v["invalid-event-number"].as_u64()),
        (400, 12, Some(1))
    );
    let (s, v) = r
        .post("/services/collector/event", None, r#"{"event":"  "}"#)
        .await;
    assert_eq!(
        (s, code(&v), v["text"].as_str()),
        (400, 13, Some("Event field cannot be blank"))
    );
    let (s, v) = r.post("/services/collector/event", None, "").await;
    assert_eq!((s, v), (400, json!({"text":"No data","code":5})));
    let (s, v) = r.post("/services/collector/raw", None, "\n\n").await;
    assert_eq!((s, code(&v)), (400, 5));
    assert_eq!(r.events().await.len(), 3);
}

#[tokio::test]
async fn body_limit_gives_413() {
    let r = Receiver::start(&["--max-body-bytes", "64"]);
    let (s, _) = r
        .post("/services/collector/event", None, r#"{"event":"small"}"#)
        .await;
    assert_eq!(s, 200);
    let big = format!(r#"{{"event":"{}"}}"#, "x".repeat(100));
    let (s, _) = r.post("/services/collector/event", None, &big).await;
    assert_eq!(s, 413);
    assert_eq!(r.events().await.len(), 1);
}

#[tokio::test]
async fn blackhole_counts_without_storing() {
    let r = Receiver::start(&["--blackhole", "--ack"]);
    let body = r#"{"event":"a"}{"event":{"b":"}{"}}  {"event":"c"}"#;
    let (s, v) = r
        .post("/services/collector/event", Some(CHANNEL), body)
        .await;
    assert_eq!((s, v), (200, json!({"text":"Success","code":0,"ackId":0})));
    let (s, v) = r
        .post("/services/collector/raw", Some(CHANNEL), "1\n2\n3\n4")
        .await;
    assert_eq!((s, v["ackId"].as_u64()), (200, Some(1)));
    let (s, v) = r
        .post(
            "/services/collector/ack",
            Some(CHANNEL),
            r#"{"acks":[0,1]}"#,
        )
        .await;
    assert_eq!((s, v), (200, json!({"acks":{"0":true,"1":true}})));
    let stats = r.get("/_receiver/stats").await;
    assert_eq!(stats["blackhole"], true);
    assert_eq!(
        (stats["events"].as_u64(), stats["requests"].as_u64()),
        (Some(7), Some(2))
    );
    assert_eq!(stats["bytes"].as_u64(), Some((body.len() + 7) as u64));
    assert_eq!(stats["stored_events"], 0);
    assert!(r.events().await.is_empty());
}

#[tokio::test]
async fn health_and_http_edges() {
    let r = Receiver::start(&[]);
    for path in [
        "/services/collector/health",
        "/services/collector/health/1.0",
    ] {
        let resp = r.client.get(r.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v, json!({"text":"HEC is healthy","code":17}));
    }
    let resp = r.client.get(r.url("/services/nope")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = r
        .client
        .get(r.url("/services/collector/event"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(code(&resp.json().await.unwrap()), 404);
    let resp = r
        .client
        .request(reqwest::Method::OPTIONS, r.url("/services/collector/raw"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["allow"], "POST,OPTIONS");
}
