//! The `fhirlake` command line.

use crate::config::{DataDir, ServeConfig};
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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Runs the FHIR server.
    Serve(ServeConfig),
    /// Upgrades a data directory to this fhirlake's schema version.
    Migrate(DataDir),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            actix_web::rt::System::new().block_on(crate::server::serve(config))
        }
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
