//! TLS to PostgreSQL: reads libpq's `sslmode` (`disable`, `allow`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file, or `system`) from `--database-url`,
//! and builds the rustls connector every connection to that server uses — the pools, plain admin
//! connections, the schema-reload listener and the replication stream (which sends its own
//! SSLRequest). tokio-postgres reads the rest of the URL; it knows only `disable|prefer|require`, so
//! the stricter modes reach it as `require` and their checking happens here, in the certificate
//! verifier.
//!
//! doska talks to one database, so the policy is process-wide: [`install`] sets it when the URL is
//! read; the embedded cluster (a unix socket, where PostgreSQL offers no TLS) never installs one.
//! As in libpq, `prefer` and `require` encrypt without checking the certificate unless a
//! `sslrootcert` is given (then `require` checks the chain, as `verify-ca` does); `verify-ca` checks
//! the chain, `verify-full` the chain and the host name. Without `sslrootcert`, the verify modes
//! trust the system's roots (libpq would read `~/.postgresql/root.crt`; a service has no home).

use std::sync::{Arc, RwLock};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// How hard the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Encrypted, certificate not checked (libpq's `prefer`/`require` without a root certificate).
    None,
    /// The chain must lead to a trusted root; any host name.
    Chain,
    /// The chain, and the certificate must name the host connected to.
    Full,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode `{0}` is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    BadMode(String),
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
    #[error(
        "`{0}` in --database-url is not supported (doska does not present client certificates)"
    )]
    Unsupported(String),
}

/// What the URL asked for: the URL to hand tokio-postgres, and the certificate check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub url: String,
    pub check: Check,
    /// `sslrootcert`: a PEM file, `system`, or none.
    pub root_cert: Option<String>,
}

/// Splits libpq's TLS parameters out of `url` (URI or `key=value` form).
pub fn parse(url: &str) -> Result<Policy, TlsError> {
    let mut mode: Option<String> = None;
    let mut root_cert: Option<String> = None;
    let mut take = |key: &str, value: &str| -> Result<bool, TlsError> {
        match key {
            "sslmode" => mode = Some(value.to_string()),
            "sslrootcert" => root_cert = Some(value.to_string()),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" => {
                return Err(TlsError::Unsupported(key.to_string()));
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let kept = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            if !take(k, &value)? {
                kept.push(pair.to_string());
            }
        }
        (base.to_string(), kept, '&')
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            let (k, v) = token.split_once('=').unwrap_or((token, ""));
            if !take(k.trim(), v.trim().trim_matches('\''))? {
                kept.push(token.to_string());
            }
        }
        (String::new(), kept, ' ')
    };
    let (check, tokio_mode) = match mode.as_deref() {
        None | Some("prefer") | Some("allow") => (Check::None, None),
        Some("disable") => (Check::None, Some("disable")),
        Some("require") if root_cert.is_some() => (Check::Chain, Some("require")),
        Some("require") => (Check::None, Some("require")),
        Some("verify-ca") => (Check::Chain, Some("require")),
        Some("verify-full") => (Check::Full, Some("require")),
        Some(other) => return Err(TlsError::BadMode(other.to_string())),
    };
    let (base, mut params, sep) = kept;
    if let Some(m) = tokio_mode {
        params.push(format!("sslmode={m}"));
    }
    let url = match sep {
        '&' if params.is_empty() => base,
        '&' => format!("{base}?{}", params.join("&")),
        _ => params.join(" "),
    };
    Ok(Policy {
        url,
        check,
        root_cert,
    })
}

impl Policy {
    /// The rustls client configuration for this policy (reads `sslrootcert`).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let config = match self.check {
            Check::None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
                .with_no_client_auth(),
            Check::Chain | Check::Full => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| TlsError::RootCert {
                        path: self.root_cert.clone().unwrap_or_else(|| "system".into()),
                        reason: e.to_string(),
                    })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Verified {
                        inner: webpki,
                        check_name: self.check == Check::Full,
                    }))
                    .with_no_client_auth()
            }
        };
        Ok(Arc::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let fail = |reason: String| TlsError::RootCert {
            path: self.root_cert.clone().unwrap_or_else(|| "system".into()),
            reason,
        };
        let mut roots = RootCertStore::empty();
        match self.root_cert.as_deref() {
            None | Some("system") => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| fail(e.to_string()))?;
                    roots.add(cert).map_err(|e| fail(e.to_string()))?;
                }
            }
        }
        if roots.is_empty() {
            return Err(fail("no certificates found".into()));
        }
        Ok(roots)
    }
}

/// Encrypts without judging the certificate; handshake signatures are still checked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// WebPKI's check of the chain, with the host name check left out for `verify-ca`.
#[derive(Debug)]
struct Verified {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

static INSTALLED: RwLock<Option<Arc<ClientConfig>>> = RwLock::new(None);

/// Makes `policy` the one every later connection uses.
pub fn install(policy: &Policy) -> Result<(), TlsError> {
    let config = policy.client_config()?;
    *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(config);
    Ok(())
}

/// The installed client configuration; before [`install`] (the embedded cluster), one that checks
/// nothing — it is used only when a URL asks for TLS, which the embedded cluster's never does.
pub fn client_config() -> Arc<ClientConfig> {
    if let Some(c) = INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return c;
    }
    Policy {
        url: String::new(),
        check: Check::None,
        root_cert: None,
    }
    .client_config()
    .expect("an unchecked configuration reads no files")
}

/// The connector tokio-postgres connects through (pools, plain connections).
pub fn connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    tokio_postgres_rustls::MakeRustlsConnect::new((*client_config()).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_become_tokio_postgres_modes_and_checks() {
        let p = |u: &str| parse(u).unwrap();
        let full = p(
            "postgres://u:p@db.example.org:5432/app?sslmode=verify-full&sslrootcert=%2Fca.pem&application_name=x",
        );
        assert_eq!(
            full.url,
            "postgres://u:p@db.example.org:5432/app?application_name=x&sslmode=require"
        );
        assert_eq!(
            (full.check, full.root_cert.as_deref()),
            (Check::Full, Some("/ca.pem"))
        );
        assert_eq!(p("postgres://h/db?sslmode=verify-ca").check, Check::Chain);
        assert_eq!(p("postgres://h/db?sslmode=require").check, Check::None);
        assert_eq!(
            p("postgres://h/db?sslmode=require&sslrootcert=/ca.pem").check,
            Check::Chain
        );
        let plain = p("postgres://h/db");
        assert_eq!(
            (plain.url.as_str(), plain.check),
            ("postgres://h/db", Check::None)
        );
        assert_eq!(
            p("postgres://h/db?sslmode=disable").url,
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(p("postgres://h/db?sslmode=allow").url, "postgres://h/db");
        let kv = p("host=db user=u sslmode=verify-full sslrootcert='/ca.pem'");
        assert_eq!(kv.url, "host=db user=u sslmode=require");
        assert_eq!(
            (kv.check, kv.root_cert.as_deref()),
            (Check::Full, Some("/ca.pem"))
        );
    }

    #[test]
    fn bad_tls_parameters_are_refused_by_name() {
        let e = |u: &str| parse(u).unwrap_err().to_string();
        assert!(e("postgres://h/db?sslmode=verify").contains("sslmode `verify`"));
        assert!(e("postgres://h/db?sslcert=/c.pem").contains("`sslcert`"));
        let missing = Policy {
            url: String::new(),
            check: Check::Full,
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        let err = missing.client_config().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
