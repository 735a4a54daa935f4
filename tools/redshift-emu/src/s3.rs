//! The emulator's own S3 access (its configured endpoint and keys, path-style): listing a key
//! prefix, fetching objects, reading Redshift manifests and decompressing input files.

use std::io::Read;

use aws_sdk_s3::config::Region;
use aws_sdk_s3::Client;

use crate::copy_parse::Compression;

/// S3 failures, worded like the S3ServiceException texts Redshift relays.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The object does not exist.
    #[error("S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey")]
    NoSuchKey,
    /// The bucket does not exist.
    #[error(
        "S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket"
    )]
    NoSuchBucket,
    /// Anything else.
    #[error("S3ServiceException:{0}")]
    Other(String),
}

/// S3 client for COPY sources.
#[derive(Clone)]
pub struct S3 {
    client: Client,
    region: String,
}

impl S3 {
    /// Builds a client for `endpoint` (None: AWS) with credentials from the environment.
    pub async fn new(endpoint: Option<&str>, region: &str) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(region.to_string()));
        if let Some(e) = endpoint {
            loader = loader.endpoint_url(e);
        }
        let shared = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build();
        Self {
            client: Client::from_conf(conf),
            region: region.to_string(),
        }
    }

    /// The region files are named in (`https://s3.<region>.amazonaws.com/...`).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Lists every key under `prefix`, in key order.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, i64)>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| {
                    let svc = e.into_service_error();
                    if svc.to_string().contains("NoSuchBucket")
                        || format!("{svc:?}").contains("NoSuchBucket")
                    {
                        S3Error::NoSuchBucket
                    } else {
                        S3Error::Other(format!("{svc:?}"))
                    }
                })?;
            for o in resp.contents() {
                if let Some(k) = o.key() {
                    out.push((k.to_string(), o.size().unwrap_or(0)));
                }
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort();
        Ok(out)
    }

    /// Fetches a whole object.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, S3Error> {
        let resp = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                let svc = e.into_service_error();
                if svc.is_no_such_key() {
                    S3Error::NoSuchKey
                } else {
                    let dbg = format!("{svc:?}");
                    if dbg.contains("NoSuchBucket") {
                        S3Error::NoSuchBucket
                    } else if dbg.contains("NoSuchKey") || dbg.contains("NotFound") {
                        S3Error::NoSuchKey
                    } else {
                        S3Error::Other(dbg)
                    }
                }
            })?;
        let body = resp
            .body
            .collect()
            .await
            .map_err(|e| S3Error::Other(e.to_string()))?;
        Ok(body.into_bytes().to_vec())
    }
}

/// Splits `s3://bucket/key` into bucket and key (the key may be empty).
pub fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("s3://"))
        .map(|_| &url[5..])?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket.to_string(), key.to_string()))
}

/// One manifest entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    /// `s3://bucket/key` of one object.
    pub url: String,
    /// COPY fails when a mandatory file is missing.
    pub mandatory: bool,
    /// Whether the entry has a `meta` object.
    pub meta: bool,
    /// `meta.content_length`, which columnar formats need.
    pub content_length: Option<u64>,
}

#[derive(serde::Deserialize)]
struct RawManifest {
    entries: Vec<RawEntry>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    url: String,
    // https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html: "mandatory (optional boolean, default false)".
    #[serde(default)]
    mandatory: bool,
    #[serde(default)]
    meta: Option<serde_json::Value>,
}

/// Parses a manifest (never compressed, https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html); the error is the COPY error message.
pub fn parse_manifest(data: &[u8]) -> Result<Vec<ManifestEntry>, String> {
    let m: RawManifest = serde_json::from_slice(data)
        .map_err(|e| format!("Manifest file is not in correct json format: {e}"))?;
    Ok(m.entries
        .into_iter()
        .map(|e| ManifestEntry {
            url: e.url,
            mandatory: e.mandatory,
            meta: e.meta.is_some(),
            content_length: e
                .meta
                .as_ref()
                .and_then(|m| m.get("content_length"))
                .and_then(|v| v.as_u64()),
        })
        .collect())
}

/// Decompresses a whole input file.
pub fn decompress(data: Vec<u8>, c: Compression) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let r = match c {
        Compression::None => return Ok(data),
        // Several gzip members in one file load as their concatenation.
        Compression::Gzip => flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut out),
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(&data[..]).and_then(|mut d| d.read_to_end(&mut out))
        }
        Compression::Bzip2 => bzip2::read::MultiBzDecoder::new(&data[..]).read_to_end(&mut out),
    };
    r.map_err(|e| {
        let name = match c {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            _ => "bzip2",
        };
        format!("{name}: {e}")
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn urls_and_manifests() {
        assert_eq!(split_url("s3://b/k/x"), Some(("b".into(), "k/x".into())));
        assert_eq!(split_url("s3://b"), Some(("b".into(), "".into())));
        assert_eq!(split_url("http://b/k"), None);
        let m = parse_manifest(br#"{"entries":[{"url":"s3://b/k","mandatory":true,"meta":{"content_length":5}},{"url":"s3://b/j"}]}"#).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[0].mandatory && !m[1].mandatory);
        assert!(parse_manifest(b"{\"x\":1}").is_err());
    }

    #[test]
    fn decompresses_multi_member_gzip_and_bzip2() {
        let mut all = Vec::new();
        for part in [b"a\n".as_slice(), b"b\n"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            all.extend(e.finish().unwrap());
        }
        assert_eq!(decompress(all, Compression::Gzip).unwrap(), b"a\nb\n");
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(b"xyz").unwrap();
        assert_eq!(
            decompress(e.finish().unwrap(), Compression::Bzip2).unwrap(),
            b"xyz"
        );
        let z = zstd::encode_all(&b"zz"[..], 1).unwrap();
        assert_eq!(decompress(z, Compression::Zstd).unwrap(), b"zz");
        assert!(decompress(b"nope".to_vec(), Compression::Gzip).is_err());
    }
}
