//! The `fhirlake` command line: `serve`, `migrate`, `import`, `reindex`, `openapi`, `token` and
//! `terminology load-snomed|load-loinc`.

use crate::auth::scope::{Level, Scopes};
use crate::auth::token::{self, Mode};
use crate::config::{AuthConfig, DataDir, ServeConfig};
use crate::logging::LogFormat;
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
    /// Mints an HS256 development token with the server's settings (`--auth-secret`, or the
    /// secret `serve` made in the data directory; issuer and audience) and prints it alone
    /// on the last line: `curl -H "Authorization: Bearer $(fhirlake token --scope ...)"`.
    Token(TokenArgs),
    /// Loads a terminology release into a data directory; a server uses it from its next
    /// start (one already running keeps what it has).
    #[command(subcommand)]
    Terminology(TerminologyCommand),
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
        Command::Token(args) => {
            println!("{}", mint(&args)?);
            Ok(())
        }
        Command::Terminology(command) => load_release(command),
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

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let store = crate::store::Store::open(&args.data.path).map_err(|error| {
        anyhow::anyhow!(
            "{error} (a running fhirlake server keeps its data directory locked: stop it, or \
             POST the Bundles to it instead)"
        )
    })?;
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

fn reindex(data: DataDir) -> anyhow::Result<()> {
    let store = crate::store::Store::open(&data.path)?;
    let dir = data.path.join(crate::search::INDEX_DIR);
    // References are read as the server read them when it built the index.
    let base = crate::search::index::recorded_base(&dir).unwrap_or_default();
    let (index, _) = crate::search::index::SearchIndex::open(&dir, &base)?;
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
