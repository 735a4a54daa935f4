//! Connecting to the cluster: the `postgres://` URL with its login (the URL's or `password`, a
//! Secrets Manager secret, or IAM temporary credentials fetched for each new session, see
//! `auth`), `sslmode` mapped onto rustls (`verify-ca` checks the chain, the other modes the chain
//! and the host name or `tls_server_name`), a connect timeout, TCP keepalives, and sessions whose
//! every statement has a time limit on both ends: the server's `statement_timeout`, and a
//! client-side limit a little longer that, when it fires, ends the session's backend with
//! `pg_terminate_backend` from a fresh session. A cancel request may not stop a COPY inside a
//! transaction block, and a COPY still running holds its table's lock, so the next attempt would
//! wait behind it.

use super::auth::{Auth, Login};
use super::retry::RedshiftError;
use super::RedshiftDestination;
use crate::config::ErrorTable;
use crate::config::RedshiftConfig;
use crate::pgtls::PgTls;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, SimpleQueryMessage};

/// How to reach the cluster; cheap to clone, never prints the password.
#[derive(Clone)]
pub struct Connector {
    config: Config,
    auth: Arc<Auth>,
    tls: PgTls,
    target: String,
    timeout: Duration,
    statement_timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// Whether the server refused the login itself (wrong password, unknown user), as opposed to
/// being unreachable.
fn login_refused(e: &RedshiftError) -> bool {
    matches!(e, RedshiftError::Connect { source, .. }
        if source.code() == Some(&SqlState::INVALID_PASSWORD)
            || source.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION))
}

impl Connector {
    /// Builds the connector from the destination's configuration.
    pub fn new(c: &RedshiftConfig) -> Result<Connector, String> {
        let (url, mode) = crate::pgtls::split_sslmode_full(c.url.expose())?;
        let mut config =
            Config::from_str(&url).map_err(|e| format!("url {}: {e}", c.url.redacted()))?;
        if let Some(mode) = mode {
            config.ssl_mode(mode.driver_mode());
        }
        if let Some(pw) = &c.password {
            if config.get_password().is_none() {
                config.password(pw.expose());
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("stageload");
        }
        let timeout = Duration::from_secs(c.connect_timeout_s.max(1));
        config.connect_timeout(timeout);
        // A cluster that vanishes without a reset (a dead NAT entry, a failed node) is noticed
        // in about two minutes instead of the kernel's two hours.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(60));
        config.keepalives_interval(Duration::from_secs(15));
        config.keepalives_retries(4);
        let host = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let first_host = config.get_hosts().iter().find_map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => None,
        });
        let auth = Auth::new(c, config.get_dbname(), first_host.as_deref());
        let user = match auth.user_label() {
            // IAM names its own user; a secret's username, when it has one, replaces the URL's.
            Some(label) if config.get_user().is_none() || auth.source_names_user() => label,
            _ => config.get_user().unwrap_or("").to_string(),
        };
        let target = format!("{user}@{host}:{port}/{}", config.get_dbname().unwrap_or(""));
        // prefer and require verify like verify-full: a certificate is never taken unchecked.
        let tls_mode = mode.unwrap_or(crate::pgtls::PgSslMode::Prefer);
        Ok(Connector {
            config,
            auth: Arc::new(auth),
            tls: crate::pgtls::make_tls_for(
                tls_mode,
                c.ca_file.as_deref(),
                c.tls_server_name.as_deref(),
            )?,
            target,
            timeout,
            statement_timeout: Duration::from_secs(c.statement_timeout_s.max(1)),
        })
    }

    /// `user@host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the host is a Redshift Serverless endpoint
    /// (`<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com`).
    pub fn is_serverless_endpoint(&self) -> bool {
        self.config.get_hosts().iter().any(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => {
                h.to_ascii_lowercase().contains(".redshift-serverless.")
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => false,
        })
    }

    /// Opens a session: UTC time zone (the system views' times are UTC), the server-side
    /// statement timeout, and the backend's pid for `pg_terminate_backend`. Its connection task
    /// runs until the session is dropped.
    pub async fn connect(&self) -> Result<Session, RedshiftError> {
        let client = self.open().await?;
        let mut session = Session {
            client,
            connector: self.clone(),
            limit: self.statement_timeout,
            pid: None,
            abandoned: AtomicBool::new(false),
        };
        session
            .exec(
                "session settings",
                &format!(
                    "SET timezone TO 'UTC'; SET statement_timeout TO {}",
                    self.statement_timeout.as_millis()
                ),
            )
            .await?;
        let pid = session
            .query("backend pid", "SELECT pg_backend_pid()")
            .await?;
        session.pid = pid.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.trim().parse().ok()),
            _ => None,
        });
        Ok(session)
    }

    /// Connects with the login of the moment. A login refused while using a secret's password
    /// is tried once more with the secret read again: it may have been rotated.
    async fn open(&self) -> Result<Client, RedshiftError> {
        let login = self.login(false).await?;
        match self.open_as(login.as_ref()).await {
            Err(e) if self.auth.rereads_on_refusal() && login_refused(&e) => {
                tracing::info!(target = %self.target, error = %e, "redshift refused the login, reading the password secret again");
                let login = self.login(true).await?;
                self.open_as(login.as_ref()).await
            }
            other => other,
        }
    }

    async fn login(&self, reread: bool) -> Result<Option<Login>, RedshiftError> {
        self.auth
            .login(reread)
            .await
            .map_err(|source| RedshiftError::Login {
                target: self.target.clone(),
                source,
            })
    }

    async fn open_as(&self, login: Option<&Login>) -> Result<Client, RedshiftError> {
        let mut config = self.config.clone();
        if let Some(login) = login {
            if let Some(user) = &login.user {
                config.user(user);
            }
            config.password(login.password.expose());
        }
        let fut = config.connect(self.tls.clone());
        // tokio-postgres applies connect_timeout per address; this bounds the whole handshake.
        let (client, conn) = match tokio::time::timeout(self.timeout * 2, fut).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(source)) => {
                return Err(RedshiftError::Connect {
                    target: self.target.clone(),
                    source,
                })
            }
            Err(_) => {
                return Err(RedshiftError::ConnectTimeout {
                    target: self.target.clone(),
                    seconds: self.timeout.as_secs() * 2,
                })
            }
        };
        let target = self.target.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target = %target, error = %e, "redshift connection ended");
            }
        });
        Ok(client)
    }

    /// Ends another session's backend from a fresh session (best effort, logged).
    async fn terminate(&self, pid: i32) {
        let result = async {
            let client = self.open().await?;
            client
                .simple_query(&format!("SELECT pg_terminate_backend({pid})"))
                .await
                .map_err(|source| RedshiftError::Statement {
                    what: "pg_terminate_backend",
                    source,
                })
        };
        match tokio::time::timeout(self.timeout * 3, result).await {
            Ok(Ok(_)) => {
                tracing::info!(target = %self.target, pid, "ended the backend of a statement that did not answer")
            }
            Ok(Err(e)) => {
                tracing::warn!(target = %self.target, pid, error = %e, "could not end the backend of a statement that did not answer")
            }
            Err(_) => {
                tracing::warn!(target = %self.target, pid, "could not end the backend of a statement that did not answer: no answer")
            }
        }
    }
}

/// One connection to the cluster. Every statement is sent as a simple query; one that does not
/// answer within its limit ends the session (its backend is terminated, the session is never
/// used again; the marker check makes the retry safe).
pub struct Session {
    client: Client,
    connector: Connector,
    limit: Duration,
    pid: Option<i32>,
    abandoned: AtomicBool,
}

impl Session {
    /// Runs one statement.
    pub async fn exec(&self, what: &'static str, sql: &str) -> Result<(), RedshiftError> {
        self.bounded(what, self.client.batch_execute(sql)).await
    }

    /// Runs one query and returns its messages.
    pub async fn query(
        &self,
        what: &'static str,
        sql: &str,
    ) -> Result<Vec<SimpleQueryMessage>, RedshiftError> {
        self.bounded(what, self.client.simple_query(sql)).await
    }

    /// `ROLLBACK`, best effort: a failure leaves a session that is not kept.
    pub async fn rollback(&self) {
        if !self.abandoned.load(Ordering::Relaxed) {
            let _ = self.exec("rollback", "ROLLBACK").await;
        }
    }

    /// Whether the session can serve another batch.
    pub fn reusable(&self) -> bool {
        !self.client.is_closed() && !self.abandoned.load(Ordering::Relaxed)
    }

    async fn bounded<T>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, RedshiftError> {
        // The server's statement_timeout fires first; this catches a server that cannot.
        let grace = (self.limit / 10).max(Duration::from_secs(2));
        match tokio::time::timeout(self.limit + grace, fut).await {
            Ok(r) => r.map_err(|source| RedshiftError::Statement { what, source }),
            Err(_) => {
                self.abandoned.store(true, Ordering::Relaxed);
                if let Some(pid) = self.pid {
                    let connector = self.connector.clone();
                    tokio::spawn(async move { connector.terminate(pid).await });
                }
                Err(RedshiftError::StatementTimeout {
                    what,
                    seconds: self.limit.as_secs(),
                })
            }
        }
    }
}

/// Idle sessions kept for the next batch.
const IDLE_SESSIONS: usize = 4;

impl RedshiftDestination {
    /// An open session with the marker tables in place: an idle one, or a new one.
    pub(super) async fn session(&self) -> Result<Session, RedshiftError> {
        let reused = {
            let mut idle = self.idle.lock().expect("idle sessions lock");
            std::iter::from_fn(|| idle.pop()).find(|c| c.reusable())
        };
        let client = match reused {
            Some(c) => c,
            None => self.connector.connect().await?,
        };
        if !self.tables_ready.load(Ordering::Relaxed) {
            self.ensure_tables(&client).await?;
            self.lock.set_up(&client, &self.pipeline).await?;
            self.tables_ready.store(true, Ordering::Relaxed);
        }
        if self.error_table == ErrorTable::Auto && self.detected_view.load(Ordering::Relaxed) == 0 {
            self.detect_view(&client).await;
        }
        Ok(client)
    }

    /// Keeps a session whose last statement ended cleanly.
    pub(super) fn keep(&self, client: Session) {
        let mut idle = self.idle.lock().expect("idle sessions lock");
        if idle.len() < IDLE_SESSIONS && client.reusable() {
            idle.push(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConnUrl;

    #[test]
    fn connector_never_shows_the_password() {
        let toml = r#"
            url = "postgres://loader:pw1@cluster:5439/dev?sslmode=require"
            password = "pw2"
            table = "t"
            iam_role = "r"
        "#;
        let mut c: RedshiftConfig = toml::from_str(toml).unwrap();
        let conn = Connector::new(&c).unwrap();
        assert_eq!(conn.target(), "loader@cluster:5439/dev");
        let shown = format!("{conn:?}");
        assert!(!shown.contains("pw1") && !shown.contains("pw2"), "{shown}");
        c.url = ConnUrl::new("postgres://loader@cluster/dev?sslmode=disable");
        assert!(Connector::new(&c).is_ok());
    }

    #[test]
    fn iam_and_secret_connectors_name_their_user_and_show_no_secret() {
        let iam = r#"
            url = "postgres://c1.abc.us-east-1.redshift.amazonaws.com:5439/dev?sslmode=verify-ca"
            table = "t"
            iam_role = "r"
            auth = "iam"
            cluster_identifier = "c1"
            db_user = "loader"
            tls_server_name = "c1.internal"
        "#;
        let c: RedshiftConfig = toml::from_str(iam).unwrap();
        let conn = Connector::new(&c).unwrap();
        assert_eq!(
            conn.target(),
            "IAM:loader@c1.abc.us-east-1.redshift.amazonaws.com:5439/dev"
        );
        let secret = r#"
            url = "postgres://cluster:5439/dev"
            table = "t"
            iam_role = "r"
            password_secret_arn = "arn:aws:secretsmanager:us-east-1:1:secret:rs"
        "#;
        let c: RedshiftConfig = toml::from_str(secret).unwrap();
        let conn = Connector::new(&c).unwrap();
        assert_eq!(conn.target(), "(secret)@cluster:5439/dev");
        assert!(format!("{conn:?}").contains("secret:rs"));
    }
}
