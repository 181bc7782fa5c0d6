//! Reading an export back from S3, with the AWS SDK for Rust and the credentials of the
//! standard chain (as IAM sign-in): the manifest, the part files, and deleting them after.
//!
//! What the connector's AWS identity needs on the staging bucket: `s3:GetObject` (manifest and
//! part files), `s3:ListBucket` (finding exports left behind) and `s3:DeleteObject`
//! (removing them). Every refusal names the action, the bucket and the key.
//!
//! Nothing read back from the bucket is trusted further than it must be: an object is refused
//! before its body is downloaded when it is larger than the caller's bound; a delete reports
//! the keys S3 refused (it answers them inside a successful response) instead of listing them
//! again; every delete runs within a time and request budget; and only prefixes this connector
//! makes (`<prefix of unload_s3_uri>redshift-sync-…/`) can be deleted at all.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;
use std::time::{Duration, Instant};

use super::UnloadError;
use crate::config::UnloadConfig;

/// Every prefix this connector deletes begins with the prefix of `unload_s3_uri` and then
/// this (an export's id).
pub const EXPORT_ID_PREFIX: &str = "redshift-sync-";

/// How long one [`Staging::delete_prefix`] may take, and how many requests it may make: an
/// export of 6 TB in 64 MB files is 100,000 objects, 100 list and 100 delete requests.
pub const DELETE_TIME_BUDGET: Duration = Duration::from_secs(120);
pub const DELETE_REQUEST_BUDGET: u32 = 400;

/// A client for the staging location's bucket.
#[derive(Clone)]
pub struct Staging {
    client: Client,
    pub bucket: String,
    /// The key prefix of `unload_s3_uri`: every deletable prefix starts with it.
    root: String,
}

impl Staging {
    pub async fn new(config: &UnloadConfig, fallback_region: Option<&str>) -> Staging {
        let region = config
            .region
            .as_deref()
            .or(fallback_region)
            .map(str::to_string);
        let sdk = crate::source::aws::sdk_config(region.as_deref(), None).await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&sdk);
        if let Some(url) = &config.s3_endpoint_url {
            // An S3-compatible or VPC endpoint: buckets in the path, not in the host name.
            s3 = s3.endpoint_url(url).force_path_style(true);
        }
        Staging {
            client: Client::from_conf(s3.build()),
            bucket: config.bucket.clone(),
            root: config.prefix.clone(),
        }
    }

    /// The whole object at `key`, refused before its body is read if it is larger than
    /// `max_bytes` (or, with `expected_bytes`, of another size than that).
    pub async fn get(
        &self,
        key: &str,
        max_bytes: u64,
        expected_bytes: Option<u64>,
    ) -> Result<Bytes, UnloadError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| self.error("s3:GetObject", key, err))?;
        let url = || format!("s3://{}/{key}", self.bucket);
        let length = output.content_length().and_then(|n| u64::try_from(n).ok());
        match length {
            Some(length) if length > max_bytes => {
                return Err(UnloadError::Unreadable {
                    url: url(),
                    reason: format!(
                        "it holds {length} bytes, more than the {max_bytes} an export's file may; it was not downloaded"
                    ),
                })
            }
            Some(length) if expected_bytes.is_some_and(|expected| expected != length) => {
                return Err(UnloadError::Unreadable {
                    url: url(),
                    reason: format!(
                        "it holds {length} bytes where the manifest says {}; it was not downloaded",
                        expected_bytes.unwrap_or_default()
                    ),
                })
            }
            Some(_) => {}
            None => {
                return Err(UnloadError::Unreadable {
                    url: url(),
                    reason: "S3 did not say its size; it was not downloaded".to_string(),
                })
            }
        }
        // Read into one buffer of the announced size: collecting the body's chunks and then
        // joining them held each file twice at its peak. A body longer than announced is
        // refused at the first byte too many.
        let length = length.unwrap_or_default();
        let mut file = bytes::BytesMut::with_capacity(length as usize);
        let mut body = output.body;
        while let Some(chunk) = body.try_next().await.map_err(|err| UnloadError::Request {
            action: "s3:GetObject",
            reason: format!("reading s3://{}/{key}: {err}", self.bucket),
            transient: true,
        })? {
            if (file.len() + chunk.len()) as u64 > length {
                return Err(UnloadError::Unreadable {
                    url: url(),
                    reason: format!("S3 sent more than the {length} bytes it announced"),
                });
            }
            file.extend_from_slice(&chunk);
        }
        if (file.len() as u64) < length {
            return Err(UnloadError::Request {
                action: "s3:GetObject",
                reason: format!(
                    "reading s3://{}/{key}: the body ended after {} of {length} bytes",
                    self.bucket,
                    file.len()
                ),
                transient: true,
            });
        }
        Ok(file.freeze())
    }

    /// The next level of "directories" under `prefix` (keys up to the next `/`).
    pub async fn list_prefixes(&self, prefix: &str) -> Result<Vec<String>, UnloadError> {
        let mut prefixes = Vec::new();
        let mut token = None;
        loop {
            let output = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|err| self.error("s3:ListBucket", prefix, err))?;
            prefixes.extend(
                output
                    .common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_string)),
            );
            token = output.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(prefixes);
            }
        }
    }

    /// Deletes every object under `prefix`, an export's prefix this connector made (anything
    /// else is refused); returns how many. Stops at the first key S3 refuses to delete (a
    /// missing `s3:DeleteObject`), or when [`DELETE_TIME_BUDGET`] or
    /// [`DELETE_REQUEST_BUDGET`] is spent: it never loops on what it cannot delete.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, UnloadError> {
        let own = prefix
            .strip_prefix(&self.root)
            .and_then(|rest| rest.strip_prefix(EXPORT_ID_PREFIX))
            .is_some_and(|rest| !rest.is_empty() && rest.ends_with('/'));
        if !own {
            return Err(UnloadError::Request {
                action: "s3:DeleteObject",
                reason: format!(
                    "s3://{}/{prefix} is not an export prefix of this connector's; nothing was deleted",
                    self.bucket
                ),
                transient: false,
            });
        }
        let started = Instant::now();
        let mut requests = 0u32;
        let mut deleted = 0;
        loop {
            if started.elapsed() > DELETE_TIME_BUDGET || requests + 2 > DELETE_REQUEST_BUDGET {
                return Err(UnloadError::DeleteUnfinished {
                    bucket: self.bucket.clone(),
                    prefix: prefix.to_string(),
                    deleted,
                });
            }
            requests += 2;
            let output = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(1000)
                .send()
                .await
                .map_err(|err| self.error("s3:ListBucket", prefix, err))?;
            let objects: Vec<ObjectIdentifier> = output
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .filter_map(|key| ObjectIdentifier::builder().key(key).build().ok())
                .collect();
            if objects.is_empty() {
                return Ok(deleted);
            }
            let count = objects.len();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|err| UnloadError::Request {
                    action: "s3:DeleteObject",
                    reason: err.to_string(),
                    transient: false,
                })?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|err| self.error("s3:DeleteObject", prefix, err))?;
            // S3 answers keys it would not delete inside a successful response.
            if let Some(refused) = output.errors().first() {
                return Err(UnloadError::DeleteRefused {
                    bucket: self.bucket.clone(),
                    prefix: prefix.to_string(),
                    code: refused.code().unwrap_or("unknown").to_string(),
                    message: refused.message().unwrap_or_default().to_string(),
                    refused: output.errors().len(),
                });
            }
            deleted += count;
        }
    }

    /// What the refusal of `action` on `key` means for the user.
    fn error<E>(
        &self,
        action: &'static str,
        key: &str,
        err: SdkError<E, HttpResponse>,
    ) -> UnloadError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let bucket = self.bucket.clone();
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_string);
        let message = err
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| crate::source::error_chain(&err));
        match (code.as_deref(), status) {
            (Some("AccessDenied"), _) | (_, Some(403)) => UnloadError::ConnectorDenied {
                action,
                bucket,
                key: key.to_string(),
                message,
            },
            (Some("NoSuchKey"), _) | (_, Some(404)) if code.as_deref() != Some("NoSuchBucket") => {
                UnloadError::FileMissing {
                    url: format!("s3://{bucket}/{key}"),
                }
            }
            (Some("NoSuchBucket"), _) => UnloadError::NoSuchBucket { bucket },
            (Some("PermanentRedirect" | "AuthorizationHeaderMalformed"), _) | (_, Some(301)) => {
                UnloadError::BucketInOtherRegion { bucket, message }
            }
            (
                Some(
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "TokenRefreshRequired",
                ),
                _,
            ) => UnloadError::BadCredentials {
                code: code.unwrap_or_default(),
                message,
            },
            _ => {
                let transient = matches!(
                    err,
                    SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
                ) || status.is_some_and(|s| s >= 500 || s == 429)
                    || code.as_deref().is_some_and(|c| {
                        matches!(c, "SlowDown" | "InternalError" | "ServiceUnavailable")
                    });
                let no_credentials = message.contains("no providers in chain")
                    || message.contains("failed to load credentials")
                    || message.contains("the credential provider was not enabled");
                if no_credentials {
                    UnloadError::NoCredentials { reason: message }
                } else {
                    UnloadError::Request {
                        action,
                        reason: format!("s3://{bucket}/{key}: {message}"),
                        transient,
                    }
                }
            }
        }
    }
}
