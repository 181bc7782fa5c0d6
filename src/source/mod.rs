//! The source layer: Amazon Redshift over the PostgreSQL wire protocol.
//!
//! - [`connect`]: sessions with libpq-style TLS modes and Redshift-safe session settings;
//! - [`catalog`]: tables, columns and primary keys the user can read;
//! - [`types`]: Redshift types, their connector DataType, how each is projected in SQL and decoded;
//! - [`scan`]: the keyset query that streams a table in (cursor, key) order.
//!
//! Every failure is a [`SourceError`], classified here once: what the user must fix (and how),
//! and whether retrying could help.

pub mod catalog;
pub mod connect;
pub mod scan;
pub mod types;

use std::error::Error as _;
use std::time::Duration;

use tokio_postgres::error::SqlState;

pub use catalog::{Catalog, ColumnInfo, TableInfo};
pub use connect::{connect, Session};

/// Everything that can go wrong talking to the warehouse. Messages say what to fix; none ever
/// contains the password (the driver never echoes it, and we never format the config into one).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
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
    #[error("password authentication failed for user `{user}`; check `user` and `password` (temporary IAM credentials expire after 15-60 minutes)")]
    AuthenticationFailed { user: String },
    #[error("user `{user}` must log in with an authentication method this connector cannot perform (Redshift's SHA-256 password digest or an identity-provider login: {detail}); use a user created with a plain or MD5 password, or temporary IAM credentials (GetClusterCredentials / GetCredentials) with the returned user name, e.g. IAM:alice")]
    UnsupportedAuthentication { user: String, detail: String },
    #[error("database `{database}` does not exist; check `database` (Redshift's default database is `dev`)")]
    UnknownDatabase { database: String },
    #[error(
        "permission denied: {message}; grant the user USAGE on the schema and SELECT on the table"
    )]
    PermissionDenied { message: String },
    #[error("a query was cancelled by the statement timeout; raise `query_timeout_s` (0 = no limit) or check the cluster's WLM queues")]
    QueryTimeout,
    #[error("column `{column}` of {table} has a value this connector cannot read: {reason}")]
    Decode {
        table: String,
        column: String,
        reason: String,
    },
    #[error("the connection to the database was lost ({reason})")]
    ConnectionLost { reason: String },
    #[error("the database answered with error {code}: {message}")]
    Database {
        code: String,
        message: String,
        transient: bool,
    },
}

impl SourceError {
    /// Whether the same work may succeed if tried again (on a new connection).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::ConnectTimeout { .. }
            | Self::ConnectionLost { .. } => true,
            Self::Database { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Whether the user must change something (credentials, grants, TLS settings) before any
    /// retry can succeed. In Update these end the sync with a `Task` for the user.
    pub fn needs_user_action(&self) -> bool {
        matches!(
            self,
            Self::Tls { .. }
                | Self::TlsNotOffered { .. }
                | Self::AuthenticationFailed { .. }
                | Self::UnsupportedAuthentication { .. }
                | Self::UnknownDatabase { .. }
                | Self::PermissionDenied { .. }
        )
    }

    /// Classifies an error of a query on an established session.
    pub fn from_query(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            return Self::from_db_error(db.code(), db.message());
        }
        if err.is_closed() || err.source().is_some_and(|s| s.is::<std::io::Error>()) {
            return Self::ConnectionLost {
                reason: error_chain(&err),
            };
        }
        Self::Database {
            code: "client".to_string(),
            message: error_chain(&err),
            transient: false,
        }
    }

    fn from_db_error(code: &SqlState, message: &str) -> Self {
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return Self::PermissionDenied {
                message: message.to_string(),
            };
        }
        if *code == SqlState::QUERY_CANCELED && message.contains("statement timeout") {
            return Self::QueryTimeout;
        }
        Self::Database {
            code: code.code().to_string(),
            message: message.to_string(),
            transient: is_transient_sqlstate(code.code()),
        }
    }
}

/// SQLSTATEs worth a retry on a new connection: connection failures (08), serialization
/// conflicts (40001, 40P01), operator intervention such as a cluster restart (57P01-57P03)
/// and insufficient resources (53). Everything else is definite.
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
}

/// The error and its causes on one line: driver errors keep the useful part in their sources.
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

    #[test]
    fn sqlstates_are_classified() {
        assert!(is_transient_sqlstate("08006"));
        assert!(is_transient_sqlstate("57P01"));
        assert!(is_transient_sqlstate("53300"));
        assert!(!is_transient_sqlstate("42P01"));
        assert!(matches!(
            SourceError::from_db_error(
                &SqlState::INSUFFICIENT_PRIVILEGE,
                "permission denied for table t"
            ),
            SourceError::PermissionDenied { .. }
        ));
        assert!(matches!(
            SourceError::from_db_error(
                &SqlState::QUERY_CANCELED,
                "canceling statement due to statement timeout"
            ),
            SourceError::QueryTimeout
        ));
    }
}
