//! Opening a session: TLS per `sslmode`, password authentication, which server this is, and
//! the settings its sessions need.
//!
//! Redshift reports `server_version` 8.0.2 at startup; PostgreSQL (the tests' and the demo's
//! stand-in) reports its own version. The two differ in what a session must set:
//! - both: `DateStyle` ISO (dates read as text are `YYYY-MM-DD`), the UTC time zone (the
//!   database's clock bounds time cursors, which loads stamp in UTC) and, when configured,
//!   `statement_timeout` (milliseconds; on Redshift it also counts WLM queue time);
//! - Redshift: `enable_case_sensitive_identifier`, without which quoted identifiers fold to
//!   lower case and a table created with mixed-case names (while the setting was on) cannot
//!   be read at all.
//!
//! Nothing Redshift rejects is sent at startup (no `client_protocol_version`, no
//! `extra_float_digits`).

use std::collections::HashMap;

use super::data_api::{self, DataApiCanceller, DataApiSession};
use super::wire::tls::{Roots, TlsMode};
use super::wire::{self, CancelToken, Column, ConnectOptions, Connection};
use super::{iam, SourceError};
use crate::config::{Authentication, ConnectionConfig, RootCertificates, SslMode, Transport};

/// Shown in Redshift's STL_CONNECTION_LOG / pg_stat_activity so DBAs can tell whose queries these are.
pub const APPLICATION_NAME: &str = "redshift-sync";

/// Which server a session talks to: decides the SQL dialect of the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Redshift,
    PostgreSql,
}

impl Flavour {
    /// From the `server_version` the server reports at startup: Redshift (provisioned and
    /// Serverless) says 8.0.2, a version no supported PostgreSQL has.
    pub fn from_server_version(version: &str) -> Flavour {
        if version.starts_with("8.0") {
            Flavour::Redshift
        } else {
            Flavour::PostgreSql
        }
    }
}

/// A statement prepared on a session: its name and result columns.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub name: String,
    pub columns: Vec<Column>,
}

/// One authenticated connection with its settings applied. Dropping it closes the connection.
///
/// The rest of the connector does not know which transport carries it: the methods below (and
/// [`Session::open_scan`]) are the seam, each answered by the wire protocol or the Data API.
pub struct Session {
    pub(super) link: Link,
    flavour: Flavour,
    /// The database user signed in as (with IAM, the one AWS named, e.g. `IAM:alice`).
    user: String,
    /// Statements already prepared on this session, by SQL text: a table's scan prepares its
    /// query once and runs it for every bounded query.
    prepared: HashMap<String, Prepared>,
    /// Statements prepared so far, for their names.
    statements: u64,
}

/// What carries a session's statements.
pub(super) enum Link {
    /// A PostgreSQL protocol connection (direct or through an SSH tunnel).
    Wire(Connection),
    /// A Redshift Data API session.
    DataApi(DataApiSession),
}

/// Statements a session keeps prepared at most (a table's scan uses a few).
const MAX_PREPARED: usize = 16;

/// Connects, authenticates and applies the session settings.
///
/// With IAM sign-in, a password the database refuses is forgotten and one new password is
/// fetched and tried: it may have expired early (clocks disagree) or been superseded. With a
/// secret, the secret is read again once: it may have been rotated since it was read.
pub async fn connect(config: &ConnectionConfig) -> Result<Session, SourceError> {
    if let Transport::DataApi(target) = &config.transport {
        let data_api = data_api::open(config, target).await?;
        let mut session = Session {
            user: data_api.user(),
            link: Link::DataApi(data_api),
            // The Data API reaches Redshift only.
            flavour: Flavour::Redshift,
            prepared: HashMap::new(),
            statements: 0,
        };
        session.apply_settings(config).await?;
        if let Link::DataApi(data_api) = &session.link {
            session.user = data_api.user();
        }
        return Ok(session);
    }
    match connect_once(config).await {
        Err(SourceError::AuthenticationFailed { user, .. })
            if !matches!(config.authentication, Authentication::Password { .. }) =>
        {
            tracing::info!(%user, "the database refused the password it was given; fetching it again");
            iam::forget(config);
            connect_once(config).await
        }
        result => result,
    }
}

async fn connect_once(config: &ConnectionConfig) -> Result<Session, SourceError> {
    let sign_in = iam::sign_in(config).await?;
    let tls = tls_mode(config).map_err(|reason| SourceError::Tls {
        host: sign_in.host.clone(),
        reason,
    })?;
    let ssh = config.ssh.as_ref().map(|ssh| wire::ssh::SshTarget {
        host: ssh.host.clone(),
        port: ssh.port,
        user: ssh.user.clone(),
        private_key: ssh.private_key.clone(),
        host_key: ssh.host_key.clone(),
    });
    let options = ConnectOptions {
        host: &sign_in.host,
        port: sign_in.port,
        database: &sign_in.database,
        user: &sign_in.user,
        password: sign_in.password.expose(),
        tls: &tls,
        timeout: config.connect_timeout,
        application_name: APPLICATION_NAME,
        ssh: ssh.as_ref(),
    };
    let connection = Connection::connect(&options)
        .await
        .map_err(|err| SourceError::from_connect(config, &sign_in, err))?;
    let flavour =
        Flavour::from_server_version(connection.parameter("server_version").unwrap_or(""));
    let mut session = Session {
        link: Link::Wire(connection),
        flavour,
        user: sign_in.user,
        prepared: HashMap::new(),
        statements: 0,
    };
    session.apply_settings(config).await?;
    Ok(session)
}

/// `sslmode` and `sslrootcert` as the wire layer takes them.
fn tls_mode(config: &ConnectionConfig) -> Result<TlsMode, String> {
    let roots = match &config.root_certificates {
        RootCertificates::System => Roots::System,
        RootCertificates::Pem(pem) => Roots::Pem(pem),
        RootCertificates::File(_) => {
            return Err("sslrootcert was not read (Config::load_files)".to_string())
        }
    };
    match config.sslmode {
        SslMode::Disable => Ok(TlsMode::Disable),
        SslMode::Prefer => Ok(TlsMode::prefer()),
        SslMode::Require => Ok(TlsMode::require()),
        SslMode::VerifyCa => TlsMode::verified(roots, false),
        SslMode::VerifyFull => TlsMode::verified(roots, true),
    }
}

impl Session {
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    async fn apply_settings(&mut self, config: &ConnectionConfig) -> Result<(), SourceError> {
        let mut settings = vec![
            "SET DateStyle TO 'ISO, MDY'".to_string(),
            "SET timezone TO 'UTC'".to_string(),
        ];
        match self.flavour {
            Flavour::Redshift => {
                settings.push("SET enable_case_sensitive_identifier TO true".to_string());
            }
            // PostgreSQL's BYTEA and INTERVAL text depend on these; Redshift's VARBYTE is hex.
            Flavour::PostgreSql => {
                settings.push("SET bytea_output TO 'hex'".to_string());
                settings.push("SET IntervalStyle TO 'postgres'".to_string());
            }
        }
        if !config.query_timeout.is_zero() {
            settings.push(format!(
                "SET statement_timeout TO {}",
                config.query_timeout.as_millis()
            ));
        }
        match &mut self.link {
            // One round trip.
            Link::Wire(_) => self.simple(&settings.join("; ")).await,
            // The Data API runs one statement a call, or a batch of them.
            Link::DataApi(data_api) => data_api.run_batch(&settings).await,
        }
    }

    /// Runs a statement without results (a setting, transaction control, DDL); on the wire
    /// path, several separated by `;`.
    pub async fn simple(&mut self, sql: &str) -> Result<(), SourceError> {
        match &mut self.link {
            Link::Wire(connection) => connection
                .simple_query(sql)
                .await
                .map_err(SourceError::from_wire),
            Link::DataApi(data_api) => data_api.run(sql, &[]).await.map(drop),
        }
    }

    /// A query with text parameters, every value as text: for the catalog.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, SourceError> {
        match &mut self.link {
            Link::Wire(connection) => connection
                .query(sql, params)
                .await
                .map_err(SourceError::from_wire),
            Link::DataApi(data_api) => {
                let params: Vec<String> = params.iter().map(ToString::to_string).collect();
                data_api.query_text(sql, &params).await
            }
        }
    }

    /// The first value of the first row of a query without parameters (`None`: no row, or
    /// NULL): for the clock, counts and maxima.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, SourceError> {
        let rows = self.query(sql, &[]).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    /// The statement for `sql`, prepared on first use (parameters typed as `param_types`).
    /// The wire path only: the Data API has no prepared statements.
    pub(super) async fn prepare(
        &mut self,
        sql: &str,
        param_types: &[u32],
    ) -> Result<Prepared, SourceError> {
        let Link::Wire(connection) = &mut self.link else {
            return Err(SourceError::Internal {
                during: "preparing a statement",
                detail: "the Data API has no prepared statements".to_string(),
            });
        };
        if let Some(prepared) = self.prepared.get(sql) {
            return Ok(prepared.clone());
        }
        if self.prepared.len() >= MAX_PREPARED {
            // A session lives through many tables: release their statements, in one round
            // trip, rather than keep one per query text on the server for good.
            let names: Vec<String> = self.prepared.drain().map(|(_, p)| p.name).collect();
            connection
                .close_statements(&names)
                .await
                .map_err(SourceError::from_wire)?;
        }
        self.statements += 1;
        let name = format!("s{}", self.statements);
        let columns = connection
            .prepare(&name, sql, param_types)
            .await
            .map_err(SourceError::from_wire)?;
        let prepared = Prepared { name, columns };
        self.prepared.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }

    /// A handle that can stop this session's running statement from elsewhere.
    pub fn canceller(&self) -> Canceller {
        match &self.link {
            Link::Wire(connection) => Canceller::Wire(connection.cancel_token()),
            Link::DataApi(data_api) => Canceller::DataApi(data_api.canceller()),
        }
    }
}

/// Cancels a session's running statement from elsewhere: over a separate connection, as the
/// PostgreSQL protocol requires, or by `CancelStatement`.
#[derive(Clone)]
pub enum Canceller {
    Wire(Option<CancelToken>),
    DataApi(DataApiCanceller),
}

impl Canceller {
    /// Best effort: the session is being abandoned anyway.
    pub async fn cancel(&self) {
        match self {
            Self::Wire(Some(token)) => {
                if let Err(err) = token.cancel().await {
                    tracing::debug!(error = %err, "cancel request failed");
                }
            }
            Self::Wire(None) => {}
            Self::DataApi(data_api) => data_api.cancel().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redshift_is_told_by_its_server_version() {
        assert_eq!(Flavour::from_server_version("8.0.2"), Flavour::Redshift);
        assert_eq!(
            Flavour::from_server_version("15.18 (Debian)"),
            Flavour::PostgreSql
        );
        assert_eq!(Flavour::from_server_version(""), Flavour::PostgreSql);
    }
}
