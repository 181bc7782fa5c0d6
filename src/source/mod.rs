//! The source layer: Amazon Redshift over the PostgreSQL wire protocol.
//!
//! - [`wire`]: our PostgreSQL v3 frontend (TLS, authentication, portals, rows as wire bytes);
//! - [`session`]: a connected session, which server it is, and the settings it needs;
//! - [`catalog`]: tables, columns and primary keys the user can read;
//! - [`types`]: Redshift types, their connector DataType, and how each is selected and compared;
//! - [`value`]: a row's values read straight from the wire bytes, and positions as text;
//! - [`sql`]: identifiers and literals in SQL text, each written by one function;
//! - [`scan`]: the keyset queries that read a table in (cursor, key) order;
//! - [`unload`]: exports through `UNLOAD` to S3, read back as Parquet;
//! - [`aws`]: the AWS SDK's configuration, shared by IAM sign-in and the S3 reads.
//!
//! Every failure is a [`SourceError`], classified here once: what the user must fix (and how),
//! and whether retrying could help. The classification follows Redshift's real error texts,
//! which differ from PostgreSQL's (serialization conflicts are `XX000`/`1023`, cancellations say
//! "cancelled on user's request" or name the WLM rule).

pub mod aws;
pub mod catalog;
pub mod data_api;
pub mod iam;
pub mod scan;
pub mod secret;
pub mod session;
pub mod sql;
pub mod types;
pub mod unload;
pub mod value;
pub mod wire;
pub mod work;

use std::time::Duration;

pub use catalog::{Catalog, ColumnInfo, TableInfo};
pub use iam::IamError;
pub use session::{connect, Flavour, Session};
pub use unload::UnloadError;
pub use wire::ssh::SshError;
use wire::{DbError, WireError};

use crate::config::{Authentication, ConnectionConfig};

/// Where a password the server refused came from, for what the message says to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordFrom {
    /// `password` in the configuration.
    Configuration,
    /// A temporary password from AWS (`auth` = iam).
    Iam,
    /// A Secrets Manager secret (`auth` = secret).
    Secret,
}

/// Everything that can go wrong talking to the warehouse. Messages say what to fix; none ever
/// contains the password (the server never echoes it, and we never format the config into one).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("host name `{host}` does not resolve; check `host` (the cluster or workgroup endpoint, e.g. examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com)")]
    UnknownHost { host: String },
    #[error("cannot reach {host}:{port} ({reason}); check `host` and `port`, that the cluster is running and publicly accessible or reachable from this network, and that its security group allows inbound TCP on the port")]
    Unreachable {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("connecting to {host}:{port} timed out after {}s; check `host`, `port` and the cluster's security group, or raise `connect_timeout_s`", .timeout.as_secs())]
    ConnectTimeout {
        host: String,
        port: u16,
        timeout: Duration,
    },
    #[error("{host} does not accept TLS connections, but sslmode={sslmode} requires TLS; enable SSL on the server, or set sslmode=prefer (or disable) if an unencrypted connection is acceptable")]
    TlsNotOffered { host: String, sslmode: &'static str },
    #[error("TLS with {host} failed ({reason}); with sslmode=verify-ca/verify-full the server certificate must chain to `sslrootcert` (or the system roots) and, for verify-full, name the host; use sslmode=require to encrypt without verifying")]
    Tls { host: String, reason: String },
    #[error("password authentication failed for user `{user}`; {}", match .from {
        PasswordFrom::Configuration => "check `user` and `password`",
        PasswordFrom::Iam => "the password was a new temporary one from AWS: check that the cluster allows IAM sign-in for this user and `database`",
        PasswordFrom::Secret => "the password was read again from the secret (`secret_arn`) and still refused: check the secret's `username` and `password` (a rotation that did not finish leaves them out of step with the database)",
    })]
    AuthenticationFailed { user: String, from: PasswordFrom },
    #[error("{host} asks for the password of user `{user}` in cleartext, and the connection's certificate is not verified (sslmode={sslmode}), so anyone on the path could have asked; set sslmode=verify-full (with `sslrootcert` for a private CA), or give the user an MD5 password")]
    CleartextRefused {
        host: String,
        user: String,
        sslmode: &'static str,
    },
    #[error("user `{user}` must log in with an authentication method this connector cannot perform ({detail}); use a user with a password (MD5, SHA-256 or SCRAM), or IAM sign-in (`auth` = iam), which needs no password and no identity-provider plugin")]
    UnsupportedAuthentication { user: String, detail: String },
    #[error("database `{database}` does not exist; check `database` (Redshift's default database is `dev`)")]
    UnknownDatabase { database: String },
    #[error(
        "permission denied: {message}; grant the user USAGE on the schema and SELECT on the table"
    )]
    PermissionDenied { message: String },
    /// `delete_capture = keys` needs a work schema the user may create tables in.
    #[error("{message}")]
    WorkSchema { message: String },
    #[error("a query was cancelled ({message}): by the statement timeout (raise `query_timeout_s`, 0 = no limit), the WLM queue's timeout, or an administrator")]
    QueryCancelled { message: String },
    #[error("the cluster's workload manager aborted a query ({message}); lower `max_rows_per_query` so that each query reads fewer rows, or ask an administrator to exempt this user from the query monitoring rule")]
    WorkloadManagerAbort { message: String },
    /// Redshift's single-node clusters refuse to fetch more than 1000 rows at a time.
    #[error("the cluster refused the fetch size ({message})")]
    FetchSizeRefused { message: String },
    /// The portal was gone when its next batch was fetched: Redshift runs queries that read
    /// only catalog tables on the leader node, where a named portal lasts one batch.
    #[error("the query's portal was lost after its first batch ({message})")]
    PortalLost { message: String },
    #[error("column `{column}` of {table} has a value this connector cannot read: {reason}")]
    Decode {
        table: String,
        column: String,
        reason: String,
    },
    #[error("the connection to the database was lost ({reason})")]
    ConnectionLost { reason: String },
    /// The server sent what the PostgreSQL protocol does not allow; the session was ended at
    /// once. Not retried: a server that does this once does it again.
    #[error("the server broke the PostgreSQL protocol ({reason}), so the session was ended; check that `host` and `port` name the cluster's endpoint (Redshift listens on 5439) and not another service")]
    ProtocolViolation { reason: String },
    /// A column a query names is gone (dropped since the catalog was read), or the columns
    /// changed under a prepared statement: the table's columns must be read again.
    #[error("the table's columns changed while it was synced ({message})")]
    ColumnsChanged { message: String },
    /// The database answered a query in a form the connector does not expect: a count that is
    /// not a number, a clock that is not a time, a catalog row cut short. Not retried.
    #[error("the database's answer to {query} was not what the connector expects: {detail}")]
    UnexpectedAnswer { query: &'static str, detail: String },
    /// The connector's own invariant broke, or one of its worker tasks stopped: a bug, never
    /// the database's or the user's doing. Not retried.
    #[error("internal error while {during}: {detail}; this is a bug in the connector, please report it with the log")]
    Internal {
        during: &'static str,
        detail: String,
    },
    #[error("the database answered with error {code}: {message}")]
    Database {
        code: String,
        message: String,
        transient: bool,
    },
    /// Boxed: the AWS error's texts would otherwise make every `Result` of this layer large.
    #[error("IAM sign-in: {0}")]
    Iam(Box<IamError>),
    /// A call of the Redshift Data API failed (boxed as [`Iam`](Self::Iam), whose
    /// classification of AWS's answers it shares).
    #[error("Redshift Data API: {0}")]
    DataApi(Box<IamError>),
    /// A statement sent through the Data API failed; its text is Redshift's, without a SQLSTATE.
    #[error("a statement failed on the cluster: {message}")]
    StatementFailed { message: String, transient: bool },
    /// A row over the Data API's limit per row: the table cannot be read through it.
    #[error("a row is larger than the Data API's limit of 64 KB per row ({message}); read this table with `transport` = direct, or deselect its widest columns")]
    DataApiRowTooLarge { message: String },
    /// A result over the Data API's cap per statement.
    #[error("a query's result exceeded the Data API's limit per statement ({message}); set `max_rows_per_query` to fewer rows, or export the table through UNLOAD (`unload_s3_uri`)")]
    DataApiResultTooLarge { message: String },
    /// Boxed as [`Iam`](Self::Iam).
    #[error("UNLOAD export: {0}")]
    Unload(Box<UnloadError>),
    /// The SSH tunnel, by hop (the bastion, or its way on to the cluster).
    #[error(transparent)]
    /// Boxed as [`Iam`](Self::Iam).
    Tunnel(Box<SshError>),
}

impl From<UnloadError> for SourceError {
    fn from(err: UnloadError) -> Self {
        Self::Unload(Box::new(err))
    }
}

impl From<IamError> for SourceError {
    fn from(err: IamError) -> Self {
        Self::Iam(Box::new(err))
    }
}

impl SourceError {
    /// Whether the same work may succeed if tried again (on a new connection).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::ConnectTimeout { .. }
            | Self::ConnectionLost { .. } => true,
            Self::Database { transient, .. } => *transient,
            Self::Iam(iam) | Self::DataApi(iam) => iam.is_transient(),
            Self::StatementFailed { transient, .. } => *transient,
            Self::Unload(unload) => unload.is_transient(),
            Self::Tunnel(ssh) => ssh.is_transient(),
            _ => false,
        }
    }

    /// Whether the user must change something (credentials, grants, TLS settings, the host)
    /// before any retry can succeed. In Update these end the sync with a `Task` for the user.
    pub fn needs_user_action(&self) -> bool {
        if let Self::Iam(iam) | Self::DataApi(iam) = self {
            return iam.needs_user_action();
        }
        if let Self::Unload(unload) = self {
            return unload.needs_user_action();
        }
        if let Self::Tunnel(ssh) = self {
            return !ssh.is_transient();
        }
        matches!(
            self,
            Self::UnknownHost { .. }
                | Self::Tls { .. }
                | Self::TlsNotOffered { .. }
                | Self::AuthenticationFailed { .. }
                | Self::UnsupportedAuthentication { .. }
                | Self::CleartextRefused { .. }
                | Self::UnknownDatabase { .. }
                | Self::PermissionDenied { .. }
                | Self::WorkSchema { .. }
        )
    }

    /// Classifies a failure on an established session.
    pub fn from_wire(err: WireError) -> Self {
        match err {
            WireError::Db(db) => Self::from_db(&db),
            WireError::Io(_) => Self::ConnectionLost {
                reason: err.to_string(),
            },
            WireError::Protocol(reason) => Self::ProtocolViolation { reason },
            // Sign-in's errors, which an established session cannot meet.
            other => Self::Internal {
                during: "a query",
                detail: other.to_string(),
            },
        }
    }

    /// Classifies a failed connection attempt: what the user must fix, or a transient failure.
    pub fn from_connect(config: &ConnectionConfig, sign_in: &iam::SignIn, err: WireError) -> Self {
        let host = sign_in.host.clone();
        let port = sign_in.port;
        match err {
            WireError::Connect(connect) if connect.is_unknown_host() => Self::UnknownHost { host },
            WireError::Connect(_) | WireError::Io(_) => Self::Unreachable {
                host,
                port,
                reason: error_chain(&err),
            },
            WireError::ConnectTimeout => Self::ConnectTimeout {
                host,
                port,
                timeout: config.connect_timeout,
            },
            WireError::TlsNotOffered => Self::TlsNotOffered {
                host,
                sslmode: config.sslmode.as_str(),
            },
            WireError::Tls(reason) => Self::Tls { host, reason },
            WireError::CleartextRefused => Self::CleartextRefused {
                host,
                user: sign_in.user.clone(),
                sslmode: config.sslmode.as_str(),
            },
            WireError::UnsupportedAuthentication { method } => Self::UnsupportedAuthentication {
                user: sign_in.user.clone(),
                detail: method,
            },
            WireError::Db(db) => match db.code.as_str() {
                // invalid_password, invalid_authorization_specification (no such user, pg_hba reject)
                "28P01" | "28000" => Self::AuthenticationFailed {
                    user: sign_in.user.clone(),
                    from: match config.authentication {
                        Authentication::Password { .. } => PasswordFrom::Configuration,
                        Authentication::Iam(_) => PasswordFrom::Iam,
                        Authentication::Secret(_) => PasswordFrom::Secret,
                    },
                },
                "3D000" => Self::UnknownDatabase {
                    database: sign_in.database.clone(),
                },
                _ => Self::from_db(&db),
            },
            WireError::Protocol(reason) => Self::ProtocolViolation { reason },
            WireError::Ssh(ssh) => Self::Tunnel(Box::new(ssh)),
        }
    }

    fn from_db(db: &DbError) -> Self {
        let message = db.full_message();
        match db.code.as_str() {
            "42501" => Self::PermissionDenied { message },
            "34000" => Self::PortalLost { message },
            // undefined_column; PostgreSQL's plan cache refusing a changed row type.
            "42703" => Self::ColumnsChanged { message },
            "0A000" if message.contains("cached plan must not change result type") => {
                Self::ColumnsChanged { message }
            }
            "57014" if is_workload_manager(&message) => Self::WorkloadManagerAbort { message },
            "57014" => Self::QueryCancelled { message },
            _ if message.contains("for a single node configuration") => {
                Self::FetchSizeRefused { message }
            }
            code => Self::Database {
                code: code.to_string(),
                // A FATAL error ended the session (a restart, a resize, a termination, a
                // timeout): a new session may well succeed, unless it was about who we are.
                transient: is_transient(code, &message)
                    || (db.fatal && !code.starts_with("28") && code != "3D000"),
                message,
            },
        }
    }
}

/// Redshift names the rule when WLM aborts a query: "Query (123) cancelled by WLM abort action
/// of Query Monitoring Rule "...".
fn is_workload_manager(message: &str) -> bool {
    message.contains("WLM") || message.contains("Query Monitoring Rule")
}

/// Errors worth a retry on a new connection: connection failures (08), insufficient resources
/// (53), serialization conflicts and deadlocks (40001, 40P01), lock timeouts (55P03), operator
/// intervention such as a cluster restart (57P01-57P03); and Redshift's own texts for the same
/// things under `XX000`: its serializable isolation violation (`1023`) and a full disk, which
/// concurrent queries free again.
fn is_transient(code: &str, message: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
        )
        || (code == "XX000"
            && (message.starts_with("1023")
                || message.contains("Serializable isolation violation")
                || message.contains("Disk Full")))
}

/// The error and its causes on one line: libraries keep the useful part in their sources.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(code: &str, message: &str, detail: Option<&str>) -> SourceError {
        SourceError::from_wire(WireError::Db(DbError {
            code: code.to_string(),
            message: message.to_string(),
            detail: detail.map(str::to_string),
            hint: None,
            fatal: false,
        }))
    }

    fn fatal(code: &str, message: &str) -> SourceError {
        SourceError::from_wire(WireError::Db(DbError {
            code: code.to_string(),
            message: message.to_string(),
            detail: None,
            hint: None,
            fatal: true,
        }))
    }

    #[test]
    fn fatal_errors_keep_their_text_and_retry_unless_they_are_about_the_user() {
        let idle = fatal(
            "25P03",
            "terminating connection due to idle-in-transaction timeout",
        );
        assert!(idle.is_transient(), "{idle}");
        assert!(idle.to_string().contains("idle-in-transaction timeout"));
        assert!(fatal(
            "57P01",
            "terminating connection due to administrator command"
        )
        .is_transient());
        assert!(!fatal("28000", "no pg_hba.conf entry").is_transient());
        // Not FATAL: the session goes on, and the statement's error is definite.
        assert!(!db("25P03", "x", None).is_transient());
    }

    #[test]
    fn postgresql_sqlstates_are_classified() {
        assert!(db("08006", "connection failure", None).is_transient());
        assert!(db(
            "57P01",
            "terminating connection due to administrator command",
            None
        )
        .is_transient());
        assert!(db("53300", "too many connections", None).is_transient());
        assert!(db("40001", "could not serialize access", None).is_transient());
        assert!(!db("42P01", "relation \"t\" does not exist", None).is_transient());
        assert!(matches!(
            db("42501", "permission denied for table t", None),
            SourceError::PermissionDenied { .. }
        ));
        assert!(matches!(
            db(
                "57014",
                "canceling statement due to statement timeout",
                None
            ),
            SourceError::QueryCancelled { .. }
        ));
    }

    #[test]
    fn redshift_error_texts_are_classified() {
        // As Redshift reports them (aws-sdk-pandas#665, amazon-redshift-utils#174).
        let serializable = db(
            "XX000",
            "1023",
            Some("Serializable isolation violation on table - 119371, transactions forming the cycle are: 1745830, 1745762 (pid:15021)"),
        );
        assert!(serializable.is_transient(), "{serializable:?}");
        assert!(db("XX000", "Disk Full", None).is_transient());
        assert!(!db("XX000", "Invalid digit, Value 'x', Pos 0", None).is_transient());

        let cancelled = db("57014", "Query (4777555) cancelled on user's request", None);
        assert!(matches!(cancelled, SourceError::QueryCancelled { .. }));
        assert!(!cancelled.is_transient());
        let wlm = db(
            "57014",
            "Query (1234) cancelled by WLM abort action of Query Monitoring Rule \"too_many_rows\".",
            None,
        );
        assert!(matches!(wlm, SourceError::WorkloadManagerAbort { .. }));
        assert!(wlm.to_string().contains("max_rows_per_query"));

        assert!(matches!(
            db("XX000", "Fetch size 5000 exceeds the limit of 1000 for a single node configuration. Reduce the client fetch/cache size or upgrade to a multi node installation.", None),
            SourceError::FetchSizeRefused { .. }
        ));
        assert!(matches!(
            db("34000", "portal \"p\" does not exist", None),
            SourceError::PortalLost { .. }
        ));
    }
}
