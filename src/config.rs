//! Settings: every one is a command-line flag and an environment variable.

use clap::Args;
use std::path::PathBuf;

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
}
