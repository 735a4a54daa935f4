//! `[pipeline.source] after_load`: what happens to a staged object once its batch settled
//! loaded (keep it, delete it, tag it, or move it under another prefix), and the checks that
//! keep an action from feeding an object back into any pipeline.

use super::PipelineConfig;
use serde::Deserialize;

/// The action taken on an object after its batch settled `loaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterLoad {
    /// Leave the object where it is (the default).
    #[default]
    Keep,
    /// Delete it (conditionally on its ETag, so a newer object written to the same key stays).
    Delete,
    /// Add the tag `after_load_tag` to it (an S3 lifecycle rule can expire tagged objects).
    Tag,
    /// Copy it under `after_load_prefix` (in `after_load_bucket`, else its own bucket) and
    /// delete the original.
    Move,
}

impl AfterLoad {
    /// The name the ledger records (`delete`, `tag`, `move`).
    pub fn as_str(self) -> &'static str {
        match self {
            AfterLoad::Keep => "keep",
            AfterLoad::Delete => "delete",
            AfterLoad::Tag => "tag",
            AfterLoad::Move => "move",
        }
    }
}

/// The tag written by `after_load = "tag"` when `after_load_tag` is unset.
pub const DEFAULT_TAG: &str = "stageload=loaded";

/// The default `after_load_retry_s`: a day of retries before an action is given up.
pub fn default_retry_s() -> u64 {
    86_400
}

/// Splits `key=value`, checked against S3's limits (a key of 1 to 128 characters, a value of
/// at most 256, and no `aws:` prefix, which S3 reserves).
pub fn parse_tag(tag: &str) -> Result<(String, String), String> {
    let Some((k, v)) = tag.split_once('=') else {
        return Err(format!("{tag:?} is not key=value"));
    };
    if k.is_empty() || k.chars().count() > 128 {
        return Err("the tag key must be 1 to 128 characters".into());
    }
    if v.chars().count() > 256 {
        return Err("the tag value must be at most 256 characters".into());
    }
    if k.to_ascii_lowercase().starts_with("aws:") {
        return Err("tag keys starting with aws: are reserved by AWS".into());
    }
    Ok((k.to_string(), v.to_string()))
}

/// Checks pipeline `i`'s after-load settings against every pipeline; returns the field
/// (relative to the pipeline) and the problem.
pub fn validate(i: usize, all: &[PipelineConfig]) -> Result<(), (String, String)> {
    let p = &all[i];
    let s = &p.source;
    let action = s.after_load;
    if s.after_load_tag.is_some() && action != AfterLoad::Tag {
        return Err((
            "source.after_load_tag".into(),
            "is only read with after_load = \"tag\"".into(),
        ));
    }
    if (s.after_load_prefix.is_some() || s.after_load_bucket.is_some()) && action != AfterLoad::Move
    {
        let f = if s.after_load_prefix.is_some() {
            "after_load_prefix"
        } else {
            "after_load_bucket"
        };
        return Err((
            format!("source.{f}"),
            "is only read with after_load = \"move\"".into(),
        ));
    }
    if !(60..=30 * 86_400).contains(&s.after_load_retry_s) {
        return Err((
            "source.after_load_retry_s".into(),
            "must be 60 to 2592000".into(),
        ));
    }
    if let Some(tag) = &s.after_load_tag {
        parse_tag(tag).map_err(|m| ("source.after_load_tag".to_string(), m))?;
    }
    if action != AfterLoad::Move {
        return Ok(());
    }
    let prefix = s.after_load_prefix.as_deref().unwrap_or("");
    if prefix.is_empty() {
        return Err((
            "source.after_load_prefix".into(),
            "after_load = \"move\" needs a prefix to move objects under (\"archive/\")".into(),
        ));
    }
    let bucket = s.after_load_bucket.as_deref().unwrap_or(&s.bucket);
    // An object moved to where a pipeline watches would be staged and loaded again. Its own
    // pipeline skips the prefix (as it skips its error prefix); any other is refused.
    for (j, other) in all.iter().enumerate() {
        if other.source.bucket != bucket {
            continue;
        }
        let watched = &other.source.prefix;
        let overlaps = prefix.starts_with(watched.as_str()) || watched.starts_with(prefix);
        if j == i {
            if watched.starts_with(prefix) {
                return Err((
                    "source.after_load_prefix".into(),
                    format!("{prefix:?} holds the watched prefix {watched:?}"),
                ));
            }
        } else if overlaps {
            return Err((
                "source.after_load_prefix".into(),
                format!(
                    "s3://{bucket}/{prefix} is watched by pipeline {:?} (prefix {watched:?}), \
                     which would load the moved objects again",
                    other.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_against_s3_limits() {
        assert_eq!(
            parse_tag("stageload=loaded").unwrap(),
            ("stageload".into(), "loaded".into())
        );
        assert_eq!(parse_tag("k=").unwrap(), ("k".into(), "".into()));
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=v").is_err());
        assert!(parse_tag("aws:x=1").unwrap_err().contains("reserved"));
        assert!(parse_tag(&format!("{}=1", "k".repeat(129))).is_err());
        assert!(parse_tag(&format!("k={}", "v".repeat(257))).is_err());
    }
}
