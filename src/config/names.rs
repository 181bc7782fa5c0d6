//! Names of schemas, tables and columns as the configuration writes them, and how they match
//! the catalog: the way Redshift resolves identifiers in SQL (an unquoted name folds to lower
//! case, a `"quoted"` one keeps its case and may contain dots, commas and doubled quotes).

use std::borrow::Cow;
use std::fmt;

use super::{shorten, ConfigError};

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

/// `schema.table` (each part quoted or not).
pub(super) fn table_pattern(key: &str, text: &str) -> Result<TablePattern, ConfigError> {
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
pub(super) fn single_name(key: &str, text: &str) -> Result<Identifier, ConfigError> {
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
pub(super) fn names(key: &str, text: &str) -> Result<Vec<Identifier>, ConfigError> {
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
pub(super) fn split_unquoted<'a>(
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
