//! S3 access shared by every pipeline: listing, streaming reads, and writing artifacts.

mod after_load;

pub use after_load::{Applied, MAX_COPY_BYTES};

use crate::config::S3Config;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use chrono::{DateTime, Utc};

/// An S3 failure, naming the bucket and key.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The object does not exist (any more).
    #[error("s3://{bucket}/{key}: no such object")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// Any other failure of a request.
    #[error("s3://{bucket}/{key}: {op} failed: {message}")]
    Request {
        /// `list`, `get`, `head`, `put`, or a step of a multipart upload.
        op: &'static str,
        /// Bucket.
        bucket: String,
        /// Key or prefix.
        key: String,
        /// The SDK's message with its causes.
        message: String,
    },
}

/// One entry of a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Key.
    pub key: String,
    /// ETag without quotes.
    pub etag: String,
    /// Size in bytes.
    pub size: i64,
    /// LastModified.
    pub last_modified: Option<DateTime<Utc>>,
}

/// What a HEAD says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// ETag without quotes (empty when the server sends none).
    pub etag: String,
    /// Size in bytes.
    pub size: i64,
    /// The version HEAD answered for, on a versioned bucket.
    pub version_id: Option<String>,
}

/// How many times one read of an object is resumed after its connection breaks.
const MAX_RESUMES: u32 = 5;

/// An object opened for streaming.
pub struct Opened {
    /// The body, read as it arrives.
    pub body: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    /// `Content-Encoding`, when set.
    pub content_encoding: Option<String>,
    /// Content length.
    pub size: i64,
}

/// A cheap-to-clone S3 client.
#[derive(Clone, Debug)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    shared: aws_config::SdkConfig,
    /// The KMS key every object written is encrypted with (SSE-KMS); the bucket's default
    /// encryption when None.
    kms_key_id: Option<std::sync::Arc<str>>,
    /// `[s3] endpoint` and `force_path_style`, to build the client again for another identity.
    endpoint: Option<String>,
    force_path_style: bool,
}

impl S3 {
    /// Builds a client from `[s3]`: static keys when given, the AWS chain otherwise.
    pub async fn new(config: &S3Config) -> S3 {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()));
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            if !id.is_empty() && !secret.expose().is_empty() {
                loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    id.clone(),
                    secret.expose().to_string(),
                    config
                        .session_token
                        .as_ref()
                        .map(|t| t.expose().to_string()),
                    None,
                    "stageload-config",
                ));
            }
        }
        let shared = loader.load().await;
        S3 {
            client: client(&shared, config.endpoint.as_deref(), config.force_path_style),
            shared,
            kms_key_id: config.kms_key_id.as_deref().map(Into::into),
            endpoint: config.endpoint.clone(),
            force_path_style: config.force_path_style,
        }
    }

    /// The same S3 (endpoint, path style, KMS key) as another identity: `shared` carries its
    /// region and credentials (a pipeline's region, an assumed role: [`crate::aws::derive`]).
    pub fn with_sdk_config(&self, shared: aws_config::SdkConfig) -> S3 {
        S3 {
            client: client(&shared, self.endpoint.as_deref(), self.force_path_style),
            shared,
            kms_key_id: self.kms_key_id.clone(),
            endpoint: self.endpoint.clone(),
            force_path_style: self.force_path_style,
        }
    }

    /// The same client, writing with `kms_key_id` when one is given (a pipeline's own key).
    pub fn with_kms_key(&self, kms_key_id: Option<&str>) -> S3 {
        let mut s3 = self.clone();
        if let Some(key) = kms_key_id {
            s3.kms_key_id = Some(key.into());
        }
        s3
    }

    /// The region and credentials of `[s3]`, for the other AWS clients (SQS).
    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.shared
    }

    /// The SDK client, for the rare caller that needs more.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Lists keys under `prefix` after `start_after`, in key order, calling `page` per page.
    /// `page` returns false to stop early.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        mut page: impl FnMut(Vec<Listed>) -> bool,
    ) -> Result<(), S3Error> {
        let mut token: Option<String> = None;
        loop {
            let (items, next) = self
                .list_page(bucket, prefix, start_after, token.as_deref())
                .await?;
            if !page(items) {
                return Ok(());
            }
            match next {
                Some(t) => token = Some(t),
                None => return Ok(()),
            }
        }
    }

    /// The "directories" one level under `prefix` (ListObjectsV2 with delimiter `/`), in order.
    pub async fn list_dirs(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/");
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let page = req
                .send()
                .await
                .map_err(|e| request_error("list", bucket, prefix, e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// One ListObjectsV2 page under `prefix`: after `start_after` for the first page, from
    /// `token` for the next. Returns the page and the token of the next one, if any.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> Result<(Vec<Listed>, Option<String>), S3Error> {
        self.list_page_of(bucket, prefix, start_after, token, None)
            .await
    }

    /// [`S3::list_page`] with at most `max_keys` keys per page (S3's default is 1,000).
    pub async fn list_page_of(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
        max_keys: Option<i32>,
    ) -> Result<(Vec<Listed>, Option<String>), S3Error> {
        let mut req = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_max_keys(max_keys);
        if let Some(t) = token {
            req = req.continuation_token(t);
        } else if let Some(s) = start_after {
            req = req.start_after(s);
        }
        let out = req
            .send()
            .await
            .map_err(|e| request_error("list", bucket, prefix, e))?;
        let items = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(Listed {
                    key: o.key()?.to_string(),
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    size: o.size().unwrap_or(0),
                    last_modified: o
                        .last_modified()
                        .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                })
            })
            .collect();
        let next = match out.next_continuation_token() {
            Some(t) if out.is_truncated().unwrap_or(false) => Some(t.to_string()),
            _ => None,
        };
        Ok((items, next))
    }

    /// Opens an object for streaming. `etag` pins the version that was listed: an object
    /// overwritten since is reported as missing rather than read in its new form.
    ///
    /// A connection that breaks mid-body (a reset, a truncated response) is resumed with a
    /// ranged GET from the first byte not yet handed to the reader, pinned to the ETag of the
    /// first response with `If-Match` so bytes of two versions are never mixed; up to
    /// [`MAX_RESUMES`] times per object, then the read fails as before.
    pub async fn open(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Opened, S3Error> {
        let out = self.get(bucket, key, etag, 0).await?;
        let size = out.content_length().unwrap_or(0);
        let served_etag = out
            .e_tag()
            .map(|e| e.trim_matches('"').to_string())
            .filter(|e| !e.is_empty())
            .or_else(|| etag.filter(|e| !e.is_empty()).map(str::to_string));
        Ok(Opened {
            content_encoding: out.content_encoding().map(str::to_string),
            size,
            body: Box::new(Resuming {
                s3: self.clone(),
                bucket: bucket.to_string(),
                key: key.to_string(),
                etag: served_etag,
                size: size.max(0) as u64,
                offset: 0,
                resumes: 0,
                state: BodyState::Reading(Box::new(out.body.into_async_read())),
            }),
        })
    }

    /// One GET, from byte `from` on when it is not 0, pinned to `etag` when given.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
        from: u64,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, S3Error> {
        let mut req = self.client.get_object().bucket(bucket).key(key);
        if let Some(e) = etag.filter(|e| !e.is_empty()) {
            req = req.if_match(format!("\"{e}\""));
        }
        if from > 0 {
            req = req.range(format!("bytes={from}-"));
        }
        req.send().await.map_err(|e| get_error(bucket, key, e))
    }

    /// The bytes of `range` (`bytes=<first>-<last>`, or a suffix `bytes=-<n>`) of one version of
    /// an object: pinned to `etag` with `If-Match`, so a rewritten object answers 412 and is
    /// reported as [`S3Error::NotFound`], as [`S3::open`] reports it.
    pub async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
        range: &str,
    ) -> Result<bytes::Bytes, S3Error> {
        let mut req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(format!("bytes={range}"));
        if !etag.is_empty() {
            req = req.if_match(format!("\"{etag}\""));
        }
        let out = req.send().await.map_err(|e| get_error(bucket, key, e))?;
        let body = out.body.collect().await.map_err(|e| S3Error::Request {
            op: "get",
            bucket: bucket.into(),
            key: key.into(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
        Ok(body.into_bytes())
    }

    /// The object's ETag (without quotes) and size, or `None` when it does not exist.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<Option<Head>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Head {
                etag: out.e_tag().unwrap_or("").trim_matches('"').to_string(),
                size: out.content_length().unwrap_or(0),
                version_id: out.version_id().map(str::to_string),
            })),
            Err(SdkError::ServiceError(s)) if s.raw().status().as_u16() == 404 => Ok(None),
            Err(e) => Err(request_error("head", bucket, key, e)),
        }
    }

    /// The object's current ETag (without quotes), or `None` when it does not exist.
    pub async fn head_etag(&self, bucket: &str, key: &str) -> Result<Option<String>, S3Error> {
        Ok(self.head(bucket, key).await?.map(|h| h.etag))
    }

    /// Writes an object.
    pub async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        let mut put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        if let Some(kms) = &self.kms_key_id {
            put = put
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms.as_ref());
        }
        put.send()
            .await
            .map_err(|e| request_error("put", bucket, key, e))?;
        Ok(())
    }

    /// Deletes an object; deleting one that is not there succeeds, as S3's DELETE does.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| request_error("delete", bucket, key, e))?;
        Ok(())
    }

    /// Starts a multipart upload of an object written part by part ([`Upload`]).
    pub async fn start_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<Upload, S3Error> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .content_type(content_type);
        // The parts inherit the upload's encryption: S3 refuses these headers on UploadPart.
        if let Some(kms) = &self.kms_key_id {
            create = create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(kms.as_ref());
        }
        let out = create
            .send()
            .await
            .map_err(|e| request_error("create multipart upload", bucket, key, e))?;
        let upload_id = out.upload_id().unwrap_or_default().to_string();
        if upload_id.is_empty() {
            return Err(S3Error::Request {
                op: "create multipart upload",
                bucket: bucket.into(),
                key: key.into(),
                message: "the server returned no upload id".into(),
            });
        }
        Ok(Upload {
            s3: self.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id,
            parts: Vec::new(),
            bytes: 0,
        })
    }

    /// Checks the bucket is reachable with these credentials (for `/readyz` and startup).
    pub async fn check_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        self.client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| request_error("head bucket", bucket, "", e))?;
        Ok(())
    }
}

/// The least size of every part of a multipart upload but the last (S3's limit).
pub const MIN_PART_BYTES: usize = 5 << 20;

/// The most parts one multipart upload may have (S3's limit).
pub const MAX_PARTS: usize = 10_000;

/// A multipart upload in progress: parts go up one at a time (each at least
/// [`MIN_PART_BYTES`] but the last), then [`Upload::complete`] makes the object appear, or
/// [`Upload::abort`] drops the parts. An upload neither completed nor aborted leaves its parts
/// in the bucket until a lifecycle rule removes them.
#[derive(Debug)]
pub struct Upload {
    s3: S3,
    bucket: String,
    key: String,
    upload_id: String,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
    bytes: u64,
}

impl Upload {
    /// Uploads the next part.
    pub async fn part(&mut self, body: Vec<u8>) -> Result<(), S3Error> {
        let number = self.parts.len() as i32 + 1;
        let len = body.len() as u64;
        let out = self
            .s3
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| request_error("upload part", &self.bucket, &self.key, e))?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        self.bytes += len;
        Ok(())
    }

    /// Parts uploaded so far.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Bytes uploaded so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Completes the upload: the object appears with the parts in order.
    pub async fn complete(self) -> Result<(), S3Error> {
        let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts))
            .build();
        self.s3
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(parts)
            .send()
            .await
            .map_err(|e| request_error("complete multipart upload", &self.bucket, &self.key, e))?;
        Ok(())
    }

    /// Drops the upload and the parts sent so far.
    pub async fn abort(self) -> Result<(), S3Error> {
        self.s3
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await
            .map_err(|e| request_error("abort multipart upload", &self.bucket, &self.key, e))?;
        Ok(())
    }
}

/// A GET's error: a missing object, or one whose ETag no longer matches (412), is
/// [`S3Error::NotFound`].
fn get_error(
    bucket: &str,
    key: &str,
    e: SdkError<
        aws_sdk_s3::operation::get_object::GetObjectError,
        aws_sdk_s3::config::http::HttpResponse,
    >,
) -> S3Error {
    let not_found = match &e {
        SdkError::ServiceError(s) => {
            s.err().is_no_such_key() || matches!(s.raw().status().as_u16(), 404 | 412)
        }
        _ => false,
    };
    if not_found {
        S3Error::NotFound {
            bucket: bucket.into(),
            key: key.into(),
        }
    } else {
        request_error("get", bucket, key, e)
    }
}

fn client(
    shared: &aws_config::SdkConfig,
    endpoint: Option<&str>,
    force_path_style: bool,
) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(shared);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(builder.force_path_style(force_path_style).build())
}

fn request_error<E, R>(op: &'static str, bucket: &str, key: &str, e: SdkError<E, R>) -> S3Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    S3Error::Request {
        op,
        bucket: bucket.into(),
        key: key.into(),
        message: DisplayErrorContext(&e).to_string(),
    }
}

type Body = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type Reopen = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Body, S3Error>> + Send>>;

enum BodyState {
    Reading(Body),
    Reopening(Reopen),
}

/// An object's body that resumes with a ranged GET after its connection breaks.
struct Resuming {
    s3: S3,
    bucket: String,
    key: String,
    /// The version being read; without one a resumed read could mix two versions, so it
    /// is not resumed.
    etag: Option<String>,
    size: u64,
    /// Bytes handed to the reader so far: where a resumed GET starts.
    offset: u64,
    resumes: u32,
    state: BodyState,
}

impl Resuming {
    /// Starts a ranged GET from `offset`, or gives `e` back when the read cannot resume.
    fn resume(&mut self, e: std::io::Error) -> Result<(), std::io::Error> {
        let Some(etag) = self.etag.clone() else {
            return Err(e);
        };
        if self.resumes >= MAX_RESUMES {
            return Err(e);
        }
        self.resumes += 1;
        tracing::warn!(
            bucket = %self.bucket,
            key = %self.key,
            offset = self.offset,
            size = self.size,
            attempt = self.resumes,
            error = %e,
            "s3 read interrupted, resuming with a ranged get"
        );
        let (s3, bucket, key, from) = (
            self.s3.clone(),
            self.bucket.clone(),
            self.key.clone(),
            self.offset,
        );
        self.state = BodyState::Reopening(Box::pin(async move {
            let out = s3.get(&bucket, &key, Some(&etag), from).await?;
            Ok(Box::new(out.body.into_async_read()) as Body)
        }));
        Ok(())
    }
}

impl tokio::io::AsyncRead for Resuming {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            match &mut this.state {
                BodyState::Reading(body) => {
                    let before = buf.filled().len();
                    match std::pin::Pin::new(body).poll_read(cx, buf) {
                        Poll::Ready(Ok(())) => {
                            let n = (buf.filled().len() - before) as u64;
                            if n == 0 && buf.remaining() > 0 && this.offset < this.size {
                                // The body ended before Content-Length: a cut connection.
                                let e = std::io::Error::new(
                                    std::io::ErrorKind::UnexpectedEof,
                                    format!("body ended at byte {} of {}", this.offset, this.size),
                                );
                                if let Err(e) = this.resume(e) {
                                    return Poll::Ready(Err(e));
                                }
                                continue;
                            }
                            this.offset += n;
                            return Poll::Ready(Ok(()));
                        }
                        Poll::Ready(Err(e)) => {
                            if this.size > 0 && this.offset >= this.size {
                                // Everything arrived; only the end of the response broke.
                                return Poll::Ready(Ok(()));
                            }
                            if let Err(e) = this.resume(e) {
                                return Poll::Ready(Err(e));
                            }
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                BodyState::Reopening(fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(Ok(body)) => this.state = BodyState::Reading(body),
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Err(std::io::Error::other(e.to_string())))
                    }
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}
