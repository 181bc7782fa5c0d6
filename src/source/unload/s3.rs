//! Reading an export back from S3, with the AWS SDK for Rust and the credentials of the
//! standard chain (as IAM sign-in): the manifest, the part files, and deleting them after.
//!
//! What the connector's AWS identity needs on the staging bucket: `s3:GetObject` (manifest and
//! part files), `s3:ListBucket` (finding exports left behind) and `s3:DeleteObject`
//! (removing them). Every refusal names the action, the bucket and the key.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::UnloadError;
use crate::config::UnloadConfig;

/// A client for the staging location's bucket.
#[derive(Clone)]
pub struct Staging {
    client: Client,
    pub bucket: String,
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
        }
    }

    /// The whole object at `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, UnloadError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| self.error("s3:GetObject", key, err))?;
        let body = output
            .body
            .collect()
            .await
            .map_err(|err| UnloadError::Request {
                action: "s3:GetObject",
                reason: format!("reading s3://{}/{key}: {err}", self.bucket),
                transient: true,
            })?;
        Ok(body.into_bytes())
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

    /// Deletes every object under `prefix`; returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, UnloadError> {
        let mut deleted = 0;
        loop {
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
            deleted += objects.len();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|err| UnloadError::Request {
                    action: "s3:DeleteObject",
                    reason: err.to_string(),
                    transient: false,
                })?;
            self.client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|err| self.error("s3:DeleteObject", prefix, err))?;
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
