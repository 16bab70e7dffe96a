//! The `fhirlake` command line: `serve`, `migrate`, `import`, `reindex`, `sql`, `openapi`,
//! `token`, `client add|list|remove` and `terminology load-snomed|load-loinc`.
//!
//! The commands that write a data directory (`import`, `reindex`, `client`, `terminology`)
//! open its store themselves, and redb lets one process at a time do so: while a server runs on
//! the directory they fail at once, saying so, and change nothing.

use crate::auth::scope::{Level, Scopes};
use crate::auth::token::{self, Mode};
use crate::config::{AuthConfig, DataDir, ServeConfig};
use crate::logging::LogFormat;
use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "fhirlake",
    version,
    about = "A FHIR R4 server and health data store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// How log lines on stderr are written: `text`, or `json` (one object per line).
    #[arg(
        long,
        global = true,
        env = "FHIRLAKE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs the FHIR server.
    Serve(Box<ServeConfig>),
    /// Upgrades a data directory to this fhirlake's schema version.
    Migrate(DataDir),
    /// Loads Bundles (transaction, batch, collection), single resources and NDJSON files
    /// (`.json`, `.ndjson`, optionally gzipped) into a data directory. Stop the server that
    /// uses the directory first.
    Import(ImportArgs),
    /// Prints the OpenAPI 3.1 description of the HTTP API (the document `GET /openapi.json`
    /// serves; `openapi/openapi.json` in the repository is its output).
    Openapi,
    /// Rebuilds the search index of a data directory from the store alone. Stop the server
    /// that uses the directory first.
    Reindex(DataDir),
    /// Compacts the store's file: gives its free space back to the file system (after large
    /// erasures, whose scrubs can grow it). Stop the server that uses the directory first.
    Compact(DataDir),
    /// Mints an HS256 development token with the server's settings (`--auth-secret`, or the
    /// secret `serve` made in the data directory; issuer and audience) and prints it alone
    /// on the last line: `curl -H "Authorization: Bearer $(fhirlake token --scope ...)"`.
    Token(TokenArgs),
    /// Loads a terminology release into a data directory; a server uses it from its next
    /// start (one already running keeps what it has).
    #[command(subcommand)]
    Terminology(TerminologyCommand),
    /// Registers, lists and removes the backend clients of the token endpoint `/auth/token`
    /// (SMART Backend Services). Stop the server that uses the data directory first (it holds
    /// it locked); it reads the clients at every token request once started again.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Runs a read-only SQL query over the stored ViewDefinitions, each a table named by its
    /// `name`, and prints the result (`--format`). Stop the server that uses the data
    /// directory first, or send the query to its `$sql`.
    Sql(SqlArgs),
}

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    #[command(flatten)]
    pub data: DataDir,

    #[command(flatten)]
    pub limits: crate::config::SqlConfig,

    /// How the result is printed: `csv` (with a header line), `json`, `ndjson` or `parquet`
    /// (a Parquet file: redirect it to one).
    #[arg(long, default_value = "csv")]
    pub format: String,

    /// The SQL query (`SELECT gender, count(*) FROM patient_demographics GROUP BY gender`).
    pub query: String,
}

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Registers a backend client: its id (the `iss` and `sub` of its assertions), its public
    /// keys and the system/ scopes it may be granted.
    Add(ClientAddArgs),
    /// Lists the registered backend clients: id, scopes, keys, when registered.
    List(DataDir),
    /// Removes a backend client: its token requests are refused from then on (the tokens it
    /// holds stay valid until they expire, `--backend-token-lifetime` at most).
    Remove(ClientIdArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClientAddArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// The client id (1 to 128 characters of A-Z a-z 0-9 . _ ~ : @ / -).
    #[arg(long)]
    pub id: String,
    /// A JWKS file with the client's public keys: RS384 (RSA, 2048 bits or more) or ES384 (EC
    /// P-384) keys, each with a `kid`. The keys are read now and kept in the store.
    #[arg(
        long,
        required_unless_present = "jwks_url",
        conflicts_with = "jwks_url"
    )]
    pub jwks: Option<std::path::PathBuf>,
    /// The URL of the client's JWKS, fetched when it asks for a token (and kept 5 minutes),
    /// under the rules of rest-hook endpoints: a loopback or private address only when
    /// `--subscription-endpoints` lists it.
    #[arg(long)]
    pub jwks_url: Option<String>,
    /// The system/ scopes it may be granted, space-separated or repeated (`system/*.rs`,
    /// `system/Patient.rs system/Observation.rs`).
    #[arg(long, required = true)]
    pub scope: Vec<String>,
    /// Replaces the client registered with this id (new keys, new scopes).
    #[arg(long)]
    pub replace: bool,
}

#[derive(clap::Args, Debug)]
pub struct ClientIdArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// The client id.
    #[arg(long)]
    pub id: String,
}

#[derive(Subcommand, Debug)]
pub enum TerminologyCommand {
    /// Loads a SNOMED CT release in RF2: the Snapshot's concepts, English descriptions and
    /// is-a relationships (and the language refset's preferred terms), found under the
    /// directory given. It replaces the shipped subset of SNOMED CT.
    LoadSnomed(ReleaseArgs),
    /// Loads LOINC's table (`Loinc.csv` of a LOINC release). It replaces the shipped subset of
    /// LOINC.
    LoadLoinc(ReleaseArgs),
}

#[derive(clap::Args, Debug)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// The release: the RF2 directory (its root or `Snapshot/`), or the `Loinc.csv` file.
    pub release: std::path::PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub data: DataDir,
    #[command(flatten)]
    pub auth: AuthConfig,
    /// SMART scopes, space-separated or repeated: `patient/*.rs`, `user/Observation.cruds`,
    /// `system/*.cruds`, `patient/Observation.rs?category=laboratory`.
    #[arg(long, required = true)]
    pub scope: Vec<String>,
    /// The patient whose compartment `patient/` scopes grant (the `patient` claim).
    #[arg(long)]
    pub patient: Option<String>,
    /// How long the token is valid: seconds, or with a unit (`15m`, `8h`, `30d`).
    #[arg(long, default_value = "1h", value_parser = token::parse_lifetime)]
    pub expires: std::time::Duration,
    /// The subject (`sub`): the user or service the token speaks for.
    #[arg(long, default_value = "fhirlake-developer")]
    pub subject: String,
    /// The client (`client_id`): the app.
    #[arg(long, default_value = "fhirlake-cli")]
    pub client_id: String,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Files to load, or directories whose .json/.ndjson(.gz) files are loaded in name order.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// How many files are loaded at once (default: one per CPU core).
    #[arg(long, env = "FHIRLAKE_IMPORT_JOBS")]
    pub jobs: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub validation: crate::config::ValidationConfig,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            actix_web::rt::System::new().block_on(crate::server::serve(*config))
        }
        Command::Import(args) => import(args),
        Command::Openapi => {
            print!("{}", crate::api::openapi::pretty_json());
            Ok(())
        }
        Command::Reindex(data) => reindex(data),
        Command::Compact(data) => {
            let (before, after) = crate::store::schema::compact(&data.path)?;
            println!(
                "compacted {}: {} MB before, {} MB after",
                data.path.display(),
                before / (1024 * 1024),
                after / (1024 * 1024)
            );
            Ok(())
        }
        Command::Sql(args) => sql(args),
        Command::Token(args) => {
            println!("{}", mint(&args)?);
            Ok(())
        }
        Command::Terminology(command) => load_release(command),
        Command::Client(command) => client(command),
        Command::Migrate(data) => {
            let migrated = crate::store::schema::migrate(&data.path)?;
            if migrated.steps.is_empty() {
                println!(
                    "{} is at schema version {}: up to date",
                    data.path.display(),
                    migrated.to
                );
            } else {
                for step in &migrated.steps {
                    println!("applied migration: {step}");
                }
                println!(
                    "{} upgraded from schema version {} to {}",
                    data.path.display(),
                    migrated.from,
                    migrated.to
                );
            }
            Ok(())
        }
    }
}

/// Opens the store of `dir` for a command; the error says that a running server holds it
/// (`or`: what else to do then).
fn open_store(data: &DataDir, or: &str) -> anyhow::Result<crate::store::Store> {
    data.open_store().map_err(|error| {
        anyhow::anyhow!(
            "{error} (a running fhirlake server keeps its data directory locked: stop it{or})"
        )
    })
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let store = open_store(&args.data, ", or POST the Bundles to it instead")?;
    // The index keeps the base the server built it with.
    let search = std::sync::Arc::new(crate::search::Engine::open(
        &store,
        &args.data.path.join(crate::search::INDEX_DIR),
        None,
        crate::search::Limits::default(),
    )?);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let terminology = std::sync::Arc::new(crate::terminology::Terminology::open(&args.data.path)?);
    let validator = std::sync::Arc::new(args.validation.validator(terminology, &store)?);
    let summary =
        crate::bulk::import::run(&store, &search, &validator, &args.paths, jobs, !args.quiet);
    // What the index holds goes to disk; the server indexes the rest of the log at start.
    search.close()?;
    store.close();
    let summary = summary?;
    println!(
        "imported {} resources from {} files in {:.1} s ({:.0} resources/s); {} rejected \
         resources, {} rejected files; {} validation warnings",
        summary.stored,
        summary.files,
        summary.elapsed.as_secs_f64(),
        summary.per_second(),
        summary.rejected,
        summary.failed_files,
        summary.warnings
    );
    if summary.rejected + summary.failed_files > 0 {
        anyhow::bail!("some of the input was rejected (listed above)");
    }
    Ok(())
}

fn sql(args: SqlArgs) -> anyhow::Result<()> {
    use crate::views::output::{Encoder, Format};
    use std::io::Write;
    let format = Format::parse(&args.format).ok_or_else(|| {
        anyhow::anyhow!(
            "--format {}: the formats are csv, json, ndjson and parquet",
            args.format
        )
    })?;
    let store = open_store(&args.data, ", or POST the query to its $sql")?;
    let search = std::sync::Arc::new(crate::search::Engine::open(
        &store,
        &args.data.path.join(crate::search::INDEX_DIR),
        None,
        crate::search::Limits::default(),
    )?);
    let engine = args.limits.engine()?;
    let seq = store.committed_seq();
    let access = crate::auth::Access::Open;
    let printed = (|| -> anyhow::Result<()> {
        let mut query =
            crate::jobs::views::query(&engine, &store, &search, None, &access, &args.query, seq)?;
        let mut encoder = Encoder::of_schema(format, query.schema().clone(), true)?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&encoder.take())?;
        while let Some(batch) = query.next_batch() {
            encoder.batch(&batch.map_err(crate::jobs::views::sql_error)?)?;
            stdout.write_all(&encoder.take())?;
        }
        stdout.write_all(&encoder.finish()?)?;
        Ok(stdout.flush()?)
    })();
    search.close()?;
    store.close();
    printed
}

fn reindex(data: DataDir) -> anyhow::Result<()> {
    let store = data.open_store()?;
    let dir = data.path.join(crate::search::INDEX_DIR);
    // References are read as the server read them when it built the index.
    let base = crate::search::index::recorded_base(&dir).unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (index, _) = crate::search::index::SearchIndex::open_with_threads(&dir, &base, threads)?;
    let registry = crate::search::registry::Registry::r4_with_base(base);
    let start = std::time::Instant::now();
    let count = crate::search::indexer::rebuild(&store, &index, registry);
    index.close()?;
    store.close();
    println!(
        "indexed {} resources in {:.1} s",
        count?.0,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The token `fhirlake token` prints. Its scopes must all be resource scopes or SMART's other
/// scopes, and `patient/` scopes need `--patient`: a token that would grant less than it says
/// is refused here rather than at the server.
fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    if args.auth.mode != Mode::Hs256 {
        anyhow::bail!(
            "fhirlake token mints HS256 development tokens, and the server verifies {}: get \
             tokens from the authorization server that holds its private key",
            args.auth.mode.as_str()
        );
    }
    let scope = args.scope.join(" ");
    let scopes = Scopes::parse(&scope);
    if let Some(malformed) = scopes.malformed.first() {
        anyhow::bail!("{malformed}");
    }
    if args.patient.is_none() && scopes.resources.iter().any(|s| s.level == Level::Patient) {
        anyhow::bail!("patient/ scopes grant the compartment of --patient ID: give it");
    }
    let (secret, _) = args.auth.secret(&args.data.path, false)?;
    let grant = token::Grant {
        scope,
        patient: args.patient.clone(),
        subject: args.subject.clone(),
        client_id: args.client_id.clone(),
        lifetime: args.expires,
    };
    token::mint(&secret, &grant, &args.auth.expected())
}

/// `fhirlake client add|list|remove`.
fn client(command: ClientCommand) -> anyhow::Result<()> {
    let data = match &command {
        ClientCommand::Add(args) => &args.data,
        ClientCommand::List(data) => data,
        ClientCommand::Remove(args) => &args.data,
    };
    let store = open_store(data, ", then start it again")?;
    let done = match command {
        ClientCommand::Add(args) => add_client(&store, args),
        ClientCommand::List(_) => list_clients(&store),
        ClientCommand::Remove(args) => remove_client(&store, &args.id),
    };
    store.close();
    done
}

fn add_client(store: &crate::store::Store, args: ClientAddArgs) -> anyhow::Result<()> {
    use crate::auth::clients::{self, Client, Keys};
    let keys = match (&args.jwks, args.jwks_url) {
        (Some(file), _) => {
            let size = std::fs::metadata(file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            anyhow::ensure!(
                size <= clients::MAX_JWKS as u64,
                "{} is larger than a JWKS may be ({} bytes)",
                file.display(),
                clients::MAX_JWKS
            );
            let text =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let set = clients::parse_jwks(&text)
                .map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
            Keys::Jwks(set)
        }
        (None, Some(url)) => Keys::JwksUrl(url),
        (None, None) => anyhow::bail!("give --jwks FILE or --jwks-url URL"),
    };
    let client =
        Client::new(&args.id, keys, &args.scope.join(" ")).map_err(|why| anyhow::anyhow!(why))?;
    if !args.replace && store.client(&client.id)?.is_some() {
        anyhow::bail!(
            "a client '{}' is registered already: give --replace to replace it",
            client.id
        );
    }
    blocking(store.set_client(&client.id, Some(client.to_bytes())))??;
    println!("registered {}", describe(&client));
    Ok(())
}

fn list_clients(store: &crate::store::Store) -> anyhow::Result<()> {
    for (id, record) in store.clients()? {
        match crate::auth::clients::Client::from_bytes(&record) {
            Ok(client) => println!("{}", describe(&client)),
            Err(why) => println!("{id}\t(unreadable: {why})"),
        }
    }
    Ok(())
}

fn remove_client(store: &crate::store::Store, id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        store.client(id)?.is_some(),
        "no client '{id}' is registered"
    );
    blocking(store.set_client(id, None))??;
    println!("removed {id}");
    Ok(())
}

/// Runs a store future to its end, for a command.
fn blocking<T>(future: impl Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(future))
}

/// A client on one line: id, scopes, keys, when registered (tab-separated).
fn describe(client: &crate::auth::clients::Client) -> String {
    use crate::auth::clients::Keys;
    let keys = match &client.keys {
        Keys::Jwks(set) => {
            let kids: Vec<&str> = set
                .keys
                .iter()
                .filter_map(|k| k.common.key_id.as_deref())
                .collect();
            format!("jwks kid={}", kids.join(","))
        }
        Keys::JwksUrl(url) => format!("jwks-url {url}"),
    };
    format!(
        "{}\t{}\t{keys}\tregistered {}",
        client.id, client.scope, client.registered
    )
}

fn load_release(command: TerminologyCommand) -> anyhow::Result<()> {
    use crate::terminology::{read_loinc_table, read_snomed_snapshot, release};
    let start = std::time::Instant::now();
    let (args, content) = match command {
        TerminologyCommand::LoadSnomed(args) => {
            let content = read_snomed_snapshot(&args.release)?;
            (args, content)
        }
        TerminologyCommand::LoadLoinc(args) => {
            let content = read_loinc_table(&args.release)?;
            (args, content)
        }
    };
    for note in &content.notes {
        println!("note: {note}");
    }
    let file = release::install(&args.data.path, &content)?;
    println!(
        "loaded {} {} ({} concepts) from {} into {} in {:.1} s; a server started from now on \
         uses it",
        content.kind.name(),
        content.version.as_deref().unwrap_or("(no version)"),
        content.concepts.len(),
        args.release.display(),
        file.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
