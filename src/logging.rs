//! Log lines in the hosts' format: one JSON object per line on stdout,
//! `{"level": "INFO"|"WARNING"|"SEVERE", "message": "...", "message-origin": "sdk_connector"}`.
//!
//! Structured `tracing` fields are appended to the message as `key=value` so they survive the
//! hosts' fixed three-key format. Callers never log credentials or row values (see the style
//! notes); this layer cannot tell a password from any other string, so it does not try.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Where log lines go: hosts read stdout; the debug runner keeps stdout for its own display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter` (e.g. `info`).
pub fn init(target: LogTarget, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let context = std::env::var("FIVETRAN_ACCOUNT_NAME")
        .ok()
        .into_iter()
        .map(|v| format!("account={v}"))
        .chain(
            std::env::var("FIVETRAN_GROUP_NAME")
                .ok()
                .map(|v| format!("group={v}")),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(HostJsonLayer { target, context })
        .try_init();
}

struct HostJsonLayer {
    target: LogTarget,
    /// Account and group from the host's environment, appended to every line.
    context: String,
}

/// The hosts' three levels.
fn host_level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "SEVERE",
        Level::WARN => "WARNING",
        _ => "INFO",
    }
}

impl<S: Subscriber> Layer<S> for HostJsonLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        message.push_str(&visitor.fields);
        if !self.context.is_empty() {
            let _ = write!(message, " {}", self.context);
        }
        let line = serde_json::json!({
            "level": host_level(event.metadata().level()),
            "message": message,
            "message-origin": "sdk_connector",
        });
        let mut text = line.to_string();
        text.push('\n');
        // One write call per line keeps lines whole when several tasks log at once.
        let _ = match self.target {
            LogTarget::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            LogTarget::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_the_hosts_names() {
        assert_eq!(host_level(&Level::ERROR), "SEVERE");
        assert_eq!(host_level(&Level::WARN), "WARNING");
        assert_eq!(host_level(&Level::INFO), "INFO");
        assert_eq!(host_level(&Level::DEBUG), "INFO");
    }
}
