//! Live progress while a sync runs: rows and rows/s per table.
//!
//! On a terminal, one indicatif spinner per table plus a status line; elsewhere (CI logs, a
//! pipe), a plain line every few seconds, since redrawn bars would turn into noise there.
//! Warnings and notes are printed above the bars, on stdout like the summary.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::warehouse::layout::TableKey;

const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines every few seconds.
    Plain,
    /// Nothing (tests, the demo's own output).
    Quiet,
}

pub struct Progress {
    display: Display,
    tables: BTreeMap<TableKey, TableProgress>,
    checkpoints: u64,
}

enum Display {
    Bars {
        multi: MultiProgress,
        status: ProgressBar,
    },
    Plain {
        last: Instant,
    },
    Quiet,
}

struct TableProgress {
    rows: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Self {
        let terminal = std::io::stdout().is_terminal();
        let display = match mode {
            ProgressMode::Auto if terminal => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
                let status = multi.add(ProgressBar::new_spinner());
                status.set_style(style("  {msg}"));
                status.set_message("connecting");
                Display::Bars { multi, status }
            }
            ProgressMode::Auto | ProgressMode::Plain => Display::Plain {
                last: Instant::now(),
            },
            ProgressMode::Quiet => Display::Quiet,
        };
        Self {
            display,
            tables: BTreeMap::new(),
            checkpoints: 0,
        }
    }

    /// A phase of the run ("schema", "syncing"), shown on the status line.
    pub fn phase(&self, text: &str) {
        if let Display::Bars { status, .. } = &self.display {
            status.set_message(text.to_string());
        }
    }

    pub fn rows(&mut self, table: &TableKey, added: u64) {
        if !self.tables.contains_key(table) {
            let bar = match &self.display {
                Display::Bars { multi, status } => {
                    let bar = multi.insert_before(status, ProgressBar::new_spinner());
                    bar.set_style(
                        style("{spinner:.green} {prefix:<32} {human_pos:>12} rows  {rate:>12}  {elapsed}")
                            .with_key("rate", average_rate),
                    );
                    bar.set_prefix(table.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    Some(bar)
                }
                _ => None,
            };
            let started = Instant::now();
            self.tables.insert(
                table.clone(),
                TableProgress {
                    rows: 0,
                    started,
                    bar,
                },
            );
        }
        let Some(entry) = self.tables.get_mut(table) else {
            return;
        };
        entry.rows += added;
        if let Some(bar) = &entry.bar {
            bar.inc(added);
        }
        self.maybe_print_plain();
    }

    pub fn checkpoint(&mut self) {
        self.checkpoints += 1;
        if let Display::Bars { status, .. } = &self.display {
            status.set_message(format!("syncing; checkpoints saved: {}", self.checkpoints));
        }
        self.maybe_print_plain();
    }

    /// A message worth a line of its own (a warning, a schema change).
    pub fn println(&self, line: &str) {
        match &self.display {
            Display::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Display::Plain { .. } => println!("{line}"),
            Display::Quiet => {}
        }
    }

    /// Clears the bars, so the summary starts on a clean screen.
    pub fn finish(&mut self) {
        if let Display::Bars { multi, status } = &self.display {
            for table in self.tables.values() {
                if let Some(bar) = &table.bar {
                    bar.finish_and_clear();
                }
            }
            status.finish_and_clear();
            let _ = multi.clear();
        }
    }

    fn maybe_print_plain(&mut self) {
        let Display::Plain { last } = &mut self.display else {
            return;
        };
        if last.elapsed() < PLAIN_INTERVAL {
            return;
        }
        *last = Instant::now();
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|(name, table)| {
                let seconds = table.started.elapsed().as_secs_f64().max(0.001);
                format!(
                    "{name} {} rows ({:.0} rows/s)",
                    table.rows,
                    table.rows as f64 / seconds
                )
            })
            .collect();
        println!(
            "progress: {}; checkpoints {}",
            tables.join(", "),
            self.checkpoints
        );
    }
}

/// Rows per second since the table's first row (the figure plain lines and the summary show;
/// indicatif's own `per_sec` is a short-term estimate printed with many decimals).
fn average_rate(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let seconds = state.elapsed().as_secs_f64().max(0.001);
    let _ = write!(out, "{:.0} rows/s", state.pos() as f64 / seconds);
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}
