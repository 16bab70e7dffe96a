//! Wiring: opens the store, starts the HTTP server, and shuts both down in order.

use crate::api::{self, AppState, Metrics};
use crate::config::ServeConfig;
use crate::store::Store;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use std::io::Write;
use std::sync::Arc;

/// Serves the FHIR API until SIGTERM or Ctrl-C; in-flight requests finish first, then the
/// writer commits what it holds and the store closes.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let store = Store::open(&config.data.path)
        .with_context(|| format!("opening the data directory {}", config.data.path.display()))?;
    let search =
        crate::search::Engine::open(&store, &config.data.path.join(crate::search::INDEX_DIR))
            .context("opening the search index")?;
    let search = Arc::new(search);
    // The releases are opened now (cheap); the shipped content is decoded beside the start.
    let terminology = crate::terminology::Terminology::open(&config.data.path)
        .context("opening the terminology releases")?;
    crate::terminology::Terminology::load_in_background();
    for release in terminology.releases() {
        tracing::info!(system = %release.url, holding = %release.holding, "terminology release");
    }
    let mut metrics = Metrics::default();
    metrics.register_consumer("search-indexer", search.watch_indexed());
    let state = web::Data::new(AppState {
        store: store.clone(),
        search: search.clone(),
        terminology: Arc::new(terminology),
        config: Arc::new(config.clone()),
        metrics,
        readiness: vec![Box::new(store.clone()), Box::new(search)],
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(api::log_request))
            .configure(api::routes)
    })
    .shutdown_timeout(config.shutdown_timeout);
    if let Some(workers) = config.workers {
        server = server.workers(workers);
    }
    let server = server
        .bind(&config.listen)
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = server.addrs()[0];
    tracing::info!(
        data = %config.data.path.display(),
        "fhirlake serves FHIR R4 at http://{address}/fhir"
    );
    // Tooling and tests wait for this line on stdout.
    println!("listening on http://{address}");
    std::io::stdout().flush()?;
    server.run().await?;
    store.close();
    tracing::info!("fhirlake stopped");
    Ok(())
}
