//! TLS for the connection, by rustls, with libpq's meaning of each `sslmode`:
//!
//! | sslmode     | TLS            | certificate chain | host name |
//! |-------------|----------------|-------------------|-----------|
//! | disable     | never          | -                 | -         |
//! | prefer      | if offered     | not checked       | no        |
//! | require     | always         | not checked       | no        |
//! | verify-ca   | always         | checked           | no        |
//! | verify-full | always         | checked           | checked   |
//!
//! Without checks the handshake's signatures are still verified against the certificate the
//! server presents, so the session is encrypted to whoever holds that certificate's key.
//!
//! The roots are either the configured PEM bundle (`sslrootcert`, which replaces the system
//! roots, as in libpq) or the operating system's store, falling back to Mozilla's roots when
//! the system has none (a static binary may run on a minimal image). Redshift's ACM certificates
//! chain to both.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The roots a verified session trusts. (Plain inputs: the wire layer knows nothing of the
/// configuration's keys; the source layer maps `sslmode` and `sslrootcert` to these.)
#[derive(Debug, Clone, Copy)]
pub enum Roots<'a> {
    /// The operating system's store (Mozilla's when it has none).
    System,
    /// A PEM bundle, which replaces the system's roots.
    Pem(&'a [u8]),
}

/// How a connection uses TLS.
#[derive(Clone)]
pub enum TlsMode {
    Disable,
    /// TLS when the server offers it, plain TCP otherwise.
    Prefer(Arc<ClientConfig>),
    /// TLS or no connection, the certificate not verified.
    Require(Arc<ClientConfig>),
    /// TLS or no connection, the certificate verified (`verify-ca`, `verify-full`): the one
    /// mode in which a cleartext password may be sent, since only the real server gets it.
    Verified(Arc<ClientConfig>),
}

impl TlsMode {
    /// TLS if the server offers it, the certificate not checked (`prefer`).
    pub fn prefer() -> TlsMode {
        TlsMode::Prefer(unverified())
    }

    /// TLS always, the certificate not checked (`require`).
    pub fn require() -> TlsMode {
        TlsMode::Require(unverified())
    }

    /// TLS always, the chain checked against `roots`, and the host name too when
    /// `check_host_name` (`verify-full`; without it, `verify-ca`).
    pub fn verified(roots: Roots<'_>, check_host_name: bool) -> Result<TlsMode, String> {
        verified(roots, check_host_name).map(TlsMode::Verified)
    }

    /// Whether the server's certificate is verified.
    pub fn verifies(&self) -> bool {
        matches!(self, TlsMode::Verified(_))
    }
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
}

/// One shared config for the modes that check nothing: it holds no per-server state.
fn unverified() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let verifier = Arc::new(AnyCertificate {
                provider: provider(),
            });
            Arc::new(
                builder()
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth(),
            )
        })
        .clone()
}

fn verified(roots: Roots<'_>, check_host_name: bool) -> Result<Arc<ClientConfig>, String> {
    let roots = match roots {
        Roots::System => system_roots(),
        Roots::Pem(pem) => Arc::new(pem_roots(pem)?),
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|err| format!("cannot use the root certificates: {err}"))?;
    let config = if check_host_name {
        builder().with_webpki_verifier(webpki).with_no_client_auth()
    } else {
        builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly { webpki }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The certificates of a PEM bundle; other PEM sections (keys, CRLs) are ignored.
fn pem_roots(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate =
            certificate.map_err(|err| format!("sslrootcert is not a PEM bundle: {err}"))?;
        roots
            .add(certificate)
            .map_err(|err| format!("sslrootcert holds an unusable certificate: {err}"))?;
    }
    if roots.is_empty() {
        return Err(
            "sslrootcert holds no certificate (expected -----BEGIN CERTIFICATE-----)".to_string(),
        );
    }
    Ok(roots)
}

/// The operating system's roots, read once per process (it is tens of milliseconds of parsing);
/// Mozilla's when the system has none.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                tracing::info!("no system root certificates found; using Mozilla's roots");
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(roots)
        })
        .clone()
}

/// The name to send as SNI and, for verify-full, to check: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is neither a DNS name nor an IP address"))
}

/// sslmode=prefer/require: any certificate, but the handshake must be signed by its key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// sslmode=verify-ca: the chain must lead to a trusted root; the name in it is not checked.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // The chain was verified first; only the name did not match.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let err = pem_roots(b"not pem at all").unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
    }

    #[test]
    fn ip_addresses_and_dns_names_are_server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("examplecluster.abc.us-west-2.redshift.amazonaws.com"),
            Ok(ServerName::DnsName(_))
        ));
    }
}
