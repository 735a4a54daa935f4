//! What the warehouse already holds: `stageload_loaded_objects`, one row per object a load
//! committed (pipeline, bucket, key, ETag, and the installation and batch that loaded it),
//! written in the COPY's own transaction, as Redshift's COPY JOB keeps the files it loaded.
//!
//! After the `LOCK` and the marker check, in the same transaction as the COPY (so the snapshot
//! sees every load committed before the lock), the batch's objects are looked up there, by any
//! installation: an object a recreated or restored control database listed again is left out
//! of the manifest and settles loaded, since its rows are in the table. The table grows by one
//! row per object forever unless an operator trims it (see docs/redshift.md, "Objects the
//! warehouse holds").

use super::client::Session;
use super::commit::{Key, Tables};
use super::copy::quote_literal;
use super::retry::RedshiftError;
use crate::model::StagedObject;
use tokio_postgres::SimpleQueryMessage;

/// Rows per INSERT into the table, and keys per lookup.
const CHUNK: usize = 500;

impl Tables {
    /// `CREATE TABLE` of the loaded objects. Redshift has no indexes: the compound sort key
    /// (pipeline, bucket, key) lets the zone maps skip every block outside the batch's key
    /// range (a batch's keys sit close together under time-partitioned prefixes); the
    /// distribution on key spreads the rows evenly, so a lookup reads a little on each slice.
    pub fn loaded_ddl(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (pipeline varchar(256) NOT NULL, bucket varchar(64) NOT NULL, \
             key varchar(1024) NOT NULL, etag varchar(128) NOT NULL, installation_id varchar(64) NOT NULL, \
             batch_id bigint NOT NULL, loaded_at timestamp) DISTKEY (key) COMPOUND SORTKEY (pipeline, bucket, key)",
            self.loaded
        )
    }
}

/// The lookups of `objects` in the loaded objects table, [`CHUNK`] keys each; the key range is
/// stated as well as the list, for the zone maps.
pub fn lookups(tables: &Tables, pipeline: &str, objects: &[StagedObject]) -> Vec<String> {
    let mut sorted: Vec<&StagedObject> = objects.iter().collect();
    sorted.sort_by(|a, b| (&a.bucket, &a.key).cmp(&(&b.bucket, &b.key)));
    sorted
        .chunks(CHUNK)
        .map(|chunk| {
            let keys: Vec<String> = chunk.iter().map(|o| quote_literal(&o.key)).collect();
            let buckets: std::collections::BTreeSet<String> =
                chunk.iter().map(|o| quote_literal(&o.bucket)).collect();
            let buckets: Vec<String> = buckets.into_iter().collect();
            format!(
                "SELECT bucket, key, etag FROM {} WHERE pipeline = {} AND bucket IN ({}) \
                 AND key BETWEEN {} AND {} AND key IN ({})",
                tables.loaded,
                quote_literal(pipeline),
                buckets.join(", "),
                keys.first().map_or("''", String::as_str),
                keys.last().map_or("''", String::as_str),
                keys.join(", ")
            )
        })
        .collect()
}

/// The INSERTs recording `objects` as loaded by the batch `key` names.
pub fn records(tables: &Tables, key: &Key, objects: &[StagedObject]) -> Vec<String> {
    objects
        .chunks(CHUNK)
        .map(|chunk| {
            let values: Vec<String> = chunk
                .iter()
                .map(|o| {
                    format!(
                        "({}, {}, {}, {}, {}, {}, getdate())",
                        quote_literal(&key.pipeline),
                        quote_literal(&o.bucket),
                        quote_literal(&o.key),
                        quote_literal(&o.etag),
                        quote_literal(&key.installation),
                        key.batch_id
                    )
                })
                .collect();
            format!(
                "INSERT INTO {} (pipeline, bucket, key, etag, installation_id, batch_id, loaded_at) VALUES {}",
                tables.loaded,
                values.join(", ")
            )
        })
        .collect()
}

/// The ids of `objects` the table already holds, looked up inside the load's transaction.
pub async fn held(
    client: &Session,
    tables: &Tables,
    pipeline: &str,
    objects: &[StagedObject],
) -> Result<Vec<i64>, RedshiftError> {
    let mut found = Vec::new();
    for sql in lookups(tables, pipeline, objects) {
        for m in client.query("loaded objects lookup", &sql).await? {
            if let SimpleQueryMessage::Row(r) = m {
                let (b, k, e) = (r.get(0), r.get(1), r.get(2));
                found.extend(
                    objects
                        .iter()
                        .filter(|o| {
                            Some(o.bucket.as_str()) == b
                                && Some(o.key.as_str()) == k
                                && Some(o.etag.as_str()) == e
                        })
                        .map(|o| o.id),
                );
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn object(id: i64, key: &str) -> StagedObject {
        StagedObject {
            id,
            bucket: "b".into(),
            key: key.into(),
            etag: "e'1".into(),
            size: 1,
            arrival_time: Utc::now(),
        }
    }

    #[test]
    fn lookups_and_records_quote_and_chunk() {
        let t = Tables::new("public").unwrap();
        let objects: Vec<StagedObject> = (0..1200)
            .map(|i| object(i, &format!("k/{i:05}'x")))
            .collect();
        let q = lookups(&t, "p'q", &objects);
        assert_eq!(q.len(), 3);
        assert!(
            q[0].contains("pipeline = 'p''q' AND bucket IN ('b') AND"),
            "{}",
            q[0]
        );
        assert!(
            q[0].contains("key BETWEEN 'k/00000''x' AND 'k/00499''x'"),
            "{}",
            q[0]
        );
        let key = Key {
            installation: "u".into(),
            pipeline: "p".into(),
            batch_id: 3,
            digest: "d".into(),
            manifest: "s3://b/m".into(),
            first_attempt: Utc::now(),
        };
        let r = records(&t, &key, &objects[..2]);
        assert_eq!(r.len(), 1);
        assert!(
            r[0].contains("('p', 'b', 'k/00000''x', 'e''1', 'u', 3, getdate())"),
            "{}",
            r[0]
        );
        assert!(t.loaded_ddl().contains("SORTKEY (pipeline, bucket, key)"));
    }
}
