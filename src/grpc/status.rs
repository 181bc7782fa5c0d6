//! The one mapping from internal errors to gRPC status codes.
//!
//! Every handler returns [`RpcError`]; this file alone decides the code a host sees. Messages are
//! the layers' own, which say what to fix and never carry the password.

use tonic::{Code, Status};

use crate::config::ConfigError;
use crate::source::{IamError, SourceError, SshError, UnloadError};
use crate::state::StateError;
use crate::sync::SyncError;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("unknown test `{0}`; the tests are those ConfigurationForm lists: connect, select")]
    UnknownTest(String),
}

fn source_code(err: &SourceError) -> Code {
    match err {
        SourceError::Unreachable { .. }
        | SourceError::ConnectTimeout { .. }
        | SourceError::ConnectionLost { .. } => Code::Unavailable,
        SourceError::UnknownHost { .. } => Code::InvalidArgument,
        SourceError::Tls { .. }
        | SourceError::TlsNotOffered { .. }
        | SourceError::UnsupportedAuthentication { .. }
        | SourceError::CleartextRefused { .. }
        | SourceError::ProtocolViolation { .. } => Code::FailedPrecondition,
        SourceError::AuthenticationFailed { .. } => Code::Unauthenticated,
        SourceError::UnknownDatabase { .. } => Code::InvalidArgument,
        SourceError::PermissionDenied { .. } | SourceError::WorkSchema { .. } => {
            Code::PermissionDenied
        }
        SourceError::QueryCancelled { .. } | SourceError::WorkloadManagerAbort { .. } => {
            Code::DeadlineExceeded
        }
        SourceError::Database {
            transient: true, ..
        }
        | SourceError::StatementFailed {
            transient: true, ..
        } => Code::Unavailable,
        SourceError::DataApiRowTooLarge { .. } | SourceError::DataApiResultTooLarge { .. } => {
            Code::FailedPrecondition
        }
        SourceError::Iam(iam) | SourceError::DataApi(iam) => match iam.as_ref() {
            IamError::AccessDenied { .. } => Code::PermissionDenied,
            IamError::NotFound { .. }
            | IamError::SecretNotFound { .. }
            | IamError::BadSecret { .. }
            | IamError::SecretLacks { .. } => Code::InvalidArgument,
            IamError::NoCredentials { .. } | IamError::BadCredentials { .. } => {
                Code::Unauthenticated
            }
            IamError::Request {
                transient: true, ..
            } => Code::Unavailable,
            IamError::Request { .. } => Code::Internal,
        },
        SourceError::Unload(unload) => match unload.as_ref() {
            UnloadError::RoleCannotWrite { .. }
            | UnloadError::RoleNotUsable { .. }
            | UnloadError::ConnectorDenied { .. }
            | UnloadError::DeleteRefused { .. } => Code::PermissionDenied,
            UnloadError::DeleteUnfinished { .. } => Code::Unavailable,
            UnloadError::NoCredentials { .. } | UnloadError::BadCredentials { .. } => {
                Code::Unauthenticated
            }
            UnloadError::BucketInOtherRegion { .. }
            | UnloadError::NoSuchBucket { .. }
            | UnloadError::FileMissing { .. } => Code::FailedPrecondition,
            UnloadError::Request {
                transient: true, ..
            } => Code::Unavailable,
            UnloadError::CountMismatch { .. }
            | UnloadError::Unreadable { .. }
            | UnloadError::Request { .. } => Code::Internal,
        },
        SourceError::Tunnel(ssh) => match ssh.as_ref() {
            SshError::Rejected { .. } => Code::Unauthenticated,
            SshError::UnknownBastion { .. } => Code::InvalidArgument,
            SshError::HostKeyMismatch { .. }
            | SshError::ForwardingRefused { .. }
            | SshError::Incompatible { .. } => Code::FailedPrecondition,
            SshError::Unreachable { .. }
            | SshError::TargetUnreachable { .. }
            | SshError::Session { .. } => Code::Unavailable,
        },
        // The table changed under a query: a concurrency conflict, worth another sync.
        SourceError::ColumnsChanged { .. } => Code::Aborted,
        SourceError::FetchSizeRefused { .. }
        | SourceError::PortalLost { .. }
        | SourceError::Decode { .. }
        | SourceError::UnexpectedAnswer { .. }
        | SourceError::Internal { .. }
        | SourceError::Database { .. }
        | SourceError::StatementFailed { .. } => Code::Internal,
    }
}

/// The most of a message a status carries: it travels in an HTTP/2 header (`grpc-message`),
/// which peers refuse beyond a few kilobytes, and a message may quote input (a state's value).
const MAX_STATUS_MESSAGE_BYTES: usize = 2048;

/// `message`, cut at a character boundary to at most [`MAX_STATUS_MESSAGE_BYTES`].
fn bounded(mut message: String) -> String {
    if message.len() > MAX_STATUS_MESSAGE_BYTES {
        let mut end = MAX_STATUS_MESSAGE_BYTES - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

impl From<RpcError> for Status {
    fn from(err: RpcError) -> Self {
        let code = match &err {
            RpcError::Config(_) | RpcError::State(_) | RpcError::UnknownTest(_) => {
                Code::InvalidArgument
            }
            RpcError::Source(source) => source_code(source),
            RpcError::Sync(SyncError::HostGone) => Code::Cancelled,
            RpcError::Sync(SyncError::ShuttingDown) => Code::Unavailable,
            RpcError::Sync(SyncError::StateMismatch { .. }) => Code::InvalidArgument,
            RpcError::Sync(SyncError::Internal(_)) => Code::Internal,
            RpcError::Sync(sync) => sync.source_error().map_or(Code::Internal, source_code),
        };
        Status::new(code, bounded(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TableName;

    #[test]
    fn messages_are_bounded_at_a_character_boundary() {
        let long = ConfigError::new("host", "é".repeat(5000));
        let status = Status::from(RpcError::from(long));
        assert!(status.message().len() <= MAX_STATUS_MESSAGE_BYTES);
        assert!(status.message().ends_with('…'));
    }

    #[test]
    fn codes_follow_what_the_user_must_do() {
        let auth = SourceError::AuthenticationFailed {
            user: "u".into(),
            from: crate::source::PasswordFrom::Configuration,
        };
        assert_eq!(
            Status::from(RpcError::from(auth)).code(),
            Code::Unauthenticated
        );
        let lost = SyncError::Table {
            table: TableName::new("s", "t"),
            source: SourceError::ConnectionLost {
                reason: "reset".into(),
            },
        };
        let status = Status::from(RpcError::from(lost));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("s.t"), "{}", status.message());
        assert_eq!(
            Status::from(RpcError::from(SyncError::HostGone)).code(),
            Code::Cancelled
        );
    }
}
