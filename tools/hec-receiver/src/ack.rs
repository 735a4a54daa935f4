//! The ack poll, `POST /services/collector/ack` (reference 6.9).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::body::{decode, read_body};
use crate::protocol::{Code, Reply};
use crate::routes::{channel, App};

#[derive(Deserialize)]
struct AckQuery {
    acks: Vec<u64>,
}

/// `{"acks":{"0":true,"1":false}}`, keys in the order asked.
struct AckAnswer(Vec<(u64, bool)>);

impl Serialize for AckAnswer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (id, ok) in &self.0 {
            m.serialize_entry(&id.to_string(), ok)?;
        }
        m.end()
    }
}

/// 6.9: "poll `POST /services/collector/ack` (channel required, header or query param; token
/// required) with body `{"acks":[0,1,2]}`"; "Ack on a token without useACK → 400 code 14".
/// Fault switches do not apply here.
pub async fn ack(
    State(app): State<Arc<App>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match poll(&app, &q, &headers, body).await {
        Ok(r) | Err(r) => r,
    }
}

fn refuse(code: Code) -> Response {
    Reply::code(code).into_response()
}

async fn poll(
    app: &App,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let token = app
        .tokens
        .authenticate(headers, q.get("token").map(String::as_str))
        .map_err(refuse)?;
    if !(app.ack_all || token.ack) {
        return Err(refuse(Code::AckDisabled));
    }
    let channel = channel(headers, q, true)
        .map_err(refuse)?
        .unwrap_or_default();
    let bytes = read_body(body, headers, app.max_body_bytes)
        .await
        .map_err(IntoResponse::into_response)?;
    let bytes =
        decode(headers, &bytes, app.max_decoded_bytes).map_err(IntoResponse::into_response)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(refuse(Code::NoData));
    }
    let query: AckQuery =
        serde_json::from_slice(&bytes).map_err(|_| refuse(Code::InvalidDataFormat))?;
    let answers = app.store.query_acks(&channel, &query.acks, Instant::now());
    Ok(Json(serde_json::json!({ "acks": AckAnswer(answers) })).into_response())
}
