//! Discovers the tables the user can read, their columns and primary keys.
//!
//! On Redshift, columns come from `svv_columns`, which unlike `information_schema` also lists
//! late-binding views and external (Spectrum) tables. It lists local tables whatever the
//! user's grants, so a second query reads which local relations the user may select, by OID:
//! a name built into a privilege check would be parsed again by the server, which folds it to
//! lower case and fails the whole query on one mixed-case table. External tables appear in
//! `svv_columns` only when the user has been granted them.
//!
//! On PostgreSQL (the demo's and the tests' stand-in), everything comes from `pg_catalog`.
//!
//! Primary keys come from the key's index (`pg_index.indisprimary`), as AWS's JDBC driver reads
//! them: Redshift keeps its informational keys there for every user, where
//! `information_schema.table_constraints` hides them from users whose only privilege is SELECT.
//! No query uses arrays, which Redshift does not support.
//!
//! Every value in the queries is a bind parameter; nothing from the user is spliced into SQL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::session::{Flavour, Session};
use super::sql::quote_ident;
use super::types::SqlType;
use super::SourceError;
use crate::config::{SyncConfig, TableName, SYSTEM_SCHEMAS};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub sql_type: SqlType,
    pub primary_key: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: TableName,
    /// In the table's column order.
    pub columns: Vec<ColumnInfo>,
    /// The relation's OID: a table dropped and created again under the same name has a new
    /// one, which tells the sync that the rows it synced before are gone. `None` for an
    /// external (Spectrum) table, which `pg_class` does not list.
    pub id: Option<u32>,
}

impl TableInfo {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Indexes of the primary-key columns, in column order.
    pub fn key_indexes(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.columns[i].primary_key)
            .collect()
    }

    /// `"schema"."table"`, quoted for SQL.
    pub fn quoted_name(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.name.schema),
            quote_ident(&self.name.table)
        )
    }
}

/// The readable tables, sorted by schema then table name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<Arc<TableInfo>>,
}

impl Catalog {
    pub fn find(&self, name: &TableName) -> Option<&Arc<TableInfo>> {
        self.tables.iter().find(|t| &t.name == name)
    }
}

/// One column as a catalog query returns it.
struct CatalogColumn {
    table: TableName,
    column: String,
    sql_type: SqlType,
}

/// Reads the catalog for the configured schemas and tables.
pub async fn discover(session: &mut Session, config: &SyncConfig) -> Result<Catalog, SourceError> {
    let (columns, ids) = match session.flavour() {
        Flavour::Redshift => redshift_columns(session, config).await?,
        Flavour::PostgreSql => postgres_columns(session, config).await?,
    };
    let keys = primary_keys(session).await?;
    let mut tables: BTreeMap<TableName, Vec<ColumnInfo>> = BTreeMap::new();
    for CatalogColumn {
        table,
        column,
        sql_type,
    } in columns
    {
        // Other sessions' temporary schemas are not data to sync.
        if table.schema.starts_with("pg_temp_")
            || table.schema.starts_with("pg_toast_temp_")
            || !config.includes(&table)
        {
            continue;
        }
        let primary_key = keys
            .get(&table)
            .is_some_and(|columns| columns.contains(&column));
        tables.entry(table).or_default().push(ColumnInfo {
            name: column,
            sql_type,
            primary_key,
        });
    }
    Ok(Catalog {
        tables: tables
            .into_iter()
            .map(|(name, mut columns)| {
                configured_key(config, &name, &mut columns);
                let id = ids.get(&name).copied();
                Arc::new(TableInfo { name, columns, id })
            })
            .collect(),
    })
}

/// The key `primary_key` configures for the table replaces the declared one (Redshift does not
/// enforce keys, and many tables have a natural key but no declared one), when every column it
/// names exists; otherwise the declared key stays (and the sync warns, see `sync::plan`).
fn configured_key(config: &SyncConfig, table: &TableName, columns: &mut [ColumnInfo]) {
    let Some(key) = config.key_override_for(table) else {
        return;
    };
    if !key
        .iter()
        .all(|name| columns.iter().any(|c| name.matches(&c.name)))
    {
        return;
    }
    for column in columns.iter_mut() {
        column.primary_key = key.iter().any(|name| name.matches(&column.name));
    }
}

/// The table `name` as the catalog has it now (`None`: gone, or no longer readable): for a
/// sync whose table changed under it.
pub async fn discover_table(
    session: &mut Session,
    config: &SyncConfig,
    name: &TableName,
) -> Result<Option<Arc<TableInfo>>, SourceError> {
    use crate::config::{Identifier, TablePattern};
    let only = SyncConfig {
        schemas: Some(vec![Identifier::quoted(&name.schema)]),
        tables: Some(vec![TablePattern {
            schema: Identifier::quoted(&name.schema),
            table: Identifier::quoted(&name.table),
        }]),
        ..config.clone()
    };
    Ok(discover(session, &only).await?.find(name).cloned())
}

/// `AND <column> NOT IN (system schemas) [AND <column> IN (configured schemas)]`, with the
/// names as parameters: configured names as Redshift resolves them (see `config::Identifier`).
fn schema_filter(column: &str, config: &SyncConfig, params: &mut Vec<String>) -> String {
    let mut placeholders = |values: Vec<String>| {
        values
            .into_iter()
            .map(|value| {
                params.push(value);
                format!("${}", params.len())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let system = placeholders(SYSTEM_SCHEMAS.iter().map(ToString::to_string).collect());
    let mut filter = format!("{column} NOT IN ({system})");
    if let Some(schemas) = &config.schemas {
        let wanted = placeholders(schemas.iter().map(|s| s.resolved().into_owned()).collect());
        filter.push_str(&format!(" AND {column} IN ({wanted})"));
    }
    filter
}

/// Each local relation's OID, by name.
type RelationIds = BTreeMap<TableName, u32>;

async fn redshift_columns(
    session: &mut Session,
    config: &SyncConfig,
) -> Result<(Vec<CatalogColumn>, RelationIds), SourceError> {
    let mut params = Vec::new();
    let filter = schema_filter("table_schema", config, &mut params);
    let sql = format!(
        "SELECT table_schema, table_name, column_name, data_type, character_maximum_length, \
                numeric_precision, numeric_scale \
         FROM svv_columns WHERE {filter} \
         ORDER BY table_schema, table_name, ordinal_position"
    );
    let columns = run(session, &sql, &params).await?;

    let mut params = Vec::new();
    let filter = schema_filter("n.nspname", config, &mut params);
    let sql = format!(
        "SELECT n.nspname, c.relname, \
                CASE WHEN has_schema_privilege(n.oid, 'USAGE') \
                      AND has_table_privilege(c.oid, 'SELECT') THEN 1 ELSE 0 END, c.oid \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND {filter}"
    );
    let mut local = BTreeMap::new();
    let mut ids = RelationIds::new();
    for row in session.query(&sql, &refs(&params)).await? {
        let [schema, table, readable, id] = fields(row)?;
        let name = TableName::new(schema, table);
        if let Ok(id) = id.parse() {
            ids.insert(name.clone(), id);
        }
        local.insert(name, readable == "1");
    }
    let mut unreadable = BTreeSet::new();
    let mut readable_columns = Vec::with_capacity(columns.len());
    for column in columns {
        // A table pg_class does not know is external: svv_columns shows it only if granted.
        match local.get(&column.table) {
            Some(false) => {
                unreadable.insert(column.table.clone());
            }
            _ => readable_columns.push(column),
        }
    }
    if !unreadable.is_empty() {
        tracing::debug!(
            tables = unreadable.len(),
            "tables left out: no SELECT privilege"
        );
    }
    Ok((readable_columns, ids))
}

async fn postgres_columns(
    session: &mut Session,
    config: &SyncConfig,
) -> Result<(Vec<CatalogColumn>, RelationIds), SourceError> {
    let mut params = Vec::new();
    let filter = schema_filter("n.nspname", config, &mut params);
    let sql = format!(
        "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), \
                NULL, NULL, NULL \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a \
           ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND {filter} \
           AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') \
         ORDER BY n.nspname, c.relname, a.attnum"
    );
    let columns = run(session, &sql, &params).await?;
    let mut params = Vec::new();
    let filter = schema_filter("n.nspname", config, &mut params);
    let sql = format!(
        "SELECT n.nspname, c.relname, c.oid \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'v', 'm', 'f', 'p') AND {filter}"
    );
    let mut ids = RelationIds::new();
    for row in session.query(&sql, &refs(&params)).await? {
        let [schema, table, id] = fields(row)?;
        if let Ok(id) = id.parse() {
            ids.insert(TableName::new(schema, table), id);
        }
    }
    Ok((columns, ids))
}

/// Runs a columns query: schema, table, column, type name, length, precision, scale.
async fn run(
    session: &mut Session,
    sql: &str,
    params: &[String],
) -> Result<Vec<CatalogColumn>, SourceError> {
    session
        .query(sql, &refs(params))
        .await?
        .into_iter()
        .map(|row| {
            let number = |value: &Option<String>| value.as_deref().and_then(|v| v.parse().ok());
            let (length, precision, scale) = (number(&row[4]), number(&row[5]), number(&row[6]));
            let [schema, table, column, type_name] = fields(row.into_iter().take(4).collect())?;
            Ok(CatalogColumn {
                table: TableName::new(schema, table),
                column,
                sql_type: SqlType::from_catalog(&type_name, length, precision, scale),
            })
        })
        .collect()
}

/// Primary-key column names per table, in key order.
async fn primary_keys(
    session: &mut Session,
) -> Result<BTreeMap<TableName, Vec<String>>, SourceError> {
    let rows = session
        .query(
            "SELECT n.nspname, t.relname, a.attname \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
             JOIN pg_catalog.pg_class k ON k.oid = i.indexrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = k.oid AND a.attnum > 0 \
             WHERE i.indisprimary \
             ORDER BY n.nspname, t.relname, a.attnum",
            &[],
        )
        .await?;
    let mut keys: BTreeMap<TableName, Vec<String>> = BTreeMap::new();
    for row in rows {
        let [schema, table, column] = fields(row)?;
        keys.entry(TableName::new(schema, table))
            .or_default()
            .push(column);
    }
    Ok(keys)
}

fn refs(params: &[String]) -> Vec<&str> {
    params.iter().map(String::as_str).collect()
}

/// The first N values of a catalog row, none of which may be NULL.
fn fields<const N: usize>(row: Vec<Option<String>>) -> Result<[String; N], SourceError> {
    let values: Vec<String> = row.into_iter().take(N).flatten().collect();
    values
        .try_into()
        .map_err(|_| SourceError::UnexpectedAnswer {
            query: "a catalog query",
            detail: "a row has fewer values than expected".to_string(),
        })
}
