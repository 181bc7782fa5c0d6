//! Discovers the tables the user can read, their columns and primary keys.
//!
//! Columns come from `information_schema` (present on Redshift and PostgreSQL alike), filtered to
//! tables the user may SELECT. Primary keys come from `pg_constraint`: Redshift keeps them as
//! informational constraints there, and unlike `information_schema.table_constraints` it does not
//! hide them from users whose only privilege is SELECT, which is exactly what a sync user has.
//! Every value in the queries is a bind parameter; nothing from the user is spliced into SQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

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

/// Quotes an identifier for SQL (double quotes, inner quotes doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Reads the catalog for the configured schemas and tables.
pub async fn discover(client: &Client, config: &SyncConfig) -> Result<Catalog, SourceError> {
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let system: Vec<String> = SYSTEM_SCHEMAS.iter().map(|s| s.to_string()).collect();
    let system_placeholders = placeholders(&mut params, &system);
    let schema_filter = match &config.schemas {
        Some(schemas) => format!(
            "AND t.table_schema::VARCHAR IN ({})",
            placeholders(&mut params, schemas)
        ),
        None => String::new(),
    };
    let sql = format!(
        "SELECT c.table_schema::VARCHAR, c.table_name::VARCHAR, c.column_name::VARCHAR, \
                c.udt_name::VARCHAR, c.character_maximum_length::INTEGER, \
                c.numeric_precision::INTEGER, c.numeric_scale::INTEGER \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE t.table_type IN ('BASE TABLE', 'VIEW') \
           AND t.table_schema::VARCHAR NOT IN ({system_placeholders}) \
           {schema_filter} \
           AND has_schema_privilege(t.table_schema::VARCHAR, 'USAGE') \
           AND has_table_privilege(quote_ident(t.table_schema::VARCHAR) || '.' || quote_ident(t.table_name::VARCHAR), 'SELECT') \
         ORDER BY c.table_schema, c.table_name, c.ordinal_position"
    );
    let rows = client
        .query(&sql, &params)
        .await
        .map_err(SourceError::from_query)?;

    let keys = primary_keys(client).await?;
    let mut tables: BTreeMap<TableName, Vec<ColumnInfo>> = BTreeMap::new();
    for row in rows {
        let name = TableName::new(row.get::<_, String>(0), row.get::<_, String>(1));
        // Other sessions' temporary schemas are not data to sync.
        if name.schema.starts_with("pg_temp_")
            || name.schema.starts_with("pg_toast_temp_")
            || !config.includes(&name)
        {
            continue;
        }
        let column: String = row.get(2);
        let primary_key = keys
            .get(&name)
            .is_some_and(|columns| columns.contains(&column));
        let sql_type =
            SqlType::from_catalog(&row.get::<_, String>(3), row.get(4), row.get(5), row.get(6));
        tables.entry(name).or_default().push(ColumnInfo {
            name: column,
            sql_type,
            primary_key,
        });
    }
    Ok(Catalog {
        tables: tables
            .into_iter()
            .map(|(name, columns)| Arc::new(TableInfo { name, columns }))
            .collect(),
    })
}

/// Primary-key column names per table.
async fn primary_keys(client: &Client) -> Result<BTreeMap<TableName, Vec<String>>, SourceError> {
    let rows = client
        .query(
            "SELECT n.nspname::VARCHAR, c.relname::VARCHAR, a.attname::VARCHAR \
             FROM pg_catalog.pg_constraint con \
             JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a \
               ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey) \
             WHERE con.contype = 'p' \
             ORDER BY 1, 2, a.attnum",
            &[],
        )
        .await
        .map_err(SourceError::from_query)?;
    let mut keys: BTreeMap<TableName, Vec<String>> = BTreeMap::new();
    for row in rows {
        keys.entry(TableName::new(
            row.get::<_, String>(0),
            row.get::<_, String>(1),
        ))
        .or_default()
        .push(row.get(2));
    }
    Ok(keys)
}

/// `$k::VARCHAR, $k+1::VARCHAR, ...` for each value (Redshift has no array parameters).
fn placeholders<'a>(params: &mut Vec<&'a (dyn ToSql + Sync)>, values: &'a [String]) -> String {
    values
        .iter()
        .map(|value| {
            params.push(value);
            format!("${}::VARCHAR", params.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("Order Items"), "\"Order Items\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
