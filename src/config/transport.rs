//! Which way sessions reach the cluster: `transport` = direct (the PostgreSQL protocol over TCP,
//! straight or through an SSH bastion; the default) or data_api (the Redshift Data API over
//! HTTPS, for clusters and workgroups with no network path at all).
//!
//! With the Data API there is no host, port, TLS or tunnel to configure (AWS's HTTPS endpoint
//! replaces them), and the database user is decided by how the statements are signed:
//! - `secret_arn`: the user and password of a Secrets Manager secret (AWS reads it);
//! - `db_user` (provisioned only): temporary credentials for that database user;
//! - neither: the caller's IAM identity.
//!
//! The sign-in is kept in [`Authentication`] as for the direct path (a secret, or IAM with or
//! without a `db_user`), so that messages name the same user either way. Keys that mean
//! nothing here are refused rather than ignored, as everywhere else.

use super::auth::{self, Authentication, ClusterOrWorkgroup, IamSignIn, IamTarget, SecretSignIn};
use super::reader::MapReader;
use super::{keys, shorten, ConfigError};

/// How sessions reach the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// The PostgreSQL protocol over TCP (optionally through an SSH bastion).
    Direct,
    /// The Redshift Data API over HTTPS.
    DataApi(DataApiConfig),
}

/// Where the Data API sends statements.
#[derive(Debug, Clone, PartialEq)]
pub struct DataApiConfig {
    pub region: String,
    pub target: DataApiTarget,
    /// An endpoint other than the region's (a VPC interface endpoint, say).
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DataApiTarget {
    /// A provisioned cluster, by identifier.
    Cluster { identifier: String },
    /// A Redshift Serverless workgroup, by name.
    Workgroup { name: String },
}

impl DataApiTarget {
    /// For messages: `cluster examplecluster`, `workgroup analytics`.
    pub fn describe(&self) -> String {
        match self {
            Self::Cluster { identifier } => format!("cluster `{identifier}`"),
            Self::Workgroup { name } => format!("workgroup `{name}`"),
        }
    }
}

/// The `transport` names, in the form's order.
pub const NAMES: &[&str] = &["direct", "data_api"];

/// Keys the Data API has no use for: where the database listens, how a TCP session signs in
/// and is secured are AWS's business there. In the form's order (it groups them, shown while
/// `transport` is direct).
pub const DIRECT_ONLY: &[&str] = &[
    keys::HOST,
    keys::PORT,
    keys::AUTH,
    keys::USER,
    keys::PASSWORD,
    keys::AUTO_CREATE,
    keys::DB_GROUPS,
    keys::SSLMODE,
    keys::SSLROOTCERT,
    keys::SSH_HOST,
    keys::SSH_PORT,
    keys::SSH_USER,
    keys::SSH_PRIVATE_KEY,
    keys::SSH_PRIVATE_KEY_PASSPHRASE,
    keys::SSH_HOST_KEY,
    keys::CONNECT_TIMEOUT_S,
];

/// `transport`, defaulting to direct.
pub(super) fn parse_name(reader: &MapReader<'_>) -> Result<bool, ConfigError> {
    match reader.optional(keys::TRANSPORT).as_deref() {
        None | Some("direct") => Ok(false),
        Some("data_api") => Ok(true),
        Some(other) => Err(ConfigError::new(
            keys::TRANSPORT,
            format!("`{}` is not one of: {}", shorten(other), NAMES.join(", ")),
        )),
    }
}

/// The Data API's keys (`transport` = data_api): where statements go and who signs them.
pub(super) fn parse_data_api(
    reader: &MapReader<'_>,
) -> Result<(DataApiConfig, Authentication, String), ConfigError> {
    if let Some(key) = DIRECT_ONLY
        .iter()
        // `auth` is implied by the sign-in keys, and checked against them below.
        .find(|key| **key != keys::AUTH && reader.is_set(key))
    {
        return Err(ConfigError::new(
            key,
            "is not used with `transport` = data_api (AWS's HTTPS endpoint replaces the host, port, TLS and tunnel, and the database user comes from `secret_arn`, `db_user` or the IAM identity); leave it empty, or set `transport` to direct",
        ));
    }
    let region = reader.required(keys::REGION)?;
    auth::check_region(&region)?;
    let endpoint_url = auth::endpoint_url(reader)?;
    let database = reader.required(keys::DATABASE)?;
    let target = match auth::cluster_or_workgroup(reader, "`transport` = data_api")? {
        ClusterOrWorkgroup::Cluster(identifier) => DataApiTarget::Cluster { identifier },
        ClusterOrWorkgroup::Workgroup(name) => DataApiTarget::Workgroup { name },
    };
    let secret = reader.optional(keys::SECRET_ARN);
    let db_user = reader.optional(keys::DB_USER);
    // `auth` is implied; a value that contradicts the keys is a mistake worth naming.
    let implied = if secret.is_some() { "secret" } else { "iam" };
    // `password` is the form's default for a field it hides with the Data API: no mistake.
    if let Some(method) = reader.optional(keys::AUTH) {
        if !method.eq_ignore_ascii_case(implied) && !method.eq_ignore_ascii_case("password") {
            return Err(ConfigError::new(
                keys::AUTH,
                format!(
                    "`{}` does not match the keys given with `transport` = data_api: statements are signed with `secret_arn` (auth = secret), `db_user` or the caller's IAM identity (auth = iam); leave it empty",
                    shorten(&method)
                ),
            ));
        }
    }
    let authentication = match (secret, db_user, &target) {
        (Some(_), Some(_), _) => {
            return Err(ConfigError::new(
                keys::DB_USER,
                "and `secret_arn` are both set; the Data API signs in with one of them (or, with neither, as the IAM identity)",
            ))
        }
        (Some(secret), None, _) => {
            auth::check_secret_arn(&secret)?;
            Authentication::Secret(SecretSignIn {
                secret,
                region: region.clone(),
                endpoint_url: endpoint_url.clone(),
            })
        }
        (None, Some(_), DataApiTarget::Workgroup { .. }) => {
            return Err(ConfigError::new(
                keys::DB_USER,
                "is not used with a Serverless `workgroup`: the Data API signs in as the IAM identity there, or with `secret_arn`",
            ))
        }
        (None, db_user, _) => Authentication::Iam(IamSignIn {
            region: region.clone(),
            target: match &target {
                DataApiTarget::Cluster { identifier } => IamTarget::Cluster {
                    identifier: identifier.clone(),
                    db_user,
                    auto_create: false,
                    db_groups: Vec::new(),
                },
                DataApiTarget::Workgroup { name } => IamTarget::Workgroup { name: name.clone() },
            },
            endpoint_url: endpoint_url.clone(),
        }),
    };
    Ok((
        DataApiConfig {
            region,
            target,
            endpoint_url,
        },
        authentication,
        database,
    ))
}
