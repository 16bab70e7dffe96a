//! Logging: every log line goes to stderr, as human-readable text (coloured on a terminal) or
//! as one JSON object per line (`--log-format json`) for log pipelines. `RUST_LOG` chooses
//! what is logged (default `info`).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event, its fields at the top level beside `timestamp`, `level`,
    /// `target` and `message`; the spans it happened in (such as a request's, with its
    /// `request_id`) are under `span` and `spans`.
    Json,
}

/// Installs the global logger; call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
