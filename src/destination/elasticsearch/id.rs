//! Document ids: the deterministic id, a stable hash of bucket, key, etag and record ordinal.

use crate::model::StagedObject;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use xxhash_rust::xxh3::xxh3_128;

/// Length of a deterministic id: 128 bits in unpadded base64url.
pub const ID_LEN: usize = 22;

/// Hashes records of one object into deterministic ids.
///
/// The object's identity is written once; each record only overwrites the trailing ordinal,
/// so an id costs one 128-bit xxh3 over about a hundred bytes.
pub struct ObjectIds {
    buf: Vec<u8>,
    prefix: usize,
}

impl ObjectIds {
    /// Ids for the records of `object`.
    pub fn new(object: &StagedObject) -> Self {
        let mut buf = Vec::with_capacity(object.bucket.len() + object.key.len() + 48);
        // Lengths rather than separators keep ("a/b", "c") and ("a", "b/c") apart.
        for part in [&object.bucket, &object.key, &object.etag] {
            buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
            buf.extend_from_slice(part.as_bytes());
        }
        let prefix = buf.len();
        buf.extend_from_slice(&0u64.to_le_bytes());
        ObjectIds { buf, prefix }
    }

    /// The id of the record with this ordinal.
    pub fn id(&mut self, ordinal: u64) -> [u8; ID_LEN] {
        self.buf[self.prefix..].copy_from_slice(&ordinal.to_le_bytes());
        let hash = xxh3_128(&self.buf).to_be_bytes();
        let mut out = [0u8; ID_LEN];
        let n = URL_SAFE_NO_PAD
            .encode_slice(hash, &mut out)
            .expect("16 bytes encode to 22");
        debug_assert_eq!(n, ID_LEN);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn object(key: &str, etag: &str) -> StagedObject {
        StagedObject {
            id: 1,
            bucket: "stage".into(),
            key: key.into(),
            etag: etag.into(),
            size: 10,
            arrival_time: Utc::now(),
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let mut a = ObjectIds::new(&object("k/1.gz", "e1"));
        let mut again = ObjectIds::new(&object("k/1.gz", "e1"));
        let first = a.id(0);
        assert_eq!(first, again.id(0));
        assert_ne!(first, a.id(1));
        assert_ne!(first, ObjectIds::new(&object("k/1.gz", "e2")).id(0));
        assert_ne!(first, ObjectIds::new(&object("k/2.gz", "e1")).id(0));
        assert!(first
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'));
    }
}
