//! Settings: every one is a command-line flag and an environment variable.
//!
//! Authorization (`--auth`): `hs256` (the default: a shared secret, `--auth-secret` or
//! `DATA/auth-secret`, 32 random bytes made by the first `serve`, readable by the owner only),
//! `rs256` and `es256` (a PEM public key and/or a JWKS file) or `none`.

use crate::auth::token::{Expected, KeySource, Mode, Verifier};
use crate::bundle::conditional::{
    ConditionalDelete, DEFAULT_DELETE_LIMIT, Deletes, MAX_DELETE_LIMIT,
};
use crate::cdc::endpoints::Prefix;
use crate::jobs::sink::Compression;
use crate::search::Limits;
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the data lives.
#[derive(Args, Clone, Debug)]
pub struct DataDir {
    /// The data directory: the redb store (and later the search index) live here.
    #[arg(long = "data", env = "FHIRLAKE_DATA", default_value = "./data")]
    pub path: PathBuf,

    /// The most memory, in MiB, that the store keeps of its file's pages (redb's cache, 9/10
    /// for reads): what bounds the memory a scan of the whole store (an export, a reindex)
    /// leaves resident. Each cached page is an allocation of its own: the resident memory the
    /// cache takes was measured at 1.4-2 times this setting (BENCHMARKS.md, bulk export).
    #[arg(long = "store-cache", env = "FHIRLAKE_STORE_CACHE", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub cache_mib: u64,
}

impl DataDir {
    /// Opens the store of this directory with its cache size.
    pub fn open_store(&self) -> Result<crate::store::Store, crate::store::StoreError> {
        crate::store::Store::open_with_cache(&self.path, (self.cache_mib as usize) << 20)
    }
}

/// How written resources are validated (`serve` and `import`).
#[derive(Args, Clone, Debug)]
pub struct ValidationConfig {
    /// The validation policy of writes: `on` (the built-in one: the contract and required
    /// bindings reject with 422, codes and extensible bindings warn), `off`, or the path of a
    /// policy file (JSON: actions per rule, code system and resource type; see
    /// `src/validate/policy.rs`).
    #[arg(long = "validation", env = "FHIRLAKE_VALIDATION", default_value = "on")]
    pub policy: String,

    /// A folder of profiles: every `*.json` StructureDefinition in it (R4, a constraint on a
    /// resource or data type, with a snapshot) is checked against the resources that name it
    /// in `meta.profile`, as are the StructureDefinitions written to the server.
    #[arg(long, env = "FHIRLAKE_PROFILES")]
    pub profiles: Option<PathBuf>,
}

impl ValidationConfig {
    /// The policy this setting names.
    pub fn policy(&self) -> anyhow::Result<crate::validate::Policy> {
        match self.policy.as_str() {
            "on" => Ok(crate::validate::Policy::default()),
            "off" => Ok(crate::validate::Policy::off()),
            path => crate::validate::Policy::read(Path::new(path)),
        }
    }

    /// The validator of writes, with the terminology of the data directory, the profiles of
    /// the `--profiles` folder and those stored in `store` (StructureDefinitions written
    /// before).
    pub fn validator(
        &self,
        terminology: std::sync::Arc<crate::terminology::Terminology>,
        store: &crate::store::Store,
    ) -> anyhow::Result<crate::validate::Validator> {
        let validator = crate::validate::Validator::new(terminology, self.policy()?);
        if let Some(dir) = &self.profiles {
            let loaded = validator
                .profiles()
                .load_dir(dir)
                .with_context(|| format!("reading the profiles in {}", dir.display()))?;
            for url in &loaded.registered {
                tracing::info!(profile = %url, "profile");
            }
            for (path, why) in &loaded.refused {
                tracing::warn!(file = %path.display(), "not a usable profile: {why}");
            }
        }
        for (id, version) in store.current_of_type("StructureDefinition")? {
            let Some(definition) = version.and_then(|v| serde_json::from_slice(&v.body).ok())
            else {
                continue;
            };
            let source = format!("StructureDefinition/{id}");
            if let Err(why) = validator.profiles().restore(&definition, source) {
                tracing::debug!(id, "not a usable profile: {why}");
            }
        }
        for skipped in validator.profiles().skipped() {
            tracing::error!(source = %skipped.source, url = %skipped.url,
                "profile skipped, resources that claim it are not checked against it: {}",
                skipped.why);
        }
        Ok(validator)
    }
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
    /// by default `http://HOST/fhir` from the request's Host header. Absolute references
    /// under it are this server's (searches, compartments, authorization); without it only
    /// relative ones are.
    #[arg(long, env = "FHIRLAKE_BASE_URL")]
    pub base_url: Option<String>,

    /// The largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "FHIRLAKE_MAX_BODY", default_value_t = 32 * 1024 * 1024)]
    pub max_body: usize,

    /// The most entries a batch or transaction Bundle may have, counting those of the Bundles
    /// inside its entries; more get 413.
    #[arg(long, env = "FHIRLAKE_MAX_BUNDLE_ENTRIES", default_value_t = 25_000)]
    pub max_bundle_entries: usize,

    /// The longest request target (path and query) accepted, in bytes; longer ones get 414.
    /// (Over 65,534 bytes the HTTP layer refuses a request itself, with an empty 400.)
    #[arg(long, env = "FHIRLAKE_MAX_URL", default_value_t = 32 * 1024)]
    pub max_url: usize,

    /// The most parameters a request may have, in its query and, for `POST _search`, its
    /// form body together; more get 400.
    #[arg(long, env = "FHIRLAKE_MAX_PARAMS", default_value_t = 200)]
    pub max_params: usize,

    /// The most header fields a request may have; more get 431. (Over 96 the HTTP layer
    /// refuses a request itself, with an empty 431.)
    #[arg(long, env = "FHIRLAKE_MAX_HEADERS", default_value_t = 64)]
    pub max_headers: usize,

    /// The most bytes of header names and values a request may have; more get 431. (A request
    /// head over 128 KiB is refused by the HTTP layer itself, with an empty 431.)
    #[arg(long, env = "FHIRLAKE_MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,

    /// How deeply arrays and objects may nest in a JSON request body; deeper gets 400. (The
    /// JSON parser refuses more than 127 levels whatever this says.)
    #[arg(long, env = "FHIRLAKE_MAX_JSON_DEPTH", default_value_t = 100)]
    pub max_json_depth: usize,

    /// What a conditional delete (`DELETE [base]/Type?criteria`, also in a transaction) does
    /// when its criteria match several resources: `multiple` deletes them all in one commit,
    /// `single` refuses with 412 (the CapabilityStatement's `conditionalDelete`).
    #[arg(long, env = "FHIRLAKE_CONDITIONAL_DELETE", value_enum, default_value_t = ConditionalDelete::Multiple)]
    pub conditional_delete: ConditionalDelete,

    /// The most resources one conditional delete deletes (1 to 100000); more matches are 412
    /// and nothing is deleted.
    #[arg(long, env = "FHIRLAKE_CONDITIONAL_DELETE_LIMIT", value_parser = parse_delete_limit, default_value_t = DEFAULT_DELETE_LIMIT)]
    pub conditional_delete_limit: usize,

    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "FHIRLAKE_WORKERS")]
    pub workers: Option<usize>,

    /// Seconds that in-flight requests get to finish at shutdown.
    #[arg(long, env = "FHIRLAKE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// The page size of history and search when the client gives no `_count`.
    #[arg(long, env = "FHIRLAKE_DEFAULT_COUNT", default_value_t = 50)]
    pub default_count: usize,

    /// The largest page of history and search: a larger `_count` gets pages of this size.
    #[arg(long, env = "FHIRLAKE_MAX_COUNT", default_value_t = 1000)]
    pub max_count: usize,

    #[command(flatten)]
    pub search: SearchLimits,

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

    /// The rest-hook endpoints allowed whatever their address, as comma-separated URL
    /// prefixes (`https://hooks.example.org/,http://127.0.0.1:9000/`): an endpoint with a
    /// prefix's scheme, host and port, under its path. Any other endpoint may only reach
    /// public addresses (no loopback, private, link-local or metadata address), checked when
    /// a Subscription is written and at every notification.
    #[arg(long, env = "FHIRLAKE_SUBSCRIPTION_ENDPOINTS", value_delimiter = ',', value_parser = Prefix::parse)]
    pub subscription_endpoints: Vec<Prefix>,

    /// Publishes every change to NATS JetStream at this URL (`nats://127.0.0.1:4222`).
    #[arg(long, env = "FHIRLAKE_SINK")]
    pub sink: Option<String>,

    /// The JetStream stream the sink publishes to (created when missing, with the subjects
    /// `STREAM.>`; each change goes to `STREAM.{type}.{created|updated|deleted}`).
    #[arg(long, env = "FHIRLAKE_SINK_STREAM", default_value = "FHIRLAKE")]
    pub sink_stream: String,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub validation: ValidationConfig,

    /// The authorization server's authorize endpoint, announced in
    /// `/.well-known/smart-configuration` and the CapabilityStatement.
    #[arg(long, env = "FHIRLAKE_AUTH_AUTHORIZE_URL")]
    pub auth_authorize_url: Option<String>,

    /// The authorization server's token endpoint, announced likewise. Without it, the
    /// server's own token endpoint (`/auth/token`, SMART Backend Services for the clients of
    /// `fhirlake client add`) is announced; it answers either way.
    #[arg(long, env = "FHIRLAKE_AUTH_TOKEN_URL")]
    pub auth_token_url: Option<String>,

    /// How long the access tokens of the server's own token endpoint (`/auth/token`) are
    /// valid: seconds, or with a unit (`5m`); at most an hour.
    #[arg(long, env = "FHIRLAKE_BACKEND_TOKEN_LIFETIME", value_parser = parse_backend_lifetime, default_value = "300")]
    pub backend_token_lifetime: Duration,

    /// The audit trail: `on` writes one `audit` log line per request (who, what, when,
    /// outcome); `off` writes none.
    #[arg(long, env = "FHIRLAKE_AUDIT", value_enum, default_value_t = Audit::On)]
    pub audit: Audit,

    #[command(flatten)]
    pub jobs: JobsConfig,

    #[command(flatten)]
    pub sql: SqlConfig,
}

/// The limits of SQL queries (`$sql`, `fhirlake sql`).
#[derive(Args, Clone, Debug)]
pub struct SqlConfig {
    /// The most memory, in MiB, one SQL query's operators may hold (hash tables of
    /// aggregates and joins, sorts); a query that needs more is refused (400 `too-costly`).
    #[arg(long = "sql-memory", env = "FHIRLAKE_SQL_MEMORY", default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub sql_memory_mib: u64,

    /// How long one SQL query may run (`500ms`, `30s`, `2m`, ...); a query still running then
    /// is stopped (400 `too-costly`, or its answer cut short once it has started).
    #[arg(long = "sql-timeout", env = "FHIRLAKE_SQL_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub sql_timeout: Duration,
}

impl SqlConfig {
    /// The SQL engine with these limits, on two threads of its own.
    pub fn engine(&self) -> anyhow::Result<fhirlake_analytics::sql::Engine> {
        let limits = fhirlake_analytics::sql::Limits {
            memory: (self.sql_memory_mib as usize) << 20,
            time: self.sql_timeout,
        };
        fhirlake_analytics::sql::Engine::new(2, limits)
            .map_err(|e| anyhow::anyhow!("the SQL engine cannot start: {e}"))
    }
}

/// Jobs: bulk `$export` and the other long operations (see `src/jobs/`).
#[derive(Args, Clone, Debug)]
pub struct JobsConfig {
    /// How many jobs run at once (1 to 64), each on a thread of its own; more wait, queued.
    #[arg(long = "job-workers", env = "FHIRLAKE_JOB_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub job_workers: u8,

    /// How long a finished job and its files are kept (`30s`, `12h`, `7d`, ...), from its end.
    #[arg(long = "job-retention", env = "FHIRLAKE_JOB_RETENTION", value_parser = parse_duration, default_value = "24h")]
    pub job_retention: Duration,

    /// The wait between two polls of a running job's status (its `Retry-After`, in whole
    /// seconds, at least 1); a client that polls a job more often than every half of it gets
    /// 429.
    #[arg(long = "job-poll-interval", env = "FHIRLAKE_JOB_POLL_INTERVAL", value_parser = parse_duration, default_value = "2s")]
    pub job_poll_interval: Duration,

    /// The most resources one export file holds (1 to 100000000); a type with more gets
    /// several files.
    #[arg(long = "export-file-resources", env = "FHIRLAKE_EXPORT_FILE_RESOURCES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub export_file_resources: u64,

    /// Where export files go: by default `DATA/jobs/`; with this, object storage
    /// (`s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`; credentials,
    /// region and endpoint from the environment: `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...).
    /// Clients still download the files from fhirlake's own file URLs, with their token.
    #[arg(long = "export-store", env = "FHIRLAKE_EXPORT_STORE")]
    pub export_store: Option<String>,

    /// How export files are stored: `none` (NDJSON) or `gzip`. Either way a
    /// client gets a file gzip-compressed when its `Accept-Encoding` takes gzip, plain
    /// otherwise.
    #[arg(long = "export-compression", env = "FHIRLAKE_EXPORT_COMPRESSION", value_enum, default_value_t = Compression::None)]
    pub export_compression: Compression,

    /// The folder whose files `$import` and `$bulk-submit` may read (`file://` inputs, after
    /// `..` and symlinks are resolved); without it, file inputs are refused.
    #[arg(long = "import-root", env = "FHIRLAKE_IMPORT_ROOT")]
    pub import_root: Option<PathBuf>,

    /// The object storage prefix (`s3://bucket/prefix`, `gs://...`, `az://...`; credentials
    /// from the environment, as for `--export-store`) under which `$import` and `$bulk-submit`
    /// may read objects; without it, object storage inputs are refused.
    #[arg(long = "import-store", env = "FHIRLAKE_IMPORT_STORE")]
    pub import_store: Option<String>,
}

impl JobsConfig {
    /// How jobs are run and kept.
    pub fn settings(&self) -> crate::jobs::Settings {
        crate::jobs::Settings {
            workers: self.job_workers.into(),
            retention: self.job_retention,
            poll_interval: self.job_poll_interval,
            file_resources: self.export_file_resources as usize,
        }
    }

    /// Where jobs put their files: the export store, or the data directory `data`.
    pub fn sink(&self, data: &Path) -> anyhow::Result<crate::jobs::Sink> {
        use crate::jobs::Sink;
        Ok(match &self.export_store {
            None => Sink::local(data, self.export_compression),
            Some(url) => Sink::objects(
                fhirlake_objstore::Store::open(url).context("--export-store")?,
                self.export_compression,
            ),
        })
    }
}

/// What one search may ask for (see `search::Limits`); past a limit a search gets 400.
#[derive(Args, Clone, Debug)]
pub struct SearchLimits {
    /// The most parameters that select resources in one search (its ANDs), each repetition
    /// counted.
    #[arg(long = "search-max-params", env = "FHIRLAKE_SEARCH_MAX_PARAMS", default_value_t = Limits::default().params)]
    pub params: usize,

    /// The most comma-separated values (ORs) of one search parameter; also the most `_sort`
    /// keys and words of one full-text value.
    #[arg(long = "search-max-values", env = "FHIRLAKE_SEARCH_MAX_VALUES", default_value_t = Limits::default().values)]
    pub values: usize,

    /// The most links of one chain or nesting of `_has`.
    #[arg(long = "search-max-depth", env = "FHIRLAKE_SEARCH_MAX_DEPTH", default_value_t = Limits::default().depth)]
    pub depth: usize,

    /// The most nested searches the chains and `_has` of one search may run.
    #[arg(long = "search-max-joins", env = "FHIRLAKE_SEARCH_MAX_JOINS", default_value_t = Limits::default().joins)]
    pub joins: usize,

    /// The largest `_offset` (next links page with a cursor instead, at any depth).
    #[arg(long = "search-max-offset", env = "FHIRLAKE_SEARCH_MAX_OFFSET", default_value_t = Limits::default().offset)]
    pub offset: usize,

    /// The most `_include` and `_revinclude` parameters of one search.
    #[arg(long = "search-max-includes", env = "FHIRLAKE_SEARCH_MAX_INCLUDES", default_value_t = Limits::default().includes)]
    pub includes: usize,

    /// The most rounds of `_include:iterate` and `_revinclude:iterate`.
    #[arg(long = "search-max-iterations", env = "FHIRLAKE_SEARCH_MAX_ITERATIONS", default_value_t = Limits::default().iterations)]
    pub iterations: usize,
}

impl SearchLimits {
    pub fn limits(&self) -> Limits {
        Limits {
            params: self.params,
            values: self.values,
            depth: self.depth,
            joins: self.joins,
            offset: self.offset,
            includes: self.includes,
            iterations: self.iterations,
        }
    }
}

impl ServeConfig {
    /// How conditional deletes treat several matches.
    pub fn deletes(&self) -> Deletes {
        Deletes {
            mode: self.conditional_delete,
            limit: self.conditional_delete_limit,
        }
    }
}

/// Whether requests are audited.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audit {
    On,
    Off,
}

/// How requests are authorized: the settings `serve` and `token` share.
#[derive(Args, Clone, Debug)]
pub struct AuthConfig {
    /// How bearer tokens are verified: `hs256` (a shared secret), `rs256` or `es256` (public
    /// keys, PEM or JWKS), or `none` (no authorization at all: every client may read and
    /// write everything).
    #[arg(long = "auth", env = "FHIRLAKE_AUTH", value_enum, default_value_t = Mode::Hs256)]
    pub mode: Mode,

    /// The HS256 secret (at least 32 bytes). Without it, `serve` uses the one in
    /// `DATA/auth-secret`, made at the first start.
    #[arg(long, env = "FHIRLAKE_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// A PEM file with the RS256 or ES256 public key tokens are checked with.
    #[arg(long, env = "FHIRLAKE_AUTH_KEY")]
    pub auth_key: Option<PathBuf>,

    /// A JWKS file (JSON Web Key Set) with the RS256 or ES256 public keys tokens are checked
    /// with; a token's `kid` picks its key.
    #[arg(long, env = "FHIRLAKE_AUTH_JWKS")]
    pub auth_jwks: Option<PathBuf>,

    /// The issuer tokens must name (`iss`); not checked when unset.
    #[arg(long, env = "FHIRLAKE_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// The audience tokens must name (`aud`), usually the public FHIR base URL; not checked
    /// when unset.
    #[arg(long, env = "FHIRLAKE_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
}

/// The file in a data directory that holds the generated HS256 secret.
pub const SECRET_FILE: &str = "auth-secret";

impl AuthConfig {
    /// The issuer and audience tokens must carry.
    pub fn expected(&self) -> Expected {
        Expected {
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
        }
    }

    /// The HS256 secret: `--auth-secret`, else the one in `data/auth-secret`, which `create`
    /// makes (32 random bytes, hex, readable by the owner only) when it is not there yet.
    /// Returns it with where it came from.
    pub fn secret(&self, data: &Path, create: bool) -> anyhow::Result<(Vec<u8>, String)> {
        if let Some(secret) = &self.auth_secret {
            return Ok((secret.as_bytes().to_vec(), "--auth-secret".into()));
        }
        let file = data.join(SECRET_FILE);
        let origin = file.display().to_string();
        match crate::auth::token::read_secret(&file, create) {
            Ok((secret, made)) => {
                if made {
                    tracing::warn!(file = %origin, "made a new HS256 secret for development tokens");
                }
                Ok((secret, origin))
            }
            Err(error) => anyhow::bail!(
                "no HS256 secret: give --auth-secret (or FHIRLAKE_AUTH_SECRET), or start \
                 `fhirlake serve --data {}` once to make one ({origin}: {error})",
                data.display()
            ),
        }
    }

    /// The verifier of the configured mode; `None` for `none`. `create_secret`: see
    /// [`AuthConfig::secret`].
    pub fn verifier(&self, data: &Path, create_secret: bool) -> anyhow::Result<Option<Verifier>> {
        let expected = self.expected();
        let read = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|path| {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
                })
                .transpose()
        };
        let verifier = match self.mode {
            Mode::None => return Ok(None),
            Mode::Hs256 => {
                let (secret, origin) = self.secret(data, create_secret)?;
                Verifier::new(self.mode, KeySource::Secret(&secret), &expected)
                    .with_context(|| format!("the HS256 secret of {origin}"))?
            }
            Mode::Rs256 | Mode::Es256 => {
                let pem = read(&self.auth_key)?;
                let jwks = read(&self.auth_jwks)?
                    .map(String::from_utf8)
                    .transpose()
                    .context("the JWKS file is not UTF-8")?;
                let keys = KeySource::Public {
                    pem: pem.as_deref(),
                    jwks: jwks.as_deref(),
                };
                Verifier::new(self.mode, keys, &expected)?
            }
        };
        Ok(Some(verifier))
    }
}

/// `--conditional-delete-limit`: a whole number from 1 to [`MAX_DELETE_LIMIT`] (one commit
/// holds every deletion, and the matches are collected in memory first).
fn parse_delete_limit(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(limit) if (1..=MAX_DELETE_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(format!(
            "'{text}' is not a whole number from 1 to {MAX_DELETE_LIMIT}"
        )),
    }
}

/// The longest `--backend-token-lifetime`.
pub const MAX_BACKEND_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// `--backend-token-lifetime`: a lifetime ([`crate::auth::token::parse_lifetime`]) of at
/// most [`MAX_BACKEND_TOKEN_LIFETIME`]: a backend service asks again rather than holds a
/// long-lived token.
fn parse_backend_lifetime(text: &str) -> Result<Duration, String> {
    let lifetime = crate::auth::token::parse_lifetime(text)?;
    if lifetime > MAX_BACKEND_TOKEN_LIFETIME {
        return Err(format!("'{text}' is longer than an hour"));
    }
    Ok(lifetime)
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

    #[test]
    fn backend_tokens_live_an_hour_at_most() {
        assert_eq!(parse_backend_lifetime("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_backend_lifetime("1h"), Ok(MAX_BACKEND_TOKEN_LIFETIME));
        for bad in ["0", "61m", "2h", "soon"] {
            assert!(parse_backend_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_conditional_delete_limit_is_bounded() {
        assert_eq!(parse_delete_limit("1"), Ok(1));
        assert_eq!(parse_delete_limit("100000"), Ok(MAX_DELETE_LIMIT));
        for bad in ["0", "100001", "-1", "", "1e3", "18446744073709551616"] {
            assert!(parse_delete_limit(bad).is_err(), "{bad}");
        }
    }
}
