//! Connecting to the cluster: the `postgres://` URL with the separate password, `sslmode`
//! mapped onto rustls (certificates verified against the webpki roots), and a connect timeout.

use super::errors::RedshiftError;
use crate::config::RedshiftConfig;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::SslMode;
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

/// Splits `sslmode` out of the URL's query: tokio-postgres knows `disable`, `prefer` and
/// `require`; `verify-ca` and `verify-full` (common in JDBC-style Redshift URLs) mean `require`
/// here, because certificates are always verified when TLS is used.
fn split_sslmode(url: &str) -> Result<(String, Option<SslMode>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut mode = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => {
                mode = Some(match v {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" | "verify-ca" | "verify-full" => SslMode::Require,
                    other => return Err(format!("sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full")),
                })
            }
            _ => kept.push(pair),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rebuilt, mode))
}

fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // An explicit provider: the process may link more than one rustls backend.
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth()
}

impl Connector {
    /// Builds the connector from the destination's configuration.
    pub fn new(c: &RedshiftConfig) -> Result<Connector, String> {
        let (url, mode) = split_sslmode(c.url.expose())?;
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
            tls: MakeRustlsConnect::new(tls_config()),
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
    fn sslmode_is_split_out() {
        let (u, m) = split_sslmode("postgres://u@h:5439/dev?sslmode=verify-full&x=1").unwrap();
        assert_eq!(u, "postgres://u@h:5439/dev?x=1");
        assert!(matches!(m, Some(SslMode::Require)));
        let (u, m) = split_sslmode("postgres://u@h/dev?sslmode=disable").unwrap();
        assert_eq!(u, "postgres://u@h/dev");
        assert!(matches!(m, Some(SslMode::Disable)));
        assert!(split_sslmode("postgres://u@h/d?sslmode=bogus").is_err());
        assert!(split_sslmode("postgres://u@h/d").unwrap().1.is_none());
    }

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
