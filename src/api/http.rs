//! HTTP details shared by the handlers: content negotiation, request bodies, conditional
//! headers, `Prefer`, the base URL and response headers.

use super::AppState;
use super::admission::{check_params, check_utf8, count_params};
use crate::fhir::datetime::{Micros, format_http_date};
use crate::fhir::nesting::check_depth;
use crate::fhir::resource::parse_etag;
use crate::fhir::{FhirError, IssueCode, Return};
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponseBuilder, web};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The media types fhirlake reads and writes (JSON); XML ones are recognised to say so.
const JSON_TYPES: &[&str] = &[
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
];
const XML_TYPES: &[&str] = &[
    "application/fhir+xml",
    "application/xml",
    "text/xml",
    "application/xml+fhir",
];

/// The query parameters of a request, in order, percent-decoded.
pub fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// Checks `_format` and `Accept`: fhirlake answers in JSON only, and says so with 406.
pub fn negotiate(req: &HttpRequest) -> Result<(), FhirError> {
    let not_acceptable = |what: &str| {
        FhirError::new(
            406,
            IssueCode::NotSupported,
            format!("{what}: fhirlake answers in FHIR JSON only (application/fhir+json)"),
        )
    };
    if let Some((_, format)) = query_pairs(req).into_iter().find(|(k, _)| k == "_format") {
        let format = format.trim().to_ascii_lowercase();
        let media = format.split(';').next().unwrap_or("").trim();
        return if media == "json" || JSON_TYPES.contains(&media) {
            Ok(())
        } else {
            Err(not_acceptable(&format!(
                "_format={format} is not supported"
            )))
        };
    }
    let Some(accept) = header_str(req.headers(), header::ACCEPT) else {
        return Ok(());
    };
    let acceptable = accept.split(',').any(|range| {
        let media = range
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        media.is_empty()
            || media == "*/*"
            || media == "application/*"
            || JSON_TYPES.contains(&media.as_str())
    });
    if acceptable {
        Ok(())
    } else {
        Err(not_acceptable(&format!(
            "Accept: {accept} cannot be served"
        )))
    }
}

/// Reads a request body of FHIR JSON, at most `--max-body` bytes (413 beyond, with or without
/// a `Content-Length`), nested at most `--max-json-depth` levels (400 beyond). Every handler
/// that takes a JSON body reads it here.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, FhirError> {
    if let Some(content_type) = header_str(req.headers(), header::CONTENT_TYPE) {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !JSON_TYPES.contains(&media.as_str()) {
            let hint = if XML_TYPES.contains(&media.as_str()) {
                "FHIR XML is not supported"
            } else {
                "this media type is not FHIR"
            };
            return Err(FhirError::new(
                415,
                IssueCode::NotSupported,
                format!("Content-Type {content_type}: {hint}; send application/fhir+json"),
            ));
        }
    }
    read_bytes(req, payload, state).await
}

/// Reads a request body of any media type, at most `--max-body` bytes.
pub async fn read_bytes(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, FhirError> {
    let limit = state.config.max_body;
    let too_large = || {
        FhirError::new(
            413,
            IssueCode::TooLong,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = header_str(req.headers(), header::CONTENT_LENGTH)
        .and_then(|length| length.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => {
            check_depth(&body, state.config.max_json_depth)?;
            Ok(body)
        }
        Err(_) => Err(too_large()),
        Ok(Err(error)) => Err(FhirError::bad_request(
            IssueCode::Invalid,
            format!("the request body could not be read: {error}"),
        )),
    }
}

/// Reads a form body (`application/x-www-form-urlencoded`), as `POST .../_search` sends: at
/// most `--max-body` bytes (413), UTF-8 once decoded, and at most `--max-params` parameters
/// with those of the query (400).
pub async fn read_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Vec<(String, String)>, FhirError> {
    let media = header_str(req.headers(), header::CONTENT_TYPE).unwrap_or("");
    if !media.starts_with("application/x-www-form-urlencoded") {
        return Err(FhirError::new(
            415,
            IssueCode::NotSupported,
            "POST _search takes a form body (application/x-www-form-urlencoded)",
        ));
    }
    let body = payload
        .to_bytes_limited(state.config.max_body)
        .await
        .map_err(|_| FhirError::new(413, IssueCode::TooLong, "the form is too large"))?
        .map_err(|e| {
            FhirError::bad_request(
                IssueCode::Invalid,
                format!("the form could not be read: {e}"),
            )
        })?;
    let params = count_params(req.query_string().as_bytes()) + count_params(&body);
    check_params(params, state.config.max_params)?;
    check_utf8("form body", &body)?;
    Ok(form_urlencoded::parse(&body).into_owned().collect())
}

pub fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The version in `If-Match`, if the header is given; 400 when it is not a version.
pub fn if_match(req: &HttpRequest) -> Result<Option<u64>, FhirError> {
    match header_str(req.headers(), header::IF_MATCH) {
        None => Ok(None),
        Some(value) => parse_etag(value).map(Some).ok_or_else(|| {
            FhirError::bad_request(
                IssueCode::Invalid,
                format!("If-Match: {value} is not a version ETag such as W/\"1\""),
            )
        }),
    }
}

pub fn prefer_return(req: &HttpRequest) -> Return {
    let prefer = header_str(req.headers(), header::HeaderName::from_static("prefer")).unwrap_or("");
    prefer
        .split(',')
        .find_map(
            |pref| match pref.trim().strip_prefix("return=")?.trim_matches('"') {
                "minimal" => Some(Return::Minimal),
                "OperationOutcome" => Some(Return::OperationOutcome),
                "representation" => Some(Return::Representation),
                _ => None,
            },
        )
        .unwrap_or(Return::Representation)
}

/// The FHIR base URL that `Location` and `fullUrl` are made of, without a trailing slash.
pub fn base_url(req: &HttpRequest, state: &AppState) -> String {
    match &state.config.base_url {
        Some(base) => base.trim_end_matches('/').to_string(),
        None => {
            let info = req.connection_info();
            // Checked by admission: http or https in any case, and a valid host[:port].
            let scheme = info.scheme().to_ascii_lowercase();
            format!("{scheme}://{}/fhir", info.host())
        }
    }
}

/// Is `text` a `host[:port]` fit for a URL: a host name (labels of letters, digits, `-` and
/// `_`, dot-separated, at most 253 bytes; IPv4 addresses are such names) or an IPv6 address in
/// brackets, then maybe `:` and a port (0 to 65535). No user info, no other characters.
pub fn valid_authority(text: &str) -> bool {
    let (host_ok, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) => (ip.parse::<std::net::Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (host, port) = text.find(':').map_or((text, ""), |at| text.split_at(at));
            (is_host_name(host), port)
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| {
            (1..=5).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u32>().is_ok_and(|port| port <= 65_535)
        });
    host_ok && port_ok
}

fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    (1..=253).contains(&host.len())
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `ETag` and `Last-Modified` of a version.
pub fn version_headers(builder: &mut HttpResponseBuilder, vid: u64, last_updated: Micros) {
    builder
        .insert_header((header::ETAG, etag(vid)))
        .insert_header((header::LAST_MODIFIED, format_http_date(last_updated)));
}

pub fn etag(vid: u64) -> String {
    format!("W/\"{vid}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_host_and_port_only() {
        for good in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:0",
            "fhir.example.org",
            "fhir.example.org.",
            "compose_service:80",
            "[::1]",
            "[2001:db8::7]:443",
            "a:65535",
        ] {
            assert!(valid_authority(good), "{good}");
        }
        for bad in [
            "",
            ":80",
            "evil.example\"<script>",
            "user@host",
            "host:",
            "host:65536",
            "host:80:80",
            "host/path",
            "a..b",
            ".a",
            "[::1",
            "[nothost]",
            "[::1]x",
            "h\u{e9}te",
            "host name",
            &"a".repeat(64),
        ] {
            assert!(!valid_authority(bad), "{bad}");
        }
    }
}
