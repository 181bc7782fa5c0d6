//! The Redshift Data API, emulated: moto's `redshift-data` accepts statements but runs no SQL,
//! so the tests get this instead. The AWS front ([`crate::aws`]) answers every
//! `RedshiftData.*` call here, in the Data API's JSON protocol, and each statement runs
//! through the Redshift-shaped proxy on the tests' PostgreSQL:
//!
//! ```text
//!  connector ── HTTPS JSON (SigV4) ──► front ──► this ── PostgreSQL protocol ──► proxy ──► PostgreSQL
//! ```
//!
//! What it keeps of the real service:
//! - statements run asynchronously: `ExecuteStatement` answers with an id at once, the
//!   statement is `STARTED` until it ends `FINISHED`, `FAILED` (with Redshift's error text,
//!   no SQLSTATE) or `ABORTED` (`CancelStatement`), which `DescribeStatement` reports, at once
//!   or, with `WaitTimeSeconds`, when the statement ends (long polling);
//! - sessions (`SessionKeepAliveSeconds`, then `SessionId`): one database connection each, so
//!   settings and transactions hold across statements; [`DataApi::expire_sessions`] ends them
//!   all, and a statement naming one is refused (`ValidationException`), as an expired session is;
//! - named parameters (`:name`), values as text;
//! - results as JSON fields by type (`longValue` for integers, `doubleValue` for floats,
//!   `booleanValue`, `stringValue` for everything else, `isNull`), column metadata by type
//!   name, pages with `NextToken`;
//! - its limits: 64 KB per row ("Packet for query is too large") and a cap per statement's
//!   result ("Database response exceeded size limit"), both smaller on demand;
//! - on demand: throttling (`ThrottlingException`), `ActiveStatementsExceededException`, and a
//!   latency added to every call.
//!
//! Sign-in is the front's: a `DbUser` or the IAM identity gets a temporary password installed
//! in PostgreSQL (as `GetClusterCredentials` would), a `SecretArn`'s secret is read from moto.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fivetran_source::source::wire::tls::TlsMode;
use fivetran_source::source::wire::{oid, CancelToken, ConnectOptions, Connection};
use serde_json::{json, Value};

/// How the emulated service behaves; [`DataApi::set`] changes it while it runs.
#[derive(Debug, Clone)]
pub struct DataApiSettings {
    /// Added to every call before it is answered (a region away, say 50 ms).
    pub latency: Duration,
    /// The next this-many `ExecuteStatement` calls are throttled.
    pub throttle_next: u32,
    /// The next this-many `ExecuteStatement` calls meet too many active statements.
    pub active_statements_exceeded_next: u32,
    /// Records per result page at most.
    pub page_rows: usize,
    /// The service's limit per row (64 KB).
    pub max_row_bytes: usize,
    /// The service's cap on one statement's result (500 MB).
    pub max_result_bytes: usize,
    /// How long each statement whose SQL contains [`slow_sql`](Self::slow_sql) runs at least
    /// (a slow query), before its SQL is executed.
    pub run_time: Duration,
    pub slow_sql: Option<String>,
}

impl Default for DataApiSettings {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            throttle_next: 0,
            active_statements_exceeded_next: 0,
            page_rows: 1000,
            max_row_bytes: 64 * 1024,
            max_result_bytes: 500 * 1024 * 1024,
            run_time: Duration::ZERO,
            slow_sql: None,
        }
    }
}

/// Who a new session signs in to the database as.
pub(crate) struct DatabaseLogin {
    pub user: String,
    pub password: String,
    pub database: String,
}

/// A statement's place in its life.
struct Statement {
    status: &'static str,
    error: Option<String>,
    query: String,
    session_id: Option<String>,
    columns: Vec<Value>,
    records: Vec<Value>,
    result_bytes: usize,
    has_result_set: bool,
    cancel: Option<CancelToken>,
    created: SystemTime,
}

/// The emulated service's state: sessions, statements, settings, and a log of what ran.
#[derive(Default)]
pub struct DataApi {
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Connection>>>>,
    statements: Mutex<HashMap<String, Arc<Mutex<Statement>>>>,
    settings: Mutex<DataApiSettings>,
    ids: AtomicU64,
    /// Every statement's SQL, in order of arrival.
    log: Mutex<Vec<String>>,
    /// Statements refused because their session had ended.
    ended_session_refusals: AtomicU64,
}

/// Held from a new session's temporary password to its sign-in, by every emulator of the
/// process (the tests run at once on one PostgreSQL): it keeps one password a role, so
/// sessions opened at once as the same user would otherwise replace each other's.
static SIGNING_IN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The connector's configuration for `database` through the emulated Data API at
/// `endpoint_url` (the AWS front's), on the emulated cluster; sign-in as the IAM identity.
pub fn connector_configuration(endpoint_url: &str, database: &str) -> HashMap<String, String> {
    [
        ("transport", "data_api"),
        ("region", crate::aws::REGION),
        ("cluster_identifier", crate::aws::CLUSTER),
        ("database", database),
        ("aws_endpoint_url", endpoint_url),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}

/// An answer: HTTP status and JSON body.
pub(crate) type Answer = (u16, String);

fn error(code: &str, message: &str) -> Answer {
    (
        400,
        json!({ "__type": code, "message": message }).to_string(),
    )
}

impl DataApi {
    pub fn set(&self, settings: DataApiSettings) {
        *self.settings.lock().unwrap() = settings;
    }

    pub fn settings(&self) -> DataApiSettings {
        self.settings.lock().unwrap().clone()
    }

    /// Ends every session, as the service does after `SessionKeepAliveSeconds` idle.
    pub fn expire_sessions(&self) {
        self.sessions.lock().unwrap().clear();
    }

    /// How many sessions are open.
    pub fn open_sessions(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// How many statements named a session that had ended.
    pub fn ended_session_refusals(&self) -> u64 {
        self.ended_session_refusals.load(Ordering::SeqCst)
    }

    /// How many statements were cancelled (`CancelStatement`) while they ran.
    pub fn aborted(&self) -> usize {
        self.statements
            .lock()
            .unwrap()
            .values()
            .filter(|statement| statement.lock().unwrap().status == "ABORTED")
            .count()
    }

    /// Every statement's SQL so far.
    pub fn statements(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn new_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::SeqCst);
        format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), n)
    }

    pub(crate) async fn latency(&self) {
        let latency = self.settings.lock().unwrap().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// `ExecuteStatement`: `login` signs a new session in (the front decides it from the
    /// request); a request naming a session uses that session's connection.
    pub(crate) async fn execute(
        self: &Arc<Self>,
        request: &Value,
        login: impl std::future::Future<Output = Result<DatabaseLogin, Answer>>,
        database_port: u16,
    ) -> Answer {
        {
            let mut settings = self.settings.lock().unwrap();
            if settings.throttle_next > 0 {
                settings.throttle_next -= 1;
                return error("ThrottlingException", "Rate exceeded");
            }
            if settings.active_statements_exceeded_next > 0 {
                settings.active_statements_exceeded_next -= 1;
                return error(
                    "ActiveStatementsExceededException",
                    "Active statements exceeded the allowed quota.",
                );
            }
        }
        // `BatchExecuteStatement`: several statements, run in order as one transaction (one
        // query string of the simple protocol is one implicit transaction).
        let batch = request["Sqls"].as_array().map(|batch| {
            batch
                .iter()
                .map(|sql| sql.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
        });
        let joined;
        let (sql, is_batch) = match (batch, request["Sql"].as_str()) {
            (Some(Some(sqls)), None) if (1..=40).contains(&sqls.len()) => {
                joined = sqls.join("; ");
                (joined.as_str(), true)
            }
            (Some(_), _) => {
                return error("ValidationException", "Sqls must hold 1 to 40 statements")
            }
            (None, Some(sql)) => (sql, false),
            (None, None) => return error("ValidationException", "Sql is required"),
        };
        if sql.len() > 100 * 1024 {
            return error(
                "ValidationException",
                "Cannot process query string larger than 100kB",
            );
        }
        let mut db_user = None;
        let (connection, session_id) = match request["SessionId"].as_str() {
            Some(id) => {
                if request["ClusterIdentifier"].is_string()
                    || request["WorkgroupName"].is_string()
                    || request["Database"].is_string()
                {
                    return error(
                        "ValidationException",
                        "SessionId cannot be given with ClusterIdentifier, WorkgroupName or Database",
                    );
                }
                match self.sessions.lock().unwrap().get(id) {
                    Some(connection) => (Arc::clone(connection), Some(id.to_string())),
                    None => {
                        self.ended_session_refusals.fetch_add(1, Ordering::SeqCst);
                        return error(
                            "ValidationException",
                            &format!("Session {id} is not available: it ended or expired"),
                        );
                    }
                }
            }
            None => {
                let _one_at_a_time = SIGNING_IN.lock().await;
                let login = match login.await {
                    Ok(login) => login,
                    Err(answer) => return answer,
                };
                db_user = Some(login.user.clone());
                let connection = match connect(&login, database_port).await {
                    Ok(connection) => connection,
                    Err(message) => {
                        return error(
                            "DatabaseConnectionException",
                            &format!("Database connection failed: {message}"),
                        )
                    }
                };
                let connection = Arc::new(tokio::sync::Mutex::new(connection));
                let session_id = request["SessionKeepAliveSeconds"].as_i64().map(|_| {
                    let id = self.new_id();
                    self.sessions
                        .lock()
                        .unwrap()
                        .insert(id.clone(), Arc::clone(&connection));
                    id
                });
                (connection, session_id)
            }
        };
        let (sql, params) = match positional(sql, request["Parameters"].as_array()) {
            Ok(rewritten) => rewritten,
            Err(message) => return error("ValidationException", &message),
        };
        self.log.lock().unwrap().push(sql.clone());
        let id = self.new_id();
        let statement = Arc::new(Mutex::new(Statement {
            status: "STARTED",
            error: None,
            query: sql.clone(),
            session_id: session_id.clone(),
            columns: Vec::new(),
            records: Vec::new(),
            result_bytes: 0,
            has_result_set: false,
            cancel: None,
            created: SystemTime::now(),
        }));
        self.statements
            .lock()
            .unwrap()
            .insert(id.clone(), Arc::clone(&statement));
        let limits = self.settings();
        tokio::spawn(run(connection, statement, sql, params, is_batch, limits));
        let mut answer = json!({
            "Id": id,
            "CreatedAt": epoch_seconds(SystemTime::now()),
            "Database": request["Database"],
        });
        if let Some(session_id) = session_id {
            answer["SessionId"] = json!(session_id);
        }
        if let Some(db_user) = db_user {
            answer["DbUser"] = json!(db_user);
        }
        (200, answer.to_string())
    }

    /// `DescribeStatement`; with `WaitTimeSeconds` (at most 30), it answers when the
    /// statement ends or the time is up, whichever comes first (long polling).
    pub(crate) async fn describe(&self, request: &Value) -> Answer {
        let Some(statement) = self.statement(request) else {
            return error("ResourceNotFoundException", "Query does not exist.");
        };
        let wait = request["WaitTimeSeconds"].as_u64().unwrap_or(0);
        if wait > 30 {
            return error("ValidationException", "WaitTimeSeconds must be at most 30");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(wait);
        while statement.lock().unwrap().status == "STARTED" && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let statement = statement.lock().unwrap();
        let mut answer = json!({
            "Id": request["Id"],
            "Status": statement.status,
            "QueryString": statement.query,
            "HasResultSet": statement.has_result_set,
            "ResultRows": statement.records.len(),
            "ResultSize": statement.result_bytes,
            "CreatedAt": epoch_seconds(statement.created),
            "UpdatedAt": epoch_seconds(SystemTime::now()),
        });
        if let Some(error) = &statement.error {
            answer["Error"] = json!(error);
        }
        if let Some(session_id) = &statement.session_id {
            answer["SessionId"] = json!(session_id);
        }
        (200, answer.to_string())
    }

    pub(crate) fn result(&self, request: &Value) -> Answer {
        let Some(statement) = self.statement(request) else {
            return error("ResourceNotFoundException", "Query does not exist.");
        };
        let statement = statement.lock().unwrap();
        if statement.status != "FINISHED" {
            return error(
                "ValidationException",
                &format!("Query has not finished: its status is {}", statement.status),
            );
        }
        if !statement.has_result_set {
            return error(
                "ResourceNotFoundException",
                "Query does not have result. Please check query status with DescribeStatement.",
            );
        }
        let start = match request["NextToken"].as_str() {
            None => 0,
            Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse().ok()) {
                Some(start) if start <= statement.records.len() => start,
                _ => return error("ValidationException", "Invalid NextToken"),
            },
        };
        let page_rows = self.settings.lock().unwrap().page_rows.max(1);
        let end = (start + page_rows).min(statement.records.len());
        let mut answer = json!({
            "Records": statement.records[start..end],
            "ColumnMetadata": statement.columns,
            "TotalNumRows": statement.records.len(),
        });
        if end < statement.records.len() {
            answer["NextToken"] = json!(format!("page-{end}"));
        }
        (200, answer.to_string())
    }

    pub(crate) async fn cancel(&self, request: &Value) -> Answer {
        let Some(statement) = self.statement(request) else {
            return error("ResourceNotFoundException", "Query does not exist.");
        };
        let token = {
            let mut statement = statement.lock().unwrap();
            if statement.status != "STARTED" {
                return error(
                    "ValidationException",
                    "Could not cancel a query that is already in FINISHED, FAILED or ABORTED state.",
                );
            }
            statement.status = "ABORTED";
            statement.cancel.clone()
        };
        if let Some(token) = token {
            let _ = token.cancel().await;
        }
        (200, json!({ "Status": true }).to_string())
    }

    fn statement(&self, request: &Value) -> Option<Arc<Mutex<Statement>>> {
        let id = request["Id"].as_str()?;
        self.statements.lock().unwrap().get(id).cloned()
    }
}

/// Signs in to the database through the Redshift-shaped proxy.
async fn connect(login: &DatabaseLogin, port: u16) -> Result<Connection, String> {
    let options = ConnectOptions {
        host: "127.0.0.1",
        port,
        database: &login.database,
        user: &login.user,
        password: &login.password,
        tls: &TlsMode::Disable,
        timeout: Duration::from_secs(10),
        application_name: "redshift-data",
        ssh: None,
    };
    Connection::connect(&options)
        .await
        .map_err(|err| err.to_string())
}

/// Runs one statement on its session's connection and records how it ended.
async fn run(
    connection: Arc<tokio::sync::Mutex<Connection>>,
    statement: Arc<Mutex<Statement>>,
    sql: String,
    params: Vec<String>,
    is_batch: bool,
    limits: DataApiSettings,
) {
    let slow = limits
        .slow_sql
        .as_ref()
        .is_some_and(|pattern| sql.contains(pattern.as_str()));
    if slow && !limits.run_time.is_zero() {
        tokio::time::sleep(limits.run_time).await;
        if statement.lock().unwrap().status != "STARTED" {
            return;
        }
    }
    let mut connection = connection.lock().await;
    statement.lock().unwrap().cancel = connection.cancel_token();
    let outcome = execute_on(&mut connection, &sql, &params, is_batch).await;
    let mut statement = statement.lock().unwrap();
    if statement.status != "STARTED" {
        return;
    }
    match outcome {
        Ok(None) => statement.status = "FINISHED",
        Ok(Some((columns, rows))) => {
            let mut records = Vec::with_capacity(rows.len());
            let mut total = 0;
            for row in rows {
                let bytes: usize = row.iter().flatten().map(String::len).sum();
                if bytes > limits.max_row_bytes {
                    statement.status = "FAILED";
                    statement.error = Some(format!(
                        "ERROR: Packet for query is too large ({bytes} > {}). You can change this value on the server by setting the max_allowed_packet' variable.",
                        limits.max_row_bytes
                    ));
                    return;
                }
                total += bytes;
                if total > limits.max_result_bytes {
                    statement.status = "FAILED";
                    statement.error = Some(
                        "ERROR: Database response exceeded size limit. Please refine your query or use UNLOAD."
                            .to_string(),
                    );
                    return;
                }
                records.push(Value::Array(
                    row.iter()
                        .zip(&columns)
                        .map(|(value, (_, type_oid))| field(value.as_deref(), *type_oid))
                        .collect(),
                ));
            }
            statement.columns = columns
                .iter()
                .map(|(name, type_oid)| {
                    json!({ "name": name, "label": name, "typeName": type_name(*type_oid) })
                })
                .collect();
            statement.records = records;
            statement.result_bytes = total;
            statement.has_result_set = true;
            statement.status = "FINISHED";
        }
        Err(message) if message.contains("canceling statement due to user request") => {
            statement.status = "ABORTED";
        }
        Err(message) => {
            statement.status = "FAILED";
            statement.error = Some(format!("ERROR: {message}"));
        }
    }
}

type Rows = (Vec<(String, u32)>, Vec<Vec<Option<String>>>);

/// Runs `sql`: its columns and rows as text, or `None` for a statement without rows.
async fn execute_on(
    connection: &mut Connection,
    sql: &str,
    params: &[String],
    is_batch: bool,
) -> Result<Option<Rows>, String> {
    let text = |err: fivetran_source::source::wire::WireError| match err {
        fivetran_source::source::wire::WireError::Db(db) => db.full_message(),
        other => other.to_string(),
    };
    if params.is_empty() && (is_batch || !returns_rows(sql)) {
        connection.simple_query(sql).await.map_err(text)?;
        return Ok(None);
    }
    let types = vec![oid::VARCHAR; params.len()];
    let columns = connection
        .prepare("data_api", sql, &types)
        .await
        .map_err(text)?;
    connection
        .close_statements(&["data_api".to_string()])
        .await
        .map_err(text)?;
    let params: Vec<&str> = params.iter().map(String::as_str).collect();
    let rows = connection.query(sql, &params).await.map_err(text)?;
    if columns.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        columns.into_iter().map(|c| (c.name, c.type_oid)).collect(),
        rows,
    )))
}

/// Whether a statement may return rows: settings, transaction control, DDL, DML and UNLOAD do
/// not, and run with the simple protocol as a client's `;`-free statement would.
fn returns_rows(sql: &str) -> bool {
    let first = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    !matches!(
        first.as_str(),
        "SET"
            | "BEGIN"
            | "START"
            | "COMMIT"
            | "END"
            | "ROLLBACK"
            | "ABORT"
            | "CREATE"
            | "DROP"
            | "ALTER"
            | "GRANT"
            | "REVOKE"
            | "INSERT"
            | "UPDATE"
            | "DELETE"
            | "TRUNCATE"
            | "UNLOAD"
            | "ANALYZE"
            | "VACUUM"
            | "RESET"
    )
}

/// A value as the Data API returns it, by its column's type.
fn field(value: Option<&str>, type_oid: u32) -> Value {
    let Some(value) = value else {
        return json!({ "isNull": true });
    };
    match type_oid {
        oid::INT2 | oid::INT4 | oid::INT8 => match value.parse::<i64>() {
            Ok(n) => json!({ "longValue": n }),
            Err(_) => json!({ "stringValue": value }),
        },
        oid::FLOAT4 | oid::FLOAT8 => match value.parse::<f64>() {
            Ok(x) if x.is_finite() => json!({ "doubleValue": x }),
            // JSON has no NaN or infinity.
            _ => json!({ "stringValue": value }),
        },
        oid::BOOL => json!({ "booleanValue": value == "t" }),
        _ => json!({ "stringValue": value }),
    }
}

/// The type name the Data API reports for a column.
fn type_name(type_oid: u32) -> &'static str {
    match type_oid {
        oid::BOOL => "bool",
        oid::INT2 => "int2",
        oid::INT4 => "int4",
        oid::INT8 => "int8",
        oid::FLOAT4 => "float4",
        oid::FLOAT8 => "float8",
        oid::NUMERIC => "numeric",
        oid::CHAR => "char",
        oid::BPCHAR => "bpchar",
        oid::VARCHAR => "varchar",
        oid::TEXT => "text",
        oid::NAME => "name",
        oid::DATE => "date",
        oid::TIME => "time",
        oid::TIMETZ => "timetz",
        oid::TIMESTAMP => "timestamp",
        oid::TIMESTAMPTZ => "timestamptz",
        oid::VARBYTE => "varbyte",
        oid::SUPER => "super",
        oid::GEOMETRY => "geometry",
        oid::GEOGRAPHY => "geography",
        _ => "varchar",
    }
}

/// `:name` parameters as `$n` with their values in order. A name without a value, or a value
/// without a name in the SQL, is refused as the service refuses it.
fn positional(sql: &str, parameters: Option<&Vec<Value>>) -> Result<(String, Vec<String>), String> {
    let Some(parameters) = parameters.filter(|p| !p.is_empty()) else {
        return Ok((sql.to_string(), Vec::new()));
    };
    let mut values = Vec::new();
    let mut names = Vec::new();
    for parameter in parameters {
        let name = parameter["name"]
            .as_str()
            .ok_or("a parameter without a name")?;
        let value = parameter["value"]
            .as_str()
            .ok_or("a parameter without a value")?;
        if value.is_empty() {
            return Err(format!(
                "Parameter {name}'s value must have a length of at least 1"
            ));
        }
        names.push(name.to_string());
        values.push(value.to_string());
    }
    let bytes = sql.as_bytes();
    let mut out = String::new();
    let mut at = 0;
    let mut copied = 0;
    let mut used = vec![false; names.len()];
    while at < bytes.len() {
        match bytes[at] {
            quote @ (b'\'' | b'"') => {
                at += 1;
                while at < bytes.len() && bytes[at] != quote {
                    at += 1;
                }
                at += 1;
            }
            b':' if bytes.get(at + 1) == Some(&b':') => at += 2,
            b':' => {
                let length = bytes[at + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                let name = &sql[at + 1..at + 1 + length];
                match names.iter().position(|n| n == name) {
                    Some(index) if length > 0 => {
                        out.push_str(&sql[copied..at]);
                        out.push_str(&format!("${}", index + 1));
                        used[index] = true;
                        at += 1 + length;
                        copied = at;
                    }
                    _ => at += 1,
                }
            }
            _ => at += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    if let Some(index) = used.iter().position(|u| !u) {
        return Err(format!(
            "Parameter {} is not used in the SQL statement",
            names[index]
        ));
    }
    Ok((out, values))
}

fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_parameters_become_positional_outside_quotes_and_casts() {
        let parameters = vec![
            json!({"name": "p1", "value": "a"}),
            json!({"name": "p2", "value": "b"}),
        ];
        let (sql, values) = positional(
            "SELECT ':p1', \":p2\", x::int FROM t WHERE a = :p1::VARCHAR AND b = :p2",
            Some(&parameters),
        )
        .unwrap();
        assert_eq!(
            sql,
            "SELECT ':p1', \":p2\", x::int FROM t WHERE a = $1::VARCHAR AND b = $2"
        );
        assert_eq!(values, ["a", "b"]);
        assert!(positional("SELECT 1", Some(&parameters)).is_err());
        assert!(positional(
            "SELECT :p1",
            Some(&vec![json!({"name": "p1", "value": ""})])
        )
        .is_err());
    }
}
