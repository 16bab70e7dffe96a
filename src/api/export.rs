//! `$export` kick-offs (FHIR Bulk Data Access IG): `[base]/$export`, `[base]/Patient/$export`
//! and `[base]/Group/[id]/$export`, by GET (parameters in the query) or POST (a `Parameters`
//! body, and any in the query). They need `Prefer: respond-async` (400 without it) and
//! answer 202 with the job's status URL in `Content-Location` (429 with `Retry-After` when the
//! client has too many jobs under way); the job's parameters, its
//! snapshot and its checks are `jobs::export::request`'s, its status and files `api/jobs.rs`'s.

use super::http::{base_url, header_str, query_pairs, read_body};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::fhir::resource::{check_id, parse_resource};
use crate::fhir::{FhirError, IssueCode};
use crate::jobs::export::{KickOff, Level, kick_off};
use actix_web::http::{Method, header};
use actix_web::{HttpRequest, web};

type State = web::Data<AppState>;

/// `GET|POST [base]/$export`
pub async fn system(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    start(req, state, access, payload, Level::System).await
}

/// `GET|POST [base]/Patient/$export`
pub async fn patients(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    start(req, state, access, payload, Level::Patient).await
}

/// `GET|POST [base]/Group/[id]/$export`
pub async fn group(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let id = path.into_inner();
    check_id(&id)?;
    start(req, state, access, payload, Level::Group { id }).await
}

async fn start(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
    level: Level,
) -> ApiResult {
    let prefer = preferences(&req);
    if !prefer.iter().any(|p| p == "respond-async") {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            "$export runs asynchronously: send Prefer: respond-async",
        )
        .into());
    }
    let post = req.method() == Method::POST;
    let mut params = query_pairs(&req);
    if post {
        let body = read_body(&req, payload, &state).await?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            params.extend(parameters(&body)?);
        }
    }
    let base = base_url(&req, &state);
    let path = req.path().strip_prefix("/fhir").unwrap_or(req.path());
    let url = match req.query_string() {
        "" => format!("{base}{path}"),
        query => format!("{base}{path}?{query}"),
    };
    let kick = KickOff {
        level,
        params,
        post,
        lenient: prefer.iter().any(|p| p == "handling=lenient"),
        url,
        base: base.clone(),
    };
    let id = match kick_off(&state.jobs, &state.store, &state.search, &access, kick).await {
        Ok(id) => id,
        // Too many jobs under way: come back after a poll interval.
        Err(error) if error.status == 429 => {
            let wait = state.jobs.settings().poll_interval;
            return Ok(super::jobs::too_many(&error, wait));
        }
        Err(error) => return Err(error.into()),
    };
    Ok(super::jobs::accepted(&base, &id, "export"))
}

/// The preferences of `Prefer` (`respond-async`, `handling=lenient`, ...), of every `Prefer`
/// header, lowercase.
pub(super) fn preferences(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(header::HeaderName::from_static("prefer"))
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .map(|preference| preference.trim().to_ascii_lowercase().replace(' ', ""))
        .filter(|preference| !preference.is_empty())
        .collect()
}

/// The parameters of a `Parameters` body, as `(name, value)`: a reference's value is its
/// `reference`, a primitive's its text. A parameter without a value, or with a resource or
/// parts, is a 400.
pub(super) fn parameters(body: &[u8]) -> Result<Vec<(String, String)>, FhirError> {
    let parameters = parse_resource(body, Some("Parameters"))?.resource;
    let mut pairs = Vec::new();
    for (n, parameter) in parameters["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = parameter["name"].as_str().unwrap_or_default();
        let Some(text) = crate::fhir::parameters::value_text(parameter) else {
            return Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!(
                    "parameter {name}: the operation takes parameters with a value (a string, code, \
                     instant, boolean or reference)"
                ),
            )
            .at(format!("Parameters.parameter[{n}]")));
        };
        pairs.push((name.to_string(), text));
    }
    Ok(pairs)
}

/// Whether a request accepts `media` (no `Accept`, a wildcard, or the type itself).
pub(super) fn accepts(req: &HttpRequest, media: &[&str]) -> bool {
    let Some(accept) = header_str(req.headers(), header::ACCEPT) else {
        return true;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let given = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
        !refused
            && (given.is_empty()
                || given == "*/*"
                || given == "application/*"
                || media.contains(&given.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn parameters_are_read_with_their_values() {
        let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_since", "valueInstant": "2020-01-01T00:00:00Z"},
            {"name": "patient", "valueReference": {"reference": "Patient/a"}},
            {"name": "allowPartialManifests", "valueBoolean": true},
        ]});
        let pairs = parameters(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            pairs,
            [
                ("_type".to_string(), "Patient".to_string()),
                ("_since".into(), "2020-01-01T00:00:00Z".into()),
                ("patient".into(), "Patient/a".into()),
                ("allowPartialManifests".into(), "true".into()),
            ]
        );
        let no_value = serde_json::json!({"resourceType": "Parameters",
            "parameter": [{"name": "_type"}]});
        assert_eq!(
            parameters(no_value.to_string().as_bytes())
                .unwrap_err()
                .status,
            400
        );
        let not_parameters = serde_json::json!({"resourceType": "Patient"});
        assert_eq!(
            parameters(not_parameters.to_string().as_bytes())
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn preferences_and_accept_are_read_loosely() {
        let req = TestRequest::default()
            .insert_header(("Prefer", "respond-async, handling = lenient"))
            .to_http_request();
        assert_eq!(preferences(&req), ["respond-async", "handling=lenient"]);
        let ndjson = ["application/fhir+ndjson"];
        for (accept, accepted) in [
            ("application/fhir+ndjson", true),
            ("*/*", true),
            ("application/xml, application/*;q=0.5", true),
            ("application/fhir+xml", false),
            ("application/fhir+ndjson;q=0", false),
        ] {
            let req = TestRequest::default()
                .insert_header(("Accept", accept))
                .to_http_request();
            assert_eq!(accepts(&req, &ndjson), accepted, "{accept}");
        }
        assert!(accepts(&TestRequest::default().to_http_request(), &ndjson));
    }
}
