//! Binary resources in their own content type (R4 http.html, "Binary Resources"): a Binary is
//! read as its raw content unless the client asks for FHIR first, and a create or update of a
//! Binary with a body that is not FHIR JSON or XML stores that body as the Binary's `data`.
//!
//! Everything else is the ordinary path: the raw body becomes a Binary in the JSON form
//! (`contentType` from `Content-Type`, `securityContext` from `X-Security-Context`, `data` in
//! base64) and is then checked, authorized, validated, versioned and logged like any write; a
//! raw read is authorized, conditional (`If-None-Match`...) and versioned like any read.
//! Search and history of Binary stay FHIR.

use super::AppState;
use super::http::{
    BodyType, body_type, header_str, read_body, read_bytes, version_headers, wanted,
};
use crate::fhir::datetime::Micros;
use crate::fhir::{FhirError, IssueCode};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

/// The header that carries a Binary's `securityContext` reference, both ways.
const SECURITY_CONTEXT: &str = "x-security-context";

/// Whether a read of `resource_type` answers with the raw content: a Binary, unless the client
/// asks for FHIR JSON or XML first (`_format`, or the most preferred media type of `Accept`).
/// A browser's `Accept` (`text/html`, then `*/*`) gets the content.
pub fn wants_raw(req: &HttpRequest, resource_type: &str) -> bool {
    resource_type == "Binary" && !wanted(req).fhir_first
}

/// The body of a create or update of `resource_type` as FHIR JSON: for a Binary sent in any
/// other media type than FHIR JSON or XML, that Binary (with `id` when given); otherwise
/// [`read_body`]'s.
pub async fn read_resource(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    resource_type: &str,
    id: Option<&str>,
) -> Result<web::Bytes, FhirError> {
    let BodyType::Other(content_type) = body_type(req) else {
        return read_body(req, payload, state).await;
    };
    if resource_type != "Binary" {
        return read_body(req, payload, state).await;
    }
    let content = read_bytes(req, payload, state).await?;
    let mut binary = Map::new();
    binary.insert("resourceType".into(), json!("Binary"));
    if let Some(id) = id {
        binary.insert("id".into(), json!(id));
    }
    binary.insert("contentType".into(), json!(normalized(&content_type)));
    if let Some(reference) = header_str(req.headers(), HeaderName::from_static(SECURITY_CONTEXT))
        .map(str::trim)
        .filter(|reference| !reference.is_empty())
    {
        binary.insert("securityContext".into(), json!({"reference": reference}));
    }
    if !content.is_empty() {
        binary.insert("data".into(), json!(STANDARD.encode(&content)));
    }
    serde_json::to_vec(&Value::Object(binary))
        .map(Into::into)
        .map_err(|e| FhirError::internal(e.to_string()))
}

/// A media type as `contentType` holds it: `type/subtype; name=value`, its parts trimmed and
/// joined by "; " (a FHIR code has no runs of spaces).
fn normalized(content_type: &str) -> String {
    content_type
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The answer to a raw read of the stored Binary `stored`: its content with its `contentType`
/// (`application/octet-stream` when it has none a header can carry), `X-Security-Context`,
/// the version's `ETag` and `Last-Modified`. The content is the server's to serve, not to run:
/// `nosniff` and a sandboxing `Content-Security-Policy` keep a stored HTML page or script from
/// acting on this origin in a browser.
pub fn raw(stored: &[u8], vid: u64, last_updated: Micros) -> Result<HttpResponse, FhirError> {
    let binary: Value = serde_json::from_slice(stored)
        .map_err(|_| FhirError::internal("a stored Binary is not JSON"))?;
    let data = binary["data"].as_str().unwrap_or("");
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let content = STANDARD.decode(compact).map_err(|e| {
        FhirError::new(
            500,
            IssueCode::Exception,
            format!("this Binary's data is not base64 ({e}): read it as FHIR (_format=json)"),
        )
    })?;
    let content_type = binary["contentType"]
        .as_str()
        .and_then(|value| HeaderValue::from_str(value).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        ));
    if let Some(reference) = binary["securityContext"]["reference"]
        .as_str()
        .and_then(|value| HeaderValue::from_str(value).ok())
    {
        response.insert_header((HeaderName::from_static(SECURITY_CONTEXT), reference));
    }
    version_headers(&mut response, vid, last_updated);
    Ok(response.body(content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_codes() {
        assert_eq!(normalized("application/pdf"), "application/pdf");
        assert_eq!(
            normalized(" text/plain ;  charset=utf-8 ;"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn raw_answers_carry_the_content_its_type_and_security_context() {
        let stored = json!({"resourceType": "Binary", "id": "b", "contentType": "application/pdf",
            "securityContext": {"reference": "Patient/p1"}, "data": "JVBE\nRi0x"});
        let response = raw(stored.to_string().as_bytes(), 3, 0).unwrap();
        let header = |response: &HttpResponse, name: &str| {
            response
                .headers()
                .get(name)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(header(&response, "content-type"), "application/pdf");
        assert_eq!(header(&response, SECURITY_CONTEXT), "Patient/p1");
        assert_eq!(header(&response, "etag"), "W/\"3\"");
        let none = json!({"resourceType": "Binary", "contentType": "bad\ntype"});
        let response = raw(none.to_string().as_bytes(), 1, 0).unwrap();
        assert_eq!(
            header(&response, "content-type"),
            "application/octet-stream"
        );
        let bad = json!({"resourceType": "Binary", "contentType": "text/plain", "data": "@@"});
        assert_eq!(
            raw(bad.to_string().as_bytes(), 1, 0).unwrap_err().status,
            500
        );
    }
}
