//! Reads the connector configuration from a JSON file, the way hosts hand it over: a flat
//! string-to-string map.
//!
//! The file is a JSON object. Values may be strings, numbers or booleans (people write
//! `"port": 5439`); each is sent as its string form. `null` means "not set" and is left out.
//! Error messages name the file and the key but never a value: the file holds a password.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigurationFileError {
    #[error(
        "the configuration file {} does not exist; create it with a JSON object of the \
         connection settings, e.g. {{\"host\": \"...\", \"database\": \"...\", \"user\": \"...\", \
         \"password\": \"...\"}}, or pass --configuration PATH",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("cannot read the configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the configuration file {} is not valid JSON", path.display())]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the configuration file {} must hold one JSON object of key/value pairs, not {found}",
        path.display()
    )]
    NotAnObject { path: PathBuf, found: &'static str },
    #[error(
        "the configuration file {}: the value of `{key}` is {found}; give a string, number or boolean",
        path.display()
    )]
    BadValue {
        path: PathBuf,
        key: String,
        found: &'static str,
    },
}

/// Reads and flattens the configuration file.
pub fn read(path: &Path) -> Result<HashMap<String, String>, ConfigurationFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigurationFileError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            ConfigurationFileError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<HashMap<String, String>, ConfigurationFileError> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|source| ConfigurationFileError::Malformed {
            path: path.to_path_buf(),
            source,
        })?;
    let serde_json::Value::Object(object) = json else {
        return Err(ConfigurationFileError::NotAnObject {
            path: path.to_path_buf(),
            found: kind(&json),
        });
    };
    let mut map = HashMap::with_capacity(object.len());
    for (key, value) in object {
        let text = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(ConfigurationFileError::BadValue {
                    path: path.to_path_buf(),
                    key,
                    found: kind(&other),
                })
            }
        };
        map.insert(key, text);
    }
    Ok(map)
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<HashMap<String, String>, ConfigurationFileError> {
        parse(Path::new("configuration.json"), text)
    }

    #[test]
    fn scalars_become_strings_and_null_is_absent() {
        let map = parse_text(
            r#"{"host": "h", "port": 5439, "batch_size": 7.0, "x": true, "sslrootcert": null}"#,
        )
        .unwrap();
        assert_eq!(map["host"], "h");
        assert_eq!(map["port"], "5439");
        assert_eq!(map["batch_size"], "7.0");
        assert_eq!(map["x"], "true");
        assert!(!map.contains_key("sslrootcert"));
    }

    #[test]
    fn errors_name_the_file_and_key_but_not_the_value() {
        let err = parse_text(r#"{"password": ["s3cret"]}"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("configuration.json") && text.contains("`password`"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");

        let err = parse_text("[1]").unwrap_err();
        assert!(err.to_string().contains("not an array"), "{err}");

        let err = parse_text("{\"host\": ").unwrap_err();
        assert!(
            matches!(err, ConfigurationFileError::Malformed { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_says_how_to_create_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(err, ConfigurationFileError::Missing { .. }));
        assert!(err.to_string().contains("--configuration"), "{err}");
    }
}
