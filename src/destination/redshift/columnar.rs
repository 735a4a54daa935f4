//! Finding the bad file of a failed columnar COPY (`FORMAT AS PARQUET` / `ORC`).
//!
//! "If COPY encounters an error while loading, the command fails" and the rows of
//! `stl_load_errors` that MAXERROR exclusion reads are not written for every such error
//! (https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html:
//! "Error messages are sent to the SQL client. Some errors are logged in STL_LOAD_ERRORS").
//! What the client gets is an XX000 `Spectrum Scan Error` whose DETAIL names the file, path-style
//! over HTTPS: `context: File 'https://s3.us-east-2.amazonaws.com/bucket/key' has an
//! incompatible Parquet schema ...` or `... Data columns: 16, File name: https://...`, the
//! context sometimes cut short. The file named is left out of the batch with a row saying why.
//!
//! When a `Spectrum Scan Error` names no file of the batch, the bad file is found by loading
//! the batch's files in halves, each try a COPY of a probe manifest rolled back at once: about
//! log2(n) COPYs (one more when the halving ends on a right half never tried alone) for one bad
//! file among n, none of them committed.

use super::client::Session;
use super::retry::RedshiftError;
use super::RedshiftDestination;
use crate::artifacts;
use crate::destination::FailureKind;
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use tracing::{debug, info};

/// The server's message and detail of a failed statement.
fn message_and_detail(e: &RedshiftError) -> Option<(String, String)> {
    let RedshiftError::Statement { source, .. } = e else {
        return None;
    };
    let db = source.as_db_error()?;
    Some((
        db.message().to_string(),
        db.detail().unwrap_or_default().to_string(),
    ))
}

/// `%xx` escapes decoded (an HTTPS URL may carry the key encoded).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every `bucket/key` the text names, as `s3://bucket/key` or an S3 HTTPS URL (path style
/// `https://s3.<region>.amazonaws.com/bucket/key` or virtual-hosted
/// `https://bucket.s3.<region>.amazonaws.com/key`).
pub fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (start, _) in text.match_indices("://") {
        let scheme_start = text[..start]
            .rfind(|c: char| !c.is_ascii_alphanumeric())
            .map_or(0, |i| i + 1);
        let scheme = text[scheme_start..start].to_ascii_lowercase();
        let rest = &text[start + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(rest.len());
        let url = &rest[..end];
        let path = match scheme.as_str() {
            "s3" => url.to_string(),
            "https" | "http" => {
                let Some((host, path)) = url.split_once('/') else {
                    continue;
                };
                let host = host.to_ascii_lowercase();
                if host.starts_with("s3.") || host.starts_with("s3-") {
                    percent_decode(path)
                } else if let Some(i) = host.find(".s3.").or_else(|| host.find(".s3-")) {
                    format!("{}/{}", &host[..i], percent_decode(path))
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        out.push(path);
    }
    out
}

/// The batch object a failed COPY's message names: exactly, or, when the name was cut short,
/// the one object whose `bucket/key` starts with it.
pub fn named_object<'a>(objects: &'a [StagedObject], text: &str) -> Option<&'a StagedObject> {
    let path = |o: &StagedObject| format!("{}/{}", o.bucket, o.key);
    for named in named_paths(text) {
        let trimmed = named.trim_end_matches(['.', ',', ';', ')']);
        if let Some(o) = objects
            .iter()
            .find(|o| path(o) == named || path(o) == trimmed)
        {
            return Some(o);
        }
        if trimmed.len() > 1 {
            let mut starting = objects.iter().filter(|o| path(o).starts_with(trimmed));
            if let (Some(o), None) = (starting.next(), starting.next()) {
                return Some(o);
            }
        }
    }
    None
}

/// The value of `field:` in a Redshift error DETAIL block (`code`, `context`, `error`).
fn detail_field<'a>(detail: &'a str, field: &str) -> Option<&'a str> {
    detail.lines().find_map(|l| {
        l.trim()
            .strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// True for a failed columnar read (`Spectrum Scan Error`), named file or not.
pub fn is_scan_error(e: &RedshiftError) -> bool {
    message_and_detail(e).is_some_and(|(m, d)| {
        m.contains("Spectrum Scan Error") || d.contains("Spectrum Scan Error")
    })
}

/// For a failed columnar COPY whose message names one of `objects`: a row leaving that file out,
/// with Redshift's error code and text.
pub fn bad_file(objects: &[StagedObject], e: &RedshiftError) -> Option<LoadError> {
    let (message, detail) = message_and_detail(e)?;
    let object = named_object(objects, &format!("{message}\n{detail}"))?;
    Some(row(object, message, &detail, ""))
}

/// The `load_errors` row leaving `object` out for an error with `message` and `detail`.
fn row(object: &StagedObject, message: String, detail: &str, note: &str) -> LoadError {
    let code = detail_field(detail, "code")
        .and_then(|c| c.parse().ok())
        .unwrap_or(crate::codes::BATCH_REJECTED);
    let reason = match detail_field(detail, "context") {
        Some(ctx) if !ctx.is_empty() => format!("{message}: {ctx}{note}"),
        _ => format!("{message}{note}"),
    };
    LoadError {
        object_id: Some(object.id),
        filename: object.url(),
        err_code: code,
        err_reason: reason,
        query: detail_field(detail, "query")
            .and_then(|q| q.parse().ok())
            .unwrap_or(0),
        ..LoadError::default()
    }
}

impl RedshiftDestination {
    /// After a `Spectrum Scan Error` naming no file: the one file of `objects` that fails alone,
    /// found by halves, with its row; None when no single file fails on its own.
    pub(super) async fn find_bad_file(
        &self,
        client: &Session,
        batch: &ClaimedBatch,
        objects: &[StagedObject],
    ) -> Result<Option<LoadError>, (FailureKind, String)> {
        let found = self.halve(client, batch, objects).await;
        // The probe manifest only served the search; one left behind would be harmless.
        let key = self.probe_key(batch);
        if let Err(e) = self.s3.delete(&self.bucket, &key).await {
            debug!(pipeline = %self.pipeline, batch_id = batch.id, error = %e, "probe manifest not deleted");
        }
        found
    }

    /// The search itself: probes halves until one file is left, then confirms it alone.
    async fn halve(
        &self,
        client: &Session,
        batch: &ClaimedBatch,
        objects: &[StagedObject],
    ) -> Result<Option<LoadError>, (FailureKind, String)> {
        let mut candidates = objects.to_vec();
        // The error of a probe of exactly the current single candidate.
        let mut alone = None;
        while candidates.len() > 1 {
            let right = candidates.split_off(candidates.len() / 2);
            match self.probe(client, batch, &candidates).await? {
                Some(e) if candidates.len() == 1 => alone = Some(e),
                Some(_) => {}
                // The left half loads: the bad file is on the right.
                None => candidates = right,
            }
        }
        let Some(one) = candidates.first() else {
            return Ok(None);
        };
        // Confirmed alone, unless the last probe was of this file alone.
        let found = match alone {
            Some(e) => Some(e),
            None => self.probe(client, batch, std::slice::from_ref(one)).await?,
        };
        Ok(found.and_then(|e| {
            let (message, detail) = message_and_detail(&e)?;
            Some(row(
                one,
                message,
                &detail,
                " (the file was found by loading the batch's files in halves)",
            ))
        }))
    }

    /// Where the probes' manifest goes: beside the batch's own, rewritten by each probe.
    fn probe_key(&self, batch: &ClaimedBatch) -> String {
        format!("{}.probe", self.manifest_key(batch))
    }

    /// A COPY of `objects` alone, rolled back whatever happens: the scan error it failed with,
    /// or None when it loaded.
    async fn probe(
        &self,
        client: &Session,
        batch: &ClaimedBatch,
        objects: &[StagedObject],
    ) -> Result<Option<RedshiftError>, (FailureKind, String)> {
        let key = self.probe_key(batch);
        let url = format!("s3://{}/{key}", self.bucket);
        self.s3
            .put(
                &self.bucket,
                &key,
                artifacts::manifest(objects),
                "application/json",
            )
            .await
            .map_err(|e| (FailureKind::Transient, format!("write manifest {url}: {e}")))?;
        let fail = |e: RedshiftError| (e.class().kind(), e.to_string());
        client.exec("begin", "BEGIN").await.map_err(fail)?;
        debug!(pipeline = %self.pipeline, batch_id = batch.id, files = objects.len(), copy = %self.spec.render(&url, true), "probing files for the bad one");
        let result = client
            .exec("probe copy", &self.spec.render(&url, false))
            .await;
        client.rollback().await;
        match result {
            Ok(()) => Ok(None),
            Err(e) if is_scan_error(&e) => {
                info!(pipeline = %self.pipeline, batch_id = batch.id, files = objects.len(), "probe copy failed: the bad file is among these");
                Ok(Some(e))
            }
            Err(e) => Err(fail(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn obj(id: i64, key: &str) -> StagedObject {
        StagedObject {
            id,
            bucket: "stage".into(),
            key: key.into(),
            etag: "e".into(),
            size: 1,
            arrival_time: Utc::now(),
        }
    }

    #[test]
    fn paths_are_read_from_s3_and_https_urls() {
        let d =
            "context:   File 'https://s3.us-east-2.amazonaws.com/stage/in/a%20b.parquet' has an \
                 incompatible Parquet schema for column 's3://stage/in/x.parquet.col'";
        assert_eq!(
            named_paths(d),
            vec!["stage/in/a b.parquet", "stage/in/x.parquet.col"]
        );
        assert_eq!(
            named_paths("File name: https://stage.s3.us-east-1.amazonaws.com/k/1.parquet\n"),
            vec!["stage/k/1.parquet"]
        );
        assert!(named_paths("https://example.com/stage/k").is_empty());
    }

    #[test]
    fn the_named_object_is_found_exactly_or_by_its_cut_prefix() {
        let objects = vec![obj(1, "in/a.parquet"), obj(2, "in/b-0001.parquet")];
        let text = "Unmatched number of columns between table and file. Table columns: 3, \
                    Data columns: 2, File name: https://s3.us-east-1.amazonaws.com/stage/in/a.parquet";
        assert_eq!(named_object(&objects, text).map(|o| o.id), Some(1));
        let cut = "context:   File ''https://s3.us-east-1.amazonaws.com/stage/in/b-00.";
        assert_eq!(named_object(&objects, cut).map(|o| o.id), Some(2));
        // A prefix two objects share names neither.
        assert!(named_object(&objects, "File 's3://stage/in/'").is_none());
        assert!(named_object(&objects, "no file here").is_none());
    }

    #[test]
    fn detail_fields_are_read() {
        let d = "\n  -----\n  error:  Spectrum Scan Error\n  code:      15007\n  context:   File 'x'\n  query:     26301369\n";
        assert_eq!(detail_field(d, "code"), Some("15007"));
        assert_eq!(detail_field(d, "context"), Some("File 'x'"));
        assert_eq!(detail_field(d, "query"), Some("26301369"));
    }
}
