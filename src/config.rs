//! Settings: every one is a command-line flag and an environment variable.

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Where the data lives.
#[derive(Args, Clone, Debug)]
pub struct DataDir {
    /// The data directory: the redb store (and later the search index) live here.
    #[arg(long = "data", env = "FHIRLAKE_DATA", default_value = "./data")]
    pub path: PathBuf,
}

/// The settings of `fhirlake serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeConfig {
    /// The address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, env = "FHIRLAKE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    #[command(flatten)]
    pub data: DataDir,

    /// The public FHIR base URL, for `Location` and `fullUrl` (e.g. behind a proxy);
    /// by default `http://HOST/fhir` from the request's Host header.
    #[arg(long, env = "FHIRLAKE_BASE_URL")]
    pub base_url: Option<String>,

    /// The largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "FHIRLAKE_MAX_BODY", default_value_t = 32 * 1024 * 1024)]
    pub max_body: usize,

    /// The most entries a batch or transaction Bundle may have; more get 413.
    #[arg(long, env = "FHIRLAKE_MAX_BUNDLE_ENTRIES", default_value_t = 25_000)]
    pub max_bundle_entries: usize,

    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "FHIRLAKE_WORKERS")]
    pub workers: Option<usize>,

    /// Seconds that in-flight requests get to finish at shutdown.
    #[arg(long, env = "FHIRLAKE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// The page size of history when the client gives no `_count`.
    #[arg(long, env = "FHIRLAKE_DEFAULT_COUNT", default_value_t = 50)]
    pub default_count: usize,

    /// The largest `_count` a client may ask for.
    #[arg(long, env = "FHIRLAKE_MAX_COUNT", default_value_t = 1000)]
    pub max_count: usize,

    /// How many events a live change-stream consumer (SSE, WebSocket) may have waiting; one
    /// that falls further behind is told to reconnect from its offset.
    #[arg(long, env = "FHIRLAKE_STREAM_BUFFER", default_value_t = 4096)]
    pub stream_buffer: usize,

    /// How long changes stay in the change log (`30s`, `12h`, `7d`, ...): older ones may be
    /// removed, but never one that the search index, a Subscription or the sink has not
    /// processed yet. By default the log is kept forever. System and type `_history` list
    /// only the changes kept.
    #[arg(long, env = "FHIRLAKE_CHANGES_RETENTION", value_parser = parse_duration)]
    pub changes_retention: Option<Duration>,

    /// The wait before a rest-hook Subscription retries a failed notification; it doubles
    /// after each failure, up to `--subscription-retry-max`.
    #[arg(long, env = "FHIRLAKE_SUBSCRIPTION_RETRY", value_parser = parse_duration, default_value = "1s")]
    pub subscription_retry: Duration,

    /// The longest wait between two tries of a rest-hook notification.
    #[arg(long, env = "FHIRLAKE_SUBSCRIPTION_RETRY_MAX", value_parser = parse_duration, default_value = "5m")]
    pub subscription_retry_max: Duration,

    /// Publishes every change to NATS JetStream at this URL (`nats://127.0.0.1:4222`).
    #[arg(long, env = "FHIRLAKE_SINK")]
    pub sink: Option<String>,

    /// The JetStream stream the sink publishes to (created when missing, with the subjects
    /// `STREAM.>`; each change goes to `STREAM.{type}.{created|updated|deleted}`).
    #[arg(long, env = "FHIRLAKE_SINK_STREAM", default_value = "FHIRLAKE")]
    pub sink_stream: String,
}

/// A duration written as a number and a unit: `250ms`, `30s`, `5m`, `12h`, `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' has no unit (ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a whole number"))?;
    let seconds = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{text}': the unit is ms, s, m, h or d")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        for bad in ["", "5", "m", "5w", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
