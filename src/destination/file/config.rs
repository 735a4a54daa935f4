//! `type = "file"`: the file destination's `[pipeline.destination]` table.
//!
//! Compiled as `crate::config::destination::file` (the config layer, which imports no
//! destination), and kept beside the destination it configures.

use serde::Deserialize;
use std::path::PathBuf;

/// `type = "file"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Directory that receives one `<batch id>.ndjson` file per batch, written atomically.
    pub directory: PathBuf,
}

impl FileConfig {
    /// Checks the fields; returns the field (relative to `destination`) and the problem.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        let f = self;
        if f.directory.as_os_str().is_empty() {
            return err("directory", "must not be empty".into());
        }
        Ok(())
    }
}
