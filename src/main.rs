use clap::Parser;

/// mimalloc serves every allocation of the binary (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = fhirlake::cli::Cli::parse();
    fhirlake::logging::init(cli.log_format);
    fhirlake::panics::log_panics();
    match fhirlake::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fhirlake: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
