//! Which FHIR interaction a request is, for the request log and the metrics.
//!
//! The interaction comes from the route the request matched (its pattern and method), not
//! from the path it asked for; a handler that knows better (`POST /fhir` carries a batch or a
//! transaction) says so with [`Interaction::record`].

use actix_web::HttpMessage;
use actix_web::dev::ServiceResponse;
use actix_web::http::Method;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use std::fmt::Write;

/// The interactions of the FHIR RESTful API (the names are FHIR's), and `other` for the rest:
/// unknown paths and methods, and the endpoints outside `/fhir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    Vread,
    Update,
    Patch,
    Delete,
    HistoryInstance,
    HistoryType,
    HistorySystem,
    SearchType,
    SearchSystem,
    /// A search in a compartment (`GET /fhir/Patient/123/Observation`).
    SearchCompartment,
    /// An operation (`$everything`, `$changes`, `$lookup`, ...), and a job's status and files.
    Operation,
    Transaction,
    Batch,
    Capabilities,
    Other,
}

impl Interaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Interaction::Create => "create",
            Interaction::Read => "read",
            Interaction::Vread => "vread",
            Interaction::Update => "update",
            Interaction::Patch => "patch",
            Interaction::Delete => "delete",
            Interaction::HistoryInstance => "history-instance",
            Interaction::HistoryType => "history-type",
            Interaction::HistorySystem => "history-system",
            Interaction::SearchType => "search-type",
            Interaction::SearchSystem => "search-system",
            Interaction::SearchCompartment => "search-compartment",
            Interaction::Operation => "operation",
            Interaction::Transaction => "transaction",
            Interaction::Batch => "batch",
            Interaction::Capabilities => "capabilities",
            Interaction::Other => "other",
        }
    }

    /// The interaction of a route of [`super::routes`]: its full pattern and the method.
    /// Conditional update, patch and delete (`PUT`/`PATCH`/`DELETE /fhir/{type}`) are updates,
    /// patches and deletes.
    /// `POST /fhir` is a batch or a transaction by its Bundle's type, which only its handler
    /// knows: it records which, and a body that is neither stays `other`.
    pub fn of_route(method: &Method, pattern: Option<&str>) -> Interaction {
        let Some(pattern) = pattern else {
            return Interaction::Other;
        };
        match (method.as_str(), pattern) {
            ("GET", "/fhir/metadata") => Interaction::Capabilities,
            ("GET", "/fhir/_history") => Interaction::HistorySystem,
            ("GET", "/fhir" | "/fhir/") => Interaction::SearchSystem,
            ("GET", "/fhir/{type}/_history") => Interaction::HistoryType,
            ("GET", "/fhir/{type}/{id}/_history/{vid}") => Interaction::Vread,
            ("GET", "/fhir/{type}/{id}/_history") => Interaction::HistoryInstance,
            ("GET", "/fhir/{type}/{id}") => Interaction::Read,
            (_, pattern) if pattern.contains("/$") || pattern.starts_with("/fhir/_jobs/") => {
                Interaction::Operation
            }
            ("GET", "/fhir/{compartment}/{id}/{type}") => Interaction::SearchCompartment,
            ("PUT", "/fhir/{type}/{id}" | "/fhir/{type}") => Interaction::Update,
            ("PATCH", "/fhir/{type}/{id}" | "/fhir/{type}") => Interaction::Patch,
            ("DELETE", "/fhir/{type}/{id}" | "/fhir/{type}") => Interaction::Delete,
            ("GET", "/fhir/{type}") => Interaction::SearchType,
            ("POST", "/fhir/{type}") => Interaction::Create,
            ("POST", "/fhir/{type}/_search") => Interaction::SearchType,
            _ => Interaction::Other,
        }
    }

    /// Records that the request being handled is this interaction; it wins over the route's.
    pub fn record(self, req: &impl HttpMessage) {
        req.extensions_mut().insert(self);
    }

    /// The interaction of an answered request: the one a handler recorded, else its route's.
    pub fn of_response<B>(response: &ServiceResponse<B>) -> Interaction {
        let req = response.request();
        let recorded = req.extensions().get::<Interaction>().copied();
        recorded
            .unwrap_or_else(|| Interaction::of_route(req.method(), req.match_pattern().as_deref()))
    }
}

impl EncodeLabelValue for Interaction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl From<crate::bundle::Kind> for Interaction {
    fn from(kind: crate::bundle::Kind) -> Self {
        match kind {
            crate::bundle::Kind::Batch => Interaction::Batch,
            crate::bundle::Kind::Transaction => Interaction::Transaction,
        }
    }
}
