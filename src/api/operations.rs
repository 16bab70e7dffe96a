//! The endpoints for operators, outside `/fhir`: `GET /health` (liveness), `GET /ready`
//! (readiness) and `GET /metrics` (Prometheus). None of them needs authorization.
//!
//! Liveness touches nothing but the HTTP worker. Readiness runs the [`ReadinessCheck`]s that
//! `server.rs` puts in [`AppState::readiness`]: the store's (its writer thread is alive), the
//! search index's (its replay of the change log after a start is done) and the profiles'
//! (never failing: a profile skipped at start is a warning, `status: warn`, still 200).

use super::{ApiResult, AppState};
use crate::fhir::{FhirError, IssueCode};
use crate::store::Store;
use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The content type of the OpenMetrics text format, which Prometheus scrapes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One condition of readiness: `GET /ready` answers 200 only while every check of
/// [`AppState::readiness`] passes. A check must be cheap and must not block: it runs on an
/// HTTP worker at every probe.
pub trait ReadinessCheck: Send + Sync {
    /// A short name for `/ready` to report the check by.
    fn name(&self) -> &'static str;
    /// Ok when ready; otherwise why not, for the operator.
    fn check(&self) -> Result<(), String>;
    /// What an operator should know though the server is ready (`status: warn`, still 200).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Ready whatever profiles it has; a profile skipped at start-up (its invariants could not be
/// checked safely) is a warning, so that the operator learns which resources go unchecked
/// without the server being taken out of service for it.
impl ReadinessCheck for Arc<crate::validate::Validator> {
    fn name(&self) -> &'static str {
        "profiles"
    }

    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    fn warnings(&self) -> Vec<String> {
        self.profiles()
            .skipped()
            .into_iter()
            .map(|s| format!("profile {} ({}) skipped: {}", s.url, s.source, s.why))
            .collect()
    }
}

/// The search index is ready once it holds every change committed before the server started
/// (its replay after a restart or crash is done).
impl ReadinessCheck for Arc<crate::search::Engine> {
    fn name(&self) -> &'static str {
        "search-index"
    }

    fn check(&self) -> Result<(), String> {
        let (indexed, needed) = (self.indexed_seq(), self.opened_at);
        if indexed >= needed {
            Ok(())
        } else {
            Err(format!(
                "the search index is replaying the change log: at {indexed} of {needed}"
            ))
        }
    }
}

/// The store is ready while its writer takes commits.
impl ReadinessCheck for Store {
    fn name(&self) -> &'static str {
        "store"
    }

    fn check(&self) -> Result<(), String> {
        if self.writer_alive() {
            Ok(())
        } else {
            Err("the store's writer has stopped".into())
        }
    }
}

/// Liveness: the process answers HTTP. It touches nothing else, so a busy store never makes a
/// live server look dead.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "pass"}))
}

/// Readiness: 200 with every check's result while all pass (`status` is `warn` and
/// `warnings` says why when a check has warnings); 503 with an OperationOutcome naming the
/// ones that fail otherwise.
pub async fn ready(state: web::Data<AppState>) -> ApiResult {
    let body = readiness(&state.readiness)?;
    Ok(HttpResponse::Ok().json(body))
}

/// Runs `checks`: the report when all pass, the 503 error naming each failure otherwise.
fn readiness(checks: &[Box<dyn ReadinessCheck>]) -> Result<Value, FhirError> {
    let mut passed = Map::new();
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    for check in checks {
        match check.check() {
            Ok(()) => {
                let found = check.warnings();
                let status = if found.is_empty() { "pass" } else { "warn" };
                passed.insert(check.name().into(), status.into());
                warnings.extend(found.into_iter().map(|w| format!("{}: {w}", check.name())));
            }
            Err(why) => failures.push(format!("{}: {why}", check.name())),
        }
    }
    if failures.is_empty() && warnings.is_empty() {
        Ok(json!({"status": "pass", "checks": passed}))
    } else if failures.is_empty() {
        Ok(json!({"status": "warn", "checks": passed, "warnings": warnings}))
    } else {
        Err(FhirError::new(
            503,
            IssueCode::Transient,
            format!("fhirlake is not ready: {}", failures.join("; ")),
        ))
    }
}

/// The metrics in the OpenMetrics text format.
pub async fn metrics(state: web::Data<AppState>) -> ApiResult {
    let text = state.metrics.render(&state.store).map_err(|error| {
        tracing::error!(%error, "cannot read the size of the store file");
        FhirError::internal(format!("cannot read the size of the store file: {error}"))
    })?;
    Ok(HttpResponse::Ok().content_type(OPENMETRICS).body(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Result<(), String>);

    impl ReadinessCheck for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }

        fn check(&self) -> Result<(), String> {
            self.1.clone()
        }
    }

    struct Warning;

    impl ReadinessCheck for Warning {
        fn name(&self) -> &'static str {
            "profiles"
        }

        fn check(&self) -> Result<(), String> {
            Ok(())
        }

        fn warnings(&self) -> Vec<String> {
            vec!["profile x skipped".into()]
        }
    }

    #[test]
    fn warnings_keep_the_server_ready_and_are_told() {
        let pass = Box::new(Fixed("store", Ok(()))) as Box<dyn ReadinessCheck>;
        let report = readiness(&[pass, Box::new(Warning)]).unwrap();
        assert_eq!(
            report,
            json!({"status": "warn", "checks": {"store": "pass", "profiles": "warn"},
                "warnings": ["profiles: profile x skipped"]})
        );
        let fail = Box::new(Fixed("index", Err("behind".into()))) as Box<dyn ReadinessCheck>;
        assert_eq!(
            readiness(&[fail, Box::new(Warning)]).unwrap_err().status,
            503
        );
    }

    #[test]
    fn ready_only_when_every_check_passes() {
        let pass = || Box::new(Fixed("store", Ok(()))) as Box<dyn ReadinessCheck>;
        let fail = || Box::new(Fixed("index", Err("3 changes behind".into()))) as Box<_>;
        let report = readiness(&[pass()]).unwrap();
        assert_eq!(
            report,
            json!({"status": "pass", "checks": {"store": "pass"}})
        );
        let error = readiness(&[pass(), fail()]).unwrap_err();
        assert_eq!(error.status, 503);
        assert_eq!(error.code, IssueCode::Transient);
        assert!(
            error.diagnostics.contains("index: 3 changes behind"),
            "{error}"
        );
        assert!(!error.diagnostics.contains("store"), "{error}");
    }

    #[test]
    fn the_store_is_not_ready_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.check(), Ok(()));
        store.close();
        assert!(store.check().is_err());
    }
}
