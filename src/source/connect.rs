//! Opening sessions: TLS per `sslmode`, password authentication, Redshift-safe session settings.
//!
//! Redshift accepts tokio-postgres's startup parameters. We add nothing Redshift rejects
//! (no `client_protocol_version`, no `extra_float_digits` above 2) and set only what both
//! Redshift and PostgreSQL accept: `DateStyle` (so dates cast to text are ISO) and
//! `statement_timeout` (milliseconds; on Redshift it also counts WLM queue time).

use std::error::Error as _;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use postgres_native_tls::MakeTlsConnector;
use tokio::task::JoinHandle;
use tokio_postgres::{CancelToken, Client};

use super::{error_chain, SourceError};
use crate::config::{ConnectionConfig, RootCertificates, SslMode};

/// How long a TLS connector is reused for sessions with the same TLS settings. Building one
/// costs ~100 ms of CPU with OpenSSL 3 (see [`tls_connector`]) and every session needs one: the
/// catalog's, each table's, each retry's. Bounded so that a CA bundle changed on disk is still
/// picked up within minutes, as it was by the next session before.
const TLS_CONNECTOR_REUSE: Duration = Duration::from_secs(300);

/// Shown in Redshift's STL_CONNECTION_LOG / pg_stat_activity so DBAs can tell whose queries these are.
const APPLICATION_NAME: &str = "redshift-sync";

/// One authenticated connection. Dropping it closes the connection.
pub struct Session {
    pub client: Client,
    tls: MakeTlsConnector,
    connection: JoinHandle<()>,
}

impl Session {
    /// A handle that can stop this session's running statement from elsewhere.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            token: self.client.cancel_token(),
            tls: self.tls.clone(),
        }
    }
}

/// Cancels a session's running statement over a separate connection, as the protocol requires.
#[derive(Clone)]
pub struct Canceller {
    token: CancelToken,
    tls: MakeTlsConnector,
}

impl Canceller {
    /// Best effort: the session is being abandoned anyway.
    pub async fn cancel(&self) {
        if let Err(err) = self.token.cancel_query(self.tls.clone()).await {
            tracing::debug!(error = %err, "cancel request failed");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// Connects, authenticates and applies the session settings.
pub async fn connect(config: &ConnectionConfig) -> Result<Session, SourceError> {
    let tls = tls_connector(config)?;
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .dbname(&config.database)
        .user(&config.user)
        .password(config.password.expose())
        .application_name(APPLICATION_NAME)
        .connect_timeout(config.connect_timeout)
        .keepalives(true)
        .ssl_mode(match config.sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });

    // The driver's own timeout covers the TCP connect; this one also covers a server that
    // accepts the connection and then never answers the TLS or startup exchange.
    let connecting = pg.connect(tls.clone());
    let (client, connection) = match tokio::time::timeout(
        config.connect_timeout + std::time::Duration::from_secs(1),
        connecting,
    )
    .await
    {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => return Err(classify_connect_error(config, err)),
        Err(_) => {
            return Err(SourceError::ConnectTimeout {
                host: config.host.clone(),
                port: config.port,
                timeout: config.connect_timeout,
            })
        }
    };
    let connection = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(error = %err, "database connection ended with an error");
        }
    });
    let session = Session {
        client,
        tls,
        connection,
    };

    let mut settings = String::from("SET DateStyle TO ISO;");
    if !config.query_timeout.is_zero() {
        settings.push_str(&format!(
            " SET statement_timeout TO {};",
            config.query_timeout.as_millis()
        ));
    }
    session
        .client
        .batch_execute(&settings)
        .await
        .map_err(SourceError::from_query)?;
    Ok(session)
}

/// The TLS connector for the configuration's `sslmode` and root certificates: a recent one
/// built for the same settings, else a new one.
///
/// native-tls reads and parses the whole system CA bundle for every connector it builds, even
/// when `sslrootcert` then replaces it: ~100 ms of CPU with OpenSSL 3, which made opening a
/// session cost ~100x the round trips it needs. A connector holds no per-connection state (the
/// host name is checked per connection, client sessions are not cached), so sharing one is the
/// same as building it again from the same settings.
fn tls_connector(config: &ConnectionConfig) -> Result<MakeTlsConnector, SourceError> {
    struct Built {
        sslmode: SslMode,
        root_certificates: RootCertificates,
        at: Instant,
        connector: MakeTlsConnector,
    }
    static RECENT: Mutex<Vec<Built>> = Mutex::new(Vec::new());
    let same = |built: &Built| {
        built.sslmode == config.sslmode && built.root_certificates == config.root_certificates
    };
    {
        let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
        recent.retain(|built| built.at.elapsed() < TLS_CONNECTOR_REUSE);
        if let Some(built) = recent.iter().find(|built| same(built)) {
            return Ok(built.connector.clone());
        }
    }
    // Built outside the lock: concurrent first sessions may each build one, which is harmless.
    let connector = build_tls_connector(config)?;
    let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    recent.retain(|built| !same(built));
    recent.push(Built {
        sslmode: config.sslmode,
        root_certificates: config.root_certificates.clone(),
        at: Instant::now(),
        connector: connector.clone(),
    });
    Ok(connector)
}

/// A new TLS connector for the configured mode, with libpq's meaning of each mode.
fn build_tls_connector(config: &ConnectionConfig) -> Result<MakeTlsConnector, SourceError> {
    let tls_error = |reason: String| SourceError::Tls {
        host: config.host.clone(),
        reason,
    };
    let mut builder = native_tls::TlsConnector::builder();
    match config.sslmode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyFull => {}
    }
    if let RootCertificates::Pem(pem) = &config.root_certificates {
        // Like libpq's sslrootcert: the given bundle replaces the system roots.
        builder.disable_built_in_roots(true);
        let certificates = openssl::x509::X509::stack_from_pem(pem)
            .map_err(|err| tls_error(format!("sslrootcert is not a PEM bundle: {err}")))?;
        for certificate in certificates {
            let der = certificate
                .to_der()
                .map_err(|err| tls_error(format!("sslrootcert: {err}")))?;
            let certificate = native_tls::Certificate::from_der(&der)
                .map_err(|err| tls_error(format!("sslrootcert: {err}")))?;
            builder.add_root_certificate(certificate);
        }
    }
    let connector = builder
        .build()
        .map_err(|err| tls_error(error_chain(&err)))?;
    Ok(MakeTlsConnector::new(connector))
}

/// Turns a failed connection attempt into what the user must fix.
fn classify_connect_error(config: &ConnectionConfig, err: tokio_postgres::Error) -> SourceError {
    let chain = error_chain(&err);
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        return match code {
            // invalid_password, invalid_authorization_specification (no such user, pg_hba reject)
            "28P01" | "28000" => SourceError::AuthenticationFailed {
                user: config.user.clone(),
            },
            "3D000" => SourceError::UnknownDatabase {
                database: config.database.clone(),
            },
            _ => SourceError::from_db_error(db.code(), db.message()),
        };
    }
    // Redshift answers SHA-256 password users with authentication request 13 and IdP users
    // with 14; the driver cannot parse those and reports an unknown authentication tag.
    if chain.contains("unknown authentication tag") || chain.contains("unsupported authentication")
    {
        return SourceError::UnsupportedAuthentication {
            user: config.user.clone(),
            detail: chain,
        };
    }
    if chain.contains("server does not support TLS") {
        return SourceError::TlsNotOffered {
            host: config.host.clone(),
            sslmode: config.sslmode.as_str(),
        };
    }
    if is_tls_failure(&err, &chain) {
        return SourceError::Tls {
            host: config.host.clone(),
            reason: chain,
        };
    }
    if chain.contains("timed out") || chain.contains("timeout") {
        return SourceError::ConnectTimeout {
            host: config.host.clone(),
            port: config.port,
            timeout: config.connect_timeout,
        };
    }
    SourceError::Unreachable {
        host: config.host.clone(),
        port: config.port,
        reason: chain,
    }
}

fn is_tls_failure(err: &tokio_postgres::Error, chain: &str) -> bool {
    let mut source = err.source();
    while let Some(cause) = source {
        if cause.is::<native_tls::Error>() {
            return true;
        }
        source = cause.source();
    }
    chain.contains("TLS") || chain.contains("certificate") || chain.contains("SSL")
}
