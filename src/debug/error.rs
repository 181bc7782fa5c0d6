//! The debug runner's one error type. Each message says what happened in the user's terms and,
//! where there is one, what to do; the underlying cause is kept as `source` and printed below it.

use std::path::PathBuf;

use super::configuration::ConfigurationFileError;
use super::state_file::StateFileError;
use super::warehouse::WarehouseError;

#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error(transparent)]
    Configuration(#[from] ConfigurationFileError),
    #[error(transparent)]
    StateFile(#[from] StateFileError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("cannot start the connector server in this process")]
    ServerStart(#[source] std::io::Error),
    #[error("cannot start the thread that writes the warehouse")]
    WriterStart(#[source] std::io::Error),
    /// The writer thread ended early: it panicked, which is a bug.
    #[error("the thread that writes the warehouse stopped unexpectedly")]
    WriterGone,
    #[error("`{address}` is not a server address; give HOST:PORT, e.g. localhost:50051")]
    BadServerAddress { address: String },
    #[error("cannot connect to the connector server at {address}; is it running?")]
    Connect {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A call answered with a gRPC error status: its code and message, as the server gave them.
    #[error("{call} failed with {code}: {message}")]
    Rpc {
        call: &'static str,
        code: &'static str,
        message: String,
    },
    #[error("the configuration test `{name}` ({label}) failed: {reason}")]
    TestFailed {
        name: String,
        label: String,
        reason: String,
    },
    #[error(
        "--tables names {} that Schema did not list; the tables are: {}",
        missing.join(", "),
        available.join(", ")
    )]
    UnknownTables {
        missing: Vec<String>,
        available: Vec<String>,
    },
    /// The connector answered something a host could not use.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connector sent a Task: the user must fix something before the sync can go on.
    #[error("the connector ended the sync with a task for you: {message}")]
    Task { message: String },
    /// The test hook [`super::runner::StopPoint`] stopped the run, as a kill would.
    #[error("stopped on purpose after {checkpoints} checkpoint(s) and {records} record(s)")]
    Stopped { checkpoints: u64, records: u64 },
    #[error("cannot clear {} for --reset", path.display())]
    Reset {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DebugError {
    /// Wraps the gRPC status a call answered with.
    pub fn rpc(call: &'static str) -> impl FnOnce(tonic::Status) -> Self {
        move |status| Self::Rpc {
            call,
            code: code_name(status.code()),
            message: status.message().to_string(),
        }
    }
}

/// The canonical gRPC code names, as grpcurl and the hosts print them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_shown_plainly() {
        let status = tonic::Status::invalid_argument("configuration key `host`: is required");
        let err = DebugError::rpc("Schema")(status);
        assert_eq!(
            err.to_string(),
            "Schema failed with INVALID_ARGUMENT: configuration key `host`: is required"
        );
    }
}
