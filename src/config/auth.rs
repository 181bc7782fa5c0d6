//! How the connector signs in: a password, temporary credentials from AWS (IAM), or a user and
//! password kept in an AWS Secrets Manager secret.
//! Keys of the other method are refused rather than ignored: a password left beside
//! `auth` = iam would otherwise look like it was used.

use super::reader::MapReader;
use super::secret::Secret;
use super::{keys, shorten, ConfigError};

/// How the connector signs in to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Authentication {
    /// A database user and its password (`auth` = password, the default).
    Password { user: String, password: Secret },
    /// Temporary credentials from Redshift's APIs, signed with the AWS credentials of the
    /// standard chain (`auth` = iam), as AWS's own drivers offer.
    Iam(IamSignIn),
    /// The user and password (and optionally the endpoint and database) of a Secrets Manager
    /// secret in the JSON AWS writes for Redshift (`auth` = secret), read with the AWS
    /// credentials of the standard chain.
    Secret(SecretSignIn),
}

impl Authentication {
    /// The database user as configured, for messages (`None`: decided by AWS at sign-in).
    pub fn configured_user(&self) -> Option<&str> {
        match self {
            Self::Password { user, .. } => Some(user),
            Self::Iam(iam) => match &iam.target {
                IamTarget::Cluster {
                    db_user: Some(user),
                    ..
                } => Some(user),
                _ => None,
            },
            Self::Secret(_) => None,
        }
    }
}

/// Where a secret is and how to reach Secrets Manager.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSignIn {
    /// The secret's ARN (or name).
    pub secret: String,
    /// The region of Secrets Manager to ask: `region`, else the ARN's.
    pub region: String,
    /// An AWS API endpoint to use instead of the region's (a VPC interface endpoint, say).
    pub endpoint_url: Option<String>,
}

/// Where temporary database credentials come from.
#[derive(Debug, Clone, PartialEq)]
pub struct IamSignIn {
    pub region: String,
    pub target: IamTarget,
    /// An AWS API endpoint to use instead of the region's (a VPC interface endpoint, say).
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IamTarget {
    /// A provisioned cluster: GetClusterCredentials for `db_user`, or, without one,
    /// GetClusterCredentialsWithIAM (the database user is the IAM identity).
    Cluster {
        identifier: String,
        db_user: Option<String>,
        auto_create: bool,
        db_groups: Vec<String>,
    },
    /// A Serverless workgroup: GetCredentials (the database user is the IAM identity).
    Workgroup { name: String },
}

/// `auth` and the keys of the chosen method. Keys of the other method are refused rather than
/// ignored: a password left beside `auth` = iam would otherwise look like it was used.
pub(super) fn parse(reader: &MapReader<'_>) -> Result<Authentication, ConfigError> {
    let map = reader.0;
    const IAM_KEYS: &[&str] = &[
        keys::REGION,
        keys::CLUSTER_IDENTIFIER,
        keys::WORKGROUP,
        keys::DB_USER,
        keys::AUTO_CREATE,
        keys::DB_GROUPS,
        keys::AWS_ENDPOINT_URL,
    ];
    const SECRET_KEYS: &[&str] = &[keys::SECRET_ARN];
    let method = reader
        .optional(keys::AUTH)
        .map(|m| m.to_ascii_lowercase())
        .unwrap_or_else(|| "password".to_string());
    match method.as_str() {
        "password" => {
            if let Some(key) = IAM_KEYS.iter().find(|key| reader.is_set(key)) {
                return Err(ConfigError::new(
                    key,
                    "is only used with `auth` = iam; set `auth` to iam, or leave it empty",
                ));
            }
            if let Some(key) = SECRET_KEYS.iter().find(|key| reader.is_set(key)) {
                return Err(ConfigError::new(
                    key,
                    "is only used with `auth` = secret; set `auth` to secret, or leave it empty",
                ));
            }
            let user = reader.required(keys::USER)?;
            // The password is taken verbatim: leading/trailing spaces may be part of it.
            let password = match map.get(keys::PASSWORD) {
                Some(p) if !p.is_empty() => Secret::new(p.clone()),
                _ => {
                    return Err(ConfigError::new(
                        keys::PASSWORD,
                        "is required (the database user's password), unless `auth` = iam",
                    ))
                }
            };
            Ok(Authentication::Password { user, password })
        }
        "secret" => parse_secret(reader, IAM_KEYS),
        "iam" => {
            if let Some(key) = SECRET_KEYS
                .iter()
                .find(|key| reader.optional(key).is_some())
            {
                return Err(ConfigError::new(
                    key,
                    "is only used with `auth` = secret; leave it empty with `auth` = iam",
                ));
            }
            if map.get(keys::PASSWORD).is_some_and(|p| !p.is_empty()) {
                return Err(ConfigError::new(
                    keys::PASSWORD,
                    "is not used with `auth` = iam (temporary passwords come from AWS); leave it empty",
                ));
            }
            let region = reader.required(keys::REGION)?;
            check_region(&region)?;
            let endpoint_url = endpoint_url(reader)?;
            let target = match cluster_or_workgroup(reader, "`auth` = iam")? {
                ClusterOrWorkgroup::Cluster(identifier) => {
                    // `db_user`, else `user`: AWS's drivers also take the user as DbUser.
                    let db_user = reader
                        .optional(keys::DB_USER)
                        .or_else(|| reader.optional(keys::USER));
                    let auto_create = reader.boolean(keys::AUTO_CREATE)?.unwrap_or(false);
                    let db_groups = reader
                        .list(keys::DB_GROUPS)?
                        .unwrap_or_default()
                        .into_iter()
                        .map(str::to_string)
                        .collect::<Vec<_>>();
                    if db_user.is_none() && (auto_create || !db_groups.is_empty()) {
                        let key = if auto_create {
                            keys::AUTO_CREATE
                        } else {
                            keys::DB_GROUPS
                        };
                        return Err(ConfigError::new(
                            key,
                            "needs `db_user` (without one the database user is the IAM identity, which AWS creates and groups itself)",
                        ));
                    }
                    IamTarget::Cluster {
                        identifier,
                        db_user,
                        auto_create,
                        db_groups,
                    }
                }
                ClusterOrWorkgroup::Workgroup(name) => {
                    for key in [
                        keys::DB_USER,
                        keys::USER,
                        keys::AUTO_CREATE,
                        keys::DB_GROUPS,
                    ] {
                        if reader.optional(key).is_some() {
                            return Err(ConfigError::new(
                                key,
                                "is not used with a Serverless `workgroup`: the database user is the IAM identity; leave it empty",
                            ));
                        }
                    }
                    IamTarget::Workgroup { name }
                }
            };
            Ok(Authentication::Iam(IamSignIn {
                region,
                target,
                endpoint_url,
            }))
        }
        other => Err(ConfigError::new(
            keys::AUTH,
            format!("`{}` is not one of: password, iam, secret", shorten(other)),
        )),
    }
}

/// A provisioned cluster or a Serverless workgroup, by the key that names it.
pub(super) enum ClusterOrWorkgroup {
    Cluster(String),
    Workgroup(String),
}

/// `cluster_identifier` or `workgroup`: exactly one, which `needed_by` (a setting, for the
/// message) needs.
pub(super) fn cluster_or_workgroup(
    reader: &MapReader<'_>,
    needed_by: &str,
) -> Result<ClusterOrWorkgroup, ConfigError> {
    match (
        reader.optional(keys::CLUSTER_IDENTIFIER),
        reader.optional(keys::WORKGROUP),
    ) {
        (Some(identifier), None) => Ok(ClusterOrWorkgroup::Cluster(identifier)),
        (None, Some(name)) => Ok(ClusterOrWorkgroup::Workgroup(name)),
        (Some(_), Some(_)) => Err(ConfigError::new(
            keys::WORKGROUP,
            "and `cluster_identifier` are both set; give the cluster (provisioned) or the workgroup (Serverless)",
        )),
        (None, None) => Err(ConfigError::new(
            keys::CLUSTER_IDENTIFIER,
            format!("or `workgroup` is required with {needed_by}"),
        )),
    }
}

/// `auth` = secret: `secret_arn`, and where to ask for it. The user and password come from the
/// secret, so the keys that would name them are refused, as are IAM's.
fn parse_secret(reader: &MapReader<'_>, iam_keys: &[&str]) -> Result<Authentication, ConfigError> {
    for key in [keys::USER, keys::PASSWORD] {
        if reader.optional(key).is_some() {
            return Err(ConfigError::new(
                key,
                "is not used with `auth` = secret (the user and password come from the secret); leave it empty",
            ));
        }
    }
    let allowed = [keys::REGION, keys::AWS_ENDPOINT_URL];
    if let Some(key) = iam_keys
        .iter()
        .find(|key| !allowed.contains(key) && reader.is_set(key))
    {
        return Err(ConfigError::new(
            key,
            "is only used with `auth` = iam; leave it empty with `auth` = secret",
        ));
    }
    let secret = reader.required(keys::SECRET_ARN)?;
    check_secret_arn(&secret)?;
    let region = match (reader.optional(keys::REGION), arn_region(&secret)) {
        (Some(region), _) => region,
        (None, Some(region)) => region.to_string(),
        (None, None) => {
            return Err(ConfigError::new(
                keys::REGION,
                "is required when `secret_arn` is a name rather than an ARN (arn:aws:secretsmanager:<region>:...)",
            ))
        }
    };
    check_region(&region)?;
    Ok(Authentication::Secret(SecretSignIn {
        secret,
        region,
        endpoint_url: endpoint_url(reader)?,
    }))
}

pub(super) fn check_secret_arn(secret: &str) -> Result<(), ConfigError> {
    if secret.contains(char::is_whitespace) {
        return Err(ConfigError::new(
            keys::SECRET_ARN,
            "must be a secret's ARN, e.g. arn:aws:secretsmanager:us-east-1:123456789012:secret:redshift-sync-AbCdEf (no spaces)",
        ));
    }
    Ok(())
}

/// The region of an ARN such as `arn:aws:secretsmanager:us-east-1:123456789012:secret:name`.
fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("secretsmanager"), Some(region)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!region.is_empty()).then_some(region)
}

pub(super) fn check_region(region: &str) -> Result<(), ConfigError> {
    if region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Ok(());
    }
    Err(ConfigError::new(
        keys::REGION,
        format!(
            "`{}` is not an AWS region name such as us-east-1",
            shorten(region)
        ),
    ))
}

pub(super) fn endpoint_url(reader: &MapReader<'_>) -> Result<Option<String>, ConfigError> {
    let endpoint_url = reader.optional(keys::AWS_ENDPOINT_URL);
    if let Some(url) = &endpoint_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::new(
                keys::AWS_ENDPOINT_URL,
                "must be an http(s):// URL, e.g. https://redshift.us-east-1.amazonaws.com",
            ));
        }
    }
    Ok(endpoint_url)
}
