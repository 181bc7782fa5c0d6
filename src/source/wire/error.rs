//! What can go wrong on the wire, before the source layer decides what it means for the user.

use std::fmt;
use std::io;

/// An `ErrorResponse` from the server, with the fields the source layer classifies by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    /// SQLSTATE, e.g. `42501`; Redshift also uses `XX000` for its own numbered errors.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// FATAL or PANIC: the server ends the session after this error (no ReadyForQuery
    /// follows): an administrator's termination, a restart, an idle timeout.
    pub fatal: bool,
}

impl DbError {
    /// Reads the fields of an `ErrorResponse` (or `NoticeResponse`) body.
    pub fn from_fields(body: &[u8]) -> DbError {
        let mut error = DbError {
            code: String::new(),
            message: String::new(),
            detail: None,
            hint: None,
            fatal: false,
        };
        // Fields: one type byte, a NUL-terminated string; a zero type byte ends the list.
        let mut rest = body;
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            let value = String::from_utf8_lossy(&tail[..end]).into_owned();
            match kind {
                b'C' => error.code = value,
                b'M' => error.message = value,
                b'D' => error.detail = Some(value),
                b'H' => error.hint = Some(value),
                // `V` is never localized; `S` may be, and old servers send only it.
                b'V' | b'S' => error.fatal |= value == "FATAL" || value == "PANIC",
                _ => {}
            }
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        error
    }

    /// The message and, if any, the detail: Redshift puts the meaning of its numbered errors
    /// in the detail (`1023` / `Serializable isolation violation on table ...`).
    pub fn full_message(&self) -> String {
        match &self.detail {
            Some(detail) if !detail.is_empty() => format!("{} ({detail})", self.message),
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.full_message())
    }
}

/// Why a connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The TCP connection to the server (or, for a cancel request, its address).
    #[error(transparent)]
    Connect(#[from] super::net::ConnectError),
    /// The whole of connecting (TCP, TLS, sign-in) took longer than allowed.
    #[error("connecting timed out")]
    ConnectTimeout,
    #[error("the server does not accept TLS connections")]
    TlsNotOffered,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error(
        "the server asks for authentication method {method}, which this connector cannot perform"
    )]
    UnsupportedAuthentication { method: String },
    /// The server asked for the password in cleartext over a connection whose certificate
    /// was not verified.
    #[error("the server asks for the password in cleartext, over a connection whose certificate was not verified")]
    CleartextRefused,
    #[error("{0}")]
    Db(DbError),
    /// The SSH tunnel could not be opened (see [`super::ssh::SshError`] for which hop).
    #[error(transparent)]
    Ssh(super::ssh::SshError),
    /// The connection broke (reset, closed, keepalive timeout) while in use.
    #[error("connection lost: {0}")]
    Io(#[source] io::Error),
    /// The server answered with something the protocol does not allow here.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl WireError {
    pub fn db(&self) -> Option<&DbError> {
        match self {
            WireError::Db(db) => Some(db),
            _ => None,
        }
    }
}

impl From<io::Error> for WireError {
    fn from(err: io::Error) -> Self {
        WireError::Io(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_are_read_in_any_order() {
        let body = b"SERROR\0VERROR\0CXX000\0M1023\0DSerializable isolation violation on table - 100167\0\0";
        let error = DbError::from_fields(body);
        assert_eq!(error.code, "XX000");
        assert_eq!(error.message, "1023");
        assert_eq!(
            error.full_message(),
            "1023 (Serializable isolation violation on table - 100167)"
        );
        assert_eq!(error.hint, None);
        assert!(!error.fatal);
        let fatal = DbError::from_fields(
            b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0",
        );
        assert!(fatal.fatal);
        assert_eq!(fatal.code, "57P01");
    }

    #[test]
    fn a_truncated_body_does_not_panic() {
        let error = DbError::from_fields(b"C42501\0Mpermission denied");
        assert_eq!(error.code, "42501");
        assert_eq!(error.message, "permission denied");
    }
}
