//! The SQL the Redshift destination sends, rendered by pure functions: identifier quoting,
//! literal escaping, the `COPY ... MANIFEST` statement (with a redacted form for logs) and the
//! marker table `stageload_commits`.

use crate::config::{RedshiftConfig, Secret};

/// How COPY is allowed to read S3 (protocols.md 5.3): exactly one of these.
#[derive(Clone)]
pub enum Authorization {
    /// `IAM_ROLE 'arn:...'`, or `IAM_ROLE default` when the value is `default`.
    IamRole(String),
    /// `CREDENTIALS '<aws_iam_role=...|aws_access_key_id=...;aws_secret_access_key=...>'`.
    Credentials(Secret),
    /// `ACCESS_KEY_ID '...' SECRET_ACCESS_KEY '...'`.
    Keys {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
    },
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render(true))
    }
}

impl Authorization {
    /// The clause from a validated configuration (`validate()` made sure exactly one is set).
    pub fn from_config(c: &RedshiftConfig) -> Option<Authorization> {
        if let Some(role) = &c.iam_role {
            return Some(Authorization::IamRole(role.clone()));
        }
        if let Some(creds) = &c.credentials {
            return Some(Authorization::Credentials(creds.clone()));
        }
        match (&c.access_key_id, &c.secret_access_key) {
            (Some(id), Some(secret)) => Some(Authorization::Keys {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
            }),
            _ => None,
        }
    }

    /// The clause; `redact` replaces every value by `'***'` (for logs).
    pub fn render(&self, redact: bool) -> String {
        let lit = |s: &str| {
            if redact {
                "'***'".to_string()
            } else {
                quote_literal(s)
            }
        };
        match self {
            Authorization::IamRole(r) if r.eq_ignore_ascii_case("default") => {
                "IAM_ROLE default".into()
            }
            Authorization::IamRole(r) => format!("IAM_ROLE {}", lit(r)),
            Authorization::Credentials(c) => format!("CREDENTIALS {}", lit(c.expose())),
            Authorization::Keys {
                access_key_id,
                secret_access_key,
            } => format!(
                "ACCESS_KEY_ID {} SECRET_ACCESS_KEY {}",
                lit(access_key_id),
                lit(secret_access_key.expose())
            ),
        }
    }
}

/// Everything a COPY needs except the manifest's location.
#[derive(Debug, Clone)]
pub struct CopySpec {
    /// Target table, quoted (`"public"."clicks"`).
    pub table: String,
    /// Quoted column names; empty for all columns.
    pub columns: Vec<String>,
    /// Authorization clause.
    pub auth: Authorization,
    /// `REGION` of the bucket.
    pub region: Option<String>,
    /// The user's options, verbatim.
    pub options: String,
}

impl CopySpec {
    /// The spec from a validated configuration.
    pub fn from_config(c: &RedshiftConfig) -> Result<CopySpec, String> {
        let auth = Authorization::from_config(c).ok_or(
            "set exactly one of iam_role, credentials, or access_key_id with secret_access_key",
        )?;
        Ok(CopySpec {
            table: quote_qualified(&c.table)?,
            columns: c
                .columns
                .iter()
                .map(|col| quote_ident(col))
                .collect::<Result<_, _>>()?,
            auth,
            region: c.region.clone(),
            options: c.options_text(),
        })
    }

    /// `COPY <table> [(cols)] FROM '<manifest>' <auth> MANIFEST [REGION 'r'] <options>`; with
    /// `redact` the authorization values are replaced by `'***'`.
    pub fn render(&self, manifest_url: &str, redact: bool) -> String {
        self.render_into(&self.table, manifest_url, redact)
    }

    /// The same COPY into another table (merge mode's staging table), quoted by the caller.
    pub fn render_into(&self, table: &str, manifest_url: &str, redact: bool) -> String {
        let mut sql = format!("COPY {table}");
        if !self.columns.is_empty() {
            sql.push_str(&format!(" ({})", self.columns.join(", ")));
        }
        sql.push_str(&format!(
            " FROM {} {} MANIFEST",
            quote_literal(manifest_url),
            self.auth.render(redact)
        ));
        if let Some(r) = &self.region {
            sql.push_str(&format!(" REGION {}", quote_literal(r)));
        }
        let options = self.options.trim();
        if !options.is_empty() {
            sql.push(' ');
            sql.push_str(options);
        }
        sql
    }
}

impl RedshiftConfig {
    fn options_text(&self) -> String {
        self.copy_options
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_string()
    }
}

/// A string literal: single quotes doubled.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One identifier as SQL: an already double-quoted name is kept as written; a bare name folds
/// to lower case (as SQL folds unquoted names) and is quoted, so nothing in it can end the name.
pub fn quote_ident(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("empty identifier".into());
    }
    if let Some(inner) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        if inner.is_empty() || inner.replace("\"\"", "").contains('"') {
            return Err(format!("malformed quoted identifier {name}"));
        }
        return Ok(name.to_string());
    }
    Ok(format!("\"{}\"", name.to_lowercase().replace('"', "\"\"")))
}

/// `schema.table` (or `table`) with each part quoted; dots inside double quotes do not split.
pub fn quote_qualified(name: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in name.trim().chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            '.' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    if quoted || parts.len() > 3 {
        return Err(format!("{name:?} is not a table name"));
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Result<Vec<_>, _>>()?
        .join("."))
}

/// The marker table, created when missing. Redshift does not enforce primary keys, so the
/// guarantee comes from checking for the row under a lock before inserting it.
pub fn marker_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (batch_id bigint NOT NULL PRIMARY KEY, \
         pipeline varchar(256) NOT NULL, manifest varchar(1024), objects integer, \
         rows_loaded bigint, rows_rejected bigint, copy_query bigint, committed_at timestamp)"
    )
}

/// `"schema"."stageload_commits"`.
pub fn marker_table(schema: &str) -> Result<String, String> {
    Ok(format!("{}.\"stageload_commits\"", quote_ident(schema)?))
}

/// What the marker row records about one committed load.
#[derive(Debug, Clone)]
pub struct Marker<'a> {
    /// Batch id (the key).
    pub batch_id: i64,
    /// Pipeline.
    pub pipeline: &'a str,
    /// `s3://` URL of the manifest loaded.
    pub manifest: &'a str,
    /// Objects in the manifest.
    pub objects: usize,
    /// `pg_last_copy_count()`.
    pub rows_loaded: i64,
    /// Rows skipped under MAXERROR.
    pub rows_rejected: i64,
    /// `pg_last_copy_id()`.
    pub copy_query: i64,
    /// Commit time (UTC) as `YYYY-MM-DD HH:MM:SS`.
    pub committed_at: String,
}

/// The INSERT of one marker row.
pub fn marker_insert(table: &str, m: &Marker<'_>) -> String {
    format!(
        "INSERT INTO {table} (batch_id, pipeline, manifest, objects, rows_loaded, rows_rejected, \
         copy_query, committed_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
        m.batch_id,
        quote_literal(m.pipeline),
        quote_literal(m.manifest),
        m.objects,
        m.rows_loaded,
        m.rows_rejected,
        m.copy_query,
        quote_literal(&m.committed_at),
    )
}

/// The query that finds a batch's marker row.
pub fn marker_select(table: &str, batch_id: i64) -> String {
    format!("SELECT batch_id FROM {table} WHERE batch_id = {batch_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(auth: Authorization) -> CopySpec {
        CopySpec {
            table: quote_qualified("public.Clicks").unwrap(),
            columns: vec![
                quote_ident("event_id").unwrap(),
                quote_ident("\"Ts\"").unwrap(),
            ],
            auth,
            region: Some("us-west-2".into()),
            options: "JSON 'auto' GZIP".into(),
        }
    }

    #[test]
    fn renders_copy_with_manifest_auth_region_and_options() {
        let s = spec(Authorization::IamRole("arn:aws:iam::1:role/r".into()));
        assert_eq!(
            s.render("s3://b/m/x.manifest", false),
            "COPY \"public\".\"clicks\" (\"event_id\", \"Ts\") FROM 's3://b/m/x.manifest' \
             IAM_ROLE 'arn:aws:iam::1:role/r' MANIFEST REGION 'us-west-2' JSON 'auto' GZIP"
        );
        let bare = CopySpec {
            columns: vec![],
            region: None,
            options: String::new(),
            auth: Authorization::IamRole("default".into()),
            ..s
        };
        assert_eq!(
            bare.render("s3://b/k", false),
            "COPY \"public\".\"clicks\" FROM 's3://b/k' IAM_ROLE default MANIFEST"
        );
    }

    #[test]
    fn literals_double_quotes_and_keep_non_ascii() {
        let s = spec(Authorization::IamRole("r".into()));
        let sql = s.render("s3://b/it's/é.manifest", false);
        assert!(sql.contains("FROM 's3://b/it''s/é.manifest' "), "{sql}");
        assert_eq!(quote_literal("a''b"), "'a''''b'");
    }

    #[test]
    fn secrets_are_redacted_on_request() {
        let keys = spec(Authorization::Keys {
            access_key_id: "AKIA1".into(),
            secret_access_key: Secret::new("s3cr3t"),
        });
        let clear = keys.render("s3://b/k", false);
        assert!(clear.contains("ACCESS_KEY_ID 'AKIA1' SECRET_ACCESS_KEY 's3cr3t' MANIFEST"));
        let red = keys.render("s3://b/k", true);
        assert!(!red.contains("s3cr3t") && !red.contains("AKIA1"), "{red}");
        let creds = spec(Authorization::Credentials(Secret::new(
            "aws_access_key_id=A;aws_secret_access_key=S'x",
        )));
        assert!(creds
            .render("s3://b/k", false)
            .contains("CREDENTIALS 'aws_access_key_id=A;aws_secret_access_key=S''x'"));
        let red = creds.render("s3://b/k", true);
        assert!(red.contains("CREDENTIALS '***'") && !red.contains("aws_secret"));
        assert!(!format!("{creds:?}").contains("aws_secret"));
    }

    #[test]
    fn identifiers_are_quoted_and_cannot_escape() {
        assert_eq!(quote_qualified("clicks").unwrap(), "\"clicks\"");
        assert_eq!(
            quote_qualified("\"My.Schema\".t").unwrap(),
            "\"My.Schema\".\"t\""
        );
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_ident("\"a\"b\"").is_err());
        assert!(quote_qualified("a.b.c.d").is_err());
        assert!(quote_qualified("\"open").is_err());
        assert!(quote_ident(" ").is_err());
    }

    #[test]
    fn marker_statements() {
        let t = marker_table("Audit").unwrap();
        assert_eq!(t, "\"audit\".\"stageload_commits\"");
        assert!(marker_ddl(&t).starts_with(
            "CREATE TABLE IF NOT EXISTS \"audit\".\"stageload_commits\" (batch_id bigint"
        ));
        let m = Marker {
            batch_id: 7,
            pipeline: "p'q",
            manifest: "s3://b/m",
            objects: 2,
            rows_loaded: 10,
            rows_rejected: 1,
            copy_query: 99,
            committed_at: "2026-01-02 03:04:05".into(),
        };
        assert_eq!(
            marker_insert(&t, &m),
            "INSERT INTO \"audit\".\"stageload_commits\" (batch_id, pipeline, manifest, objects, \
             rows_loaded, rows_rejected, copy_query, committed_at) VALUES (7, 'p''q', 's3://b/m', \
             2, 10, 1, 99, '2026-01-02 03:04:05')"
        );
        assert_eq!(
            marker_select(&t, 7),
            "SELECT batch_id FROM \"audit\".\"stageload_commits\" WHERE batch_id = 7"
        );
    }
}
