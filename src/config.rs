//! Typed, validated configuration.
//!
//! Hosts send configuration as a flat `map<string, string>`. It is parsed exactly once, at the top
//! of each RPC, into [`Config`]; every later layer works with typed values. Any bad value is a
//! [`ConfigError`] naming the key and the rule it broke, which the gRPC layer maps to
//! `INVALID_ARGUMENT` before anything reaches the database. The password lives in a [`Secret`]
//! so that no `Debug`, `Display` or log line can print it, and error messages quote at most a
//! short prefix of any value.
//!
//! Names (`schemas`, `tables`, the cursor column and its overrides) are [`Identifier`]s and
//! match the catalog the way Redshift resolves identifiers in SQL: an unquoted name folds to
//! lower case, a `"quoted"` one keeps its case and may contain dots, commas and (doubled) quotes.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Every configuration key, in the order the configuration form shows them.
pub mod keys {
    pub const HOST: &str = "host";
    pub const PORT: &str = "port";
    pub const DATABASE: &str = "database";
    pub const AUTH: &str = "auth";
    pub const USER: &str = "user";
    pub const PASSWORD: &str = "password";
    pub const REGION: &str = "region";
    pub const CLUSTER_IDENTIFIER: &str = "cluster_identifier";
    pub const WORKGROUP: &str = "workgroup";
    pub const DB_USER: &str = "db_user";
    pub const AUTO_CREATE: &str = "auto_create";
    pub const DB_GROUPS: &str = "db_groups";
    pub const AWS_ENDPOINT_URL: &str = "aws_endpoint_url";
    pub const SSLMODE: &str = "sslmode";
    pub const SSLROOTCERT: &str = "sslrootcert";
    pub const SCHEMAS: &str = "schemas";
    pub const TABLES: &str = "tables";
    pub const CURSOR_COLUMN: &str = "cursor_column";
    pub const CURSOR_LAG_S: &str = "cursor_lag_s";
    pub const BATCH_SIZE: &str = "batch_size";
    pub const MAX_BATCH_BYTES: &str = "max_batch_bytes";
    pub const MAX_ROWS_PER_QUERY: &str = "max_rows_per_query";
    pub const MAX_PARALLEL_TABLES: &str = "max_parallel_tables";
    pub const CONNECT_TIMEOUT_S: &str = "connect_timeout_s";
    pub const QUERY_TIMEOUT_S: &str = "query_timeout_s";

    /// All keys the connector understands; anything else is rejected as a probable typo.
    pub const ALL: &[&str] = &[
        HOST,
        PORT,
        DATABASE,
        AUTH,
        USER,
        PASSWORD,
        REGION,
        CLUSTER_IDENTIFIER,
        WORKGROUP,
        DB_USER,
        AUTO_CREATE,
        DB_GROUPS,
        AWS_ENDPOINT_URL,
        SSLMODE,
        SSLROOTCERT,
        SCHEMAS,
        TABLES,
        CURSOR_COLUMN,
        CURSOR_LAG_S,
        BATCH_SIZE,
        MAX_BATCH_BYTES,
        MAX_ROWS_PER_QUERY,
        MAX_PARALLEL_TABLES,
        CONNECT_TIMEOUT_S,
        QUERY_TIMEOUT_S,
    ];
}

pub const DEFAULT_PORT: u16 = 5439;
pub const DEFAULT_CURSOR_COLUMN: &str = "updated_at";
/// Rows per fetch round trip, and at most between checkpoints. Rows stream through as they
/// arrive, so memory does not grow with it; it sets how often a checkpoint is taken.
pub const DEFAULT_BATCH_SIZE: u32 = 5_000;
pub const MAX_BATCH_SIZE: u32 = 1_000_000;
/// Bytes of records at most between checkpoints and in one `Records` message: wide rows
/// checkpoint by size before they reach `batch_size` rows.
pub const DEFAULT_MAX_BATCH_BYTES: u64 = 8 * 1024 * 1024;
pub const MIN_MAX_BATCH_BYTES: u64 = 64 * 1024;
/// Hosts accept messages up to 128 MiB; a batch must leave room for its framing.
pub const MAX_MAX_BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// Rows one query may read before the next query resumes after it: Redshift materialises a
/// query's result on the leader node, holds a WLM slot while it runs, and query monitoring
/// rules often abort queries by returned rows. Chosen by `cargo bench` (benches/README.md):
/// at a million rows per query the resume costs a few percent.
pub const DEFAULT_MAX_ROWS_PER_QUERY: u64 = 1_000_000;
pub const MAX_MAX_ROWS_PER_QUERY: u64 = 10_000_000_000;
/// One table at a time unless asked: each concurrent scan holds one of the cluster's WLM query
/// slots for as long as it runs, which other users of a shared cluster need too.
pub const DEFAULT_MAX_PARALLEL_TABLES: usize = 1;
pub const MAX_PARALLEL_TABLES: usize = 32;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Zero means "no statement timeout" (the server's own setting applies).
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(0);
/// The largest `sslrootcert` file read: a CA bundle is tens of kilobytes.
pub const MAX_ROOT_CERTIFICATE_FILE: u64 = 1024 * 1024;

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
            key: shorten(key).into_owned(),
            rule: rule.into(),
        }
    }
}

/// At most the first 40 characters of a value, for error messages: enough to recognise it,
/// never a whole megabyte of it.
pub fn shorten(value: &str) -> Cow<'_, str> {
    const SHOWN: usize = 40;
    match value.char_indices().nth(SHOWN) {
        None => Cow::Borrowed(value),
        Some((end, _)) => Cow::Owned(format!("{}…", &value[..end])),
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
    /// A PEM bundle, given inline or read from the configured file.
    Pem(Vec<u8>),
    /// A PEM file not read yet: [`Config::load_files`] reads it, off the async workers.
    File(PathBuf),
}

/// A table of the catalog, by its exact names.
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
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// A name as written in the configuration, matched the way Redshift resolves an identifier:
/// unquoted, it folds to lower case; `"quoted"`, it is taken as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier {
    text: String,
    quoted: bool,
}

impl Identifier {
    pub fn unquoted(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            quoted: false,
        }
    }

    pub fn quoted(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            quoted: true,
        }
    }

    /// The catalog name this identifier stands for.
    pub fn resolved(&self) -> Cow<'_, str> {
        if self.quoted {
            Cow::Borrowed(&self.text)
        } else {
            Cow::Owned(self.text.to_ascii_lowercase())
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        self.resolved() == name
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted {
            write!(f, "\"{}\"", self.text.replace('"', "\"\""))
        } else {
            f.write_str(&self.text)
        }
    }
}

/// `schema.table` as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TablePattern {
    pub schema: Identifier,
    pub table: Identifier,
}

impl TablePattern {
    pub fn matches(&self, name: &TableName) -> bool {
        self.schema.matches(&name.schema) && self.table.matches(&name.table)
    }
}

impl fmt::Display for TablePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Connection settings: what it takes to open a session.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Empty with IAM sign-in: the cluster's or workgroup's endpoint, asked from AWS.
    pub host: String,
    /// `None`: the endpoint's port when the host is asked from AWS, else [`DEFAULT_PORT`].
    pub port: Option<u16>,
    pub database: String,
    pub authentication: Authentication,
    pub sslmode: SslMode,
    pub root_certificates: RootCertificates,
    pub connect_timeout: Duration,
    /// Zero: no statement timeout.
    pub query_timeout: Duration,
}

impl ConnectionConfig {
    /// The configured port, or Redshift's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }
}

/// How the connector signs in to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Authentication {
    /// A database user and its password (`auth` = password, the default).
    Password { user: String, password: Secret },
    /// Temporary credentials from Redshift's APIs, signed with the AWS credentials of the
    /// standard chain (`auth` = iam), as AWS's own drivers offer.
    Iam(IamSignIn),
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
        }
    }
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

/// What to sync and how.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Schemas to discover; `None` = every non-system schema.
    pub schemas: Option<Vec<Identifier>>,
    /// Optional include list; `None` = every readable table of the schemas.
    pub tables: Option<Vec<TablePattern>>,
    pub default_cursor_column: Identifier,
    pub cursor_column_overrides: Vec<(TablePattern, Identifier)>,
    pub batch_size: u32,
    pub max_batch_bytes: u64,
    pub max_rows_per_query: u64,
    /// Rows whose TIMESTAMP/TIMESTAMPTZ cursor is newer than the database's clock minus this
    /// are left for a later sync, so a checkpoint never passes rows that may still commit with
    /// an older cursor value (redshift.md, "Time and the cursor"). Zero: no bound.
    pub cursor_lag: Duration,
    /// Tables synced at once within one Update, each on a session of its own.
    pub max_parallel_tables: usize,
}

impl SyncConfig {
    /// The cursor column configured for a table (the last matching override, else the default).
    pub fn cursor_column_for(&self, table: &TableName) -> &Identifier {
        self.cursor_column_overrides
            .iter()
            .rev()
            .find(|(pattern, _)| pattern.matches(table))
            .map_or(&self.default_cursor_column, |(_, column)| column)
    }

    /// Whether the schema/table filters admit this table.
    pub fn includes(&self, table: &TableName) -> bool {
        let schema_ok = self
            .schemas
            .as_ref()
            .is_none_or(|schemas| schemas.iter().any(|s| s.matches(&table.schema)));
        let table_ok = self
            .tables
            .as_ref()
            .is_none_or(|tables| tables.iter().any(|t| t.matches(table)));
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

        let authentication = parse_authentication(map, &reader)?;
        let host =
            match (&authentication, reader.optional(keys::HOST)) {
                (_, Some(host)) => host,
                (Authentication::Iam(_), None) => String::new(),
                (Authentication::Password { .. }, None) => return Err(ConfigError::new(
                    keys::HOST,
                    "is required (the cluster's endpoint; with `auth` = iam it may be left empty)",
                )),
            };
        validate_host(&host)?;
        let port = match reader.optional(keys::PORT) {
            None => None,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => return Err(ConfigError::new(
                    keys::PORT,
                    "must be a TCP port number between 1 and 65535 (Redshift's default is 5439)",
                )),
            },
        };
        let database = reader.required(keys::DATABASE)?;
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
            Some(text) if text.contains("-----BEGIN") => {
                let pem = text.into_bytes();
                check_pem(&pem)?;
                RootCertificates::Pem(pem)
            }
            Some(path) => RootCertificates::File(PathBuf::from(path)),
        };
        let connect_timeout = reader
            .seconds(keys::CONNECT_TIMEOUT_S, 1, 3600)?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let query_timeout = reader
            .seconds(keys::QUERY_TIMEOUT_S, 0, 7 * 24 * 3600)?
            .unwrap_or(DEFAULT_QUERY_TIMEOUT);

        let schemas = match reader.list(keys::SCHEMAS)? {
            None => None,
            Some(items) => Some(
                items
                    .into_iter()
                    .map(|item| single_name(keys::SCHEMAS, item))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let tables = match reader.list(keys::TABLES)? {
            None => None,
            Some(items) => Some(
                items
                    .into_iter()
                    .map(|item| table_pattern(keys::TABLES, item))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let (default_cursor_column, cursor_column_overrides) = parse_cursor_columns(&reader)?;
        let cursor_lag = reader
            .seconds(keys::CURSOR_LAG_S, 0, 30 * 24 * 3600)?
            .unwrap_or(Duration::ZERO);
        let batch_size = reader
            .number(keys::BATCH_SIZE, 1, u64::from(MAX_BATCH_SIZE), "rows")?
            .map_or(DEFAULT_BATCH_SIZE, |n| n as u32);
        let max_batch_bytes = reader
            .number(
                keys::MAX_BATCH_BYTES,
                MIN_MAX_BATCH_BYTES,
                MAX_MAX_BATCH_BYTES,
                "bytes",
            )?
            .unwrap_or(DEFAULT_MAX_BATCH_BYTES);
        let max_rows_per_query = reader
            .number(keys::MAX_ROWS_PER_QUERY, 1, MAX_MAX_ROWS_PER_QUERY, "rows")?
            .unwrap_or(DEFAULT_MAX_ROWS_PER_QUERY);
        let max_parallel_tables = reader
            .number(
                keys::MAX_PARALLEL_TABLES,
                1,
                MAX_PARALLEL_TABLES as u64,
                "tables",
            )?
            .map_or(DEFAULT_MAX_PARALLEL_TABLES, |n| n as usize);

        Ok(Self {
            connection: ConnectionConfig {
                host,
                port,
                database,
                authentication,
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
                max_batch_bytes,
                max_rows_per_query,
                cursor_lag,
                max_parallel_tables,
            },
        })
    }

    /// Reads the files the configuration names (`sslrootcert` as a path) on a blocking thread,
    /// bounded in size, refusing anything but a regular file.
    pub async fn load_files(&mut self) -> Result<(), ConfigError> {
        if let RootCertificates::File(path) = &self.connection.root_certificates {
            let path = path.clone();
            // One message for every failure, PEM content included: which files exist or can be
            // read is nothing a caller should learn from it.
            let pem = tokio::task::spawn_blocking(move || read_root_certificate_file(&path))
                .await
                .unwrap_or(Err(()))
                .and_then(|pem| check_pem(&pem).map(|()| pem).map_err(|_| ()))
                .map_err(|()| {
                    ConfigError::new(
                        keys::SSLROOTCERT,
                        format!(
                            "must be PEM text, or the path of a readable PEM file of at most {} KiB",
                            MAX_ROOT_CERTIFICATE_FILE / 1024
                        ),
                    )
                })?;
            self.connection.root_certificates = RootCertificates::Pem(pem);
        }
        Ok(())
    }
}

/// Reads a root certificate file: a regular file of at most [`MAX_ROOT_CERTIFICATE_FILE`]
/// bytes. Every failure is the same `Err(())`: the error must not tell which other files exist
/// or can be read. Opened non-blocking, so a FIFO cannot hold the thread waiting for a writer.
fn read_root_certificate_file(path: &std::path::Path) -> Result<Vec<u8>, ()> {
    use std::io::Read as _;
    let metadata = std::fs::metadata(path).map_err(|_| ())?;
    if !metadata.is_file() || metadata.len() > MAX_ROOT_CERTIFICATE_FILE {
        return Err(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path).map_err(|_| ())?;
    // Checked again on the open file: the path may have changed in between.
    let metadata = file.metadata().map_err(|_| ())?;
    if !metadata.is_file() {
        return Err(());
    }
    let mut pem = Vec::new();
    file.take(MAX_ROOT_CERTIFICATE_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(|_| ())?;
    if pem.len() as u64 > MAX_ROOT_CERTIFICATE_FILE {
        return Err(());
    }
    Ok(pem)
}

fn check_pem(pem: &[u8]) -> Result<(), ConfigError> {
    crate::source::wire::tls::pem_roots(pem)
        .map(|_| ())
        .map_err(|_| {
            ConfigError::new(
                keys::SSLROOTCERT,
                "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            )
        })
}

/// `auth` and the keys of the chosen method. Keys of the other method are refused rather than
/// ignored: a password left beside `auth` = iam would otherwise look like it was used.
fn parse_authentication(
    map: &HashMap<String, String>,
    reader: &MapReader<'_>,
) -> Result<Authentication, ConfigError> {
    const IAM_KEYS: &[&str] = &[
        keys::REGION,
        keys::CLUSTER_IDENTIFIER,
        keys::WORKGROUP,
        keys::DB_USER,
        keys::AUTO_CREATE,
        keys::DB_GROUPS,
        keys::AWS_ENDPOINT_URL,
    ];
    let method = reader
        .optional(keys::AUTH)
        .map(|m| m.to_ascii_lowercase())
        .unwrap_or_else(|| "password".to_string());
    match method.as_str() {
        "password" => {
            // `auto_create` = false is the form's default, and means nothing here.
            let set = |key: &str| match reader.optional(key) {
                Some(value) => !(key == keys::AUTO_CREATE && value.eq_ignore_ascii_case("false")),
                None => false,
            };
            if let Some(key) = IAM_KEYS.iter().find(|key| set(key)) {
                return Err(ConfigError::new(
                    key,
                    "is only used with `auth` = iam; set `auth` to iam, or leave it empty",
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
        "iam" => {
            if map.get(keys::PASSWORD).is_some_and(|p| !p.is_empty()) {
                return Err(ConfigError::new(
                    keys::PASSWORD,
                    "is not used with `auth` = iam (temporary passwords come from AWS); leave it empty",
                ));
            }
            let region = reader.required(keys::REGION)?;
            if !region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(ConfigError::new(
                    keys::REGION,
                    format!(
                        "`{}` is not an AWS region name such as us-east-1",
                        shorten(&region)
                    ),
                ));
            }
            let endpoint_url = reader.optional(keys::AWS_ENDPOINT_URL);
            if let Some(url) = &endpoint_url {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::new(
                        keys::AWS_ENDPOINT_URL,
                        "must be an http(s):// URL, e.g. https://redshift.us-east-1.amazonaws.com",
                    ));
                }
            }
            let cluster = reader.optional(keys::CLUSTER_IDENTIFIER);
            let workgroup = reader.optional(keys::WORKGROUP);
            let target = match (cluster, workgroup) {
                (Some(identifier), None) => {
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
                        let key = if auto_create { keys::AUTO_CREATE } else { keys::DB_GROUPS };
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
                (None, Some(name)) => {
                    for key in [keys::DB_USER, keys::USER, keys::AUTO_CREATE, keys::DB_GROUPS] {
                        if reader.optional(key).is_some() {
                            return Err(ConfigError::new(
                                key,
                                "is not used with a Serverless `workgroup`: the database user is the IAM identity; leave it empty",
                            ));
                        }
                    }
                    IamTarget::Workgroup { name }
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        keys::WORKGROUP,
                        "and `cluster_identifier` are both set; give the cluster (provisioned) or the workgroup (Serverless)",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        keys::CLUSTER_IDENTIFIER,
                        "or `workgroup` is required with `auth` = iam",
                    ))
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
            format!("`{}` is not one of: password, iam", shorten(other)),
        )),
    }
}

/// A host name or IP address; a port or scheme in it is a common mistake worth naming.
fn validate_host(host: &str) -> Result<(), ConfigError> {
    let rule = |rule: &str| Err(ConfigError::new(keys::HOST, rule));
    if host.contains(char::is_whitespace) || host.contains('/') {
        return rule("must be a host name or IP address, e.g. examplecluster.abc123.us-west-2.redshift.amazonaws.com (no scheme, port or path)");
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return rule(&format!(
            "`{}` includes a port; give the host name alone and the port in `port`",
            shorten(host)
        ));
    }
    Ok(())
}

/// `cursor_column`: a comma list of one default column name and/or `schema.table:column`
/// overrides, e.g. `updated_at, public.orders:modified_at`.
fn parse_cursor_columns(
    reader: &MapReader<'_>,
) -> Result<(Identifier, Vec<(TablePattern, Identifier)>), ConfigError> {
    let key = keys::CURSOR_COLUMN;
    let mut default = None;
    let mut overrides = Vec::new();
    for item in reader.list(key)?.unwrap_or_default() {
        let parts = split_unquoted(key, item, ':')?;
        match parts.as_slice() {
            [table, column] => {
                if column.trim().is_empty() {
                    return Err(ConfigError::new(
                        key,
                        format!("`{}`: the column name after `:` is empty", shorten(item)),
                    ));
                }
                overrides.push((table_pattern(key, table)?, single_name(key, column)?));
            }
            [column] if default.is_none() => default = Some(single_name(key, column)?),
            [_] => {
                return Err(ConfigError::new(
                    key,
                    "names more than one default column; give one name and schema.table:column overrides",
                ))
            }
            _ => {
                return Err(ConfigError::new(
                    key,
                    format!("`{}`: an override is schema.table:column", shorten(item)),
                ))
            }
        }
    }
    Ok((
        default.unwrap_or_else(|| Identifier::unquoted(DEFAULT_CURSOR_COLUMN)),
        overrides,
    ))
}

/// `schema.table` (each part quoted or not).
fn table_pattern(key: &str, text: &str) -> Result<TablePattern, ConfigError> {
    match names(key, text)?.as_slice() {
        [schema, table] => Ok(TablePattern {
            schema: schema.clone(),
            table: table.clone(),
        }),
        _ => Err(ConfigError::new(
            key,
            format!(
                "`{}` is not of the form schema.table (quote names that contain dots: \"my.schema\".\"my.table\")",
                shorten(text.trim())
            ),
        )),
    }
}

/// One name, not qualified.
fn single_name(key: &str, text: &str) -> Result<Identifier, ConfigError> {
    match names(key, text)?.as_slice() {
        [name] => Ok(name.clone()),
        _ => Err(ConfigError::new(
            key,
            format!(
                "`{}` is not a single name (quote a name that contains a dot: \"my.name\")",
                shorten(text.trim())
            ),
        )),
    }
}

/// The dot-separated names of a (possibly qualified) name.
fn names(key: &str, text: &str) -> Result<Vec<Identifier>, ConfigError> {
    split_unquoted(key, text, '.')?
        .into_iter()
        .map(|part| {
            let part = part.trim();
            if let Some(inner) = part.strip_prefix('"') {
                let inner = inner.strip_suffix('"').filter(|_| part.len() >= 2);
                match inner {
                    Some(inner) if !inner.is_empty() => {
                        Ok(Identifier::quoted(inner.replace("\"\"", "\"")))
                    }
                    _ => Err(ConfigError::new(
                        key,
                        format!(
                            "`{}` has an unterminated or empty quoted name",
                            shorten(text.trim())
                        ),
                    )),
                }
            } else if part.is_empty() {
                Err(ConfigError::new(
                    key,
                    format!("`{}` has an empty name", shorten(text.trim())),
                ))
            } else if part.contains('"') {
                Err(ConfigError::new(
                    key,
                    format!(
                        "`{}`: quote whole names, e.g. \"My Table\"",
                        shorten(text.trim())
                    ),
                ))
            } else {
                Ok(Identifier::unquoted(part))
            }
        })
        .collect()
}

/// Splits `text` at `separator` where it is not inside double quotes (a doubled quote inside
/// quotes is a literal quote).
fn split_unquoted<'a>(
    key: &str,
    text: &'a str,
    separator: char,
) -> Result<Vec<&'a str>, ConfigError> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        } else if c == separator && !in_quotes {
            parts.push(&text[start..at]);
            start = at + c.len_utf8();
        }
    }
    if in_quotes {
        return Err(ConfigError::new(
            key,
            format!("`{}` has an unterminated quote", shorten(text.trim())),
        ));
    }
    parts.push(&text[start..]);
    Ok(parts)
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

    /// A comma list (commas inside quoted names do not separate), empty items dropped.
    fn list(&self, key: &str) -> Result<Option<Vec<&str>>, ConfigError> {
        let Some(text) = self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let items: Vec<&str> = split_unquoted(key, text, ',')?
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Ok((!items.is_empty()).then_some(items))
    }

    fn number(
        &self,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<Option<u64>, ConfigError> {
        match self.optional(key) {
            None => Ok(None),
            Some(text) => match text.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ConfigError::new(
                    key,
                    format!("must be a whole number of {unit} between {min} and {max}"),
                )),
            },
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self
            .optional(key)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ConfigError::new(key, "must be true or false")),
        }
    }

    fn seconds(&self, key: &str, min: u64, max: u64) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .number(key, min, max, "seconds")?
            .map(Duration::from_secs))
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

    fn iam(pairs: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut all = vec![("host", ""), ("database", "dev"), ("auth", "IAM")];
        all.extend_from_slice(pairs);
        Config::from_map(&map(&all))
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
            serde_json::from_str(include_str!("../configuration.example.json"))
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
        assert_eq!(config.connection.sslmode, SslMode::Require);
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
        assert_eq!(config.sync.max_rows_per_query, DEFAULT_MAX_ROWS_PER_QUERY);
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
