//! Secrets Manager sign-in (`auth` = secret): the user and password of a secret, in the JSON AWS
//! writes for Redshift (`{"username": ..., "password": ..., "host": ..., "port": ...,
//! "dbname": ...}`, the last three optional), read with the AWS credentials of the standard
//! chain, as the Redshift console, the Data API and AWS's drivers take them.
//!
//! A secret is read once and kept for the process: a sync opens sessions for hours, and a call
//! per session would cost a round trip and money. When the database refuses its password (the
//! secret was rotated since), [`forget`] drops it and the next sign-in reads it again
//! (`session::connect` does this once per refusal).
//!
//! The secret's text never reaches a log, an error or the state: errors about its shape name
//! the field that is wrong, never a value, and the password is held as a [`Secret`].

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::config::{Secret, SecretSignIn};

use super::iam::{classify, IamError};

/// What a secret holds, once read.
#[derive(Debug, Clone)]
pub struct SecretCredentials {
    pub username: String,
    pub password: Secret,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub dbname: Option<String>,
}

const ACTION: &str = "secretsmanager:GetSecretValue";

/// The secret's credentials: kept ones, else read from Secrets Manager.
pub async fn credentials(sign_in: &SecretSignIn) -> Result<SecretCredentials, IamError> {
    let key = cache_key(sign_in);
    if let Some(kept) = cache().lock().unwrap().get(&key) {
        return Ok(kept.clone());
    }
    let sdk = super::aws::sdk_config(Some(&sign_in.region), sign_in.endpoint_url.as_deref()).await;
    let out = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(&sign_in.secret)
        .send()
        .await
        .map_err(|err| {
            let code = err
                .as_service_error()
                .and_then(aws_sdk_secretsmanager::error::ProvideErrorMetadata::code);
            match code {
                Some("ResourceNotFoundException") => IamError::SecretNotFound {
                    secret: sign_in.secret.clone(),
                    region: sign_in.region.clone(),
                },
                Some("DecryptionFailure") => IamError::AccessDenied {
                    action: "kms:Decrypt",
                    needs: format!("kms:Decrypt on the KMS key that encrypts the secret {}", sign_in.secret),
                    message: "Secrets Manager could not decrypt the secret".into(),
                },
                _ => classify(
                    ACTION,
                    &format!("{ACTION} on {} (and kms:Decrypt on its KMS key, if a customer-managed key encrypts it)", sign_in.secret),
                    &format!("secret {}", sign_in.secret),
                    &sign_in.region,
                    err,
                ),
            }
        })?;
    let text = out.secret_string().ok_or_else(|| IamError::BadSecret {
        secret: sign_in.secret.clone(),
        problem: "holds binary data, not the JSON text AWS writes for Redshift".into(),
    })?;
    let credentials = parse(text).map_err(|problem| IamError::BadSecret {
        secret: sign_in.secret.clone(),
        problem,
    })?;
    tracing::info!(secret = %sign_in.secret, user = %credentials.username, "read the sign-in secret");
    cache().lock().unwrap().insert(key, credentials.clone());
    Ok(credentials)
}

/// Forgets the kept credentials of `sign_in`: the next sign-in reads the secret again.
pub fn forget(sign_in: &SecretSignIn) {
    cache().lock().unwrap().remove(&cache_key(sign_in));
}

type Cache = Mutex<HashMap<String, SecretCredentials>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

fn cache_key(sign_in: &SecretSignIn) -> String {
    format!("{sign_in:?}")
}

/// The secret's JSON. Problems name the field, never a value (it may be the password).
fn parse(text: &str) -> Result<SecretCredentials, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| "is not JSON; it must be a JSON object with `username` and `password`, as AWS writes for Redshift".to_string())?;
    let object = value
        .as_object()
        .ok_or("is not a JSON object with `username` and `password`")?;
    let text_field = |name: &str| -> Result<Option<String>, String> {
        match object.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("has a `{name}` that is not a string")),
        }
    };
    let username = text_field("username")?.ok_or("has no `username`")?;
    let password = text_field("password")?.ok_or("has no `password`")?;
    let port = match object.get("port") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or("has a `port` that is not a TCP port number")?,
        ),
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(
            s.parse::<u16>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or("has a `port` that is not a TCP port number")?,
        ),
        Some(_) => return Err("has a `port` that is not a TCP port number".into()),
    };
    Ok(SecretCredentials {
        username,
        password: Secret::new(password),
        host: text_field("host")?,
        port,
        dbname: text_field("dbname")?,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_json_aws_writes_for_redshift_is_read() {
        let full = parse(r#"{"username":"awsuser","password":"p@ss word","engine":"redshift","host":"c.abc.us-east-1.redshift.amazonaws.com","port":5439,"dbClusterIdentifier":"c","dbname":"dev"}"#).unwrap();
        assert_eq!(full.username, "awsuser");
        assert_eq!(full.password.expose(), "p@ss word");
        assert_eq!(
            full.host.as_deref(),
            Some("c.abc.us-east-1.redshift.amazonaws.com")
        );
        assert_eq!(full.port, Some(5439));
        assert_eq!(full.dbname.as_deref(), Some("dev"));
        let minimal = parse(r#"{"username":"u","password":"p","port":"5440"}"#).unwrap();
        assert_eq!(
            (minimal.host, minimal.port, minimal.dbname),
            (None, Some(5440), None)
        );
    }

    #[test]
    fn a_malformed_secret_names_the_field_and_never_a_value() {
        let cases = [
            ("Hunter2-not-json", "is not JSON"),
            (r#"["Hunter2"]"#, "is not a JSON object"),
            (r#"{"password":"Hunter2"}"#, "has no `username`"),
            (r#"{"username":"u","password":""}"#, "has no `password`"),
            (
                r#"{"username":"u","password":"Hunter2","port":"Hunter2"}"#,
                "`port`",
            ),
            (
                r#"{"username":"u","password":"Hunter2","port":70000}"#,
                "`port`",
            ),
            (
                r#"{"username":["Hunter2"],"password":"x"}"#,
                "`username` that is not a string",
            ),
        ];
        for (text, expected) in cases {
            let problem = parse(text).unwrap_err();
            assert!(problem.contains(expected), "{text}: {problem}");
            assert!(!problem.contains("Hunter2"), "{text}: {problem}");
        }
    }
}
