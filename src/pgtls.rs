//! TLS for PostgreSQL-protocol connections (the control database and Redshift): `sslmode` in a
//! URL mapped onto rustls, with server certificates verified against the webpki roots.

use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Splits `sslmode` out of the URL's query: tokio-postgres knows `disable`, `prefer` and
/// `require`; `verify-ca` and `verify-full` (common in JDBC-style Redshift URLs) mean `require`
/// here, because certificates are always verified when TLS is used.
pub fn split_sslmode(url: &str) -> Result<(String, Option<SslMode>), String> {
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

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        // Private CAs (the RDS bundle, a company CA) are trusted in addition to the public roots.
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    // An explicit provider: the process may link more than one rustls backend.
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The TLS connector: certificates always verified when TLS is used, against the public roots
/// and the certificates in `ca_file`.
pub fn make_tls(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, String> {
    Ok(MakeRustlsConnect::new(tls_config(ca_file)?))
}

/// Parses a `postgres://` URL, `sslmode` included (`verify-ca` and `verify-full` as `require`).
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    use std::str::FromStr;
    let (rest, mode) = split_sslmode(url)?;
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|e| e.to_string())?;
    if let Some(mode) = mode {
        config.ssl_mode(mode);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
