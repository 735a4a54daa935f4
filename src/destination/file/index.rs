//! What the directory already holds, whatever control database sent it: every published
//! `<stem>.ndjson` has a companion `.<stem>.objects` (one JSON line per object in the file:
//! bucket, key, ETag), renamed into place just before the data file. An object a companion
//! lists is never written again, so a recreated control database, or one restored from a
//! backup, that lists the bucket again writes only what the directory lacks. A companion whose
//! data file is absent (a crash between the two renames) counts for nothing.
//!
//! Memory: one 16-byte hash per object ever published to the directory, read once.

use crate::model::StagedObject;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::path::Path;

/// One companion line.
#[derive(Serialize, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    bucket: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    etag: Cow<'a, str>,
}

/// The objects a directory holds, as hashes of (bucket, key, ETag).
#[derive(Default)]
pub struct Index {
    /// Companions read already.
    read: HashSet<OsString>,
    held: HashSet<u128>,
}

fn hash(bucket: &str, key: &str, etag: &str) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [bucket, key, etag] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.digest128()
}

/// The companion's name for a data file stem.
pub fn companion_name(stem: &str) -> String {
    format!(".{stem}.objects")
}

/// The companion's contents for these objects.
pub fn companion(objects: &[StagedObject]) -> Vec<u8> {
    let mut out = Vec::new();
    for o in objects {
        let e = Entry {
            bucket: Cow::Borrowed(&o.bucket),
            key: Cow::Borrowed(&o.key),
            etag: Cow::Borrowed(&o.etag),
        };
        // Serializing strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &e);
        out.push(b'\n');
    }
    out
}

impl Index {
    /// Reads the companions published since the last refresh (blocking file I/O).
    pub fn refresh(&mut self, dir: &Path) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(text) = name.to_str() else { continue };
            let Some(stem) = text
                .strip_prefix('.')
                .and_then(|t| t.strip_suffix(".objects"))
            else {
                continue;
            };
            if self.read.contains(&name) || !dir.join(format!("{stem}.ndjson")).exists() {
                continue;
            }
            let bytes = std::fs::read(dir.join(&name))?;
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let e: Entry = serde_json::from_slice(line).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", dir.join(&name).display()),
                    )
                })?;
                self.held.insert(hash(&e.bucket, &e.key, &e.etag));
            }
            self.read.insert(name);
        }
        Ok(())
    }

    /// Whether the directory holds `o` already.
    pub fn holds(&self, o: &StagedObject) -> bool {
        self.held.contains(&hash(&o.bucket, &o.key, &o.etag))
    }

    /// Notes objects just published under `stem`.
    pub fn add(&mut self, stem: &str, objects: &[StagedObject]) {
        self.read.insert(companion_name(stem).into());
        self.held
            .extend(objects.iter().map(|o| hash(&o.bucket, &o.key, &o.etag)));
    }
}

/// A short digest of the objects a file holds (URL and ETag, order-free): the file's name
/// carries it, so two different sets of objects never share a name.
pub fn digest(objects: &[StagedObject]) -> String {
    format!(
        "{:016x}",
        (crate::model::objects_digest(objects) >> 64) as u64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn object(key: &str, etag: &str) -> StagedObject {
        StagedObject {
            id: 1,
            bucket: "b".into(),
            key: key.into(),
            etag: etag.into(),
            size: 1,
            arrival_time: Utc::now(),
        }
    }

    #[test]
    fn a_companion_counts_only_beside_its_data_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = object("k\t1\n\"x\"", "e1");
        let b = object("k2", "e2");
        std::fs::write(
            dir.path().join(companion_name("1-aa")),
            companion(std::slice::from_ref(&a)),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(companion_name("2-bb")),
            companion(std::slice::from_ref(&b)),
        )
        .unwrap();
        std::fs::write(dir.path().join("1-aa.ndjson"), b"{}\n").unwrap();
        let mut index = Index::default();
        index.refresh(dir.path()).unwrap();
        assert!(index.holds(&a));
        assert!(!index.holds(&b), "no 2-bb.ndjson: not published");
        assert!(!index.holds(&object("k\t1\n\"x\"", "e9")), "another etag");
        std::fs::write(dir.path().join("2-bb.ndjson"), b"{}\n").unwrap();
        index.refresh(dir.path()).unwrap();
        assert!(index.holds(&b), "published since");
    }

    #[test]
    fn digest_names_the_set_not_its_order() {
        let (a, b) = (object("k1", "e1"), object("k2", "e2"));
        assert_eq!(
            digest(&[a.clone(), b.clone()]),
            digest(&[b.clone(), a.clone()])
        );
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[a, b]));
    }
}
