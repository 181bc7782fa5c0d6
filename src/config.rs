//! Typed, validated configuration.
//!
//! Hosts send configuration as a flat `map<string, string>`. It is parsed exactly once, at the top
//! of each RPC, into [`Config`]; every later layer works with typed values. Any bad value is a
//! [`ConfigError`] naming the key and the rule it broke, which the gRPC layer maps to
//! `INVALID_ARGUMENT`. The password lives in a [`Secret`] so that no `Debug`, `Display` or log line
//! can print it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Every configuration key, in the order the configuration form shows them.
pub mod keys {
    pub const HOST: &str = "host";
    pub const PORT: &str = "port";
    pub const DATABASE: &str = "database";
    pub const USER: &str = "user";
    pub const PASSWORD: &str = "password";
    pub const SSLMODE: &str = "sslmode";
    pub const SSLROOTCERT: &str = "sslrootcert";
    pub const SCHEMAS: &str = "schemas";
    pub const TABLES: &str = "tables";
    pub const CURSOR_COLUMN: &str = "cursor_column";
    pub const BATCH_SIZE: &str = "batch_size";
    pub const CONNECT_TIMEOUT_S: &str = "connect_timeout_s";
    pub const QUERY_TIMEOUT_S: &str = "query_timeout_s";
    pub const CURSOR_LAG_S: &str = "cursor_lag_s";
    pub const MAX_PARALLEL_TABLES: &str = "max_parallel_tables";

    /// All keys the connector understands; anything else is rejected as a probable typo.
    pub const ALL: &[&str] = &[
        HOST,
        PORT,
        DATABASE,
        USER,
        PASSWORD,
        SSLMODE,
        SSLROOTCERT,
        SCHEMAS,
        TABLES,
        CURSOR_COLUMN,
        CURSOR_LAG_S,
        BATCH_SIZE,
        MAX_PARALLEL_TABLES,
        CONNECT_TIMEOUT_S,
        QUERY_TIMEOUT_S,
    ];
}

pub const DEFAULT_PORT: u16 = 5439;
pub const DEFAULT_CURSOR_COLUMN: &str = "updated_at";
/// Rows per fetch round trip. Large enough to amortise the round trip, small enough that a
/// batch of wide rows stays a few MiB in memory and a checkpoint follows every few seconds.
pub const DEFAULT_BATCH_SIZE: u32 = 5_000;
pub const MAX_BATCH_SIZE: u32 = 1_000_000;
/// One table at a time unless asked: each concurrent scan holds one of the cluster's WLM query
/// slots for as long as it runs, which other users of a shared cluster need too.
pub const DEFAULT_MAX_PARALLEL_TABLES: usize = 1;
pub const MAX_PARALLEL_TABLES: usize = 32;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Zero means "no statement timeout" (the server's own setting applies).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(0);

/// Schemas that hold catalogs, never user data (redshift.md, Catalog).
pub const SYSTEM_SCHEMAS: &[&str] = &[
    "pg_catalog",
    "information_schema",
    "pg_internal",
    "catalog_history",
    "pg_toast",
    "pg_automv",
    "pg_auto_copy",
    "pg_mv",
    "pg_s3",
];

/// A configuration value that is invalid, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {rule}")]
pub struct ConfigError {
    pub key: String,
    pub rule: String,
}

impl ConfigError {
    fn new(key: &str, rule: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            rule: rule.into(),
        }
    }
}

/// A string that must never be printed: `Debug` and `Display` show a placeholder.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that needs it (the authentication exchange).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// TLS modes with libpq's meaning, which Redshift users already know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS if the server offers it, plain otherwise; the certificate is not verified.
    Prefer,
    /// TLS or fail; the certificate is not verified.
    Require,
    /// TLS, certificate chain verified against the root store; host name not checked.
    VerifyCa,
    /// TLS, chain verified and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    pub const NAMES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCertificates {
    /// The operating system's store (Redshift's ACM certificates chain to it).
    System,
    /// A PEM bundle, read from the configured file or given inline.
    Pem(Vec<u8>),
}

/// A table named as `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub schema: String,
    pub table: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }

    /// Parses `schema.table`; the last dot separates them, so a schema may not contain a dot
    /// but a table may not either (Redshift identifiers rarely do; quoting is not supported here).
    fn parse(text: &str) -> Option<Self> {
        let (schema, table) = text.trim().split_once('.')?;
        let (schema, table) = (schema.trim(), table.trim());
        if schema.is_empty() || table.is_empty() || table.contains('.') {
            return None;
        }
        Some(Self::new(schema, table))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Connection settings: what it takes to open a session.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub sslmode: SslMode,
    pub root_certificates: RootCertificates,
    pub connect_timeout: Duration,
    /// Zero: no statement timeout.
    pub query_timeout: Duration,
}

/// What to sync and how.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Schemas to discover; `None` = every non-system schema.
    pub schemas: Option<Vec<String>>,
    /// Optional include list; `None` = every readable table of the schemas.
    pub tables: Option<Vec<TableName>>,
    pub default_cursor_column: String,
    pub cursor_column_overrides: BTreeMap<TableName, String>,
    pub batch_size: u32,
    /// Rows whose TIMESTAMP/TIMESTAMPTZ cursor is newer than now minus this are left for a
    /// later sync, so a checkpoint never passes rows that may still commit with an older
    /// cursor value (redshift.md, "Time and the cursor"). Zero: no bound.
    pub cursor_lag: Duration,
    /// Tables synced at once within one Update, each on a session of its own.
    pub max_parallel_tables: usize,
}

impl SyncConfig {
    /// The cursor column configured for a table (override, else the default name).
    pub fn cursor_column_for(&self, table: &TableName) -> &str {
        self.cursor_column_overrides
            .get(table)
            .map(String::as_str)
            .unwrap_or(&self.default_cursor_column)
    }

    /// Whether the schema/table filters admit this table.
    pub fn includes(&self, table: &TableName) -> bool {
        let schema_ok = self
            .schemas
            .as_ref()
            .is_none_or(|schemas| schemas.iter().any(|s| s == &table.schema));
        let table_ok = self
            .tables
            .as_ref()
            .is_none_or(|tables| tables.contains(table));
        schema_ok && table_ok
    }
}

/// The whole validated configuration of one request.
#[derive(Debug, Clone)]
pub struct Config {
    pub connection: ConnectionConfig,
    pub sync: SyncConfig,
}

impl Config {
    /// Parses and validates the request's configuration map.
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let reader = MapReader(map);
        if let Some(unknown) = map.keys().find(|k| !keys::ALL.contains(&k.as_str())) {
            return Err(ConfigError::new(
                unknown,
                format!("unknown key; the keys are: {}", keys::ALL.join(", ")),
            ));
        }

        let host = reader.required(keys::HOST)?;
        if host.contains(char::is_whitespace) || host.contains('/') {
            return Err(ConfigError::new(
                keys::HOST,
                "must be a host name or IP address, e.g. examplecluster.abc123.us-west-2.redshift.amazonaws.com (no scheme, port or path)",
            ));
        }
        let port = match reader.optional(keys::PORT) {
            None => DEFAULT_PORT,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(ConfigError::new(
                    keys::PORT,
                    "must be a TCP port number between 1 and 65535 (Redshift's default is 5439)",
                )),
            },
        };
        let database = reader.required(keys::DATABASE)?;
        let user = reader.required(keys::USER)?;
        // The password is taken verbatim: leading/trailing spaces may be part of it.
        let password = match map.get(keys::PASSWORD) {
            Some(p) if !p.is_empty() => Secret::new(p.clone()),
            _ => {
                return Err(ConfigError::new(
                    keys::PASSWORD,
                    "is required (the database user's password, or temporary IAM credentials' password)",
                ))
            }
        };
        let sslmode = match reader.optional(keys::SSLMODE) {
            None => SslMode::Require,
            Some(text) => SslMode::parse(&text.to_ascii_lowercase()).ok_or_else(|| {
                ConfigError::new(
                    keys::SSLMODE,
                    format!("must be one of {}", SslMode::NAMES.join(", ")),
                )
            })?,
        };
        let root_certificates = match reader.optional(keys::SSLROOTCERT) {
            None => RootCertificates::System,
            Some(text) => RootCertificates::Pem(read_pem(&text)?),
        };
        let connect_timeout = reader
            .seconds(keys::CONNECT_TIMEOUT_S, 1, 3600)?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let query_timeout = reader
            .seconds(keys::QUERY_TIMEOUT_S, 0, 7 * 24 * 3600)?
            .unwrap_or(DEFAULT_QUERY_TIMEOUT);

        let schemas = reader.list(keys::SCHEMAS).map(|list| {
            let mut list = list;
            list.dedup();
            list
        });
        let tables = match reader.list(keys::TABLES) {
            None => None,
            Some(items) => Some(
                items
                    .iter()
                    .map(|item| {
                        TableName::parse(item).ok_or_else(|| {
                            ConfigError::new(
                                keys::TABLES,
                                format!("`{item}` is not of the form schema.table"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let (default_cursor_column, cursor_column_overrides) = parse_cursor_columns(&reader)?;
        let cursor_lag = reader
            .seconds(keys::CURSOR_LAG_S, 0, 30 * 24 * 3600)?
            .unwrap_or(Duration::ZERO);
        let batch_size = match reader.optional(keys::BATCH_SIZE) {
            None => DEFAULT_BATCH_SIZE,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_BATCH_SIZE).contains(&n) => n,
                _ => {
                    return Err(ConfigError::new(
                        keys::BATCH_SIZE,
                        format!("must be a whole number of rows between 1 and {MAX_BATCH_SIZE}"),
                    ))
                }
            },
        };

        let max_parallel_tables = match reader.optional(keys::MAX_PARALLEL_TABLES) {
            None => DEFAULT_MAX_PARALLEL_TABLES,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PARALLEL_TABLES).contains(&n) => n,
                _ => {
                    return Err(ConfigError::new(
                        keys::MAX_PARALLEL_TABLES,
                        format!(
                            "must be a whole number of tables between 1 and {MAX_PARALLEL_TABLES}"
                        ),
                    ))
                }
            },
        };

        Ok(Self {
            connection: ConnectionConfig {
                host,
                port,
                database,
                user,
                password,
                sslmode,
                root_certificates,
                connect_timeout,
                query_timeout,
            },
            sync: SyncConfig {
                schemas,
                tables,
                default_cursor_column,
                cursor_column_overrides,
                batch_size,
                cursor_lag,
                max_parallel_tables,
            },
        })
    }
}

/// `cursor_column`: a comma list of one default column name and/or `schema.table:column`
/// overrides, e.g. `updated_at, public.orders:modified_at`.
fn parse_cursor_columns(
    reader: &MapReader<'_>,
) -> Result<(String, BTreeMap<TableName, String>), ConfigError> {
    let mut default = None;
    let mut overrides = BTreeMap::new();
    for item in reader.list(keys::CURSOR_COLUMN).unwrap_or_default() {
        match item.rsplit_once(':') {
            Some((table, column)) => {
                let table = TableName::parse(table).ok_or_else(|| {
                    ConfigError::new(
                        keys::CURSOR_COLUMN,
                        format!("`{item}`: an override is schema.table:column"),
                    )
                })?;
                let column = column.trim();
                if column.is_empty() {
                    return Err(ConfigError::new(
                        keys::CURSOR_COLUMN,
                        format!("`{item}`: the column name after `:` is empty"),
                    ));
                }
                overrides.insert(table, column.to_string());
            }
            None if default.is_none() => default = Some(item),
            None => {
                return Err(ConfigError::new(
                    keys::CURSOR_COLUMN,
                    "names more than one default column; give one name and schema.table:column overrides",
                ))
            }
        }
    }
    Ok((
        default.unwrap_or_else(|| DEFAULT_CURSOR_COLUMN.to_string()),
        overrides,
    ))
}

/// `sslrootcert` holds either PEM text or the path of a PEM file.
fn read_pem(value: &str) -> Result<Vec<u8>, ConfigError> {
    let pem = if value.contains("-----BEGIN") {
        value.as_bytes().to_vec()
    } else {
        std::fs::read(value).map_err(|err| {
            ConfigError::new(
                keys::SSLROOTCERT,
                format!("cannot read the PEM file `{value}`: {err}"),
            )
        })?
    };
    native_tls::Certificate::from_pem(&pem).map_err(|_| {
        ConfigError::new(
            keys::SSLROOTCERT,
            "is not a PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        )
    })?;
    Ok(pem)
}

/// Reads trimmed values; empty strings count as absent, as form fields left blank arrive empty.
struct MapReader<'a>(&'a HashMap<String, String>);

impl MapReader<'_> {
    fn optional(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    fn required(&self, key: &str) -> Result<String, ConfigError> {
        self.optional(key)
            .ok_or_else(|| ConfigError::new(key, "is required"))
    }

    fn list(&self, key: &str) -> Option<Vec<String>> {
        let items: Vec<String> = self
            .optional(key)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        (!items.is_empty()).then_some(items)
    }

    fn seconds(&self, key: &str, min: u64, max: u64) -> Result<Option<Duration>, ConfigError> {
        match self.optional(key) {
            None => Ok(None),
            Some(text) => match text.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(Duration::from_secs(n))),
                _ => Err(ConfigError::new(
                    key,
                    format!("must be a whole number of seconds between {min} and {max}"),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn defaults_apply_to_a_minimal_configuration() {
        let config = Config::from_map(&map(&minimal())).unwrap();
        assert_eq!(config.connection.port, 5439);
        assert_eq!(config.connection.sslmode, SslMode::Require);
        assert_eq!(
            config.connection.root_certificates,
            RootCertificates::System
        );
        assert_eq!(config.sync.default_cursor_column, "updated_at");
        assert_eq!(config.sync.batch_size, DEFAULT_BATCH_SIZE);
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
            ("connect_timeout_s", "0"),
            ("query_timeout_s", "x"),
            ("cursor_lag_s", "-1"),
            ("max_parallel_tables", "0"),
            ("max_parallel_tables", "33"),
            ("tables", "no_dot"),
            ("cursor_column", "public.orders:"),
            ("cursor_column", "a, b"),
            ("sslrootcert", "/nonexistent/ca.pem"),
            ("host", "http://x/y"),
            ("colour", "blue"),
        ];
        for (key, value) in cases {
            let mut pairs = minimal();
            pairs.push((key, value));
            let err = Config::from_map(&map(&pairs)).unwrap_err();
            assert_eq!(err.key, key, "{key}={value} gave {err}");
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
    fn cursor_overrides_and_filters_parse() {
        let mut pairs = minimal();
        pairs.push(("cursor_column", "modified, public.orders:changed_at"));
        pairs.push(("schemas", "public, sales"));
        pairs.push(("tables", "public.orders, sales.items"));
        let config = Config::from_map(&map(&pairs)).unwrap();
        let orders = TableName::new("public", "orders");
        let items = TableName::new("sales", "items");
        assert_eq!(config.sync.cursor_column_for(&orders), "changed_at");
        assert_eq!(config.sync.cursor_column_for(&items), "modified");
        assert!(config.sync.includes(&orders));
        assert!(!config.sync.includes(&TableName::new("public", "other")));
    }

    #[test]
    fn password_never_prints() {
        let config = Config::from_map(&map(&minimal())).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret!"), "{debug}");
    }
}
