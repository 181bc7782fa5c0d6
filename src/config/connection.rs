//! Where the cluster is and how a session reaches it: host, port, database, TLS, timeouts.

use std::path::PathBuf;
use std::time::Duration;

use super::auth::{self, Authentication};
use super::reader::MapReader;
use super::transport::{self, Transport};
use super::{keys, shorten, ConfigError};

pub const DEFAULT_PORT: u16 = 5439;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Zero means "no statement timeout" (the server's own setting applies).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(0);
/// The largest `sslrootcert` file read: a CA bundle is tens of kilobytes.
pub const MAX_ROOT_CERTIFICATE_FILE: u64 = 1024 * 1024;

/// Connection settings: what it takes to open a session.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Empty with IAM sign-in: the cluster's or workgroup's endpoint, asked from AWS.
    pub host: String,
    /// `None`: the endpoint's port when the host is asked from AWS, else [`DEFAULT_PORT`].
    pub port: Option<u16>,
    pub database: String,
    pub authentication: Authentication,
    pub sslmode: SslMode,
    pub root_certificates: RootCertificates,
    pub connect_timeout: Duration,
    /// Zero: no statement timeout.
    pub query_timeout: Duration,
    /// The bastion every session tunnels through; `None`: sessions connect directly.
    pub ssh: Option<super::SshConfig>,
    /// How sessions reach the cluster: with the Data API, `host`, `port`, the TLS settings
    /// and `ssh` are unused (empty or their defaults).
    pub transport: Transport,
}

impl ConnectionConfig {
    /// The cluster's AWS region, where the configuration says it: IAM sign-in's `region`, or
    /// the endpoint's name (`<name>.<id>.<region>.redshift.amazonaws.com`, and Serverless's
    /// `<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com`).
    pub fn aws_region(&self) -> Option<String> {
        if let Transport::DataApi(data_api) = &self.transport {
            return Some(data_api.region.clone());
        }
        if let Authentication::Iam(iam) = &self.authentication {
            return Some(iam.region.clone());
        }
        let labels: Vec<&str> = self.host.split('.').collect();
        let service = labels
            .iter()
            .position(|l| *l == "redshift" || *l == "redshift-serverless")?;
        (service > 0).then(|| labels[service - 1].to_string())
    }

    /// The configured port, or Redshift's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

/// TLS modes with libpq's meaning, which Redshift users already know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it, plain otherwise; the certificate is not verified.
    Prefer,
    /// TLS or fail; the certificate is not verified.
    Require,
    /// TLS, certificate chain verified against the root store; host name not checked.
    VerifyCa,
    /// TLS, chain verified and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCertificates {
    /// The operating system's store (Redshift's ACM certificates chain to it).
    System,
    /// A PEM bundle, given inline or read from the configured file.
    Pem(Vec<u8>),
    /// A PEM file not read yet: [`super::Config::load_files`] reads it, off the async workers.
    File(PathBuf),
}

/// The connection keys of the request.
pub(super) fn parse(reader: &MapReader<'_>) -> Result<ConnectionConfig, ConfigError> {
    let query_timeout = reader
        .seconds(keys::QUERY_TIMEOUT_S, 0, 7 * 24 * 3600)?
        .unwrap_or(DEFAULT_QUERY_TIMEOUT);
    if transport::parse_name(reader)? {
        let (data_api, authentication, database) = transport::parse_data_api(reader)?;
        return Ok(ConnectionConfig {
            host: String::new(),
            port: None,
            database,
            authentication,
            sslmode: SslMode::VerifyFull,
            root_certificates: RootCertificates::System,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            query_timeout,
            ssh: None,
            transport: Transport::DataApi(data_api),
        });
    }
    let authentication = auth::parse(reader)?;
    let host = match (&authentication, reader.optional(keys::HOST)) {
        (_, Some(host)) => host,
        (Authentication::Iam(_) | Authentication::Secret(_), None) => String::new(),
        (Authentication::Password { .. }, None) => {
            return Err(ConfigError::new(
                keys::HOST,
                "is required (the cluster's endpoint; with `auth` = iam or secret it may be left empty)",
            ))
        }
    };
    validate_host(&host)?;
    let port =
        match reader.optional(keys::PORT) {
            None => None,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => return Err(ConfigError::new(
                    keys::PORT,
                    "must be a TCP port number between 1 and 65535 (Redshift's default is 5439)",
                )),
            },
        };
    // With a secret, its `dbname` may name the database.
    let database = match &authentication {
        Authentication::Secret(_) => reader.optional(keys::DATABASE).unwrap_or_default(),
        _ => reader.required(keys::DATABASE)?,
    };
    // verify-full by default, as Redshift's certificates chain to public roots: verifying
    // costs users nothing, and an unverified session may hand its password to anyone.
    let sslmode = match reader.optional(keys::SSLMODE) {
        None => SslMode::VerifyFull,
        Some(text) => SslMode::parse(&text.to_ascii_lowercase()).ok_or_else(|| {
            ConfigError::new(
                keys::SSLMODE,
                format!("must be one of {}", SslMode::NAMES.join(", ")),
            )
        })?,
    };
    let root_certificates = match reader.optional(keys::SSLROOTCERT) {
        None => RootCertificates::System,
        Some(text) if text.contains("-----BEGIN") => {
            let pem = text.into_bytes();
            check_pem(&pem)?;
            RootCertificates::Pem(pem)
        }
        Some(path) => RootCertificates::File(PathBuf::from(path)),
    };
    // verify-ca checks the chain but not the name: against the system roots, any publicly
    // trusted certificate for any domain passes, and an on-path attacker (or the bastion)
    // would receive a cleartext password. libpq refuses the combination for this reason.
    if sslmode == SslMode::VerifyCa && root_certificates == RootCertificates::System {
        return Err(ConfigError::new(
            keys::SSLMODE,
            "verify-ca checks the certificate's chain but not its name, so it needs `sslrootcert` (the private CA that signed the server's certificate); with the system roots use verify-full, which Redshift's certificates pass",
        ));
    }
    let connect_timeout = reader
        .seconds(keys::CONNECT_TIMEOUT_S, 1, 3600)?
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    Ok(ConnectionConfig {
        host,
        port,
        database,
        authentication,
        sslmode,
        root_certificates,
        connect_timeout,
        query_timeout,
        ssh: super::ssh::parse(reader)?,
        transport: Transport::Direct,
    })
}

impl ConnectionConfig {
    /// Reads the files the configuration names (`sslrootcert` as a path) on a blocking thread,
    /// bounded in size, refusing anything but a regular file.
    pub(super) async fn load_files(&mut self) -> Result<(), ConfigError> {
        if let RootCertificates::File(path) = &self.root_certificates {
            let path = path.clone();
            // One message for every failure, PEM content included: which files exist or can be
            // read is nothing a caller should learn from it.
            let pem = tokio::task::spawn_blocking(move || read_root_certificate_file(&path))
                .await
                .unwrap_or(Err(()))
                .and_then(|pem| check_pem(&pem).map(|()| pem).map_err(|_| ()))
                .map_err(|()| {
                    ConfigError::new(
                        keys::SSLROOTCERT,
                        format!(
                            "must be PEM text, or the path of a readable PEM file of at most {} KiB",
                            MAX_ROOT_CERTIFICATE_FILE / 1024
                        ),
                    )
                })?;
            self.root_certificates = RootCertificates::Pem(pem);
        }
        Ok(())
    }
}

/// Reads a root certificate file: a regular file of at most [`MAX_ROOT_CERTIFICATE_FILE`]
/// bytes. Every failure is the same `Err(())`: the error must not tell which other files exist
/// or can be read. Opened non-blocking, so a FIFO cannot hold the thread waiting for a writer.
fn read_root_certificate_file(path: &std::path::Path) -> Result<Vec<u8>, ()> {
    use std::io::Read as _;
    let metadata = std::fs::metadata(path).map_err(|_| ())?;
    if !metadata.is_file() || metadata.len() > MAX_ROOT_CERTIFICATE_FILE {
        return Err(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(|_| ())?;
    // Checked again on the open file: the path may have changed in between.
    let metadata = file.metadata().map_err(|_| ())?;
    if !metadata.is_file() {
        return Err(());
    }
    let mut pem = Vec::new();
    file.take(MAX_ROOT_CERTIFICATE_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(|_| ())?;
    if pem.len() as u64 > MAX_ROOT_CERTIFICATE_FILE {
        return Err(());
    }
    Ok(pem)
}

/// At least one certificate, and every PEM section readable (the TLS layer checks each
/// certificate itself when a session starts).
fn check_pem(pem: &[u8]) -> Result<(), ConfigError> {
    use rustls_pki_types::pem::PemObject as _;
    let certificates: Result<Vec<_>, _> =
        rustls_pki_types::CertificateDer::pem_slice_iter(pem).collect();
    match certificates {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        _ => Err(ConfigError::new(
            keys::SSLROOTCERT,
            "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        )),
    }
}

/// A host name or IP address; a port or scheme in it is a common mistake worth naming.
fn validate_host(host: &str) -> Result<(), ConfigError> {
    let rule = |rule: &str| Err(ConfigError::new(keys::HOST, rule));
    if host.contains(char::is_whitespace) || host.contains('/') {
        return rule("must be a host name or IP address, e.g. examplecluster.abc123.us-west-2.redshift.amazonaws.com (no scheme, port or path)");
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return rule(&format!(
            "`{}` includes a port; give the host name alone and the port in `port`",
            shorten(host)
        ));
    }
    Ok(())
}
