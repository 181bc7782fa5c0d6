//! The tables Schema declares, and the Selection the runner sends back for them.
//!
//! Like a host's table picker: every declared table is listed, each marked included or not.
//! Without `--tables` everything is included and new tables and schemas are welcome; with it,
//! only the named tables are included and nothing new is picked up behind the user's back.

use std::collections::BTreeMap;

use super::error::DebugError;
use super::warehouse::layout::{TableDef, TableKey};
use crate::proto::{self, schema_change, schema_response, selection};

/// The declared tables, in the order Schema listed them.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Whether tables are grouped by schema (`with_schema`) or not (`without_schema`).
    pub with_schema: bool,
    pub tables: Vec<(TableKey, proto::Table)>,
}

impl Catalog {
    pub fn from_schema_response(response: proto::SchemaResponse) -> Result<Self, DebugError> {
        match response.response {
            Some(schema_response::Response::WithSchema(list)) => Ok(Self::with_schema(list)),
            Some(schema_response::Response::WithoutSchema(list)) => Ok(Self::without_schema(list)),
            Some(schema_response::Response::SchemaResponseNotSupported(_)) => {
                Err(DebugError::Protocol(
                    "Schema answered schema_response_not_supported; the debug runner needs the \
                     declared tables to build its warehouse"
                        .into(),
                ))
            }
            None => Err(DebugError::Protocol(
                "Schema answered an empty response".into(),
            )),
        }
    }

    /// The tables a SchemaChange declares (each replaces its earlier declaration).
    pub fn from_schema_change(change: proto::SchemaChange) -> Result<Self, DebugError> {
        match change.change {
            Some(schema_change::Change::WithSchema(list)) => Ok(Self::with_schema(list)),
            Some(schema_change::Change::WithoutSchema(list)) => Ok(Self::without_schema(list)),
            None => Err(DebugError::Protocol("a SchemaChange with no change".into())),
        }
    }

    fn with_schema(list: proto::SchemaList) -> Self {
        let tables = list
            .schemas
            .into_iter()
            .flat_map(|schema| {
                let name = schema.name;
                schema
                    .tables
                    .into_iter()
                    .map(move |table| (TableKey::new(Some(&name), &table.name), table))
            })
            .collect();
        Self {
            with_schema: true,
            tables,
        }
    }

    fn without_schema(list: proto::TableList) -> Self {
        let tables = list
            .tables
            .into_iter()
            .map(|table| (TableKey::new(None, &table.name), table))
            .collect();
        Self {
            with_schema: false,
            tables,
        }
    }

    /// The layouts of the tables `wanted` admits, read for the warehouse. A malformed column
    /// is a protocol violation; tables not wanted are not looked at.
    pub fn definitions(
        &self,
        wanted: impl Fn(&TableKey) -> bool,
    ) -> Result<Vec<(TableKey, TableDef)>, DebugError> {
        self.tables
            .iter()
            .filter(|(key, _)| wanted(key))
            .map(|(key, table)| {
                TableDef::from_proto(table)
                    .map(|def| (key.clone(), def))
                    .map_err(|problem| DebugError::Protocol(format!("table {key}: {problem}")))
            })
            .collect()
    }

    /// The Selection for the named tables (`schema.table`), or for all when `names` is `None`,
    /// and the keys it includes. Names Schema did not declare are an error listing the tables.
    pub fn select(
        &self,
        names: Option<&[String]>,
    ) -> Result<(proto::Selection, Vec<TableKey>), DebugError> {
        if let Some(names) = names {
            let missing: Vec<String> = names
                .iter()
                .filter(|name| !self.tables.iter().any(|(key, _)| key.to_string() == **name))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(DebugError::UnknownTables {
                    missing,
                    available: self.tables.iter().map(|(key, _)| key.to_string()).collect(),
                });
            }
        }
        let included = |key: &TableKey| names.is_none_or(|names| names.contains(&key.to_string()));
        let everything_new = names.is_none();
        let table_selection = |table: &proto::Table, included: bool| proto::TableSelection {
            included,
            table_name: table.name.clone(),
            columns: table
                .columns
                .iter()
                .map(|c| (c.name.clone(), true))
                .collect(),
            include_new_columns: true,
        };
        let chosen: Vec<TableKey> = self
            .tables
            .iter()
            .map(|(key, _)| key)
            .filter(|key| included(key))
            .cloned()
            .collect();

        let selection = if self.with_schema {
            let mut schemas: BTreeMap<&str, Vec<proto::TableSelection>> = BTreeMap::new();
            for (key, table) in &self.tables {
                let schema = key.schema.as_deref().unwrap_or_default();
                schemas
                    .entry(schema)
                    .or_default()
                    .push(table_selection(table, included(key)));
            }
            selection::Selection::WithSchema(proto::TablesWithSchema {
                schemas: schemas
                    .into_iter()
                    .map(|(name, tables)| proto::SchemaSelection {
                        included: tables.iter().any(|t| t.included),
                        schema_name: name.to_string(),
                        tables,
                        include_new_tables: everything_new,
                    })
                    .collect(),
                include_new_schemas: everything_new,
            })
        } else {
            selection::Selection::WithoutSchema(proto::TablesWithNoSchema {
                tables: self
                    .tables
                    .iter()
                    .map(|(key, table)| table_selection(table, included(key)))
                    .collect(),
                include_new_tables: everything_new,
            })
        };
        Ok((
            proto::Selection {
                selection: Some(selection),
            },
            chosen,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> proto::Table {
        proto::Table {
            name: name.into(),
            columns: vec![proto::Column {
                name: "id".into(),
                r#type: proto::DataType::Int as i32,
                primary_key: true,
                params: None,
            }],
        }
    }

    fn catalog() -> Catalog {
        Catalog::from_schema_response(proto::SchemaResponse {
            response: Some(schema_response::Response::WithSchema(proto::SchemaList {
                schemas: vec![
                    proto::Schema {
                        name: "public".into(),
                        tables: vec![table("customers"), table("orders")],
                    },
                    proto::Schema {
                        name: "sales".into(),
                        tables: vec![table("items")],
                    },
                ],
            })),
            selection_not_supported: None,
        })
        .unwrap()
    }

    fn schemas(selection: &proto::Selection) -> &proto::TablesWithSchema {
        match &selection.selection {
            Some(selection::Selection::WithSchema(with)) => with,
            other => panic!("not with_schema: {other:?}"),
        }
    }

    #[test]
    fn everything_is_selected_by_default() {
        let (selection, chosen) = catalog().select(None).unwrap();
        assert_eq!(chosen.len(), 3);
        let with = schemas(&selection);
        assert!(with.include_new_schemas);
        assert!(with
            .schemas
            .iter()
            .all(|s| s.included && s.include_new_tables));
        let customers = &with.schemas[0].tables[0];
        assert!(customers.included && customers.include_new_columns);
        assert_eq!(customers.columns.get("id"), Some(&true));
    }

    #[test]
    fn named_tables_only_and_nothing_new() {
        let names = vec!["public.orders".to_string()];
        let (selection, chosen) = catalog().select(Some(&names)).unwrap();
        assert_eq!(chosen, vec![TableKey::new(Some("public"), "orders")]);
        let with = schemas(&selection);
        assert!(!with.include_new_schemas);
        let included: Vec<(&str, bool)> = with
            .schemas
            .iter()
            .flat_map(|s| s.tables.iter().map(|t| (t.table_name.as_str(), t.included)))
            .collect();
        assert_eq!(
            included,
            vec![("customers", false), ("orders", true), ("items", false)]
        );
        assert!(with.schemas.iter().all(|s| !s.include_new_tables));
        assert!(!with.schemas[1].included);
    }

    #[test]
    fn unknown_names_list_the_tables() {
        let names = vec!["public.nope".to_string()];
        let err = catalog().select(Some(&names)).unwrap_err().to_string();
        assert!(
            err.contains("public.nope") && err.contains("sales.items"),
            "{err}"
        );
    }
}
