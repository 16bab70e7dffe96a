//! Wiring: opens the store, starts the search indexer and the change stream's consumers,
//! serves HTTP, and shuts everything down in order.

use crate::api::{self, AppState, Metrics};
use crate::auth::token::{Mode, OwnKey};
use crate::cdc;
use crate::config::{SECRET_FILE, ServeConfig};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use std::io::Write;
use std::sync::Arc;

/// Serves the FHIR API until SIGTERM or Ctrl-C. Then the change streams end (they would hold
/// their connections open), in-flight requests finish, the jobs stop at their next step (to
/// resume at the next start), the writer commits what it holds and the store closes.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let verifier = config
        .auth
        .verifier(&config.data.path, true)
        .context("setting up authorization")?;
    // With authorization on, the token endpoint issues tokens the verifier accepts too.
    let (verifier, backend) = match verifier {
        None => (None, None),
        Some(verifier) => {
            let key = OwnKey::open(&config.data.path)?;
            let verifier = verifier.with_own(&key);
            let backend = api::Backend::new(
                key,
                config.backend_token_lifetime,
                config.subscription_endpoints.clone(),
            )?;
            (Some(verifier), Some(backend))
        }
    };
    announce_auth(&config);
    let store = config
        .data
        .open_store()
        .with_context(|| format!("opening the data directory {}", config.data.path.display()))?;
    let base = crate::fhir::reference::Base::new(config.base_url.as_deref());
    let search = crate::search::Engine::open(
        &store,
        &config.data.path.join(crate::search::INDEX_DIR),
        Some(base),
        config.search.limits(),
    )
    .context("opening the search index")?;
    let search = Arc::new(search);
    // The releases are opened now (cheap); the shipped content is decoded beside the start.
    let terminology = Arc::new(
        crate::terminology::Terminology::open(&config.data.path)
            .context("opening the terminology releases")?,
    );
    let validator = Arc::new(config.validation.validator(terminology.clone(), &store)?);
    let profiles = validator.clone();
    crate::terminology::Terminology::load_in_background();
    for release in terminology.releases() {
        tracing::info!(system = %release.url, holding = %release.holding, "terminology release");
    }
    let jobs = crate::jobs::Jobs::start(
        store.clone(),
        search.clone(),
        config.jobs.sink(&config.data.path)?,
        config.jobs.settings(),
        Some(crate::jobs::import::run::Imports {
            validator: validator.clone(),
            sources: crate::bulk::input::Sources::new(
                config.jobs.import_root.as_deref(),
                config.subscription_endpoints.clone(),
            )?
            .with_store(config.jobs.import_store.as_deref())?,
        }),
    )
    .context("starting the jobs")?;
    let mut metrics = Metrics::default();
    metrics.register_jobs(jobs.clone());
    let mut consumers = vec![("search-indexer".to_string(), search.watch_indexed())];

    // The change stream's consumers run on a runtime of their own, away from HTTP workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fhirlake-cdc")
        .enable_all()
        .build()?;
    let source = config
        .base_url
        .as_deref()
        .map_or("/fhir", |base| base.trim_end_matches('/'))
        .to_string();
    let hub = cdc::feed::Hub::new(
        store.clone(),
        search.registry,
        config.stream_buffer,
        source.clone(),
    );
    runtime.spawn(hub.clone().run());
    let views = crate::jobs::views::materialized::Materializer::new(store.clone(), search.clone());
    runtime.spawn(views.clone().run());
    consumers.push(("views".to_string(), views.watch()));
    metrics.register_views(views.clone());
    let retry = cdc::subscriptions::Retry {
        first: config.subscription_retry,
        max: config.subscription_retry_max,
    };
    let subscriptions = cdc::subscriptions::start(
        runtime.handle(),
        store.clone(),
        search.registry,
        retry,
        source.clone(),
        config.subscription_endpoints.clone(),
    )?;
    consumers.push(("subscriptions".to_string(), subscriptions));
    if let Some(url) = &config.sink {
        let sink = cdc::sink::Nats {
            url: url.clone(),
            stream: config.sink_stream.clone(),
            source: source.clone(),
        };
        consumers.push((
            sink.consumer_name(),
            sink.start(runtime.handle(), store.clone())?,
        ));
    }
    if let Some(retention) = config.changes_retention {
        // Unfinished jobs need the changes after their snapshots too.
        let mut needed = consumers.clone();
        needed.push(("jobs".to_string(), jobs.floor()));
        runtime.spawn(cdc::retention::run(store.clone(), retention, needed));
    }
    for (name, checkpoint) in consumers {
        metrics.register_consumer(&name, checkpoint);
    }

    let state = web::Data::new(AppState {
        store: store.clone(),
        search: search.clone(),
        changes: hub.clone(),
        terminology,
        validator,
        config: Arc::new(config.clone()),
        metrics,
        readiness: vec![
            Box::new(store.clone()),
            Box::new(search.clone()),
            Box::new(profiles),
        ],
        verifier,
        backend,
        jobs: jobs.clone(),
        sql: Arc::new(config.sql.engine()?),
        views,
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(actix_web::middleware::from_fn(api::admit))
            .wrap(actix_web::middleware::from_fn(api::log_request))
            .configure(api::routes)
    })
    .shutdown_timeout(config.shutdown_timeout)
    .disable_signals();
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
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: ending the change streams, finishing requests");
        hub.close();
        handle.stop(true).await;
    });
    server.await?;
    runtime.shutdown_background();
    // The jobs stop at their next step and resume at the next start.
    jobs.stop();
    if let Err(error) = search.close() {
        tracing::error!(%error, "writing the search index to disk failed; it resumes from its last checkpoint");
    }
    store.close();
    tracing::info!("fhirlake stopped");
    Ok(())
}

/// Resolves at SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
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
