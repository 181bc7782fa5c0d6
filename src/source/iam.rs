//! Signing in: the user and password of a session, and for IAM sign-in where they come from
//! (for Secrets Manager sign-in, [`super::secret`]).
//!
//! With `auth` = iam the connector does what AWS's Redshift drivers do: it asks Redshift's API
//! for a temporary database password, signed with the AWS credentials of the standard chain
//! (environment, profile, web identity, instance or container role):
//! - a provisioned cluster with a `db_user`: `GetClusterCredentials` (optionally creating the
//!   user and joining it to `db_groups`);
//! - a provisioned cluster without one: `GetClusterCredentialsWithIAM` (the database user is the
//!   IAM identity);
//! - a Serverless workgroup: `GetCredentials`.
//!
//! With no `host`, the endpoint comes from `DescribeClusters` or `GetWorkgroup`.
//!
//! Temporary passwords last up to an hour and syncs last longer, so credentials are kept per
//! configuration until shortly before they expire and fetched again for any session opened
//! after that. A password the database refuses although it looked valid (clocks disagree, or
//! the user was changed) is forgotten and fetched once more by [`super::session::connect`].

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_redshift::error::{ProvideErrorMetadata, SdkError};

use crate::config::{Authentication, ConnectionConfig, IamSignIn, IamTarget, Secret};

/// What one session signs in with.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub host: String,
    pub port: u16,
    /// The configured database, or a secret's `dbname` when none is configured.
    pub database: String,
    pub user: String,
    pub password: Secret,
}

/// How long temporary passwords are asked to last: the most AWS grants.
const CREDENTIALS_SECONDS: i32 = 3600;
/// Credentials this close to expiring are not used for a new session.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Why IAM or Secrets Manager sign-in failed. Messages name the AWS action and what to grant or
/// set, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error("AWS denied {action} ({message}); grant the connector's AWS identity {needs}")]
    AccessDenied {
        action: &'static str,
        needs: String,
        message: String,
    },
    #[error("{action}: {what} was not found in region {region} ({message}); check `cluster_identifier` or `workgroup`, and `region`")]
    NotFound {
        action: &'static str,
        what: String,
        region: String,
        message: String,
    },
    #[error("no usable AWS credentials ({reason}); give the connector AWS credentials through the standard chain: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a web identity token, or an instance or container role")]
    NoCredentials { reason: String },
    #[error("AWS refused the connector's AWS credentials for {action} ({code}: {message}); check the access key, its secret and session token, and that they have not expired")]
    BadCredentials {
        action: &'static str,
        code: String,
        message: String,
    },
    #[error("the secret `{secret}` was not found in region {region}; check `secret_arn` (and `region`, when it is a name)")]
    SecretNotFound { secret: String, region: String },
    #[error("the secret `{secret}` {problem}; store the user and password as AWS does for Redshift: {{\"username\": ..., \"password\": ...}}, optionally with \"host\", \"port\" and \"dbname\"")]
    BadSecret { secret: String, problem: String },
    #[error("{what} is not configured and the secret `{secret}` has no `{field}`; set `{key}`, or add `{field}` to the secret")]
    SecretLacks {
        what: &'static str,
        secret: String,
        field: &'static str,
        key: &'static str,
    },
    #[error("{action} failed: {reason}")]
    Request {
        action: &'static str,
        reason: String,
        transient: bool,
    },
}

impl IamError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Request {
                transient: true,
                ..
            }
        )
    }

    pub fn needs_user_action(&self) -> bool {
        !matches!(self, Self::Request { .. })
    }
}

/// The user, password and endpoint to open a session with.
pub async fn sign_in(config: &ConnectionConfig) -> Result<SignIn, IamError> {
    match &config.authentication {
        Authentication::Password { user, password } => Ok(SignIn {
            host: config.host.clone(),
            port: config.port_or_default(),
            database: config.database.clone(),
            user: user.clone(),
            password: password.clone(),
        }),
        Authentication::Secret(secret) => {
            let read = super::secret::credentials(secret).await?;
            // What the configuration names wins; the secret fills in what it leaves out.
            let lacks = |what, field, key| IamError::SecretLacks {
                what,
                secret: secret.secret.clone(),
                field,
                key,
            };
            let host = match (config.host.is_empty(), read.host) {
                (false, _) => config.host.clone(),
                (true, Some(host)) => host,
                (true, None) => return Err(lacks("the cluster's endpoint", "host", "host")),
            };
            let database = match (config.database.is_empty(), read.dbname) {
                (false, _) => config.database.clone(),
                (true, Some(dbname)) => dbname,
                (true, None) => return Err(lacks("the database", "dbname", "database")),
            };
            Ok(SignIn {
                host,
                port: config
                    .port
                    .or(read.port)
                    .unwrap_or(crate::config::DEFAULT_PORT),
                database,
                user: read.username,
                password: read.password,
            })
        }
        Authentication::Iam(iam) => {
            let key = cache_key(config, iam);
            if let Some(sign_in) = cached(&key) {
                return Ok(sign_in);
            }
            let (sign_in, expires) = fetch(config, iam).await?;
            tracing::info!(
                user = %sign_in.user,
                host = %sign_in.host,
                expires_in_s = expires
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .as_secs(),
                "signed in with temporary IAM credentials"
            );
            cache()
                .lock()
                .unwrap()
                .insert(key, (sign_in.clone(), expires));
            Ok(sign_in)
        }
    }
}

/// Forgets the temporary credentials of `config`, or the secret it read: the next session
/// fetches new ones, or reads the secret again (it may have been rotated).
pub fn forget(config: &ConnectionConfig) {
    match &config.authentication {
        Authentication::Iam(iam) => {
            cache().lock().unwrap().remove(&cache_key(config, iam));
        }
        Authentication::Secret(secret) => super::secret::forget(secret),
        Authentication::Password { .. } => {}
    }
}

type Cache = Mutex<HashMap<String, (SignIn, SystemTime)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// Everything the credentials depend on (no secret is part of an IAM configuration).
fn cache_key(config: &ConnectionConfig, iam: &IamSignIn) -> String {
    format!(
        "{iam:?}|{}|{}|{:?}",
        config.database, config.host, config.port
    )
}

fn cached(key: &str) -> Option<SignIn> {
    let cache = cache().lock().unwrap();
    let (sign_in, expires) = cache.get(key)?;
    (SystemTime::now() + EXPIRY_MARGIN < *expires).then(|| sign_in.clone())
}

async fn sdk_config(iam: &IamSignIn) -> SdkConfig {
    super::aws::sdk_config(Some(&iam.region), iam.endpoint_url.as_deref()).await
}

async fn fetch(
    config: &ConnectionConfig,
    iam: &IamSignIn,
) -> Result<(SignIn, SystemTime), IamError> {
    let sdk = sdk_config(iam).await;
    let (host, port) = if config.host.is_empty() {
        let (host, port) = endpoint(&sdk, iam).await?;
        (host, config.port.unwrap_or(port))
    } else {
        (config.host.clone(), config.port_or_default())
    };
    let database = config.database.as_str();
    let region = iam.region.as_str();
    let (user, password, expiration) = match &iam.target {
        IamTarget::Cluster {
            identifier,
            db_user: Some(db_user),
            auto_create,
            db_groups,
        } => {
            const ACTION: &str = "redshift:GetClusterCredentials";
            let mut needs = format!("{ACTION} on arn:aws:redshift:{region}:<account>:dbuser:{identifier}/{db_user} and dbname:{identifier}/{database}");
            if *auto_create {
                needs.push_str(&format!(
                    ", redshift:CreateClusterUser on dbuser:{identifier}/{db_user}"
                ));
            }
            for group in db_groups {
                needs.push_str(&format!(
                    ", redshift:JoinGroup on dbgroup:{identifier}/{group}"
                ));
            }
            let target = format!("cluster `{identifier}`");
            let out = aws_sdk_redshift::Client::new(&sdk)
                .get_cluster_credentials()
                .cluster_identifier(identifier)
                .db_user(db_user)
                .db_name(database)
                .auto_create(*auto_create)
                .set_db_groups((!db_groups.is_empty()).then(|| db_groups.clone()))
                .duration_seconds(CREDENTIALS_SECONDS)
                .send()
                .await
                .map_err(|err| classify(ACTION, &needs, &target, region, err))?;
            (out.db_user, out.db_password, out.expiration)
        }
        IamTarget::Cluster {
            identifier,
            db_user: None,
            ..
        } => {
            const ACTION: &str = "redshift:GetClusterCredentialsWithIAM";
            let needs = format!(
                "{ACTION} on arn:aws:redshift:{region}:<account>:dbname:{identifier}/{database}"
            );
            let target = format!("cluster `{identifier}`");
            let out = aws_sdk_redshift::Client::new(&sdk)
                .get_cluster_credentials_with_iam()
                .cluster_identifier(identifier)
                .db_name(database)
                .duration_seconds(CREDENTIALS_SECONDS)
                .send()
                .await
                .map_err(|err| classify(ACTION, &needs, &target, region, err))?;
            (out.db_user, out.db_password, out.expiration)
        }
        IamTarget::Workgroup { name } => {
            const ACTION: &str = "redshift-serverless:GetCredentials";
            let needs = format!("{ACTION} on the workgroup `{name}`");
            let target = format!("workgroup `{name}`");
            let out = aws_sdk_redshiftserverless::Client::new(&sdk)
                .get_credentials()
                .workgroup_name(name)
                .db_name(database)
                .duration_seconds(CREDENTIALS_SECONDS)
                .send()
                .await
                .map_err(|err| classify(ACTION, &needs, &target, region, err))?;
            (out.db_user, out.db_password, out.expiration)
        }
    };
    let incomplete = |what: &str| IamError::Request {
        action: "IAM sign-in",
        reason: format!("AWS answered without {what}"),
        transient: false,
    };
    let user = user
        .filter(|u| !u.is_empty())
        .ok_or_else(|| incomplete("a database user"))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| incomplete("a password"))?;
    // Without an expiration, assume the shortest AWS grants (15 minutes).
    let expires = expiration
        .and_then(|at| SystemTime::try_from(at).ok())
        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(900));
    let sign_in = SignIn {
        host,
        port,
        database: config.database.clone(),
        user,
        password: Secret::new(password),
    };
    Ok((sign_in, expires))
}

/// The cluster's or workgroup's endpoint, for a configuration without `host`.
async fn endpoint(sdk: &SdkConfig, iam: &IamSignIn) -> Result<(String, u16), IamError> {
    let region = iam.region.as_str();
    let (address, port) = match &iam.target {
        IamTarget::Cluster { identifier, .. } => {
            const ACTION: &str = "redshift:DescribeClusters";
            let needs = format!("{ACTION} (to find the cluster's endpoint), or set `host`");
            let target = format!("cluster `{identifier}`");
            let out = aws_sdk_redshift::Client::new(sdk)
                .describe_clusters()
                .cluster_identifier(identifier)
                .send()
                .await
                .map_err(|err| classify(ACTION, &needs, &target, region, err))?;
            let endpoint = out
                .clusters()
                .first()
                .and_then(|cluster| cluster.endpoint());
            (
                endpoint.and_then(|e| e.address()).map(str::to_string),
                endpoint.and_then(aws_sdk_redshift::types::Endpoint::port),
            )
        }
        IamTarget::Workgroup { name } => {
            const ACTION: &str = "redshift-serverless:GetWorkgroup";
            let needs = format!("{ACTION} (to find the workgroup's endpoint), or set `host`");
            let target = format!("workgroup `{name}`");
            let out = aws_sdk_redshiftserverless::Client::new(sdk)
                .get_workgroup()
                .workgroup_name(name)
                .send()
                .await
                .map_err(|err| classify(ACTION, &needs, &target, region, err))?;
            let endpoint = out.workgroup().and_then(|w| w.endpoint());
            (
                endpoint.and_then(|e| e.address()).map(str::to_string),
                endpoint.and_then(aws_sdk_redshiftserverless::types::Endpoint::port),
            )
        }
    };
    let address = address.filter(|a| !a.is_empty()).ok_or(IamError::Request {
        action: "finding the endpoint",
        reason: "AWS returned no endpoint address (is the cluster or workgroup still being created?); set `host`".into(),
        transient: false,
    })?;
    let port = port
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(crate::config::DEFAULT_PORT);
    Ok((address, port))
}

/// One classification for every AWS call's failure: what the user must grant or fix, or
/// whether retrying may help.
pub(super) fn classify<E>(
    action: &'static str,
    needs: &str,
    target: &str,
    region: &str,
    err: SdkError<E>,
) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(credentials) = credentials_error(&err) {
        return match credentials {
            CredentialsError::ProviderTimedOut(_) => IamError::Request {
                action,
                reason: format!(
                    "the AWS credential provider timed out ({})",
                    chain(credentials)
                ),
                transient: true,
            },
            _ => IamError::NoCredentials {
                reason: chain(credentials),
            },
        };
    }
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("").to_string();
            let message = service.err().message().unwrap_or("").to_string();
            let status = service.raw().status().as_u16();
            match code.as_str() {
                // A 403 whose body named no code is a refusal all the same.
                "" if status == 403 => IamError::AccessDenied {
                    action,
                    needs: needs.to_string(),
                    message: format!("HTTP 403 {message}").trim_end().to_string(),
                },
                "AccessDenied"
                | "AccessDeniedException"
                | "AccessDeniedFault"
                | "UnauthorizedOperation"
                | "UnauthorizedException" => IamError::AccessDenied {
                    action,
                    needs: needs.to_string(),
                    message,
                },
                "ClusterNotFound" | "ClusterNotFoundFault" | "ResourceNotFoundException" => {
                    IamError::NotFound {
                        action,
                        what: target.to_string(),
                        region: region.to_string(),
                        message,
                    }
                }
                "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "IncompleteSignature"
                | "MissingAuthenticationToken" => IamError::BadCredentials {
                    action,
                    code,
                    message,
                },
                "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "ActiveStatementsExceededException"
                | "ActiveSessionsExceededException"
                | "ServiceUnavailable"
                | "InternalFailure" => IamError::Request {
                    action,
                    reason: format!("{code}: {message}"),
                    transient: true,
                },
                _ => IamError::Request {
                    action,
                    reason: format!("{code}: {message} (HTTP {status})"),
                    transient: status >= 500,
                },
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            IamError::Request {
                action,
                reason: chain(&err),
                transient: true,
            }
        }
        _ => IamError::Request {
            action,
            reason: chain(&err),
            transient: false,
        },
    }
}

/// The credential chain's own error, when that is why the call failed (it surfaces wrapped in
/// a dispatch failure).
fn credentials_error<'e>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e CredentialsError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if let Some(credentials) = err.downcast_ref::<CredentialsError>() {
            return Some(credentials);
        }
        source = err.source();
    }
    None
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    super::error_chain(err)
}
