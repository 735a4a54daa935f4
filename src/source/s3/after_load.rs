//! The S3 side of after-load actions: delete, tag and move an object, each only while the key
//! still holds the object that was loaded (its ETag), and each safe to repeat after a crash.
//!
//! S3 deletes conditionally on general purpose buckets (`If-Match` on DeleteObject: 412
//! `PreconditionFailed` when the ETag differs, 404 `NoSuchKey` when the object is gone, see
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html>), and
//! CopyObject copies conditionally (`x-amz-copy-source-if-match`). A HEAD before each action
//! covers S3-compatible servers that ignore `If-Match` on DELETE; tagging has no condition, so
//! it names the version the HEAD saw where the bucket is versioned.

use super::{request_error, S3Error, S3};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::{ServerSideEncryption, Tag, Tagging};

/// Objects larger than this cannot be copied in one CopyObject (S3's limit, 5 GiB).
pub const MAX_COPY_BYTES: i64 = 5 << 30;

/// What an action found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Done; for a move, where the object now is (`bucket/key`).
    Done(Option<String>),
    /// The key holds another object now (a newer write): it was left alone.
    Superseded,
    /// The object was not there (deleted by someone else).
    Gone,
}

/// What HEAD found at the key.
enum Current {
    Ours(Option<String>),
    Other,
    Missing,
}

impl S3 {
    async fn current(&self, bucket: &str, key: &str, etag: &str) -> Result<Current, S3Error> {
        Ok(match self.head(bucket, key).await? {
            Some(h) if h.etag == etag => Current::Ours(h.version_id),
            Some(_) => Current::Other,
            None => Current::Missing,
        })
    }

    /// Deletes the object at `key` if it is still the one with `etag`.
    pub async fn delete_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<Applied, S3Error> {
        match self.current(bucket, key, etag).await? {
            Current::Missing => return Ok(Applied::Gone),
            Current::Other => return Ok(Applied::Superseded),
            Current::Ours(_) => {}
        }
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .if_match(format!("\"{etag}\""))
            .send()
            .await
        {
            Ok(_) => Ok(Applied::Done(None)),
            Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 412 => {
                Ok(Applied::Superseded)
            }
            Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 404 => Ok(Applied::Gone),
            Err(e) => Err(request_error("delete", bucket, key, e)),
        }
    }

    /// Adds the tag `(name, value)` to the object if it is still the one with `etag`, keeping
    /// its other tags (PutObjectTagging replaces the whole set).
    pub async fn tag_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        (name, value): (&str, &str),
    ) -> Result<Applied, S3Error> {
        let version = match self.current(bucket, key, etag).await? {
            Current::Missing => return Ok(Applied::Gone),
            Current::Other => return Ok(Applied::Superseded),
            Current::Ours(v) => v,
        };
        let existing = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.clone())
            .send()
            .await
            .map_err(|e| request_error("get tagging", bucket, key, e))?;
        let mut tags: Vec<Tag> = existing
            .tag_set()
            .iter()
            .filter(|t| t.key() != name)
            .cloned()
            .collect();
        if existing
            .tag_set()
            .iter()
            .any(|t| t.key() == name && t.value() == value)
        {
            return Ok(Applied::Done(None));
        }
        if tags.len() >= 10 {
            return Err(S3Error::Request {
                op: "put tagging",
                bucket: bucket.into(),
                key: key.into(),
                message: "the object has 10 tags already, S3's limit".into(),
            });
        }
        let tag = Tag::builder().key(name).value(value).build();
        tags.push(tag.map_err(|e| S3Error::Request {
            op: "put tagging",
            bucket: bucket.into(),
            key: key.into(),
            message: e.to_string(),
        })?);
        let tagging = Tagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| S3Error::Request {
                op: "put tagging",
                bucket: bucket.into(),
                key: key.into(),
                message: e.to_string(),
            })?;
        self.client
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| request_error("put tagging", bucket, key, e))?;
        Ok(Applied::Done(None))
    }

    /// Copies the object to `to_bucket/to_key` if it is still the one with `etag`, then
    /// deletes the original (conditionally). Repeated after a crash between the two, the copy
    /// finds no source and the destination there: done.
    pub async fn move_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        to_bucket: &str,
        to_key: &str,
    ) -> Result<Applied, S3Error> {
        let moved = Some(format!("{to_bucket}/{to_key}"));
        let source = format!("{bucket}/{}", encode_key(key));
        let mut copy = self
            .client
            .copy_object()
            .bucket(to_bucket)
            .key(to_key)
            .copy_source(source)
            .copy_source_if_match(format!("\"{etag}\""));
        if let Some(kms) = &self.kms_key_id {
            copy = copy
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms.as_ref());
        }
        match copy.send().await {
            Ok(_) => {}
            Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 412 => {
                return Ok(Applied::Superseded)
            }
            Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 404 => {
                return match self.head(to_bucket, to_key).await? {
                    Some(_) => Ok(Applied::Done(moved)),
                    None => Ok(Applied::Gone),
                };
            }
            Err(e) => return Err(request_error("copy", bucket, key, e)),
        }
        // The copy is made: whatever the delete finds, the loaded object is at `moved`.
        self.delete_if_unchanged(bucket, key, etag).await?;
        Ok(Applied::Done(moved))
    }
}

/// A key as CopyObject's `x-amz-copy-source` wants it: URL-encoded, `/` kept.
fn encode_key(key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(key, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_url_encoded_with_slashes_kept() {
        assert_eq!(encode_key("in/a b+c=d.json"), "in/a%20b%2Bc%3Dd.json");
        assert_eq!(encode_key("logs/été/x~y_z-1"), "logs/%C3%A9t%C3%A9/x~y_z-1");
    }
}
