//! `type = "redshift"`: the Redshift destination's `[pipeline.destination]` table, its
//! defaults and its startup checks.
//!
//! Compiled as `crate::config::destination::redshift` (the config layer, which imports no
//! destination), and kept beside the destination it configures.

use crate::config::secret::{ConnUrl, Secret};
use serde::Deserialize;
use std::path::PathBuf;

/// `type = "redshift"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftConfig {
    /// Connection URL: `postgres://user[:password]@host:port/database?sslmode=require`.
    pub url: ConnUrl,
    /// Password, when it is not in `url` (usually `${REDSHIFT_PASSWORD}`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Target table, optionally schema-qualified (`public.clicks`).
    pub table: String,
    /// Column list for COPY; all columns in table order when empty.
    #[serde(default)]
    pub columns: Vec<String>,
    /// COPY options appended verbatim after the loader's own clauses (`JSON 'auto' GZIP`).
    #[serde(default)]
    pub copy_options: String,
    /// IAM role ARN for `IAM_ROLE` authorization.
    #[serde(default)]
    pub iam_role: Option<String>,
    /// A `CREDENTIALS` string (`aws_access_key_id=...;aws_secret_access_key=...`).
    #[serde(default)]
    pub credentials: Option<Secret>,
    /// Access key id for `ACCESS_KEY_ID` authorization (with `secret_access_key`).
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key for `SECRET_ACCESS_KEY` authorization.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary `access_key_id` / `secret_access_key` credentials
    /// (`SESSION_TOKEN`).
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// `REGION` of the bucket, when it differs from the cluster's.
    #[serde(default)]
    pub region: Option<String>,
    /// Manifests go under this prefix in the source bucket.
    #[serde(default = "default_manifest_prefix")]
    pub manifest_prefix: String,
    /// Schema of the marker table `stageload_commits`.
    #[serde(default = "default_commit_schema")]
    pub commit_schema: String,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: u64,
    /// PEM file of CA certificates trusted in addition to the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds each statement (the COPY above all) may run before it is cancelled and the
    /// attempt counts as a transient failure; 1 to 86400.
    #[serde(default = "default_statement_timeout_s")]
    pub statement_timeout_s: u64,
    /// Columns that identify a row. When set, each batch is merged: copied into a temporary
    /// staging table, then it replaces the table's rows with the same keys (one row per key).
    /// Needs `columns`, and the keys must be among them.
    #[serde(default)]
    pub merge_keys: Vec<String>,
    /// With `merge_keys`: among a batch's rows that share a key, the one with the largest value
    /// of this column wins. Unset, which one wins is unspecified.
    #[serde(default)]
    pub merge_order_by: Option<String>,
    /// The system view load errors are read from: `auto` (the default) uses
    /// `sys_load_error_detail` on Redshift Serverless (an endpoint under
    /// `redshift-serverless.amazonaws.com`, or STL views the loader's user cannot read) and
    /// `stl_load_errors` elsewhere; or name one.
    #[serde(default)]
    pub error_table: ErrorTable,
    /// How sessions log in: `password` (the default: the password in `url`, `password` or
    /// `password_secret_arn`) or `iam` (temporary credentials fetched for each new session with
    /// `cluster_identifier` or `workgroup_name`).
    #[serde(default)]
    pub auth: RedshiftAuth,
    /// With `auth = "iam"`: the provisioned cluster (`GetClusterCredentials` with `db_user`,
    /// `GetClusterCredentialsWithIAM` without).
    #[serde(default)]
    pub cluster_identifier: Option<String>,
    /// With `auth = "iam"`: the Redshift Serverless workgroup (`GetCredentials`).
    #[serde(default)]
    pub workgroup_name: Option<String>,
    /// With `auth = "iam"` and `cluster_identifier`: the database user to log in as (Redshift
    /// names it `IAM:<db_user>`, or `IAMA:<db_user>` with `auto_create_user`). Without it, the
    /// user is the caller's IAM identity (`GetClusterCredentialsWithIAM`).
    #[serde(default)]
    pub db_user: Option<String>,
    /// With `auth = "iam"`: seconds the temporary password is valid, 900 to 3600 (default 900).
    /// A session only needs it to log in; each new session fetches a fresh one.
    #[serde(default = "default_iam_duration_s")]
    pub iam_duration_s: u64,
    /// With `db_user`: create the database user at its first login when it does not exist.
    #[serde(default)]
    pub auto_create_user: bool,
    /// With `db_user`: database groups the user joins for the session.
    #[serde(default)]
    pub db_groups: Vec<String>,
    /// The AWS region of the Redshift and Secrets Manager calls. By default: the region in
    /// `password_secret_arn`, or the one in the host name of `url`
    /// (`<cluster>.<id>.<region>.redshift.amazonaws.com`), else the AWS default chain's
    /// (`AWS_REGION`, the profile).
    #[serde(default)]
    pub aws_region: Option<String>,
    /// An endpoint for the Redshift, Redshift Serverless and Secrets Manager APIs instead of
    /// AWS's (tests, a VPC interface endpoint).
    #[serde(default)]
    pub aws_endpoint: Option<String>,
    /// A role the Redshift, Redshift Serverless and Secrets Manager calls are made as, assumed
    /// through STS from the AWS default chain (the cluster or the secret in another account).
    #[serde(default)]
    pub aws_role_arn: Option<String>,
    /// The external id `aws_role_arn`'s trust policy requires.
    #[serde(default)]
    pub aws_external_id: Option<String>,
    /// An AWS Secrets Manager secret holding the password: JSON with `password` (and optionally
    /// `username`, which replaces the user in `url`) as the Redshift console stores it, or the
    /// password as plain text. Read when a session opens; read again after a login is refused.
    #[serde(default)]
    pub password_secret_arn: Option<String>,
    /// The name the server's certificate is checked against and sent as SNI, when it differs
    /// from the host in `url` (a VPC endpoint, an SSH tunnel to `127.0.0.1`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

/// How the Redshift destination logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedshiftAuth {
    /// A password: in `url`, `password`, or the secret at `password_secret_arn`.
    #[default]
    Password,
    /// IAM temporary database credentials, fetched for each new session.
    Iam,
}

/// Where Redshift keeps a COPY's rejected rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorTable {
    /// Decide at the first session: Serverless endpoints and clusters whose STL views are
    /// refused use `sys_load_error_detail`, others `stl_load_errors`.
    #[default]
    Auto,
    /// `STL_LOAD_ERRORS` (provisioned clusters, main cluster queries only): every column,
    /// `raw_line` and `raw_field_value` included.
    StlLoadErrors,
    /// `SYS_LOAD_ERROR_DETAIL` (Serverless, concurrency scaling and provisioned): no raw line.
    SysLoadErrorDetail,
}

impl ErrorTable {
    /// The view's name as Redshift spells it (`auto` reads as `stl_load_errors`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorTable::Auto | ErrorTable::StlLoadErrors => "stl_load_errors",
            ErrorTable::SysLoadErrorDetail => "sys_load_error_detail",
        }
    }
}

fn default_manifest_prefix() -> String {
    "manifests/".into()
}
fn default_commit_schema() -> String {
    "public".into()
}
fn default_connect_timeout_s() -> u64 {
    10
}
fn default_statement_timeout_s() -> u64 {
    3600
}
fn default_iam_duration_s() -> u64 {
    900
}

/// Checks `merge_keys` and `merge_order_by` against `columns`: the field at fault and why.
fn check_merge(r: &RedshiftConfig) -> Result<(), (&'static str, String)> {
    if r.merge_keys.is_empty() {
        return match r.merge_order_by {
            Some(_) => Err(("merge_order_by", "needs merge_keys".into())),
            None => Ok(()),
        };
    }
    if r.columns.is_empty() {
        return Err((
            "merge_keys",
            "needs columns: the merge copies and inserts the columns it names".into(),
        ));
    }
    // Compared as SQL resolves them: the COPY's own quoting folds bare names to lower case.
    let sql_name = |n: &str| crate::sql::quote_ident(n).ok();
    let known: Vec<_> = r.columns.iter().map(|c| sql_name(c)).collect();
    if let Some(k) = r.merge_keys.iter().find(|k| !known.contains(&sql_name(k))) {
        return Err(("merge_keys", format!("{k:?} is not one of columns")));
    }
    match r.merge_order_by.as_deref() {
        Some(o) if !known.contains(&sql_name(o)) => {
            Err(("merge_order_by", format!("{o:?} is not one of columns")))
        }
        _ => Ok(()),
    }
}

/// Checks `auth` and the fields that go with it, `password_secret_arn` and `tls_server_name`:
/// the field at fault and why.
fn check_redshift_login(r: &RedshiftConfig) -> Result<(), (&'static str, String)> {
    let nonempty = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    for (field, value) in [
        ("cluster_identifier", &r.cluster_identifier),
        ("workgroup_name", &r.workgroup_name),
        ("db_user", &r.db_user),
        ("aws_region", &r.aws_region),
        ("aws_endpoint", &r.aws_endpoint),
        ("password_secret_arn", &r.password_secret_arn),
        ("tls_server_name", &r.tls_server_name),
        ("aws_role_arn", &r.aws_role_arn),
    ] {
        if value.is_some() && !nonempty(value) {
            return Err((field, "must not be empty".into()));
        }
    }
    if r.aws_role_arn.is_some() && r.auth != RedshiftAuth::Iam && r.password_secret_arn.is_none() {
        return Err((
            "aws_role_arn",
            "is used for auth = \"iam\" or password_secret_arn only".into(),
        ));
    }
    match r.auth {
        RedshiftAuth::Iam => {
            match (&r.cluster_identifier, &r.workgroup_name) {
                (None, None) => {
                    return Err((
                        "cluster_identifier",
                        "auth = \"iam\" needs cluster_identifier (a provisioned cluster) or workgroup_name (Redshift Serverless)".into(),
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err((
                        "workgroup_name",
                        "set either cluster_identifier or workgroup_name, not both".into(),
                    ))
                }
                _ => {}
            }
            if r.password.is_some() {
                return Err((
                    "password",
                    "is not used with auth = \"iam\": each session gets a temporary password"
                        .into(),
                ));
            }
            if r.password_secret_arn.is_some() {
                return Err((
                    "password_secret_arn",
                    "is not used with auth = \"iam\": each session gets a temporary password"
                        .into(),
                ));
            }
            if r.db_user.is_none() {
                if r.auto_create_user {
                    return Err(("auto_create_user", "goes with db_user".into()));
                }
                if !r.db_groups.is_empty() {
                    return Err(("db_groups", "goes with db_user".into()));
                }
            }
            if r.db_user.is_some() && r.cluster_identifier.is_none() {
                return Err((
                    "db_user",
                    "goes with cluster_identifier: Redshift Serverless maps the IAM identity to its user".into(),
                ));
            }
            // GetClusterCredentials, GetClusterCredentialsWithIAM and Serverless GetCredentials all
            // take 900 to 3600 seconds
            // (https://docs.aws.amazon.com/redshift/latest/APIReference/API_GetClusterCredentials.html,
            // https://docs.aws.amazon.com/redshift-serverless/latest/APIReference/API_GetCredentials.html).
            if !(900..=3600).contains(&r.iam_duration_s) {
                return Err(("iam_duration_s", "must be 900 to 3600".into()));
            }
        }
        RedshiftAuth::Password => {
            for (field, set) in [
                ("cluster_identifier", r.cluster_identifier.is_some()),
                ("workgroup_name", r.workgroup_name.is_some()),
                ("db_user", r.db_user.is_some()),
                ("auto_create_user", r.auto_create_user),
                ("db_groups", !r.db_groups.is_empty()),
            ] {
                if set {
                    return Err((field, "needs auth = \"iam\"".into()));
                }
            }
        }
    }
    if let Some(arn) = &r.password_secret_arn {
        if r.password.is_some() {
            return Err((
                "password_secret_arn",
                "set either password or password_secret_arn, not both".into(),
            ));
        }
        if !arn.starts_with("arn:") || arn.split(':').nth(2) != Some("secretsmanager") {
            return Err((
                "password_secret_arn",
                "must be a Secrets Manager ARN (arn:aws:secretsmanager:region:account:secret:name)"
                    .into(),
            ));
        }
    }
    if let Some(name) = &r.tls_server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(("tls_server_name", "is not a DNS name or IP address".into()));
        }
        if crate::pgtls::split_sslmode_full(r.url.expose())
            .ok()
            .and_then(|(_, m)| m)
            == Some(crate::pgtls::PgSslMode::Disable)
        {
            return Err((
                "tls_server_name",
                "needs TLS, but url has sslmode=disable".into(),
            ));
        }
    }
    Ok(())
}

/// The byte offset of a `;` outside single or double quotes, if any.
pub fn statement_terminator(sql: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => {
                // A doubled quote inside a literal is an escaped quote, not the end.
                if chars.peek().map(|(_, n)| *n) == Some(q) {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            (Some('\''), '\\') => {
                chars.next();
            }
            (None, ';') => return Some(i),
            _ => {}
        }
    }
    None
}

impl RedshiftConfig {
    /// Checks the fields; returns the field (relative to `destination`) and the problem.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        let r = self;
        if r.table.trim().is_empty() {
            return err("table", "must not be empty".into());
        }
        if !r.url.expose().starts_with("postgres://")
            && !r.url.expose().starts_with("postgresql://")
        {
            return err(
                "url",
                "must be a postgres://user@host:port/database URL".into(),
            );
        }
        if let Some(pos) = statement_terminator(&r.copy_options) {
            return err(
                "copy_options",
                format!("contains a ';' outside quotes at byte {pos}, which would end the COPY statement early"),
            );
        }
        let auths = [
            r.iam_role.is_some(),
            r.credentials.is_some(),
            r.access_key_id.is_some() || r.secret_access_key.is_some(),
        ];
        if auths.iter().filter(|a| **a).count() != 1 {
            return err(
                "iam_role",
                "set exactly one of iam_role, credentials, or access_key_id with secret_access_key"
                    .into(),
            );
        }
        if r.session_token.is_some() && r.access_key_id.is_none() {
            return err(
                "session_token",
                "goes with access_key_id and secret_access_key".into(),
            );
        }
        if r.access_key_id.is_some() != r.secret_access_key.is_some() {
            return err(
                "secret_access_key",
                "access_key_id and secret_access_key go together".into(),
            );
        }
        if !(1..=86_400).contains(&r.statement_timeout_s) {
            return err("statement_timeout_s", "must be 1 to 86400".into());
        }
        if let Err((field, m)) = check_merge(r) {
            return err(field, m);
        }
        if let Err((field, m)) = check_redshift_login(r) {
            return err(field, m);
        }
        Ok(())
    }
}

#[cfg(test)]
mod login_tests {
    use super::RedshiftConfig;

    fn check(extra: &str) -> Result<(), (String, String)> {
        let toml = format!(
            "url = \"postgres://loader@h:5439/dev?sslmode=require\"\n\
             table = \"t\"\niam_role = \"r\"\n{extra}"
        );
        toml::from_str::<RedshiftConfig>(&toml).unwrap().validate()
    }

    fn field(extra: &str) -> String {
        check(extra).unwrap_err().0
    }

    #[test]
    fn login_combinations_are_checked_by_field() {
        assert!(check("").is_ok());
        assert!(check(
            "auth = \"iam\"\ncluster_identifier = \"c\"\ndb_user = \"u\"\ndb_groups = [\"g\"]"
        )
        .is_ok());
        assert!(check("auth = \"iam\"\ncluster_identifier = \"c\"").is_ok());
        assert!(check("auth = \"iam\"\nworkgroup_name = \"wg\"").is_ok());
        assert_eq!(field("auth = \"iam\""), "cluster_identifier");
        assert_eq!(
            field("auth = \"iam\"\ncluster_identifier = \"c\"\nworkgroup_name = \"w\""),
            "workgroup_name"
        );
        assert_eq!(
            field("auth = \"iam\"\ncluster_identifier = \"c\"\npassword = \"p\""),
            "password"
        );
        assert_eq!(
            field("auth = \"iam\"\nworkgroup_name = \"w\"\ndb_user = \"u\""),
            "db_user"
        );
        assert_eq!(
            field("auth = \"iam\"\ncluster_identifier = \"c\"\nauto_create_user = true"),
            "auto_create_user"
        );
        assert_eq!(
            field("auth = \"iam\"\ncluster_identifier = \"c\"\niam_duration_s = 60"),
            "iam_duration_s"
        );
        assert_eq!(field("cluster_identifier = \"c\""), "cluster_identifier");
        assert_eq!(field("db_user = \"u\""), "db_user");
        assert_eq!(
            field("password_secret_arn = \"nope\""),
            "password_secret_arn"
        );
        assert_eq!(
            field("password_secret_arn = \"arn:aws:secretsmanager:us-east-1:1:secret:x\"\npassword = \"p\""),
            "password_secret_arn"
        );
        assert!(
            check("password_secret_arn = \"arn:aws:secretsmanager:us-east-1:1:secret:x\"").is_ok()
        );
        assert_eq!(field("tls_server_name = \"not a name\""), "tls_server_name");
        assert!(check("tls_server_name = \"cluster.internal.example\"").is_ok());
        let toml = "url = \"postgres://h/d\"\ntable = \"t\"\nauth = \"kerberos\"";
        assert!(toml::from_str::<RedshiftConfig>(toml).is_err());
    }
}
