//! The staging location of exports through `UNLOAD` (see `source::unload`): off unless
//! `unload_s3_uri` is set.
//!
//! Every value here is written into the UNLOAD statement's SQL (an UNLOAD takes no bind
//! parameters), so each is checked to hold only what its kind of name can: no quote, no
//! backslash, nothing but the characters of a bucket, a key prefix, a role ARN or a region.

use super::reader::MapReader;
use super::{keys, shorten, ConfigError};

/// Tables of fewer rows (estimated from the catalog, or counted) are read by the direct path:
/// below this an UNLOAD's fixed cost (the statement, writing and listing files) outweighs the
/// compute nodes' parallel export (benches/README.md, the unload suite).
pub const DEFAULT_UNLOAD_MIN_ROWS: u64 = 1_000_000;

/// Where and as whom the cluster unloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnloadConfig {
    pub bucket: String,
    /// The key prefix under the bucket: empty, or ending with `/`.
    pub prefix: String,
    pub role: UnloadRole,
    /// The bucket's region, when it is not the cluster's (UNLOAD's `REGION`).
    pub region: Option<String>,
    pub min_rows: u64,
    /// An S3 endpoint other than AWS's (a VPC endpoint, an S3-compatible store), addressed
    /// path-style.
    pub s3_endpoint_url: Option<String>,
}

impl UnloadConfig {
    /// `s3://bucket/prefix/`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// The role the cluster assumes to write the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnloadRole {
    /// The cluster's default IAM role (`IAM_ROLE default`).
    Default,
    /// One role ARN, or several chained with commas.
    Arns(String),
}

/// The UNLOAD keys, `None` when `unload_s3_uri` is absent (and then no other may be set).
pub(super) fn parse(reader: &MapReader<'_>) -> Result<Option<UnloadConfig>, ConfigError> {
    let others = [
        keys::UNLOAD_IAM_ROLE,
        keys::UNLOAD_REGION,
        keys::UNLOAD_MIN_ROWS,
        keys::UNLOAD_S3_ENDPOINT_URL,
    ];
    let Some(uri) = reader.optional(keys::UNLOAD_S3_URI) else {
        if let Some(key) = others.iter().find(|key| reader.optional(key).is_some()) {
            return Err(ConfigError::new(
                key,
                "is only used with `unload_s3_uri`; set the staging location, or leave it empty",
            ));
        }
        return Ok(None);
    };
    let (bucket, prefix) = parse_uri(&uri)?;
    let role = match reader.optional(keys::UNLOAD_IAM_ROLE) {
        None => {
            return Err(ConfigError::new(
                keys::UNLOAD_IAM_ROLE,
                "is required with `unload_s3_uri`: the ARN of a role associated with the cluster that may write to the bucket, or `default` for the cluster's default role",
            ))
        }
        Some(role) if role.eq_ignore_ascii_case("default") => UnloadRole::Default,
        Some(role) => {
            if !role.split(',').all(is_role_arn) {
                return Err(ConfigError::new(
                    keys::UNLOAD_IAM_ROLE,
                    format!(
                        "`{}` is not a role ARN such as arn:aws:iam::123456789012:role/redshift-unload (chained roles: comma-separated, no spaces), nor `default`",
                        shorten(&role)
                    ),
                ));
            }
            UnloadRole::Arns(role)
        }
    };
    let region = reader.optional(keys::UNLOAD_REGION);
    if let Some(region) = &region {
        let valid = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(ConfigError::new(
                keys::UNLOAD_REGION,
                format!(
                    "`{}` is not an AWS region name such as eu-west-1",
                    shorten(region)
                ),
            ));
        }
    }
    let min_rows = reader
        .number(keys::UNLOAD_MIN_ROWS, 0, u64::MAX, "rows")?
        .unwrap_or(DEFAULT_UNLOAD_MIN_ROWS);
    let s3_endpoint_url = reader.optional(keys::UNLOAD_S3_ENDPOINT_URL);
    if let Some(url) = &s3_endpoint_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::new(
                keys::UNLOAD_S3_ENDPOINT_URL,
                "must be an http(s):// URL, e.g. https://bucket.vpce-0a1b2c3d-e4f5g6h7.s3.us-east-1.vpce.amazonaws.com",
            ));
        }
    }
    Ok(Some(UnloadConfig {
        bucket,
        prefix,
        role,
        region,
        min_rows,
        s3_endpoint_url,
    }))
}

/// `s3://bucket/prefix` -> (bucket, `prefix/`).
fn parse_uri(uri: &str) -> Result<(String, String), ConfigError> {
    let invalid = |why: &str| {
        Err(ConfigError::new(
            keys::UNLOAD_S3_URI,
            format!("`{}` {why}; give s3://bucket/prefix/", shorten(uri)),
        ))
    };
    let Some(rest) = uri.strip_prefix("s3://") else {
        return invalid("does not start with s3://");
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if !bucket_ok {
        return invalid(
            "does not name a bucket (3-63 lower-case letters, digits, dots and hyphens)",
        );
    }
    let prefix_ok = prefix.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.' | '!' | '*' | '(' | ')')
    }) && !prefix.contains("//");
    if !prefix_ok {
        return invalid(
            "has a prefix with characters other than letters, digits and / - _ . ! * ( )",
        );
    }
    let mut prefix = prefix.trim_start_matches('/').to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok((bucket.to_string(), prefix))
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && partition
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '-')
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_/-".contains(c))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_a_bucket_and_a_prefix_ending_with_a_slash() {
        assert_eq!(
            parse_uri("s3://my-bucket/sync/redshift").unwrap(),
            ("my-bucket".into(), "sync/redshift/".into())
        );
        assert_eq!(
            parse_uri("s3://my.bucket").unwrap(),
            ("my.bucket".into(), String::new())
        );
        for bad in [
            "https://bucket/x",
            "s3://Bucket/x",
            "s3://b/x",
            "s3://bucket/it's",
            "s3://bucket/a\\b",
            "s3://bucket/a//b",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_are_arns_or_default() {
        assert!(is_role_arn(
            "arn:aws:iam::123456789012:role/redshift-unload"
        ));
        assert!(is_role_arn(
            "arn:aws-cn:iam::123456789012:role/path/to/role"
        ));
        assert!(!is_role_arn("arn:aws:iam::12345:role/x"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/x"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:role/x'y"));
    }
}
