//! `path_bench`'s staging: many small objects in one Firehose hour partition of the local S3,
//! their list (key, size, ETag) kept beside a kept bucket, and the bucket's removal.

use super::notify::Created;
use chrono::Utc;
use futures::StreamExt;
use stageload::source::s3::S3;

/// Stages the objects (or, in a kept bucket that has them, reads their list back) and returns
/// each one's key, size and ETag. The list is kept in /tmp beside a kept bucket, since s3s-fs
/// lists without ETags.
pub async fn stage(
    s3: &S3,
    bucket: &str,
    prefix: &str,
    objects: usize,
    put_concurrency: usize,
    keep: bool,
) -> anyhow::Result<Vec<Created>> {
    let manifest = format!("/tmp/{bucket}.tsv");
    if keep {
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            return Ok(text
                .lines()
                .filter_map(|l| {
                    let mut f = l.split('\t');
                    Some(Created {
                        key: f.next()?.to_string(),
                        size: f.next()?.parse().ok()?,
                        etag: f.next()?.to_string(),
                    })
                })
                .collect());
        }
    }
    let _ = s3.client().create_bucket().bucket(bucket).send().await;
    // Firehose-style keys in one hour partition, a small JSON record each.
    let hour = Utc::now().format("%Y/%m/%d/%H").to_string();
    let dashed = hour.replace('/', "-");
    let puts = futures::stream::iter(0..objects)
        .map(|i| {
            let key = format!("{prefix}{hour}/bench-1-{dashed}-{i:08}.json");
            async move {
                let body = format!("{{\"i\":{i},\"note\":\"path bench\"}}\n").into_bytes();
                let size = body.len() as i64;
                let out = s3
                    .client()
                    .put_object()
                    .bucket(bucket)
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await?;
                let etag = out.e_tag().unwrap_or("").trim_matches('"').to_string();
                anyhow::Ok(Created { key, size, etag })
            }
        })
        .buffer_unordered(put_concurrency)
        .collect::<Vec<_>>()
        .await;
    let staged = puts.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    if keep {
        let text: String = staged
            .iter()
            .map(|o| format!("{}\t{}\t{}\n", o.key, o.size, o.etag))
            .collect();
        std::fs::write(&manifest, text)?;
    }
    Ok(staged)
}

/// Deletes the bench's objects and bucket (best effort).
pub async fn remove_bucket(s3: &S3, bucket: &str) {
    let c = s3.client();
    let mut token = None;
    loop {
        let Ok(page) = c
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
        else {
            return;
        };
        let keys: Vec<String> = page
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        futures::stream::iter(keys)
            .for_each_concurrent(64, |k| async move {
                let _ = c.delete_object().bucket(bucket).key(k).send().await;
            })
            .await;
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let _ = c.delete_bucket().bucket(bucket).send().await;
}
