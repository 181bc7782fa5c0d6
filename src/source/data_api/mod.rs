//! The Redshift Data API as a transport: SQL over HTTPS, for clusters and workgroups the
//! connector has no network path to.
//!
//! ```text
//!  Session ── ExecuteStatement (SessionId) ──► Data API ──► cluster / workgroup
//!     │  ◄── DescribeStatement until FINISHED ──┘
//!     └─ GetStatementResult pages (the next one requested while this one is read)
//! ```
//!
//! A [`DataApiSession`] is what a TCP connection is on the direct path, and the rest of the
//! connector does not know which it has (see [`super::Session`]):
//! - the first statement opens a Data API session (`SessionKeepAliveSeconds`) and every later
//!   one names it (`SessionId`), so the session's settings (`SET timezone`, ...) and a
//!   transaction (the key snapshot's `BEGIN ... COMMIT`) hold across statements as on one
//!   connection; a session that expired is a lost connection (transient: the Update resumes
//!   from its checkpoint on a new one);
//! - a statement is described until it ends by long polling (`WaitTimeSeconds`: each
//!   `DescribeStatement` answers when the statement ends, or after 20 s), so a statement costs
//!   two calls however long it runs, and its end is seen at once; `ExecuteStatement` itself does
//!   not wait, so the statement's id is known (and it can be cancelled) from the start;
//! - result pages become `DataRow` bodies in the formats the row decoder asked for
//!   ([`values`]), so the values and the `Records` they are encoded into are the direct path's;
//! - positional parameters become named ones ([`statement`]): values never enter SQL text;
//! - failures are classified once: AWS's answers by `iam::classify` (which action to
//!   grant, throttling and `ActiveStatementsExceededException` transient, so retried within
//!   `retry_timeout_s`), a failed statement's text by [`statement_failure`] (Redshift's error
//!   texts, and the Data API's two limits: 64 KB per row, and its cap per statement result).

pub mod statement;
pub mod values;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_redshiftdata::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_redshiftdata::types::{Field, ResultFormatString, SqlParameter, StatusString};
use aws_sdk_redshiftdata::Client;

use super::iam::{classify, IamError};
use super::wire::Column;
use super::SourceError;
use crate::config::{Authentication, ConnectionConfig, DataApiConfig, DataApiTarget, IamTarget};
use statement::with_named_parameters;

/// How long a Data API session stays open between statements. A sync's statements follow each
/// other within seconds; a session left behind (a killed process) closes itself after this.
const SESSION_KEEP_ALIVE_S: i32 = 600;
/// How long one `DescribeStatement` waits for the statement to end before it answers (long
/// polling; AWS allows up to 30 s, and the SDK's attempt timeout is 60 s).
const LONG_POLL_S: i32 = 20;
/// A description that came back at once with the statement still running (a service that
/// does not wait) is followed by a pause, from the first to the longest, doubling.
const FIRST_POLL: Duration = Duration::from_millis(5);
const LONGEST_POLL: Duration = Duration::from_millis(200);

/// A request of `ExecuteStatement` or `BatchExecuteStatement` in the session: the session's
/// id, or, for the first, where the statements go and who signs them, and that a session
/// should stay open. (A macro: the two operations' builders are types of their own.)
macro_rules! with_session {
    ($session:expr, $request:expr) => {{
        let session = &$session;
        match &session.session_id {
            Some(id) => $request.session_id(id),
            None => {
                let request = $request
                    .database(&session.database)
                    .session_keep_alive_seconds(SESSION_KEEP_ALIVE_S);
                let request = match &session.target {
                    DataApiTarget::Cluster { identifier } => request.cluster_identifier(identifier),
                    DataApiTarget::Workgroup { name } => request.workgroup_name(name),
                };
                match &session.signed_by {
                    SignedBy::Secret(arn) => request.secret_arn(arn),
                    SignedBy::DbUser(user) => request.db_user(user),
                    SignedBy::Identity => request,
                }
            }
        }
    }};
}

/// Who the statements run as.
#[derive(Debug, Clone)]
enum SignedBy {
    /// The user and password of a Secrets Manager secret.
    Secret(String),
    /// Temporary credentials for this database user (provisioned clusters).
    DbUser(String),
    /// The caller's IAM identity.
    Identity,
}

/// One Data API session: the client, where statements go, and the session's id once opened.
pub struct DataApiSession {
    client: Client,
    target: DataApiTarget,
    region: String,
    database: String,
    signed_by: SignedBy,
    session_id: Option<String>,
    /// The database user AWS said the session's first statement ran as.
    reported_user: Option<String>,
    /// The statement running now, for [`DataApiCanceller`].
    running: Arc<Mutex<Option<String>>>,
}

/// A statement that ran to its end.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: String,
    pub has_result_set: bool,
}

/// One page of a statement's result.
#[derive(Debug, Default)]
pub struct Page {
    /// Set on the first page (the Data API describes the columns there).
    pub columns: Vec<Column>,
    pub records: Vec<Vec<Field>>,
    pub next_token: Option<String>,
}

/// Opens nothing yet: the first statement opens the Data API session.
pub async fn open(
    config: &ConnectionConfig,
    data_api: &DataApiConfig,
) -> Result<DataApiSession, SourceError> {
    let sdk =
        super::aws::sdk_config(Some(&data_api.region), data_api.endpoint_url.as_deref()).await;
    let signed_by = match &config.authentication {
        Authentication::Secret(secret) => SignedBy::Secret(secret.secret.clone()),
        Authentication::Iam(iam) => match &iam.target {
            IamTarget::Cluster {
                db_user: Some(user),
                ..
            } => SignedBy::DbUser(user.clone()),
            _ => SignedBy::Identity,
        },
        Authentication::Password { .. } => {
            return Err(SourceError::Internal {
                during: "opening a Data API session",
                detail: "the configuration gave the Data API a password".to_string(),
            })
        }
    };
    Ok(DataApiSession {
        client: Client::new(&sdk),
        target: data_api.target.clone(),
        region: data_api.region.clone(),
        database: config.database.clone(),
        signed_by,
        session_id: None,
        reported_user: None,
        running: Arc::new(Mutex::new(None)),
    })
}

impl DataApiSession {
    /// The database user the statements run as: as AWS reported it once a statement ran,
    /// else as far as the configuration says.
    pub fn user(&self) -> String {
        if let Some(user) = &self.reported_user {
            return user.clone();
        }
        match &self.signed_by {
            SignedBy::DbUser(user) => user.clone(),
            SignedBy::Secret(_) => "the secret's user".to_string(),
            SignedBy::Identity => "the IAM identity".to_string(),
        }
    }

    /// Runs one statement (with `$n` parameters) to its end.
    pub async fn run(&mut self, sql: &str, params: &[String]) -> Result<Finished, SourceError> {
        let statement = with_named_parameters(sql, params);
        let mut request = self
            .client
            .execute_statement()
            .sql(&statement.sql)
            .result_format(ResultFormatString::Json);
        for (name, value) in statement.parameters {
            request = request.parameters(
                SqlParameter::builder()
                    .name(name)
                    .value(value)
                    .build()
                    .map_err(|err| SourceError::Internal {
                        during: "building a Data API parameter",
                        detail: err.to_string(),
                    })?,
            );
        }
        let output = with_session!(self, request)
            .send()
            .await
            .map_err(|err| self.send_error("ExecuteStatement", err))?;
        self.opened(output.session_id(), output.db_user());
        self.wait_for(output.id().unwrap_or_default()).await
    }

    /// Runs statements without parameters or results in order, as one transaction and one
    /// call (`BatchExecuteStatement`): a session's settings cost one round trip, not one each.
    pub async fn run_batch(&mut self, statements: &[String]) -> Result<(), SourceError> {
        let request = self
            .client
            .batch_execute_statement()
            .set_sqls(Some(statements.to_vec()));
        let output = with_session!(self, request)
            .send()
            .await
            .map_err(|err| self.send_error("BatchExecuteStatement", err))?;
        self.opened(output.session_id(), output.db_user());
        self.wait_for(output.id().unwrap_or_default())
            .await
            .map(drop)
    }

    /// After the session's first statement: its id, and the database user AWS says it runs as.
    fn opened(&mut self, session_id: Option<&str>, db_user: Option<&str>) {
        if self.session_id.is_none() {
            self.session_id = session_id.map(str::to_string);
            self.reported_user = db_user.map(str::to_string);
        }
    }

    /// Waits for the statement `id` to end, cancellable from elsewhere while it runs.
    async fn wait_for(&self, id: &str) -> Result<Finished, SourceError> {
        *self.running.lock().unwrap() = Some(id.to_string());
        let finished = self.wait(id).await;
        *self.running.lock().unwrap() = None;
        finished
    }

    /// A refused statement: a session that is gone is a lost connection, anything else AWS's.
    fn send_error<E>(&self, action: &'static str, err: SdkError<E>) -> SourceError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if self.session_id.is_some() && is_session_gone(&err) {
            return SourceError::ConnectionLost {
                reason: format!(
                    "the Data API session ended ({})",
                    err.message().unwrap_or("expired")
                ),
            };
        }
        self.aws_error(action, err)
    }

    /// Describes the statement until it ends, each description waiting for the end
    /// (`WaitTimeSeconds`) rather than the connector sleeping between them.
    async fn wait(&self, id: &str) -> Result<Finished, SourceError> {
        let mut pause = FIRST_POLL;
        loop {
            let asked = std::time::Instant::now();
            let described = self
                .client
                .describe_statement()
                .id(id)
                .wait_time_seconds(LONG_POLL_S)
                .send()
                .await
                .map_err(|err| self.aws_error("DescribeStatement", err))?;
            match described.status() {
                Some(StatusString::Finished) => {
                    return Ok(Finished {
                        id: id.to_string(),
                        has_result_set: described.has_result_set().unwrap_or(false),
                    })
                }
                Some(StatusString::Failed) => {
                    return Err(statement_failure(
                        described.error().unwrap_or("no reason given"),
                    ))
                }
                Some(StatusString::Aborted) => {
                    return Err(SourceError::QueryCancelled {
                        message: "the Data API statement was aborted".to_string(),
                    })
                }
                // Still running after the wait, or the service answered at once: ask again,
                // after a pause only in the second case.
                _ if asked.elapsed() >= Duration::from_secs(1) => pause = FIRST_POLL,
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LONGEST_POLL);
                }
            }
        }
    }

    /// The result page after `token` (`None`: the first) of a finished statement.
    pub async fn page(&self, id: &str, token: Option<String>) -> Result<Page, SourceError> {
        self.pages().fetch(id.to_string(), token).await
    }

    /// What reads this session's result pages, apart from the session.
    pub fn pages(&self) -> PageReader {
        PageReader {
            client: self.client.clone(),
            region: self.region.clone(),
            target: self.target.clone(),
        }
    }

    /// Runs a query and returns every value as text (`None` for NULL): for the catalog,
    /// counts and the clock.
    pub async fn query_text(
        &mut self,
        sql: &str,
        params: &[String],
    ) -> Result<Vec<Vec<Option<String>>>, SourceError> {
        let finished = self.run(sql, params).await?;
        let mut rows = Vec::new();
        if !finished.has_result_set {
            return Ok(rows);
        }
        let mut token = None;
        let mut columns = Vec::new();
        loop {
            let page = self.page(&finished.id, token).await?;
            if !page.columns.is_empty() {
                columns = page.columns;
            }
            for record in &page.records {
                let mut row = Vec::with_capacity(record.len());
                for (index, field) in record.iter().enumerate() {
                    let type_oid = columns.get(index).map_or(0, |c| c.type_oid);
                    row.push(values::text_value(field, type_oid).map_err(|detail| {
                        SourceError::UnexpectedAnswer {
                            query: "a Data API query",
                            detail,
                        }
                    })?);
                }
                rows.push(row);
            }
            match page.next_token {
                Some(next) => token = Some(next),
                None => return Ok(rows),
            }
        }
    }

    /// A handle that cancels this session's running statement from elsewhere.
    pub fn canceller(&self) -> DataApiCanceller {
        DataApiCanceller {
            client: self.client.clone(),
            running: Arc::clone(&self.running),
        }
    }

    fn aws_error<E>(&self, action: &'static str, err: SdkError<E>) -> SourceError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let full_action = match action {
            "ExecuteStatement" => "redshift-data:ExecuteStatement",
            "BatchExecuteStatement" => "redshift-data:BatchExecuteStatement",
            "DescribeStatement" => "redshift-data:DescribeStatement",
            "GetStatementResult" => "redshift-data:GetStatementResult",
            _ => "redshift-data:CancelStatement",
        };
        if let SdkError::ServiceError(service) = &err {
            let message = service.err().message().unwrap_or("").to_ascii_lowercase();
            if service.err().code() == Some("DatabaseConnectionException")
                && message.contains("password authentication failed")
            {
                return SourceError::AuthenticationFailed {
                    user: self.user(),
                    from: match self.signed_by {
                        SignedBy::Secret(_) => super::PasswordFrom::Secret,
                        _ => super::PasswordFrom::Iam,
                    },
                };
            }
            if service.err().code() == Some("DatabaseConnectionException")
                && message.contains("database")
                && message.contains("does not exist")
            {
                return SourceError::UnknownDatabase {
                    database: self.database.clone(),
                };
            }
            if let SignedBy::Secret(secret) = &self.signed_by {
                if service.err().code() == Some("ValidationException") && message.contains("secret")
                {
                    return SourceError::DataApi(Box::new(IamError::SecretNotFound {
                        secret: secret.clone(),
                        region: self.region.clone(),
                    }));
                }
            }
        }
        let needs = needs(full_action, &self.target, &self.signed_by);
        SourceError::DataApi(Box::new(classify(
            full_action,
            &needs,
            &self.target.describe(),
            &self.region,
            err,
        )))
    }
}

/// Reads result pages of a session's statements (`GetStatementResult`).
#[derive(Clone)]
pub struct PageReader {
    client: Client,
    region: String,
    target: DataApiTarget,
}

impl PageReader {
    /// The page after `token`, started now and awaited later: the next page travels while the
    /// current one is decoded.
    pub fn ahead(
        &self,
        id: &str,
        token: String,
    ) -> tokio::task::JoinHandle<Result<Page, SourceError>> {
        tokio::spawn(self.clone().fetch(id.to_string(), Some(token)))
    }

    async fn fetch(self, id: String, token: Option<String>) -> Result<Page, SourceError> {
        let PageReader {
            client,
            region,
            target,
        } = self;
        fetch_page(client, region, target, id, token).await
    }
}

async fn fetch_page(
    client: Client,
    region: String,
    target: DataApiTarget,
    id: String,
    token: Option<String>,
) -> Result<Page, SourceError> {
    let output = client
        .get_statement_result()
        .id(&id)
        .set_next_token(token)
        .send()
        .await
        .map_err(|err| {
            SourceError::DataApi(Box::new(classify(
                "redshift-data:GetStatementResult",
                "redshift-data:GetStatementResult (statements are read back by the identity that ran them)",
                &target.describe(),
                &region,
                err,
            )))
        })?;
    let columns = output
        .column_metadata()
        .iter()
        .map(|column| Column {
            name: column.name().unwrap_or_default().to_string(),
            type_oid: values::type_oid(column.type_name().unwrap_or("")),
        })
        .collect();
    Ok(Page {
        columns,
        next_token: output.next_token().map(str::to_string),
        records: output.records,
    })
}

/// What the statements' identity needs granted, for the message of a refusal.
fn needs(action: &str, target: &DataApiTarget, signed_by: &SignedBy) -> String {
    let sign_in = match (signed_by, target) {
        (SignedBy::Secret(_), _) => {
            "secretsmanager:GetSecretValue on the secret (`secret_arn`)".to_string()
        }
        (SignedBy::DbUser(user), DataApiTarget::Cluster { identifier }) => {
            format!("redshift:GetClusterCredentials on dbuser:{identifier}/{user}")
        }
        (_, DataApiTarget::Cluster { identifier }) => {
            format!("redshift:GetClusterCredentialsWithIAM on dbname:{identifier}/<database>")
        }
        (_, DataApiTarget::Workgroup { name }) => {
            format!("redshift-serverless:GetCredentials on workgroup {name}")
        }
    };
    format!("{action}: the connector calls redshift-data:ExecuteStatement, redshift-data:BatchExecuteStatement, redshift-data:DescribeStatement, redshift-data:GetStatementResult and redshift-data:CancelStatement on the {}, and needs {sign_in}", target.describe())
}

/// Whether the Data API refused a statement because its session is gone.
fn is_session_gone<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    let SdkError::ServiceError(service) = err else {
        return false;
    };
    service.err().code() == Some("ValidationException")
        && service
            .err()
            .message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("session"))
}

/// A failed statement's error text (Redshift's, as the Data API reports it: no SQLSTATE) as
/// the failure it is.
pub fn statement_failure(text: &str) -> SourceError {
    let message = text.trim().trim_start_matches("ERROR:").trim().to_string();
    let lower = message.to_ascii_lowercase();
    if lower.contains("packet for query is too large") {
        SourceError::DataApiRowTooLarge { message }
    } else if lower.contains("exceeded size limit") || lower.contains("result size") {
        SourceError::DataApiResultTooLarge { message }
    } else if lower.contains("permission denied") {
        SourceError::PermissionDenied { message }
    } else if lower.contains("column") && lower.contains("does not exist") {
        SourceError::ColumnsChanged { message }
    } else if lower.contains("wlm") || lower.contains("query monitoring rule") {
        SourceError::WorkloadManagerAbort { message }
    } else if lower.contains("cancel") {
        SourceError::QueryCancelled { message }
    } else {
        let transient = message.starts_with("1023")
            || lower.contains("serializable isolation violation")
            || lower.contains("disk full")
            || lower.contains("terminating connection");
        SourceError::StatementFailed { message, transient }
    }
}

/// Cancels a session's running statement (`CancelStatement`), from another task.
#[derive(Clone)]
pub struct DataApiCanceller {
    client: Client,
    running: Arc<Mutex<Option<String>>>,
}

impl DataApiCanceller {
    /// Best effort: the statement is being abandoned anyway.
    pub async fn cancel(&self) {
        let running = self.running.lock().unwrap().clone();
        if let Some(id) = running {
            if let Err(err) = self.client.cancel_statement().id(&id).send().await {
                tracing::debug!(error = %super::error_chain(&err), "CancelStatement failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_statements_are_classified_by_redshift_s_texts() {
        assert!(matches!(
            statement_failure("ERROR: permission denied for relation orders"),
            SourceError::PermissionDenied { .. }
        ));
        assert!(matches!(
            statement_failure("ERROR: column \"x\" does not exist"),
            SourceError::ColumnsChanged { .. }
        ));
        assert!(matches!(
            statement_failure("Packet for query is too large"),
            SourceError::DataApiRowTooLarge { .. }
        ));
        assert!(matches!(
            statement_failure("Database response exceeded size limit"),
            SourceError::DataApiResultTooLarge { .. }
        ));
        let serializable =
            statement_failure("ERROR: 1023 Serializable isolation violation on table");
        assert!(serializable.is_transient(), "{serializable:?}");
        let other = statement_failure("ERROR: syntax error at or near \"x\"");
        assert!(!other.is_transient());
        assert!(other.to_string().contains("syntax error"), "{other}");
    }

    #[test]
    fn a_refusal_names_what_the_sign_in_needs() {
        let cluster = DataApiTarget::Cluster {
            identifier: "c1".into(),
        };
        let text = needs(
            "redshift-data:ExecuteStatement",
            &cluster,
            &SignedBy::DbUser("syncer".into()),
        );
        assert!(
            text.contains("redshift:GetClusterCredentials on dbuser:c1/syncer"),
            "{text}"
        );
        let text = needs(
            "redshift-data:ExecuteStatement",
            &DataApiTarget::Workgroup { name: "wg".into() },
            &SignedBy::Identity,
        );
        assert!(
            text.contains("redshift-serverless:GetCredentials"),
            "{text}"
        );
        let text = needs(
            "redshift-data:ExecuteStatement",
            &cluster,
            &SignedBy::Secret("arn".into()),
        );
        assert!(text.contains("secretsmanager:GetSecretValue"), "{text}");
    }
}
