//! Connecting to the cluster: the `postgres://` URL with the separate password, `sslmode`
//! mapped onto rustls (certificates verified against the webpki roots), and a connect timeout.

use super::errors::RedshiftError;
use crate::config::RedshiftConfig;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the cluster; cheap to clone, never prints the password.
#[derive(Clone)]
pub struct Connector {
    config: Config,
    tls: MakeRustlsConnect,
    target: String,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Builds the connector from the destination's configuration.
    pub fn new(c: &RedshiftConfig) -> Result<Connector, String> {
        let (url, mode) = crate::pgtls::split_sslmode(c.url.expose())?;
        let mut config =
            Config::from_str(&url).map_err(|e| format!("url {}: {e}", c.url.redacted()))?;
        if let Some(mode) = mode {
            config.ssl_mode(mode);
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
        let target = format!(
            "{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or("")
        );
        Ok(Connector {
            config,
            tls: crate::pgtls::make_tls(c.ca_file.as_deref())?,
            target,
            timeout,
        })
    }

    /// `user@host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Opens a session; its connection task runs until the client is dropped.
    pub async fn connect(&self) -> Result<Client, RedshiftError> {
        let fut = self.config.connect(self.tls.clone());
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
}
