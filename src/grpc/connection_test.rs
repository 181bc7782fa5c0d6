//! The configuration form's tests: `connect` and `select`.

use super::status::RpcError;
use crate::config::Config;
use crate::source::{catalog, SourceError};

/// How many tables `select` tries before concluding none is readable.
const SELECT_ATTEMPTS: usize = 10;

/// Reach the cluster, negotiate TLS and authenticate; the server must answer a query.
pub async fn connect(config: &Config) -> Result<String, RpcError> {
    let mut session = crate::source::connect(&config.connection).await?;
    let rows = session.query("SELECT version()", &[]).await?;
    let version = rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next().flatten())
        .unwrap_or_default();
    tracing::info!(server_version = %version, flavour = ?session.flavour(), "connect test passed");
    Ok(version)
}

/// Read the catalog and at least one table of those the configuration selects.
pub async fn select(config: &Config) -> Result<Result<usize, String>, RpcError> {
    let mut session = crate::source::connect(&config.connection).await?;
    let catalog = catalog::discover(&mut session, &config.sync).await?;
    if catalog.tables.is_empty() {
        let scope = match &config.sync.schemas {
            Some(schemas) => format!(
                "schemas {}",
                schemas
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "any non-system schema".to_string(),
        };
        return Ok(Err(format!(
            "user `{}` can read no table in {scope}; grant USAGE ON SCHEMA and SELECT ON ALL TABLES IN SCHEMA, or check `schemas` and `tables`",
            session.user()
        )));
    }
    let mut last_error = None;
    for table in catalog.tables.iter().take(SELECT_ATTEMPTS) {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", table.quoted_name());
        match session.query(&sql, &[]).await {
            Ok(_) => return Ok(Ok(catalog.tables.len())),
            Err(err) => last_error = Some(err),
        }
    }
    let err: SourceError = last_error.expect("at least one table was tried");
    Ok(Err(format!("no table could be read: {err}")))
}
