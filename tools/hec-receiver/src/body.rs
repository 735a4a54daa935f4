//! Request bodies: reading with the size limit, and gzip decoding (`Content-Encoding`).

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::protocol::{http_reply, Code, Reply};

/// Why a body could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit as sent, or after decoding: HTTP 413.
    #[error("body over the size limit")]
    TooLarge,
    /// An encoding other than gzip or identity: HTTP 415.
    #[error("unsupported content encoding")]
    UnsupportedEncoding,
    /// Invalid gzip, or the connection failed mid-body: code 6.
    #[error("body could not be read or decoded")]
    Broken,
}

/// Reads the body, refusing it with 413 past `limit` (6.10: "Over-limit requests are rejected
/// whole with HTTP **413**"); the limit applies to the bytes as sent.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: u64) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    // Capped so a declared length alone cannot allocate hundreds of MiB.
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(16 << 20) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// 6.7: "`Content-Encoding: gzip` accepted on `/event` and `/raw`; `deflate` → 415".
pub fn decode(headers: &HeaderMap, bytes: &Bytes, limit: u64) -> Result<Bytes, BodyError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(bytes.clone()),
        Some("gzip") | Some("x-gzip") => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .take(limit + 1)
                .read_to_end(&mut out)
                .map_err(|_| BodyError::Broken)?;
            if out.len() as u64 > limit {
                return Err(BodyError::TooLarge);
            }
            Ok(Bytes::from(out))
        }
        Some(_) => Err(BodyError::UnsupportedEncoding),
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        match self {
            BodyError::TooLarge => http_reply(StatusCode::PAYLOAD_TOO_LARGE, "Content too large"),
            BodyError::UnsupportedEncoding => {
                http_reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type")
            }
            BodyError::Broken => Reply::code(Code::InvalidDataFormat).into_response(),
        }
    }
}
