//! The test kit's own parts that every other test trusts: the throwaway PostgreSQL's password
//! hash, version choice, quoting and certificates.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use test_kit::local_postgres::{md5_password_hash, parse_version, quote_identifier, quote_literal};

use crate::support;

#[test]
fn md5_hash_matches_postgresql() {
    // SELECT 'md5' || md5('secret' || 'alice')
    assert_eq!(
        md5_password_hash("alice", "secret"),
        "md54a0a68b43b6cd5cf266fa02f196e2371"
    );
}

#[test]
fn versions_sort_numerically() {
    let mut versions = ["9.6", "15", "10"].map(|v| parse_version(v).unwrap());
    versions.sort();
    assert_eq!(versions.last().unwrap(), &vec![15]);
    assert_eq!(parse_version("main"), None);
}

#[test]
fn server_certificate_is_signed_by_the_ca_for_localhost_only() {
    let cluster = support::cluster();
    let ca = CertificateDer::from_pem_slice(cluster.ca_cert_pem()).unwrap();
    let (cert_pem, _key) = cluster.server_certificate_pem().unwrap();
    let cert = CertificateDer::from_pem_slice(&cert_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let now = rustls_pki_types::UnixTime::now();
    let verify = |host: &str| {
        let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
        verifier.verify_server_cert(&cert, &[], &name, &[], now)
    };
    use rustls::client::danger::ServerCertVerifier as _;
    assert!(verify("localhost").is_ok());
    assert!(
        verify("127.0.0.1").is_err(),
        "the certificate must not name 127.0.0.1"
    );
    assert!(verify("example.com").is_err());
}

#[test]
fn quoting_doubles_the_quote_character() {
    assert_eq!(quote_identifier(r#"a"b"#), r#""a""b""#);
    assert_eq!(quote_literal("it's"), "'it''s'");
}
