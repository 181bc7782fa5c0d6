//! What a bad configuration value is, and how much of a value a message may quote.

use std::borrow::Cow;

/// A configuration value that is invalid, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {rule}")]
pub struct ConfigError {
    pub key: String,
    pub rule: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, rule: impl Into<String>) -> Self {
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
