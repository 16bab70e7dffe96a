//! FHIR XML answers: the middleware that turns every FHIR JSON answer under `/fhir` (resources,
//! Bundles, OperationOutcomes, errors included) into FHIR XML when the request asks for XML
//! (`_format`, `Accept`: [`super::http::wanted`]).
//!
//! The handlers always answer in JSON, from the stored bytes as before; only the answers of XML
//! requests are converted (parsed and written again), here and nowhere else. Answers that are
//! not FHIR JSON (a Binary's raw content, `$changes`, the SSE stream) pass as they are.

use super::http::{FHIR_XML, Format, negotiate};
use crate::fhir::FhirError;
use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

/// Converts the FHIR JSON answer of a request that asks for FHIR XML. A request that accepts
/// neither gets its handler's 406, in JSON.
pub async fn answer_in_format(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let format = negotiate(req.request()).unwrap_or(Format::Json);
    let response = next.call(req).await?.map_into_boxed_body();
    let is_fhir_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/fhir+json"));
    if format == Format::Json || !is_fhir_json {
        return Ok(response);
    }
    let (request, response) = response.into_parts();
    let (mut head, json) = response.into_parts();
    let converted = match body::to_bytes(json).await {
        Ok(json) => web::block(move || crate::fhir::xml::from_json(&json))
            .await
            .map_err(|e| FhirError::internal(e.to_string()))
            .and_then(|converted| converted),
        Err(_) => Err(FhirError::internal("an answer could not be read")),
    };
    let response = match converted {
        Ok(xml) => {
            head.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_XML));
            head.set_body(BoxBody::new(xml))
        }
        Err(error) => {
            tracing::error!(error = %error, "an answer could not be written as FHIR XML");
            super::ApiError(error).error_response()
        }
    };
    Ok(ServiceResponse::new(request, response))
}
