//! AWS Signature Version 4 for Amazon OpenSearch Service (`es`) and OpenSearch Serverless
//! (`aoss`), signed with the official `aws-sigv4` crate.
//!
//! Credentials come from the AWS credential chain the S3 client uses (environment, profile,
//! web identity, container and instance roles) and are kept until five minutes before they
//! expire. Each request carries `x-amz-content-sha256`, which OpenSearch Serverless requires:
//! the body's SHA-256 is computed once, on a blocking thread, from the bytes that are sent
//! (after compression), and handed to the signer precomputed so it does not hash again.

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use elasticsearch::http::headers::{HeaderMap, HeaderName, HeaderValue};
use elasticsearch::http::Url;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// Signs requests for one service and region.
pub struct Signer {
    provider: SharedCredentialsProvider,
    service: String,
    region: String,
    cached: Mutex<Option<Credentials>>,
}

/// Credentials from a request about to be signed.
pub struct Identified(Identity);

impl Signer {
    /// A signer for `service` (`es` or `aoss`) in `region`.
    pub fn new(provider: SharedCredentialsProvider, service: String, region: String) -> Signer {
        Signer {
            provider,
            service,
            region,
            cached: Mutex::new(None),
        }
    }

    /// The service signed for.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The credentials to sign with, from the cache while they have five minutes left.
    pub async fn identity(&self) -> Result<Identified, String> {
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().is_some_and(|c| match c.expiry() {
            None => true,
            Some(at) => at > SystemTime::now() + REFRESH_BEFORE,
        });
        if !fresh {
            let creds = self
                .provider
                .provide_credentials()
                .await
                .map_err(|e| format!("no AWS credentials to sign with: {e}"))?;
            *cached = Some(creds);
        }
        Ok(Identified(cached.clone().expect("set above").into()))
    }

    /// The headers that sign a request: `x-amz-date`, `x-amz-content-sha256`, the session
    /// token when there is one, and `authorization`. `headers` are the request's own headers
    /// that are signed with it (content type and encoding); `host` is signed from `url`.
    pub fn sign(
        &self,
        who: &Identified,
        method: &str,
        url: &Url,
        headers: &HeaderMap,
        body_sha256: &str,
    ) -> Result<HeaderMap, String> {
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
            None => url.host_str().unwrap_or("").to_string(),
        };
        let mut signed: Vec<(&str, &str)> = vec![("host", host.as_str())];
        for (name, value) in headers {
            if let Ok(v) = value.to_str() {
                signed.push((name.as_str(), v));
            }
        }
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&who.0)
            .region(&self.region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(
            method,
            url.as_str(),
            signed.into_iter(),
            SignableBody::Precomputed(body_sha256.to_string()),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(request, &params)
            .map_err(|e| format!("signing failed: {e}"))?
            .into_parts();
        let mut out = HeaderMap::new();
        for (name, value) in instructions.headers() {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let mut value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            out.insert(name, value);
        }
        Ok(out)
    }
}

/// The SHA-256 of `body`, lowercase hex, computed on a blocking thread (a 5 MiB body takes a
/// few milliseconds, which the runtime's threads should not spend).
pub async fn sha256_hex(body: Bytes) -> String {
    let on_thread = body.clone();
    match tokio::task::spawn_blocking(move || hex::encode(Sha256::digest(&on_thread))).await {
        Ok(hash) => hash,
        // The blocking pool is shutting down: hash here rather than sign a wrong hash.
        Err(_) => hex::encode(Sha256::digest(&body)),
    }
}

/// The SHA-256 of an empty body.
pub fn empty_sha256() -> String {
    hex::encode(Sha256::digest(b""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("tok".into()), None, "test");
        Signer::new(
            SharedCredentialsProvider::new(creds),
            "es".into(),
            "eu-west-1".into(),
        )
    }

    #[tokio::test]
    async fn a_signature_names_the_scope_the_body_hash_and_the_token() {
        let s = signer();
        let who = s.identity().await.unwrap();
        let url =
            Url::parse("https://search-x.eu-west-1.es.amazonaws.com/_bulk?filter_path=errors")
                .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-ndjson"),
        );
        let hash = sha256_hex(Bytes::from_static(b"{}\n")).await;
        let out = s.sign(&who, "POST", &url, &headers, &hash).unwrap();
        let auth = out["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
        assert!(auth.contains("/eu-west-1/es/aws4_request"));
        assert!(auth.contains(
            "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
        ));
        assert_eq!(out["x-amz-content-sha256"].to_str().unwrap(), hash);
        assert_eq!(out["x-amz-security-token"].to_str().unwrap(), "tok");
        assert!(
            format!("{out:?}").contains("Sensitive"),
            "values hidden from Debug"
        );
    }

    #[test]
    fn the_empty_body_hash_is_the_well_known_one() {
        assert_eq!(
            empty_sha256(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
