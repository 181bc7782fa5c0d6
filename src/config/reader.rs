//! Reading the request's flat `map<string, string>`: trimmed values, empty meaning absent.

use std::collections::HashMap;
use std::time::Duration;

use super::names::split_unquoted;
use super::{keys, ConfigError};

/// Reads trimmed values; empty strings count as absent, as form fields left blank arrive empty.
pub(super) struct MapReader<'a>(pub(super) &'a HashMap<String, String>);

impl MapReader<'_> {
    /// Whether `key` is given a value that means something where it does not apply: the
    /// configuration form's defaults (`port` 5439, `sslmode` verify-full, `ssh_port` 22,
    /// `connect_timeout_s` 30, `auto_create` false), which a host may send for fields the user
    /// never touched, do not.
    pub(super) fn is_set(&self, key: &str) -> bool {
        let default = match key {
            keys::PORT => "5439",
            keys::SSLMODE => "verify-full",
            keys::SSH_PORT => "22",
            keys::CONNECT_TIMEOUT_S => "30",
            keys::AUTO_CREATE => "false",
            _ => return self.optional(key).is_some(),
        };
        self.optional(key)
            .is_some_and(|value| !value.eq_ignore_ascii_case(default))
    }

    pub(super) fn optional(&self, key: &str) -> Option<String> {
        self.0
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    pub(super) fn required(&self, key: &str) -> Result<String, ConfigError> {
        self.optional(key)
            .ok_or_else(|| ConfigError::new(key, "is required"))
    }

    /// A comma list (commas inside quoted names do not separate), empty items dropped.
    pub(super) fn list(&self, key: &str) -> Result<Option<Vec<&str>>, ConfigError> {
        let Some(text) = self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let items: Vec<&str> = split_unquoted(key, text, ',')?
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Ok((!items.is_empty()).then_some(items))
    }

    pub(super) fn number(
        &self,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Result<Option<u64>, ConfigError> {
        match self.optional(key) {
            None => Ok(None),
            Some(text) => match text.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ConfigError::new(
                    key,
                    format!("must be a whole number of {unit} between {min} and {max}"),
                )),
            },
        }
    }

    pub(super) fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self
            .optional(key)
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ConfigError::new(key, "must be true or false")),
        }
    }

    pub(super) fn seconds(
        &self,
        key: &str,
        min: u64,
        max: u64,
    ) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .number(key, min, max, "seconds")?
            .map(Duration::from_secs))
    }
}
