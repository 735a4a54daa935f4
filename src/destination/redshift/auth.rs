//! Where a Redshift session's user name and password come from: the URL and `password` (fixed),
//! an AWS Secrets Manager secret (`password_secret_arn`, kept until a login is refused, then
//! read again so a rotated secret is picked up), or IAM temporary database credentials
//! (`auth = "iam"`: `GetClusterCredentials`, `GetClusterCredentialsWithIAM` or Redshift
//! Serverless `GetCredentials`, fetched for every new session and never kept).
//!
//! The AWS clients use `aws-config`'s default chain (environment, profile, web identity, ECS
//! and EC2 instance roles), loaded at the first login. Passwords and secret values never appear
//! in logs, errors or `Debug` output.

use crate::config::{RedshiftAuth, RedshiftConfig, Secret};
use aws_sdk_redshift::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::sync::Mutex;
use tokio::sync::OnceCell;

/// The user name (when the source names one) and password of one login.
#[derive(Clone)]
pub struct Login {
    /// The database user, replacing the one in `url`; None keeps the URL's.
    pub user: Option<String>,
    /// The password.
    pub password: Secret,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &self.password)
            .finish()
    }
}

/// Why no login could be had; never holds a password or a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// An AWS call failed.
    #[error("{call} for {resource}: {detail}")]
    Aws {
        /// The API operation (`GetClusterCredentials`, `GetSecretValue`, ...).
        call: &'static str,
        /// The cluster, workgroup or secret ARN.
        resource: String,
        /// The SDK's error chain.
        detail: String,
        /// Whether trying again later may succeed (throttling, network, timeouts).
        transient: bool,
    },
    /// The answer had no usable credentials.
    #[error("{call} for {resource}: {problem}")]
    Answer {
        /// The API operation.
        call: &'static str,
        /// The cluster, workgroup or secret ARN.
        resource: String,
        /// What was missing or malformed (never the value).
        problem: String,
    },
}

impl AuthError {
    /// Whether trying again later may succeed.
    pub fn transient(&self) -> bool {
        matches!(
            self,
            AuthError::Aws {
                transient: true,
                ..
            }
        )
    }
}

/// An SDK failure, with the whole error chain and whether it is worth retrying soon.
fn sdk_failure<E, R>(call: &'static str, resource: &str, e: SdkError<E, R>) -> AuthError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::ServiceError(s) => matches!(
            s.err().code(),
            Some(
                "Throttling"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
                    | "ServiceUnavailable"
                    | "InternalFailure"
                    | "InternalServiceError"
                    | "InternalServerException"
            )
        ),
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    AuthError::Aws {
        call,
        resource: resource.to_string(),
        detail: DisplayErrorContext(&e).to_string(),
        transient,
    }
}

/// The password source chosen by the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The URL's password or `password`.
    Fixed,
    /// `password_secret_arn`.
    Secret {
        /// The secret's ARN.
        arn: String,
    },
    /// `auth = "iam"` with `cluster_identifier`.
    Cluster {
        /// The cluster.
        cluster: String,
        /// `db_user`: `GetClusterCredentials`; None: `GetClusterCredentialsWithIAM`.
        db_user: Option<String>,
        /// `auto_create_user`.
        auto_create: bool,
        /// `db_groups`.
        groups: Vec<String>,
    },
    /// `auth = "iam"` with `workgroup_name`.
    Serverless {
        /// The workgroup.
        workgroup: String,
    },
}

/// Gives each new session its login.
pub struct Auth {
    source: Source,
    duration_s: i32,
    db_name: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    /// `aws_role_arn` and `aws_external_id`: the role the AWS calls are made as.
    role: Option<(String, Option<String>)>,
    sdk: OnceCell<aws_config::SdkConfig>,
    /// The secret's last value; dropped when a login with it is refused.
    cached: Mutex<Option<Login>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("source", &self.source)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// The region in a Redshift host name: `<cluster>.<id>.<region>.redshift.amazonaws.com` or
/// `<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com`.
pub fn region_of_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels.iter().position(|l| {
        l.eq_ignore_ascii_case("redshift") || l.eq_ignore_ascii_case("redshift-serverless")
    })?;
    (at >= 1
        && labels
            .get(at + 1)
            .is_some_and(|l| l.starts_with("amazonaws")))
    .then(|| labels[at - 1].to_ascii_lowercase())
}

/// The region in an ARN (`arn:aws:secretsmanager:us-east-1:123456789012:secret:name`).
pub fn region_of_arn(arn: &str) -> Option<String> {
    arn.split(':')
        .nth(3)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

impl Auth {
    /// The login source for a destination; `db_name` and `host` are the URL's.
    pub fn new(c: &RedshiftConfig, db_name: Option<&str>, host: Option<&str>) -> Auth {
        let source = match (c.auth, &c.cluster_identifier, &c.workgroup_name) {
            (RedshiftAuth::Iam, Some(cluster), _) => Source::Cluster {
                cluster: cluster.clone(),
                db_user: c.db_user.clone(),
                auto_create: c.auto_create_user,
                groups: c.db_groups.clone(),
            },
            (RedshiftAuth::Iam, None, Some(workgroup)) => Source::Serverless {
                workgroup: workgroup.clone(),
            },
            _ => match &c.password_secret_arn {
                Some(arn) => Source::Secret { arn: arn.clone() },
                None => Source::Fixed,
            },
        };
        let region = c.aws_region.clone().or_else(|| match &source {
            Source::Secret { arn } => region_of_arn(arn),
            _ => host.and_then(region_of_host),
        });
        Auth {
            source,
            duration_s: c.iam_duration_s.clamp(900, 3600) as i32,
            db_name: db_name.map(str::to_string),
            region,
            endpoint: c.aws_endpoint.clone(),
            role: c
                .aws_role_arn
                .clone()
                .map(|arn| (arn, c.aws_external_id.clone())),
            sdk: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    /// The source in use.
    #[cfg(test)]
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Whether a refused login is worth one more try with a freshly read password (the secret
    /// may have been rotated since it was read).
    pub fn rereads_on_refusal(&self) -> bool {
        matches!(self.source, Source::Secret { .. })
    }

    /// Whether every login names its own user (IAM), replacing the URL's.
    pub fn source_names_user(&self) -> bool {
        matches!(
            self.source,
            Source::Cluster { .. } | Source::Serverless { .. }
        )
    }

    /// The user to show in messages when the URL names none.
    pub fn user_label(&self) -> Option<String> {
        match &self.source {
            Source::Fixed => None,
            Source::Secret { .. } => Some("(secret)".into()),
            Source::Cluster {
                db_user: Some(u),
                auto_create,
                ..
            } => Some(format!("{}:{u}", if *auto_create { "IAMA" } else { "IAM" })),
            Source::Cluster { db_user: None, .. } | Source::Serverless { .. } => {
                Some("(iam)".into())
            }
        }
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(region) = &self.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let base = loader.load().await;
                match &self.role {
                    Some((arn, external_id)) => {
                        let role = crate::aws::Role {
                            arn,
                            external_id: external_id.as_deref(),
                            session_name: "stageload-redshift",
                        };
                        crate::aws::derive(&base, self.region.as_deref(), Some(role)).await
                    }
                    None => base,
                }
            })
            .await
    }

    /// The login for a new session: None for a fixed password (the URL's and `password` stay);
    /// the secret's value (read now unless kept from before and `reread` is false); or fresh
    /// temporary IAM credentials.
    pub async fn login(&self, reread: bool) -> Result<Option<Login>, AuthError> {
        match &self.source {
            Source::Fixed => Ok(None),
            Source::Secret { arn } => {
                if !reread {
                    if let Some(kept) = self.cached.lock().expect("secret lock").clone() {
                        return Ok(Some(kept));
                    }
                }
                let login = self.read_secret(arn).await?;
                *self.cached.lock().expect("secret lock") = Some(login.clone());
                Ok(Some(login))
            }
            Source::Cluster {
                cluster,
                db_user,
                auto_create,
                groups,
            } => self
                .cluster_credentials(cluster, db_user.as_deref(), *auto_create, groups)
                .await
                .map(Some),
            Source::Serverless { workgroup } => {
                self.serverless_credentials(workgroup).await.map(Some)
            }
        }
    }

    /// Reads the secret: Firehose's format for Redshift, `{"username": ..., "password": ...}`
    /// (https://docs.aws.amazon.com/firehose/latest/dev/secrets-manager-whats-secret.html),
    /// which is also what the Redshift console stores; `username` may be left out (the URL's
    /// user stays), and a secret that is not a JSON object is the password itself.
    async fn read_secret(&self, arn: &str) -> Result<Login, AuthError> {
        const CALL: &str = "GetSecretValue";
        let mut conf = aws_sdk_secretsmanager::config::Builder::from(self.sdk().await);
        if let Some(endpoint) = &self.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        let out = aws_sdk_secretsmanager::Client::from_conf(conf.build())
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| sdk_failure(CALL, arn, e))?;
        let answer = |problem: &str| AuthError::Answer {
            call: CALL,
            resource: arn.to_string(),
            problem: problem.to_string(),
        };
        let Some(text) = out.secret_string() else {
            return Err(answer(
                "the secret holds binary data; store the password as text or as JSON with \"password\"",
            ));
        };
        let login = parse_secret(text).map_err(answer)?;
        tracing::debug!(secret = %arn, user = ?login.user, "redshift password read from secrets manager");
        Ok(login)
    }

    async fn cluster_credentials(
        &self,
        cluster: &str,
        db_user: Option<&str>,
        auto_create: bool,
        groups: &[String],
    ) -> Result<Login, AuthError> {
        let mut conf = aws_sdk_redshift::config::Builder::from(self.sdk().await);
        if let Some(endpoint) = &self.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        let client = aws_sdk_redshift::Client::from_conf(conf.build());
        // GetClusterCredentials answers "IAM:<db_user>" ("IAMA:" with AutoCreate) and a password
        // valid 900 to 3600 s; GetClusterCredentialsWithIAM maps the caller's IAM identity to
        // the user instead
        // (https://docs.aws.amazon.com/redshift/latest/APIReference/API_GetClusterCredentials.html,
        // https://docs.aws.amazon.com/redshift/latest/APIReference/API_GetClusterCredentialsWithIAM.html).
        let (call, user, password, expires) = match db_user {
            Some(db_user) => {
                const CALL: &str = "GetClusterCredentials";
                let mut req = client
                    .get_cluster_credentials()
                    .cluster_identifier(cluster)
                    .db_user(db_user)
                    .duration_seconds(self.duration_s)
                    .auto_create(auto_create)
                    .set_db_name(self.db_name.clone());
                for g in groups {
                    req = req.db_groups(g);
                }
                let out = req
                    .send()
                    .await
                    .map_err(|e| sdk_failure(CALL, cluster, e))?;
                (
                    CALL,
                    out.db_user().map(str::to_string),
                    out.db_password().map(str::to_string),
                    out.expiration().map(|t| t.to_string()),
                )
            }
            None => {
                const CALL: &str = "GetClusterCredentialsWithIAM";
                let out = client
                    .get_cluster_credentials_with_iam()
                    .cluster_identifier(cluster)
                    .duration_seconds(self.duration_s)
                    .set_db_name(self.db_name.clone())
                    .send()
                    .await
                    .map_err(|e| sdk_failure(CALL, cluster, e))?;
                (
                    CALL,
                    out.db_user().map(str::to_string),
                    out.db_password().map(str::to_string),
                    out.expiration().map(|t| t.to_string()),
                )
            }
        };
        temporary(call, cluster, user, password, expires)
    }

    async fn serverless_credentials(&self, workgroup: &str) -> Result<Login, AuthError> {
        const CALL: &str = "GetCredentials";
        let mut conf = aws_sdk_redshiftserverless::config::Builder::from(self.sdk().await);
        if let Some(endpoint) = &self.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        // Serverless GetCredentials: the workgroup, the database and 900 to 3600 s
        // (https://docs.aws.amazon.com/redshift-serverless/latest/APIReference/API_GetCredentials.html).
        let out = aws_sdk_redshiftserverless::Client::from_conf(conf.build())
            .get_credentials()
            .workgroup_name(workgroup)
            .duration_seconds(self.duration_s)
            .set_db_name(self.db_name.clone())
            .send()
            .await
            .map_err(|e| sdk_failure(CALL, workgroup, e))?;
        temporary(
            CALL,
            workgroup,
            out.db_user().map(str::to_string),
            out.db_password().map(str::to_string),
            out.expiration().map(|t| t.to_string()),
        )
    }
}

/// Temporary credentials from an answer: both parts must be there.
fn temporary(
    call: &'static str,
    resource: &str,
    user: Option<String>,
    password: Option<String>,
    expires: Option<String>,
) -> Result<Login, AuthError> {
    let missing = |what: &str| AuthError::Answer {
        call,
        resource: resource.to_string(),
        problem: format!("the answer has no {what}"),
    };
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("user"))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| missing("password"))?;
    tracing::debug!(call, resource, user = %user, expires = expires.as_deref().unwrap_or(""), "redshift temporary credentials fetched");
    Ok(Login {
        user: Some(user),
        password: Secret::new(password),
    })
}

/// A secret's text as a login. Errors say what is wrong, never what the value is (serde's
/// messages may quote it, so they are not passed on).
pub fn parse_secret(text: &str) -> Result<Login, &'static str> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => {
            let password = match map.get("password") {
                Some(serde_json::Value::String(p)) if !p.is_empty() => p.clone(),
                Some(_) => return Err("\"password\" in the secret is not a non-empty string"),
                None => return Err("the secret is a JSON object without \"password\""),
            };
            let user = match map.get("username") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(u)) if !u.is_empty() => Some(u.clone()),
                Some(_) => return Err("\"username\" in the secret is not a non-empty string"),
            };
            Ok(Login {
                user,
                password: Secret::new(password),
            })
        }
        _ if text.is_empty() => Err("the secret is empty"),
        _ => Ok(Login {
            user: None,
            password: Secret::new(text),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_as_json_or_text_and_never_show() {
        let l = parse_secret(r#"{"username":"loader","password":"s3cr3t","engine":"redshift"}"#)
            .unwrap();
        assert_eq!(l.user.as_deref(), Some("loader"));
        assert_eq!(l.password.expose(), "s3cr3t");
        assert!(!format!("{l:?}").contains("s3cr3t"));
        let l = parse_secret(r#"{"password":"only"}"#).unwrap();
        assert!(l.user.is_none());
        let l = parse_secret("plain-text-pw").unwrap();
        assert_eq!(l.password.expose(), "plain-text-pw");
        assert!(l.user.is_none());
        for bad in [r#"{"username":"u"}"#, r#"{"password":7}"#, ""] {
            let e = parse_secret(bad).unwrap_err();
            assert!(!e.contains('7') && !e.contains("\"u\""), "{e}");
        }
    }

    #[test]
    fn regions_come_from_arns_and_host_names() {
        assert_eq!(
            region_of_arn("arn:aws:secretsmanager:eu-west-1:123456789012:secret:rs-AbC").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_host("c1.abc123.us-west-2.redshift.amazonaws.com").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(
            region_of_host("wg.123456789012.eu-central-1.redshift-serverless.amazonaws.com")
                .as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(region_of_host("127.0.0.1"), None);
        assert_eq!(region_of_host("redshift.example.com"), None);
    }

    fn config(extra: &str) -> RedshiftConfig {
        toml::from_str(&format!(
            "url = \"postgres://loader@c1.abc.us-east-2.redshift.amazonaws.com:5439/dev\"\n\
             table = \"t\"\niam_role = \"r\"\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_source_follows_the_configuration() {
        let a = Auth::new(&config(""), Some("dev"), None);
        assert_eq!(a.source(), &Source::Fixed);
        let a = Auth::new(
            &config("auth = \"iam\"\ncluster_identifier = \"c1\"\ndb_user = \"loader\"\nauto_create_user = true"),
            Some("dev"),
            Some("c1.abc.us-east-2.redshift.amazonaws.com"),
        );
        assert!(
            matches!(a.source(), Source::Cluster { db_user: Some(u), auto_create: true, .. } if u == "loader")
        );
        assert_eq!(a.region.as_deref(), Some("us-east-2"));
        assert_eq!(a.user_label().as_deref(), Some("IAMA:loader"));
        let a = Auth::new(
            &config("auth = \"iam\"\nworkgroup_name = \"wg\"\naws_region = \"eu-west-1\""),
            Some("dev"),
            Some("c1.abc.us-east-2.redshift.amazonaws.com"),
        );
        assert_eq!(
            a.source(),
            &Source::Serverless {
                workgroup: "wg".into()
            }
        );
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        let a = Auth::new(
            &config("password_secret_arn = \"arn:aws:secretsmanager:ap-south-1:1:secret:x\""),
            Some("dev"),
            None,
        );
        assert!(a.rereads_on_refusal());
        assert_eq!(a.region.as_deref(), Some("ap-south-1"));
    }
}
