//! `GET /fhir/metadata`: the CapabilityStatement, which states exactly what this server does.

use super::http::{base_url, negotiate};
use super::{ApiResult, AppState};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

/// The interactions every resource type supports.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "delete",
    "create",
    "history-instance",
    "history-type",
];

pub async fn capability_statement(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    negotiate(&req)?;
    let body = statement(&base_url(&req, &state));
    Ok(HttpResponse::Ok()
        .content_type(super::http::FHIR_JSON)
        .body(body.to_string()))
}

/// The CapabilityStatement of this build, served at `base`.
pub fn statement(base: &str) -> Value {
    let interactions: Vec<Value> = TYPE_INTERACTIONS
        .iter()
        .map(|code| json!({"code": code}))
        .collect();
    let resources: Vec<Value> = fhirlake_model::RESOURCE_TYPES
        .iter()
        .map(|name| {
            json!({
                "type": name,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalRead": "modified-since",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": crate::fhir::datetime::format_instant(crate::fhir::datetime::now()),
        "publisher": "fhirlake",
        "kind": "instance",
        "software": {"name": "fhirlake", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "fhirlake FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Search, conditional create, update and delete (also inside \
                Bundles: ifNoneExist and conditional references), PATCH and XML are not \
                supported yet; they are answered with 501 or 406/415 OperationOutcomes.",
            "resource": resources,
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"},
            ],
        }],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_capability_statement_is_valid_r4() {
        let statement = super::statement("http://localhost/fhir");
        fhirlake_model::check_resource(&statement).unwrap();
        assert_eq!(
            statement["rest"][0]["resource"].as_array().unwrap().len(),
            146
        );
    }
}
