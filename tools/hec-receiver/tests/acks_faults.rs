//! Indexer acknowledgement and the fault switches, against the real binary.

mod common;

use std::time::Duration;

use common::{Receiver, CHANNEL};
use serde_json::{json, Value};

const OTHER: &str = "0F0ECFAD-13D5-401B-847D-77833BD77132";
const EVENT: &str = "/services/collector/event";
const ACK: &str = "/services/collector/ack";

fn code(v: &Value) -> i64 {
    v["code"].as_i64().unwrap()
}

#[tokio::test]
async fn ack_lifecycle() {
    let r = Receiver::start(&["--ack"]);
    let (s, v) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
    assert_eq!(
        (s, v),
        (400, json!({"text":"Data channel is missing","code":10}))
    );
    let (s, v) = r.post(EVENT, Some("not-a-guid"), r#"{"event":"x"}"#).await;
    assert_eq!(
        (s, code(&v), v["text"].as_str()),
        (400, 11, Some("Invalid data channel"))
    );

    for expected in 0..2 {
        let (s, v) = r.post(EVENT, Some(CHANNEL), r#"{"event":"x"}"#).await;
        assert_eq!(
            (s, v),
            (200, json!({"text":"Success","code":0,"ackId":expected}))
        );
    }
    // Channel as a query parameter; ids count per channel from 0.
    let (s, v) = r
        .post(
            &format!("{EVENT}?channel={OTHER}"),
            None,
            r#"{"event":"y"}"#,
        )
        .await;
    assert_eq!((s, v["ackId"].as_u64()), (200, Some(0)));

    let (s, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0,1,2]}"#).await;
    assert_eq!((s, v), (200, json!({"acks":{"0":true,"1":true,"2":false}})));
    // Reported true once, then forgotten.
    let (_, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0,1]}"#).await;
    assert_eq!(v, json!({"acks":{"0":false,"1":false}}));
    let (_, v) = r.post(ACK, Some(OTHER), r#"{"acks":[0]}"#).await;
    assert_eq!(v, json!({"acks":{"0":true}}));
    let (s, v) = r.post(ACK, None, r#"{"acks":[0]}"#).await;
    assert_eq!((s, code(&v)), (400, 10));
    let (s, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":"nope"}"#).await;
    assert_eq!((s, code(&v)), (400, 6));

    let stats = r.get("/_receiver/stats").await;
    let ch = &stats["channels"][CHANNEL];
    assert_eq!(
        (ch["acks_issued"].as_u64(), ch["acks_true"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        (ch["acks_pending"].as_u64(), ch["next_ack_id"].as_u64()),
        (Some(0), Some(2))
    );
}

#[tokio::test]
async fn ack_endpoint_without_ack_mode() {
    let r = Receiver::start(&[]);
    let (s, v) = r.post(EVENT, Some(CHANNEL), r#"{"event":"x"}"#).await;
    assert_eq!((s, v), (200, json!({"text":"Success","code":0})));
    let (s, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0]}"#).await;
    assert_eq!((s, code(&v)), (400, 14));
}

#[tokio::test]
async fn busy_then_recovery() {
    let r = Receiver::start(&["--busy-requests", "2"]);
    let health = || async {
        let resp = r
            .client
            .get(r.url("/services/collector/health"))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), code(&resp.json().await.unwrap()))
    };
    assert_eq!(health().await, (503, 18));
    for _ in 0..2 {
        let (s, v) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
        assert_eq!((s, v), (503, json!({"text":"Server is busy","code":9})));
    }
    assert_eq!(health().await, (200, 17));
    let (s, _) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
    assert_eq!(s, 200);

    let view = r.faults(json!({"busy_for_s": 0.4})).await;
    assert!(view["busy_for_s"].as_f64().unwrap() > 0.0);
    let (s, _) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
    assert_eq!(s, 503);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
    assert_eq!(s, 200);

    r.faults(json!({"status_429_requests": 1, "status_500_requests": 1}))
        .await;
    let (s, v) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
    assert_eq!((s, code(&v)), (500, 8));
    let (s, _) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
    assert_eq!(s, 429);
    let (s, _) = r.post(EVENT, None, r#"{"event":"x"}"#).await;
    assert_eq!(s, 200);

    let stats = r.get("/_receiver/stats").await;
    assert_eq!(
        (stats["faulted"].as_u64(), stats["accepted"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(stats["codes"]["9"], 3);
    assert_eq!(r.events().await.len(), 3);
}

#[tokio::test]
async fn never_ack_and_delayed_ack() {
    let r = Receiver::start(&["--ack", "--never-ack"]);
    let (s, v) = r.post(EVENT, Some(CHANNEL), r#"{"event":"x"}"#).await;
    assert_eq!((s, v["ackId"].as_u64()), (200, Some(0)));
    let (_, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0]}"#).await;
    assert_eq!(v, json!({"acks":{"0":false}}));

    let view = r.faults(json!({"clear": true, "ack_delay_s": 0.4})).await;
    assert_eq!(view["never_ack"], false);
    let (_, v) = r.post(EVENT, Some(CHANNEL), r#"{"event":"x"}"#).await;
    assert_eq!(v["ackId"], 1);
    let (_, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0,1]}"#).await;
    assert_eq!(v, json!({"acks":{"0":false,"1":false}}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0,1]}"#).await;
    assert_eq!(
        v,
        json!({"acks":{"0":false,"1":true}}),
        "a never-ack id stays false"
    );
    assert_eq!(
        r.get("/_receiver/stats").await["channels"][CHANNEL]["acks_pending"],
        1
    );
}

#[tokio::test]
async fn dropped_connections() {
    let r = Receiver::start(&["--drop-requests", "1"]);
    let send = || {
        r.client
            .post(r.url(EVENT))
            .header("Authorization", format!("Splunk {}", common::TOKEN))
            .body(r#"{"event":"x"}"#)
            .send()
    };
    assert!(send().await.is_err(), "the first request gets no response");
    assert_eq!(send().await.unwrap().status().as_u16(), 200);
    assert_eq!(
        r.events().await.len(),
        1,
        "a dropped request stores nothing"
    );

    r.faults(json!({"drop_after_store_requests": 1})).await;
    assert!(send().await.is_err());
    assert_eq!(
        r.events().await.len(),
        2,
        "stored, then the response was lost"
    );
    let stats = r.get("/_receiver/stats").await;
    assert_eq!(
        (stats["dropped"].as_u64(), stats["requests"].as_u64()),
        (Some(2), Some(3))
    );

    let resp = r
        .client
        .post(r.url("/_receiver/faults"))
        .json(&json!({"bogus": 1}))
        .send()
        .await;
    assert!(resp.unwrap().status().is_client_error());
}

#[tokio::test]
async fn indexer_restart() {
    let r = Receiver::start(&["--ack"]);
    let (_, v) = r.post(EVENT, Some(CHANNEL), r#"{"event":"indexed"}"#).await;
    assert_eq!(v["ackId"], 0);
    r.faults(json!({"ack_delay_s": 60})).await;
    let (_, v) = r.post(EVENT, Some(CHANNEL), r#"{"event":"slow"}"#).await;
    assert_eq!(v["ackId"], 1);
    let (_, v) = r.post(EVENT, Some(OTHER), r#"{"event":"slow too"}"#).await;
    assert_eq!(v["ackId"], 0);

    let resp = r.client.post(r.url("/_receiver/restart")).send().await;
    let view: Value = resp.unwrap().json().await.unwrap();
    assert_eq!(
        view,
        json!({"restarted":true,"lost_requests":2,"lost_events":2,"forgotten_acks":3})
    );
    let events: Vec<Value> = r.events().await;
    assert_eq!(events.len(), 1, "only the indexed event is left");
    assert_eq!(events[0]["event"], "indexed");
    // The old ids are unknown now, even the indexed one's; ids start from 0 again.
    let (_, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0,1]}"#).await;
    assert_eq!(v, json!({"acks":{"0":false,"1":false}}));
    r.faults(json!({"ack_delay_s": 0})).await;
    let (_, v) = r.post(EVENT, Some(CHANNEL), r#"{"event":"after"}"#).await;
    assert_eq!(v["ackId"], 0);
    let (_, v) = r.post(ACK, Some(CHANNEL), r#"{"acks":[0]}"#).await;
    assert_eq!(v, json!({"acks":{"0":true}}));
    let stats = r.get("/_receiver/stats").await;
    assert_eq!(
        (
            stats["restarts"].as_u64(),
            stats["lost_in_restarts"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(stats["events"], 2);
}
