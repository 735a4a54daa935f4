//! TLS for PostgreSQL-protocol connections (the control database and Redshift): `sslmode` in a
//! URL mapped onto rustls, with server certificates verified against the webpki roots plus an
//! optional CA file.
//!
//! `verify-ca` checks the certificate chain only; `verify-full`, `require` and `prefer` check the
//! chain and the host name (`require` is kept as strict as `verify-full`). The name checked, and
//! sent as SNI, is the URL's host unless a server name is given (VPC endpoints, SSH tunnels).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The `sslmode` values of a `postgres://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgSslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (`allow` reads as this too); verified like `verify-full`.
    Prefer,
    /// TLS, chain and host name verified (as strict as `verify-full`).
    Require,
    /// TLS, certificate chain verified, host name not checked.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

impl PgSslMode {
    /// What tokio-postgres is told: it knows only `disable`, `prefer` and `require`; the
    /// verification level lives in the TLS connector.
    pub fn driver_mode(self) -> SslMode {
        match self {
            PgSslMode::Disable => SslMode::Disable,
            PgSslMode::Prefer => SslMode::Prefer,
            PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => SslMode::Require,
        }
    }

    /// Whether the server's host name is checked against its certificate.
    pub fn checks_name(self) -> bool {
        self != PgSslMode::VerifyCa
    }
}

/// Splits `sslmode` out of the URL's query, keeping its five values apart.
pub fn split_sslmode_full(url: &str) -> Result<(String, Option<PgSslMode>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut mode = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => {
                mode = Some(match v {
                    "disable" => PgSslMode::Disable,
                    "allow" | "prefer" => PgSslMode::Prefer,
                    "require" => PgSslMode::Require,
                    "verify-ca" => PgSslMode::VerifyCa,
                    "verify-full" => PgSslMode::VerifyFull,
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

/// Splits `sslmode` out of the URL's query as tokio-postgres knows it: `verify-ca` and
/// `verify-full` both read as `require` here (for callers whose connector always checks the
/// host name, which is stricter than `verify-ca`).
pub fn split_sslmode(url: &str) -> Result<(String, Option<SslMode>), String> {
    let (url, mode) = split_sslmode_full(url)?;
    Ok((url, mode.map(PgSslMode::driver_mode)))
}

fn roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
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
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // An explicit provider: the process may link more than one rustls backend.
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_config(
    ca_file: Option<&std::path::Path>,
    check_name: bool,
) -> Result<rustls::ClientConfig, String> {
    let roots = roots(ca_file)?;
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions");
    let config = if check_name {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots: Arc::new(roots),
                provider,
            }))
            .with_no_client_auth()
    };
    Ok(config)
}

/// `sslmode=verify-ca`: the server's certificate must chain to a trusted root (and be within its
/// validity period, for server authentication), but the host name is not compared with it, as
/// libpq's `verify-ca` does.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS connector: certificates always verified when TLS is used (chain and host name),
/// against the public roots and the certificates in `ca_file`.
pub fn make_tls(ca_file: Option<&std::path::Path>) -> Result<MakeRustlsConnect, String> {
    Ok(MakeRustlsConnect::new(tls_config(ca_file, true)?))
}

/// A TLS connector for one `sslmode`: the chain is always verified, the host name unless the
/// mode is `verify-ca`; `server_name`, when given, is the name verified and sent as SNI instead
/// of the URL's host.
pub fn make_tls_for(
    mode: PgSslMode,
    ca_file: Option<&std::path::Path>,
    server_name: Option<&str>,
) -> Result<PgTls, String> {
    if let Some(name) = server_name {
        ServerName::try_from(name).map_err(|e| format!("tls_server_name {name:?}: {e}"))?;
    }
    Ok(PgTls {
        inner: MakeRustlsConnect::new(tls_config(ca_file, mode.checks_name())?),
        server_name: server_name.map(str::to_string),
    })
}

/// [`MakeRustlsConnect`] that may verify another name than the host it connects to.
#[derive(Clone)]
pub struct PgTls {
    inner: MakeRustlsConnect,
    server_name: Option<String>,
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let name = self.server_name.as_deref().unwrap_or(hostname);
        MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, name)
    }
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

    #[test]
    fn five_modes_are_kept_apart() {
        let mode = |m: &str| {
            split_sslmode_full(&format!("postgres://u@h/d?sslmode={m}"))
                .unwrap()
                .1
                .unwrap()
        };
        assert_eq!(mode("verify-ca"), PgSslMode::VerifyCa);
        assert_eq!(mode("verify-full"), PgSslMode::VerifyFull);
        assert_eq!(mode("require"), PgSslMode::Require);
        assert_eq!(mode("allow"), PgSslMode::Prefer);
        assert!(!PgSslMode::VerifyCa.checks_name());
        assert!(PgSslMode::Require.checks_name() && PgSslMode::VerifyFull.checks_name());
        assert!(matches!(
            PgSslMode::VerifyCa.driver_mode(),
            SslMode::Require
        ));
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        assert!(make_tls_for(PgSslMode::VerifyFull, None, Some("localhost")).is_ok());
        assert!(make_tls_for(PgSslMode::VerifyFull, None, Some("not a name")).is_err());
        assert!(make_tls_for(PgSslMode::VerifyCa, None, None).is_ok());
    }
}
