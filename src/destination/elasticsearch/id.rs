//! Document ids: the deterministic id (a stable hash of bucket, key, etag and record ordinal)
//! and the base64 encodings used for ids and for `rawData` in failed-document records.

use crate::model::StagedObject;
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
        let mut n = 0;
        encode_into(&hash, URL_SAFE, false, |b| {
            out[n] = b;
            n += 1;
        });
        out
    }
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_into(data: &[u8], alphabet: &[u8; 64], pad: bool, mut emit: impl FnMut(u8)) {
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        for shift in [18, 12, 6, 0] {
            emit(alphabet[(n >> shift) as usize & 63]);
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let n = (rest[0] as u32) << 16 | rest.get(1).map_or(0, |&b| (b as u32) << 8);
        let chars = rest.len() + 1;
        for shift in [18, 12, 6, 0].into_iter().take(chars) {
            emit(alphabet[(n >> shift) as usize & 63]);
        }
        if pad {
            for _ in chars..4 {
                emit(b'=');
            }
        }
    }
}

/// Standard padded base64, as Firehose writes `rawData`.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    encode_into(data, STANDARD, true, |b| out.push(b as char));
    out
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
    fn base64_matches_the_rfc_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
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
