//! The catalog as the protocol's SchemaList.

use super::{Column, Schema, SchemaList, Table};
use crate::source::TableInfo;

/// Tables grouped by schema, in the order given (the catalog's: by schema, then table). Also
/// what a SchemaChange declares (see `sync::schema_change`).
pub fn schema_list<'a>(tables: impl IntoIterator<Item = &'a TableInfo>) -> SchemaList {
    let mut schemas: Vec<Schema> = Vec::new();
    for info in tables {
        let columns = info
            .columns
            .iter()
            .map(|column| {
                let (data_type, params) = super::types::data_type(&column.sql_type);
                Column {
                    name: column.name.clone(),
                    r#type: data_type as i32,
                    primary_key: column.primary_key,
                    params,
                }
            })
            .collect();
        let table = Table {
            name: info.name.table.clone(),
            columns,
        };
        match schemas.last_mut() {
            Some(schema) if schema.name == info.name.schema => schema.tables.push(table),
            _ => schemas.push(Schema {
                name: info.name.schema.clone(),
                tables: vec![table],
            }),
        }
    }
    SchemaList { schemas }
}
