//! The SQL the Redshift destination sends, rendered by pure functions: identifier quoting,
//! literal escaping, and the `COPY ... MANIFEST` statement, with a redacted form for logs that
//! hides the authorization and any secret written into `copy_options`.

pub use crate::sql::{quote_ident, quote_literal, quote_qualified};

use crate::config::{RedshiftConfig, Secret};
use crate::source::framing::Framing;

/// How COPY is allowed to read S3 (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-authorization.html): exactly one of these.
#[derive(Clone)]
pub enum Authorization {
    /// `IAM_ROLE 'arn:...'`, or `IAM_ROLE default` when the value is `default`.
    IamRole(String),
    /// `CREDENTIALS '<aws_iam_role=...|aws_access_key_id=...;aws_secret_access_key=...>'`.
    Credentials(Secret),
    /// `ACCESS_KEY_ID '...' SECRET_ACCESS_KEY '...' [SESSION_TOKEN '...']`.
    Keys {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
        /// Session token of temporary credentials.
        session_token: Option<Secret>,
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
                session_token: c.session_token.clone(),
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
                session_token,
            } => {
                let mut clause = format!(
                    "ACCESS_KEY_ID {} SECRET_ACCESS_KEY {}",
                    lit(access_key_id),
                    lit(secret_access_key.expose())
                );
                if let Some(token) = session_token {
                    clause.push_str(&format!(" SESSION_TOKEN {}", lit(token.expose())));
                }
                clause
            }
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
    /// `PARQUET` or `ORC` for columnar input (`FORMAT AS ...` after MANIFEST), unless the
    /// user's options already name it.
    pub format: Option<&'static str>,
}

impl CopySpec {
    /// The spec from a validated configuration and the pipeline's `source.format`.
    pub fn from_config(c: &RedshiftConfig, input: Framing) -> Result<CopySpec, String> {
        let options = c.options_text();
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
            format: super::options::columnar_keyword(input)
                .filter(|k| !super::options::names_format(&options, k)),
            options,
        })
    }

    /// `COPY <table> [(cols)] FROM '<manifest>' <auth> MANIFEST [REGION 'r'] [FORMAT AS PARQUET]
    /// <options>`; with
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
        if let Some(f) = self.format {
            sql.push_str(" FORMAT AS ");
            sql.push_str(f);
        }
        let options = self.options.trim();
        if !options.is_empty() {
            sql.push(' ');
            if redact {
                sql.push_str(&redact_options(options));
            } else {
                sql.push_str(options);
            }
        }
        sql
    }

    /// `PARQUET` or `ORC` when the input is columnar (written by the loader or by the user).
    pub fn format_keyword(&self) -> Option<&'static str> {
        self.format.or_else(|| {
            ["PARQUET", "ORC"]
                .into_iter()
                .find(|k| super::options::names_format(&self.options, k))
        })
    }

    /// The `MAXERROR` the user's options set (0, Redshift's default, when absent).
    pub fn max_error(&self) -> u64 {
        let words: Vec<&str> = self.options.split_whitespace().collect();
        words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("maxerror"))
            .and_then(|i| {
                let next = words.get(i + 1)?;
                let n = if next.eq_ignore_ascii_case("as") {
                    words.get(i + 2)?
                } else {
                    next
                };
                n.trim_matches('\'').parse().ok()
            })
            .unwrap_or(0)
    }
}

/// Options whose value is a secret.
const SECRET_OPTIONS: [&str; 6] = [
    "CREDENTIALS",
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "SESSION_TOKEN",
    "MASTER_SYMMETRIC_KEY",
    "IAM_ROLE",
];

/// `copy_options` with the quoted value after any secret-bearing keyword replaced by `'***'`
/// (a user may write credentials there instead of in their own fields).
pub fn redact_options(options: &str) -> String {
    let mut out = String::with_capacity(options.len());
    let mut rest = options;
    let mut hide_next = false;
    while !rest.is_empty() {
        if let Some(body) = rest.strip_prefix('\'') {
            // A literal: up to the closing quote ('' is an escaped quote inside).
            let mut end = None;
            let bytes = body.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            let end = end.unwrap_or(body.len());
            if hide_next {
                out.push_str("'***'");
            } else {
                out.push('\'');
                out.push_str(&body[..end]);
                out.push('\'');
            }
            hide_next = false;
            rest = body.get(end + 1..).unwrap_or("");
            continue;
        }
        let word_end = rest
            .find(|c: char| c.is_whitespace() || c == '\'')
            .unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_end.max(1));
        if !word.trim().is_empty() {
            let w = word.trim();
            if SECRET_OPTIONS.iter().any(|k| w.eq_ignore_ascii_case(k)) {
                hide_next = true;
            } else if !w.eq_ignore_ascii_case("as") {
                hide_next = false;
            }
        }
        out.push_str(word);
        rest = tail;
    }
    out
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
            format: None,
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
    fn columnar_input_renders_its_format_after_manifest() {
        let toml = "url = \"postgres://u@h/d\"\ntable = \"t\"\niam_role = \"default\"\n\
                    copy_options = \"FILLRECORD\"\n";
        let c: RedshiftConfig = toml::from_str(toml).unwrap();
        let parquet = CopySpec::from_config(&c, Framing::Parquet).unwrap();
        assert_eq!(
            parquet.render("s3://b/m", false),
            "COPY \"t\" FROM 's3://b/m' IAM_ROLE default MANIFEST FORMAT AS PARQUET FILLRECORD"
        );
        let orc = CopySpec::from_config(&c, Framing::Orc).unwrap();
        assert!(orc
            .render("s3://b/m", true)
            .ends_with("MANIFEST FORMAT AS ORC FILLRECORD"));
        let json = CopySpec::from_config(&c, Framing::JsonLines).unwrap();
        assert!(!json.render("s3://b/m", false).contains("FORMAT"));
        // Written by the user already: not twice.
        let c = RedshiftConfig {
            copy_options: "format as parquet".into(),
            ..c
        };
        let sql = CopySpec::from_config(&c, Framing::Parquet)
            .unwrap()
            .render("s3://b/m", false);
        assert!(sql.ends_with("MANIFEST format as parquet"), "{sql}");
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
            session_token: Some(Secret::new("tok3n")),
        });
        let clear = keys.render("s3://b/k", false);
        assert!(clear.contains(
            "ACCESS_KEY_ID 'AKIA1' SECRET_ACCESS_KEY 's3cr3t' SESSION_TOKEN 'tok3n' MANIFEST"
        ));
        let red = keys.render("s3://b/k", true);
        assert!(
            !red.contains("s3cr3t") && !red.contains("AKIA1") && !red.contains("tok3n"),
            "{red}"
        );
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
    fn secrets_in_copy_options_are_redacted() {
        let o = "JSON 'auto' SESSION_TOKEN 'abc''def' TIMEFORMAT 'epochsecs' \
                 MASTER_SYMMETRIC_KEY AS 'k3y' credentials 'x=1'";
        let r = redact_options(o);
        assert!(
            !r.contains("abc") && !r.contains("k3y") && !r.contains("x=1"),
            "{r}"
        );
        assert!(
            r.contains("JSON 'auto'") && r.contains("TIMEFORMAT 'epochsecs'"),
            "{r}"
        );
        assert_eq!(r.matches("'***'").count(), 3, "{r}");
        let s = CopySpec {
            options: o.into(),
            ..spec(Authorization::IamRole("r".into()))
        };
        assert!(!s.render("s3://b/k", true).contains("k3y"));
        assert!(s.render("s3://b/k", false).contains("k3y"));
    }

    #[test]
    fn max_error_is_read_from_the_options() {
        let with = |o: &str| CopySpec {
            options: o.into(),
            ..spec(Authorization::IamRole("r".into()))
        };
        assert_eq!(with("JSON 'auto'").max_error(), 0);
        assert_eq!(with("JSON 'auto' MAXERROR 3 GZIP").max_error(), 3);
        assert_eq!(with("maxerror as 10").max_error(), 10);
    }
}
