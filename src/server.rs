//! Wiring: opens the store, starts the HTTP server, and shuts both down in order.

use crate::api::{self, AppState, Metrics};
use crate::auth::token::Mode;
use crate::config::{SECRET_FILE, ServeConfig};
use crate::store::Store;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use std::io::Write;
use std::sync::Arc;

/// Serves the FHIR API until SIGTERM or Ctrl-C; in-flight requests finish first, then the
/// writer commits what it holds and the store closes.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let verifier = config
        .auth
        .verifier(&config.data.path, true)
        .context("setting up authorization")?;
    announce_auth(&config);
    let store = Store::open(&config.data.path)
        .with_context(|| format!("opening the data directory {}", config.data.path.display()))?;
    let search =
        crate::search::Engine::open(&store, &config.data.path.join(crate::search::INDEX_DIR))
            .context("opening the search index")?;
    let search = Arc::new(search);
    let mut metrics = Metrics::default();
    metrics.register_consumer("search-indexer", search.watch_indexed());
    let state = web::Data::new(AppState {
        store: store.clone(),
        search: search.clone(),
        config: Arc::new(config.clone()),
        metrics,
        readiness: vec![Box::new(store.clone()), Box::new(search)],
        verifier,
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

/// Says how requests are authorized: loudly when they are not, and how to get a token when
/// the server checks its own HS256 secret.
fn announce_auth(config: &ServeConfig) {
    let data = config.data.path.display();
    match config.auth.mode {
        Mode::None => tracing::warn!(
            "AUTHORIZATION IS OFF (--auth none): every client can read, change and delete \
             every resource; use it only on a trusted machine"
        ),
        Mode::Hs256 if config.auth.auth_secret.is_none() => tracing::info!(
            "requests need an HS256 bearer token signed with the secret in {data}/{SECRET_FILE}; \
             mint one with: fhirlake token --data {data} --scope 'system/*.cruds'"
        ),
        mode => tracing::info!("requests need a bearer token signed with {}", mode.as_str()),
    }
}
