//! The middleware every request passes through: it gives the request an id (the client's
//! `X-Request-Id` when it is a sane token, else a new UUID), handles it inside a span carrying
//! that id (so whatever is logged meanwhile can be traced to the request), then writes the
//! request log line and the audit line, counts the request in the metrics and returns the id
//! in `X-Request-Id`.
//!
//! It is also the handler boundary for panics: a panic anywhere below it (middleware, routing,
//! handler) is caught here and answered 500 with an OperationOutcome that names the request id,
//! on the same connection; the panic itself is logged in the request's span
//! ([`crate::panics::log_panics`]).

use super::AppState;
use super::http::FHIR_JSON;
use super::interaction::Interaction;
use crate::auth::{Access, audit};
use crate::config::Audit;
use crate::fhir::{FhirError, IssueCode};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest `X-Request-Id` taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// The request log and metrics: one line per request with its id, method, path, interaction,
/// status and duration. Errors from inner services (there are none: every handler answers
/// with a response, but a panic becomes a [`Panicked`] error) are logged and counted as
/// `other`.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let request_id = request_id(req.headers());
    let id = request_id.to_str().expect("request ids are visible ASCII");
    let method = req.method().clone();
    let path = req.path().to_owned();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    // ERROR level: the span is there whenever anything at all is logged inside it.
    let span = tracing::error_span!("request", request_id = %id);
    // The request is moved into the call, so after a panic there is no request left to answer
    // with a response: the answer is an error, which actix turns into the response.
    let result = match AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .instrument(span)
        .await
    {
        Ok(result) => result,
        Err(_) => Err(Panicked {
            request_id: request_id.clone(),
        }
        .into()),
    };
    let elapsed = start.elapsed();
    let (interaction, status) = match &result {
        Ok(response) => (
            Interaction::of_response(response),
            response.status().as_u16(),
        ),
        Err(error) => (
            Interaction::Other,
            error.as_response_error().status_code().as_u16(),
        ),
    };
    if let Some(state) = &state {
        state.metrics.observe(interaction, status, elapsed);
        if state.config.audit == Audit::On {
            audit(id, interaction, status, &result);
        }
    }
    tracing::info!(
        request_id = %id,
        %method,
        %path,
        interaction = %interaction.as_str(),
        status,
        micros = elapsed.as_micros() as u64,
        "request"
    );
    result.map(|mut response| {
        response.headers_mut().insert(REQUEST_ID, request_id);
        response
    })
}

/// A request that panicked: 500, with an OperationOutcome and the `X-Request-Id` header naming
/// the request (the panic's own log line carries the same id).
#[derive(Debug)]
struct Panicked {
    request_id: HeaderValue,
}

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.request_id.to_str().unwrap_or_default();
        write!(
            f,
            "an internal error (a panic) ended this request; it is logged with request id {id}"
        )
    }
}

impl ResponseError for Panicked {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        let outcome = FhirError::new(500, IssueCode::Exception, self.to_string()).to_outcome();
        HttpResponse::InternalServerError()
            .content_type(FHIR_JSON)
            .insert_header((REQUEST_ID, self.request_id.clone()))
            .body(outcome.to_string())
    }
}

/// Writes the audit line of an answered request: who from its [`Access`] (none when it was
/// refused before its token was accepted), what from its route.
fn audit<B>(
    request_id: &str,
    interaction: Interaction,
    status: u16,
    result: &Result<ServiceResponse<B>, actix_web::Error>,
) {
    let request = result.as_ref().ok().map(|response| response.request());
    let access = request.and_then(|r| r.extensions().get::<Access>().cloned());
    let path = request.map(|r| r.match_info());
    let segment = |name: &str| path.and_then(|p| p.get(name));
    audit::record(&audit::Record {
        request_id,
        access: access.as_ref(),
        interaction: interaction.as_str(),
        resource_type: segment("compartment").or(segment("type")),
        id: segment("id"),
        status,
    });
}

/// The client's `X-Request-Id` when it is a sane token (1 to 128 letters, digits and
/// `-_.:/+=@~`), so that it can be logged and echoed safely; otherwise a new UUID (v4).
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|value| is_sane(value.as_bytes()))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is ASCII")
        })
}

fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:/+=@~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        let with = |id: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID, HeaderValue::from_str(id).unwrap());
            request_id(&headers)
        };
        for id in ["abc-123", "0f3c:span/7+x=@~_.", &"a".repeat(128)] {
            assert_eq!(with(id), id);
        }
        for id in ["", "has space", "quote\"", "semi;colon", &"a".repeat(129)] {
            let replaced = with(id);
            assert_ne!(replaced, id);
            uuid::Uuid::parse_str(replaced.to_str().unwrap()).expect("a UUID");
        }
        let generated = request_id(&HeaderMap::new());
        uuid::Uuid::parse_str(generated.to_str().unwrap()).expect("a UUID");
    }
}
