//! Typed, validated configuration.
//!
//! Hosts send configuration as a flat `map<string, string>`. It is parsed exactly once, at the top
//! of each RPC, into [`Config`]; every later layer works with typed values. Any bad value is a
//! [`ConfigError`] naming the key and the rule it broke, which the gRPC layer maps to
//! `INVALID_ARGUMENT` before anything reaches the database. The password lives in a [`Secret`]
//! so that no `Debug`, `Display` or log line can print it, and error messages quote at most a
//! short prefix of any value.
//!
//! One module per concern: [`keys`] (every key), [`connection`] (host, TLS, timeouts), [`auth`]
//! (password or IAM), [`sync`] (what to sync and how), [`unload`] (the staging location of
//! exports), [`names`] (identifiers as Redshift
//! resolves them), [`secret`], and `reader` (the request's map).

pub mod auth;
pub mod connection;
mod error;
pub mod keys;
pub mod names;
mod reader;
pub mod secret;
pub mod ssh;
pub mod sync;
pub mod transport;
pub mod unload;

use std::collections::HashMap;

pub use auth::{Authentication, IamSignIn, IamTarget, SecretSignIn};
pub use connection::{
    ConnectionConfig, RootCertificates, SslMode, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PORT,
    DEFAULT_QUERY_TIMEOUT, MAX_ROOT_CERTIFICATE_FILE,
};
pub use error::{shorten, ConfigError};
pub use names::{Identifier, TableName, TablePattern};
pub use secret::Secret;
pub use ssh::SshConfig;
pub use sync::*;
pub use transport::{DataApiConfig, DataApiTarget, Transport};
pub use unload::{UnloadConfig, UnloadRole, DEFAULT_UNLOAD_MIN_ROWS};

use reader::MapReader;

/// The whole validated configuration of one request.
#[derive(Debug, Clone)]
pub struct Config {
    pub connection: ConnectionConfig,
    pub sync: SyncConfig,
}

impl Config {
    /// Parses, validates and completes a request's configuration: the one entry point of the
    /// RPCs. Files named by the configuration are read here, off the async workers.
    pub async fn from_request(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = Self::from_map(map)?;
        config.load_files().await?;
        Ok(config)
    }

    /// Parses and validates the request's configuration map, without reading any file.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        if let Some(unknown) = map.keys().find(|k| !keys::ALL.contains(&k.as_str())) {
            return Err(ConfigError::new(
                unknown,
                format!("unknown key; the keys are: {}", keys::ALL.join(", ")),
            ));
        }
        // A NUL cannot travel in the protocol's strings: refuse it here, naming the key,
        // rather than let the database refuse it later.
        if let Some((key, _)) = map.iter().find(|(_, value)| value.contains('\0')) {
            return Err(ConfigError::new(key, "contains a NUL character"));
        }
        let reader = MapReader(map);
        Ok(Self {
            connection: connection::parse(&reader)?,
            sync: parse(&reader)?,
        })
    }

    /// Reads the files the configuration names (`sslrootcert` as a path) on a blocking thread,
    /// bounded in size, refusing anything but a regular file.
    pub async fn load_files(&mut self) -> Result<(), ConfigError> {
        self.connection.load_files().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn minimal() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "example.redshift.amazonaws.com"),
            ("database", "dev"),
            ("user", "awsuser"),
            ("password", "s3cret!"),
        ]
    }

    fn iam(pairs: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut all = vec![("host", ""), ("database", "dev"), ("auth", "IAM")];
        all.extend_from_slice(pairs);
        Config::from_map(&map(&all))
    }

    fn data_api(pairs: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut all = vec![
            ("transport", "data_api"),
            ("region", "eu-west-1"),
            ("database", "dev"),
        ];
        all.extend_from_slice(pairs);
        Config::from_map(&map(&all))
    }

    #[test]
    fn the_data_api_takes_a_target_and_one_way_to_sign_in() {
        let config = data_api(&[("cluster_identifier", "c1"), ("db_user", "alice")]).unwrap();
        assert_eq!(
            config.connection.transport,
            Transport::DataApi(DataApiConfig {
                region: "eu-west-1".into(),
                target: DataApiTarget::Cluster {
                    identifier: "c1".into()
                },
                endpoint_url: None,
            })
        );
        assert_eq!(
            config.connection.authentication.configured_user(),
            Some("alice")
        );
        assert_eq!(config.connection.aws_region().as_deref(), Some("eu-west-1"));
        let config = data_api(&[
            ("workgroup", "wg"),
            ("secret_arn", "arn:aws:secretsmanager:eu-west-1:1:secret:s"),
            ("aws_endpoint_url", "https://vpce.example"),
        ])
        .unwrap();
        assert!(matches!(
            config.connection.authentication,
            Authentication::Secret(_)
        ));
        // The IAM identity: neither a secret nor a user; `auth` may say so, and the form's
        // untouched defaults of direct-only fields are no mistake.
        let config = data_api(&[
            ("cluster_identifier", "c1"),
            ("auth", "iam"),
            ("port", "5439"),
            ("sslmode", "verify-full"),
            ("ssh_port", "22"),
            ("auto_create", "false"),
            ("host", ""),
            ("connect_timeout_s", "30"),
        ])
        .unwrap();
        assert_eq!(config.connection.authentication.configured_user(), None);
        // The form hides `auth` with the Data API; its default may still arrive.
        let config = data_api(&[("workgroup", "w"), ("auth", "password")]).unwrap();
        assert!(matches!(
            config.connection.authentication,
            Authentication::Iam(_)
        ));
        // Direct-path configurations are unchanged.
        let config = Config::from_map(&map(&minimal())).unwrap();
        assert_eq!(config.connection.transport, Transport::Direct);
    }

    #[test]
    fn the_data_api_refuses_what_means_nothing_to_it() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("cluster_identifier", "c"), ("host", "h")], "host"),
            (&[("cluster_identifier", "c"), ("port", "5440")], "port"),
            (&[("cluster_identifier", "c"), ("user", "u")], "user"),
            (
                &[("cluster_identifier", "c"), ("password", "p")],
                "password",
            ),
            (
                &[("cluster_identifier", "c"), ("sslmode", "require")],
                "sslmode",
            ),
            (
                &[("cluster_identifier", "c"), ("ssh_host", "b")],
                "ssh_host",
            ),
            (
                &[("cluster_identifier", "c"), ("db_groups", "g")],
                "db_groups",
            ),
            (&[], "cluster_identifier"),
            (
                &[("cluster_identifier", "c"), ("workgroup", "w")],
                "workgroup",
            ),
            (&[("workgroup", "w"), ("db_user", "u")], "db_user"),
            (
                &[
                    ("cluster_identifier", "c"),
                    ("db_user", "u"),
                    ("secret_arn", "arn:x"),
                ],
                "db_user",
            ),
            (&[("cluster_identifier", "c"), ("auth", "secret")], "auth"),
        ];
        for (pairs, key) in cases {
            let err = data_api(pairs).expect_err(&format!("{pairs:?} accepted"));
            assert_eq!(err.key, *key, "{pairs:?}: {err}");
        }
        let err = Config::from_map(&map(&[("transport", "http"), ("database", "d")]))
            .expect_err("an unknown transport");
        assert_eq!(err.key, "transport");
        let mut no_region = map(&[
            ("transport", "data_api"),
            ("database", "dev"),
            ("cluster_identifier", "c"),
        ]);
        assert_eq!(Config::from_map(&no_region).unwrap_err().key, "region");
        no_region.insert("region".into(), "eu-west-1".into());
        no_region.remove("database");
        assert_eq!(Config::from_map(&no_region).unwrap_err().key, "database");
    }

    #[test]
    fn iam_sign_in_takes_a_cluster_or_a_workgroup() {
        let config = iam(&[
            ("region", "eu-west-1"),
            ("cluster_identifier", "examplecluster"),
            ("db_user", "alice"),
            ("auto_create", "true"),
            ("db_groups", "analysts, loaders"),
        ])
        .unwrap();
        assert_eq!(config.connection.host, "");
        assert_eq!(config.connection.port, None);
        assert_eq!(
            config.connection.authentication,
            Authentication::Iam(IamSignIn {
                region: "eu-west-1".into(),
                target: IamTarget::Cluster {
                    identifier: "examplecluster".into(),
                    db_user: Some("alice".into()),
                    auto_create: true,
                    db_groups: vec!["analysts".into(), "loaders".into()],
                },
                endpoint_url: None,
            })
        );
        // `user` stands in for `db_user`, as in AWS's drivers; neither: the IAM identity.
        let config = iam(&[
            ("region", "us-east-1"),
            ("cluster_identifier", "c"),
            ("user", "bob"),
        ])
        .unwrap();
        assert_eq!(
            config.connection.authentication.configured_user(),
            Some("bob")
        );
        let config = iam(&[("region", "us-east-1"), ("cluster_identifier", "c")]).unwrap();
        assert_eq!(config.connection.authentication.configured_user(), None);
        let config = iam(&[("region", "us-east-1"), ("workgroup", "wg")]).unwrap();
        assert!(matches!(
            config.connection.authentication,
            Authentication::Iam(IamSignIn {
                target: IamTarget::Workgroup { .. },
                ..
            })
        ));
    }

    const SECRET: &str =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift-sync-AbCdEf";

    #[test]
    fn secret_sign_in_takes_the_region_from_the_arn_and_may_leave_host_and_database_empty() {
        let config = Config::from_map(&map(&[("auth", "secret"), ("secret_arn", SECRET)])).unwrap();
        assert_eq!(config.connection.host, "");
        assert_eq!(config.connection.database, "");
        assert_eq!(
            config.connection.authentication,
            Authentication::Secret(SecretSignIn {
                secret: SECRET.into(),
                region: "eu-west-1".into(),
                endpoint_url: None,
            })
        );
        assert_eq!(config.connection.authentication.configured_user(), None);
        // A name instead of an ARN needs `region`; `region` and an endpoint are taken.
        let config = Config::from_map(&map(&[
            ("auth", "secret"),
            ("secret_arn", "redshift-sync"),
            ("region", "us-east-2"),
            ("aws_endpoint_url", "https://vpce.example"),
            ("host", "example.redshift.amazonaws.com"),
            ("database", "dev"),
        ]))
        .unwrap();
        assert_eq!(
            config.connection.authentication,
            Authentication::Secret(SecretSignIn {
                secret: "redshift-sync".into(),
                region: "us-east-2".into(),
                endpoint_url: Some("https://vpce.example".into()),
            })
        );
    }

    #[test]
    fn secret_sign_in_refuses_what_it_would_ignore() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("auth", "secret")], "secret_arn"),
            (&[("auth", "secret"), ("secret_arn", "a-name")], "region"),
            (
                &[("auth", "secret"), ("secret_arn", SECRET), ("user", "u")],
                "user",
            ),
            (
                &[
                    ("auth", "secret"),
                    ("secret_arn", SECRET),
                    ("password", "p"),
                ],
                "password",
            ),
            (
                &[("auth", "secret"), ("secret_arn", SECRET), ("db_user", "u")],
                "db_user",
            ),
            (
                &[("auth", "secret"), ("secret_arn", "arn with spaces")],
                "secret_arn",
            ),
            (
                &[
                    ("auth", "iam"),
                    ("region", "us-east-1"),
                    ("cluster_identifier", "c"),
                    ("secret_arn", SECRET),
                ],
                "secret_arn",
            ),
            (
                &[
                    ("host", "h"),
                    ("database", "d"),
                    ("user", "u"),
                    ("password", "p"),
                    ("secret_arn", SECRET),
                ],
                "secret_arn",
            ),
        ];
        for (pairs, key) in cases {
            let err = Config::from_map(&map(pairs)).unwrap_err();
            assert_eq!(err.key, *key, "{pairs:?}: {err}");
        }
    }

    #[test]
    fn iam_sign_in_refuses_what_it_would_ignore() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("cluster_identifier", "c")], "region"),
            (&[("region", "us-east-1")], "cluster_identifier"),
            (
                &[
                    ("region", "us-east-1"),
                    ("cluster_identifier", "c"),
                    ("workgroup", "w"),
                ],
                "workgroup",
            ),
            (
                &[
                    ("region", "us-east-1"),
                    ("cluster_identifier", "c"),
                    ("password", "x"),
                ],
                "password",
            ),
            (
                &[
                    ("region", "us-east-1"),
                    ("cluster_identifier", "c"),
                    ("auto_create", "yes"),
                ],
                "auto_create",
            ),
            (
                &[
                    ("region", "us-east-1"),
                    ("cluster_identifier", "c"),
                    ("auto_create", "true"),
                ],
                "auto_create",
            ),
            (
                &[
                    ("region", "us-east-1"),
                    ("workgroup", "w"),
                    ("db_user", "a"),
                ],
                "db_user",
            ),
            (&[("region", "US East"), ("workgroup", "w")], "region"),
            (
                &[
                    ("region", "us-east-1"),
                    ("workgroup", "w"),
                    ("aws_endpoint_url", "localhost:1"),
                ],
                "aws_endpoint_url",
            ),
        ];
        for (pairs, key) in cases {
            let err = iam(pairs).map(|_| ()).unwrap_err();
            assert_eq!(err.key, *key, "{pairs:?}: {err}");
        }
        // IAM keys without `auth` = iam, and a host-less password configuration.
        let mut pairs = minimal();
        pairs.push(("region", "us-east-1"));
        assert_eq!(Config::from_map(&map(&pairs)).unwrap_err().key, "region");
        let mut pairs = minimal();
        pairs[0] = ("host", "");
        assert_eq!(Config::from_map(&map(&pairs)).unwrap_err().key, "host");
        let mut pairs = minimal();
        pairs.push(("auth", "kerberos"));
        assert_eq!(Config::from_map(&map(&pairs)).unwrap_err().key, "auth");
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let example: HashMap<String, String> =
            serde_json::from_str(include_str!("../../configuration.example.json"))
                .expect("configuration.example.json is a JSON object of strings");
        let config = Config::from_map(&example).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(config.sync.cursor_lag, Duration::from_secs(300));
    }

    #[test]
    fn defaults_apply_to_a_minimal_configuration() {
        let config = Config::from_map(&map(&minimal())).unwrap();
        assert_eq!(config.connection.port_or_default(), 5439);
        assert_eq!(
            config.connection.authentication,
            Authentication::Password {
                user: "awsuser".into(),
                password: Secret::new("s3cret!")
            }
        );
        assert_eq!(config.connection.sslmode, SslMode::VerifyFull);
        assert_eq!(
            config.connection.root_certificates,
            RootCertificates::System
        );
        assert_eq!(
            config.sync.default_cursor_column,
            Identifier::unquoted("updated_at")
        );
        assert_eq!(config.sync.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(config.sync.max_batch_bytes, DEFAULT_MAX_BATCH_BYTES);
        assert_eq!(config.sync.max_rows_per_query, RowsPerQuery::Auto);
        assert!(config.sync.schemas.is_none());
        assert!(config.sync.tables.is_none());
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let cases = [
            ("port", "70000"),
            ("port", "abc"),
            ("sslmode", "sometimes"),
            ("batch_size", "0"),
            ("batch_size", "-5"),
            ("max_batch_bytes", "10"),
            ("max_rows_per_query", "0"),
            ("connect_timeout_s", "0"),
            ("query_timeout_s", "x"),
            ("cursor_lag_s", "-1"),
            ("max_parallel_tables", "0"),
            ("max_parallel_tables", "33"),
            ("tables", "no_dot"),
            ("tables", "a.b.c"),
            ("tables", "\"unterminated.b"),
            ("schemas", "a.b"),
            ("cursor_column", "public.orders:"),
            ("cursor_column", "a, b"),
            ("sslrootcert", "-----BEGIN nothing"),
            ("host", "http://x/y"),
            ("host", "cluster.example.com:5439"),
            ("colour", "blue"),
            ("schemas", "sales\0"),
        ];
        for (key, value) in cases {
            let mut pairs = minimal();
            pairs.push((key, value));
            let err = Config::from_map(&map(&pairs)).unwrap_err();
            assert_eq!(err.key, key, "{key}={value:?} gave {err}");
        }
    }

    #[test]
    fn missing_required_keys_are_named() {
        for key in ["host", "database", "user", "password"] {
            let pairs: Vec<_> = minimal().into_iter().filter(|(k, _)| *k != key).collect();
            assert_eq!(Config::from_map(&map(&pairs)).unwrap_err().key, key);
        }
    }

    #[test]
    fn ipv6_addresses_are_hosts_not_host_and_port() {
        let mut pairs = minimal();
        pairs[0] = ("host", "::1");
        assert_eq!(
            Config::from_map(&map(&pairs)).unwrap().connection.host,
            "::1"
        );
    }

    #[test]
    fn names_resolve_as_redshift_resolves_identifiers() {
        let mut pairs = minimal();
        pairs.push((
            "cursor_column",
            "Modified, Public.Orders:Changed_At, \"Sales\".\"Order.Items\":\"UpdatedAt\"",
        ));
        pairs.push(("schemas", "PUBLIC, \"Sales\", \"a,b\""));
        pairs.push(("tables", "public.orders, \"Sales\".\"Order.Items\""));
        let config = Config::from_map(&map(&pairs)).unwrap();
        let orders = TableName::new("public", "orders");
        let items = TableName::new("Sales", "Order.Items");
        assert_eq!(
            config.sync.cursor_column_for(&orders).resolved(),
            "changed_at"
        );
        assert_eq!(
            config.sync.cursor_column_for(&items).resolved(),
            "UpdatedAt"
        );
        assert_eq!(
            config
                .sync
                .cursor_column_for(&TableName::new("public", "x"))
                .resolved(),
            "modified"
        );
        assert!(config.sync.includes(&orders));
        assert!(config.sync.includes(&items));
        // Unquoted names fold: `public.orders` is not the mixed-case table "Orders".
        assert!(!config.sync.includes(&TableName::new("public", "Orders")));
        // A quoted name keeps its case: "Sales" is not sales.
        assert!(!config
            .sync
            .includes(&TableName::new("sales", "Order.Items")));
        let schemas = config.sync.schemas.as_ref().unwrap();
        assert_eq!(schemas[2].resolved(), "a,b");
    }

    #[test]
    fn error_messages_quote_a_short_prefix_of_long_values() {
        let mut pairs = minimal();
        let long = "x".repeat(1 << 20);
        let value = format!("{long}.{long}.{long}");
        pairs.push(("tables", &value));
        let err = Config::from_map(&map(&pairs)).unwrap_err();
        assert!(
            err.to_string().len() < 400,
            "{} bytes",
            err.to_string().len()
        );
    }

    #[test]
    fn password_never_prints() {
        let config = Config::from_map(&map(&minimal())).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret!"), "{debug}");
    }

    #[tokio::test]
    async fn root_certificate_files_are_bounded_and_errors_reveal_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, vec![b'a'; MAX_ROOT_CERTIFICATE_FILE as usize + 1]).unwrap();
        let not_pem = dir.path().join("notes.txt");
        std::fs::write(&not_pem, "hello").unwrap();
        let missing = dir.path().join("missing.pem");
        let mut messages = Vec::new();
        for path in [
            huge.as_path(),
            dir.path(),
            missing.as_path(),
            not_pem.as_path(),
            std::path::Path::new("/dev/zero"),
        ] {
            let mut pairs = minimal();
            let path = path.to_string_lossy().into_owned();
            pairs.push(("sslrootcert", &path));
            let err = Config::from_request(&map(&pairs)).await.unwrap_err();
            assert_eq!(err.key, "sslrootcert");
            messages.push(err.rule);
        }
        // One message, whatever the reason: no way to tell which files exist.
        assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:?}");
    }
}
