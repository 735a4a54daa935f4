//! Pipelines written once for many prefixes: `[[pipeline_set]]` (a `[[pipeline]]` template and
//! the list of items it is stamped out for) and `include_dir` (a directory of files holding
//! `[[pipeline]]` and `[[pipeline_set]]` blocks). Both become plain `[[pipeline]]` entries
//! before the configuration is read, so every check and every message is the same as for a
//! pipeline written out by hand.
//!
//! In a set's `pipeline` table, every string has `{item}` replaced by the item and `{slug}` by
//! the item with each run of characters other than letters, digits, `-` and `_` turned into
//! one `-` (for names: `111122223333/eu-west-1` gives `111122223333-eu-west-1`).

use std::path::Path;
use toml::Value;

/// Most pipelines one set may stamp out.
pub const MAX_ITEMS: usize = 10_000;

/// Appends the `[[pipeline]]` and `[[pipeline_set]]` blocks of every `*.toml` file in
/// `include_dir` (relative to `base`, the config file's directory), in file name order.
/// Returns the field at fault and the problem.
pub fn include(root: &mut Value, base: &Path) -> Result<(), (String, String)> {
    let Some(dir) = root.as_table_mut().and_then(|t| t.remove("include_dir")) else {
        return Ok(());
    };
    let Some(dir) = dir.as_str().map(|d| base.join(d)) else {
        return Err(("include_dir".into(), "must be a directory path".into()));
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| ("include_dir".to_string(), format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ("include_dir".to_string(), format!("{shown}: {e}")))?;
        let value: Value = toml::from_str(&text)
            .map_err(|e| ("include_dir".to_string(), format!("{shown}: {e}")))?;
        let Value::Table(table) = value else {
            continue;
        };
        for (key, blocks) in table {
            if key != "pipeline" && key != "pipeline_set" {
                return Err((
                    "include_dir".into(),
                    format!("{shown}: {key:?}: an included file holds only [[pipeline]] and [[pipeline_set]] blocks"),
                ));
            }
            let Value::Array(blocks) = blocks else {
                return Err((
                    "include_dir".into(),
                    format!("{shown}: {key} must be written [[{key}]]"),
                ));
            };
            append(root, &key, blocks);
        }
    }
    Ok(())
}

/// Replaces every `[[pipeline_set]]` with the `[[pipeline]]` entries it stands for, after the
/// pipelines written out.
pub fn expand_sets(root: &mut Value) -> Result<(), (String, String)> {
    let Some(sets) = root.as_table_mut().and_then(|t| t.remove("pipeline_set")) else {
        return Ok(());
    };
    let Value::Array(sets) = sets else {
        return Err((
            "pipeline_set".into(),
            "must be written [[pipeline_set]]".into(),
        ));
    };
    let mut out = Vec::new();
    for (i, set) in sets.into_iter().enumerate() {
        let at = |f: &str| format!("pipeline_set[{i}].{f}");
        let Value::Table(mut set) = set else {
            return Err((format!("pipeline_set[{i}]"), "must be a table".into()));
        };
        let items = match set.remove("items") {
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_ITEMS => items,
            Some(Value::Array(_)) => {
                return Err((at("items"), format!("must hold 1 to {MAX_ITEMS} items")))
            }
            _ => {
                return Err((
                    at("items"),
                    "is required: the list the template is stamped out for".into(),
                ))
            }
        };
        let Some(Value::Table(template)) = set.remove("pipeline") else {
            return Err((
                at("pipeline"),
                "is required: the [pipeline_set.pipeline] template".into(),
            ));
        };
        if let Some(key) = set.keys().next() {
            return Err((
                at(key),
                "unknown field: a set has items and pipeline".into(),
            ));
        }
        for (j, item) in items.iter().enumerate() {
            let Some(item) = item.as_str() else {
                return Err((
                    format!("pipeline_set[{i}].items[{j}]"),
                    "must be a string".into(),
                ));
            };
            let mut p = Value::Table(template.clone());
            stamp(&mut p, item, &slug(item));
            out.push(p);
        }
    }
    append(root, "pipeline", out);
    Ok(())
}

fn append(root: &mut Value, key: &str, blocks: Vec<Value>) {
    let Some(table) = root.as_table_mut() else {
        return;
    };
    match table.get_mut(key) {
        Some(Value::Array(existing)) => existing.extend(blocks),
        _ => {
            table.insert(key.to_string(), Value::Array(blocks));
        }
    }
}

fn stamp(v: &mut Value, item: &str, slug: &str) {
    match v {
        Value::String(s) if s.contains('{') => {
            *s = s.replace("{item}", item).replace("{slug}", slug);
        }
        Value::Array(a) => a.iter_mut().for_each(|x| stamp(x, item, slug)),
        Value::Table(t) => t.iter_mut().for_each(|(_, x)| stamp(x, item, slug)),
        _ => {}
    }
}

/// `item` with each run of characters a pipeline name cannot hold made one `-`, trimmed.
pub fn slug(item: &str) -> String {
    let mut out = String::with_capacity(item.len());
    for c in item.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_what_a_name_may_hold() {
        assert_eq!(slug("111122223333/eu-west-1"), "111122223333-eu-west-1");
        assert_eq!(slug("/a//b c/"), "a-b-c");
        assert_eq!(slug("alb_logs"), "alb_logs");
    }

    #[test]
    fn a_set_stamps_every_string_for_every_item_after_the_written_pipelines() {
        let mut v: Value = toml::from_str(
            r#"
[[pipeline]]
name = "hand"
[[pipeline_set]]
items = ["111/eu-west-1", "222/us-east-1"]
[pipeline_set.pipeline]
name = "alb-{slug}"
[pipeline_set.pipeline.source]
prefix = "AWSLogs/{item}/"
tags = ["{slug}", "x"]
"#,
        )
        .unwrap();
        expand_sets(&mut v).unwrap();
        let p = v["pipeline"].as_array().unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0]["name"].as_str(), Some("hand"));
        assert_eq!(p[1]["name"].as_str(), Some("alb-111-eu-west-1"));
        assert_eq!(
            p[2]["source"]["prefix"].as_str(),
            Some("AWSLogs/222/us-east-1/")
        );
        assert_eq!(p[2]["source"]["tags"][0].as_str(), Some("222-us-east-1"));
        assert!(v.get("pipeline_set").is_none());
    }

    #[test]
    fn a_set_without_items_or_template_is_refused_naming_the_field() {
        let mut v: Value = toml::from_str("[[pipeline_set]]\nitems = []\n").unwrap();
        assert_eq!(expand_sets(&mut v).unwrap_err().0, "pipeline_set[0].items");
        let mut v: Value = toml::from_str("[[pipeline_set]]\nitems = [\"a\"]\n").unwrap();
        assert_eq!(
            expand_sets(&mut v).unwrap_err().0,
            "pipeline_set[0].pipeline"
        );
        let mut v: Value =
            toml::from_str("[[pipeline_set]]\nitems = [1]\n[pipeline_set.pipeline]\n").unwrap();
        assert_eq!(
            expand_sets(&mut v).unwrap_err().0,
            "pipeline_set[0].items[0]"
        );
    }
}
