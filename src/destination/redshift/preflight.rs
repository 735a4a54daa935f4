//! The check before each COPY that every object of the manifest is still the one that was
//! listed. COPY reads whatever the key holds when it runs: a mandatory entry that was deleted
//! fails the whole COPY (https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html, "if `true`, COPY terminates when that file is
//! missing"), which would hold every other object of the batch until the retry budget ran out,
//! and an object overwritten since it was listed would load its new content, which the ledger
//! also holds under its new ETag. Each such object is skipped on its own with code 9101 and the
//! rest of the batch loads.

use crate::codes;
use crate::model::{LoadError, StagedObject};
use crate::source::s3::{S3Error, S3};
use futures::{stream, StreamExt};

/// HEAD requests in flight at once for one batch.
const CONCURRENT_HEADS: usize = 16;

/// The `load_errors` row for an object that is not as listed: gone (`None`), or holding another
/// ETag. `None` when the object is the one that was listed.
pub fn verdict(object: &StagedObject, current_etag: Option<&str>) -> Option<LoadError> {
    let reason = match current_etag {
        None => {
            "staged object is gone (HEAD returned 404): deleted after it was listed".to_string()
        }
        Some(e) if e == object.etag || object.etag.is_empty() => return None,
        Some(e) => format!(
            "staged object was overwritten after it was listed: etag {} listed, {e} now; \
             the new version is a new staged object",
            object.etag
        ),
    };
    Some(LoadError {
        object_id: Some(object.id),
        filename: object.url(),
        err_code: codes::OBJECT_MISSING,
        err_reason: reason,
        ..LoadError::default()
    })
}

/// One row per object of `objects` that is gone or changed; an error when S3 could not answer.
pub async fn changed_objects(s3: &S3, objects: &[StagedObject]) -> Result<Vec<LoadError>, S3Error> {
    // Owned values in each future: the destination's futures must be `Send` for any lifetime.
    let answers: Vec<Result<Option<LoadError>, S3Error>> = stream::iter(objects.to_vec())
        .map(|o| {
            let s3 = s3.clone();
            async move {
                let etag = s3.head_etag(&o.bucket, &o.key).await?;
                Ok(verdict(&o, etag.as_deref()))
            }
        })
        .buffer_unordered(CONCURRENT_HEADS)
        .collect()
        .await;
    let mut rows = Vec::new();
    for a in answers {
        rows.extend(a?);
    }
    rows.sort_by_key(|r| r.object_id);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn object() -> StagedObject {
        StagedObject {
            id: 7,
            bucket: "stage".into(),
            key: "in/2026/11/28/13/a b.gz".into(),
            etag: "abc".into(),
            size: 10,
            arrival_time: Utc::now(),
        }
    }

    #[test]
    fn the_listed_version_passes() {
        assert_eq!(verdict(&object(), Some("abc")), None);
    }

    #[test]
    fn a_deleted_object_is_named_with_the_loader_code() {
        let row = verdict(&object(), None).expect("a row");
        assert_eq!(row.err_code, codes::OBJECT_MISSING);
        assert_eq!(row.object_id, Some(7));
        assert_eq!(row.filename, "s3://stage/in/2026/11/28/13/a b.gz");
        assert!(row.err_reason.contains("404"), "{}", row.err_reason);
    }

    #[test]
    fn an_overwritten_object_names_both_etags() {
        let row = verdict(&object(), Some("def")).expect("a row");
        assert!(row.err_reason.contains("abc") && row.err_reason.contains("def"));
    }
}
