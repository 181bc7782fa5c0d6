//! Exports through `UNLOAD`: Redshift's compute nodes write a table's rows to S3 as Parquet,
//! every slice in parallel, and the connector reads the files back, several at once. The way
//! spark-redshift (`tempdir`), AWS Glue (`redshiftTmpDir`) and dbt (`unload_table`) move large
//! tables, used here for a table's initial sync and its re-syncs (`sync::table::export` decides
//! when).
//!
//! ```text
//!  UNLOAD (SELECT … WHERE cursor IS NULL OR cursor <= bound)      compute nodes ──► S3
//!     TO s3://bucket/prefix/<export id>/<table>/                 0000_part_00.parquet …
//!     MANIFEST VERBOSE                                           manifest (rows per file)
//!  connector: manifest ─► files, a few at once ─► rows ─► Records (same encoder as the scan)
//! ```
//!
//! - [`statement`]: the UNLOAD's SQL, and which tables it can carry;
//! - [`manifest`]: the files and their row counts;
//! - [`s3`]: reading and deleting them with the connector's AWS credentials;
//! - [`parquet`]: a file's rows as cells.

pub mod manifest;
pub mod parquet;
pub mod s3;
pub mod statement;

use super::session::Session;
use super::SourceError;
use crate::config::UnloadRole;

/// What can go wrong with an export. Everything but [`Request`](Self::Request) needs the
/// user (a grant, a setting) and ends the Update with a Task saying what to change.
#[derive(Debug, thiserror::Error)]
pub enum UnloadError {
    #[error("the cluster's IAM role ({role}) could not write to s3://{bucket} ({message}); give the role s3:PutObject (and s3:ListBucket) on the bucket and prefix of `unload_s3_uri`, or choose another `unload_iam_role`")]
    RoleCannotWrite {
        role: String,
        bucket: String,
        message: String,
    },
    #[error("the cluster could not use the IAM role {role} for UNLOAD ({message}); associate the role with the cluster (or the Serverless namespace), let redshift.amazonaws.com assume it, and grant the database user ASSUMEROLE on it FOR UNLOAD where roles are restricted, or set `unload_iam_role` to a role that is")]
    RoleNotUsable { role: String, message: String },
    #[error("the bucket {bucket} is in another region than the cluster ({message}); set `unload_region` to the bucket's region")]
    BucketInOtherRegion { bucket: String, message: String },
    #[error("the bucket {bucket} of `unload_s3_uri` does not exist; check `unload_s3_uri`")]
    NoSuchBucket { bucket: String },
    #[error("the connector's AWS credentials were refused {action} on s3://{bucket}/{key} ({message}); grant the connector's AWS identity s3:GetObject, s3:ListBucket and s3:DeleteObject on the bucket and prefix of `unload_s3_uri`")]
    ConnectorDenied {
        action: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("no AWS credentials to read the UNLOAD files with ({reason}); give the connector AWS credentials through the standard chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity token, or an instance or container role")]
    NoCredentials { reason: String },
    #[error("AWS refused the connector's AWS credentials reading the UNLOAD files ({code}: {message}); check the access key, its secret and session token, and that they have not expired")]
    BadCredentials { code: String, message: String },
    #[error("the export's file {url} is missing; something deleted it (a lifecycle rule on the prefix of `unload_s3_uri`, or another process): keep the prefix for the connector alone")]
    FileMissing { url: String },
    #[error("the export's file {url} holds {read} rows where its manifest says {expected}")]
    CountMismatch {
        url: String,
        expected: u64,
        read: u64,
    },
    #[error("the export's file {url} cannot be read: {reason}")]
    Unreadable { url: String, reason: String },
    /// S3 refused to delete some of an export's files (its `Errors` inside a successful
    /// `DeleteObjects`): the rows were delivered; the files stay.
    #[error("S3 refused to delete {refused} of the export's files under s3://{bucket}/{prefix} ({code}: {message}); grant the connector's AWS identity s3:DeleteObject on the prefix of `unload_s3_uri`, or let a lifecycle rule expire them")]
    DeleteRefused {
        bucket: String,
        prefix: String,
        code: String,
        message: String,
        refused: usize,
    },
    /// Deleting an export's files took longer than its budget; the rest stays for a later
    /// sync's clean-up.
    #[error("deleting the export's files under s3://{bucket}/{prefix} did not finish within its budget ({deleted} deleted); a later sync deletes the rest")]
    DeleteUnfinished {
        bucket: String,
        prefix: String,
        deleted: usize,
    },
    #[error("{action} failed: {reason}")]
    Request {
        action: &'static str,
        reason: String,
        transient: bool,
    },
}

impl UnloadError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Request {
                transient: true,
                ..
            }
        )
    }

    /// Problems only the user can fix (and so a Task, never a retry loop).
    pub fn needs_user_action(&self) -> bool {
        !matches!(
            self,
            Self::Request { .. }
                | Self::CountMismatch { .. }
                | Self::Unreadable { .. }
                | Self::DeleteUnfinished { .. }
        )
    }
}

/// Runs the UNLOAD `sql` on `session`, which writes to `bucket` as `role`; Redshift's errors of
/// the role and the bucket become what to fix.
pub async fn unload(
    session: &mut Session,
    sql: &str,
    bucket: &str,
    role: &UnloadRole,
) -> Result<(), SourceError> {
    let role_name = match role {
        UnloadRole::Default => "the default IAM role".to_string(),
        UnloadRole::Arns(arns) => arns.clone(),
    };
    match session.simple(sql).await {
        Err(SourceError::Database { message, .. }) if message.contains("S3ServiceException") => {
            let in_other_region = message.contains("PermanentRedirect")
                || message.contains("Status 301")
                || message.contains("must be addressed using the specified endpoint");
            Err(if in_other_region {
                UnloadError::BucketInOtherRegion {
                    bucket: bucket.to_string(),
                    message,
                }
            } else if message.contains("NoSuchBucket") {
                UnloadError::NoSuchBucket {
                    bucket: bucket.to_string(),
                }
            } else {
                UnloadError::RoleCannotWrite {
                    role: role_name,
                    bucket: bucket.to_string(),
                    message,
                }
            }
            .into())
        }
        Err(SourceError::Database { message, .. })
            if message.contains("not authorized to assume IAM Role")
                || message.contains("Not authorized to get credentials of role")
                || message.contains("default IAM role") =>
        {
            Err(UnloadError::RoleNotUsable {
                role: role_name,
                message,
            }
            .into())
        }
        other => other,
    }
}
