//! HTTP details shared by the handlers: content negotiation (FHIR JSON or XML), request
//! bodies, conditional headers, `Prefer`, the base URL and response headers.

use super::AppState;
use super::admission::{check_params, check_utf8, count_params};
use crate::fhir::datetime::{Micros, format_http_date};
use crate::fhir::nesting::check_depth;
use crate::fhir::resource::parse_etag;
use crate::fhir::{FhirError, IssueCode, Return};
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpRequest, HttpResponseBuilder, web};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
pub const FHIR_XML: &str = "application/fhir+xml; charset=utf-8";

/// The media types of FHIR JSON and FHIR XML, as `Accept`, `_format` and `Content-Type` name
/// them.
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

/// The two formats of FHIR resources fhirlake reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// The format a media type (or `_format`'s short `json` and `xml`) names, if any.
    fn of(media: &str) -> Option<Format> {
        match media {
            "json" => Some(Format::Json),
            "xml" => Some(Format::Xml),
            _ if JSON_TYPES.contains(&media) => Some(Format::Json),
            _ if XML_TYPES.contains(&media) => Some(Format::Xml),
            _ => None,
        }
    }
}

/// What a request's `_format` or `Accept` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The FHIR format to answer in; `None` when the client accepts neither.
    pub format: Option<Format>,
    /// Whether the client asks for FHIR first: by `_format`, or by an `Accept` whose most
    /// preferred media type is FHIR JSON or XML (not a wildcard). A Binary is answered with
    /// its raw content otherwise (R4 http.html, "Binary Resources").
    pub fhir_first: bool,
}

/// The query parameters of a request, in order, percent-decoded.
pub fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// The media type of a header value or `_format`: lowercase, without parameters.
pub fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Reads `_format` (which wins) and `Accept`, with its quality values: the FHIR format named
/// with the highest `q` (the first of equals), else JSON when a wildcard (`*/*`,
/// `application/*`) or no `Accept` is given.
pub fn wanted(req: &HttpRequest) -> Wanted {
    if let Some((_, format)) = query_pairs(req).into_iter().find(|(k, _)| k == "_format") {
        return Wanted {
            format: Format::of(&media_type(&format)),
            fhir_first: true,
        };
    }
    let Some(accept) = header_str(req.headers(), header::ACCEPT).filter(|a| !a.trim().is_empty())
    else {
        return Wanted {
            format: Some(Format::Json),
            fhir_first: false,
        };
    };
    let mut best: Option<(Format, f32)> = None;
    let mut wildcard = false;
    let mut other = 0f32;
    for range in accept.split(',') {
        let media = media_type(range);
        let q = range
            .split(';')
            .skip(1)
            .find_map(|param| param.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        if q <= 0.0 || media.is_empty() {
            continue;
        }
        match Format::of(&media) {
            Some(format) if best.is_none_or(|(_, top)| q > top) => best = Some((format, q)),
            Some(_) => {}
            None => {
                wildcard |= media == "*/*" || media == "application/*";
                other = other.max(q);
            }
        }
    }
    Wanted {
        format: best
            .map(|(format, _)| format)
            .or(wildcard.then_some(Format::Json)),
        fhir_first: best.is_some_and(|(_, q)| q >= other),
    }
}

/// The FHIR format to answer in, from `_format` and `Accept` (see [`wanted`]); 406 when the
/// client accepts neither FHIR JSON nor FHIR XML.
pub fn negotiate(req: &HttpRequest) -> Result<Format, FhirError> {
    wanted(req).format.ok_or_else(|| {
        let asked = match query_pairs(req).into_iter().find(|(k, _)| k == "_format") {
            Some((_, format)) => format!("_format={format}"),
            None => format!(
                "Accept: {}",
                header_str(req.headers(), header::ACCEPT).unwrap_or("")
            ),
        };
        FhirError::new(
            406,
            IssueCode::NotSupported,
            format!(
                "{asked} cannot be served: fhirlake answers in FHIR JSON \
                 (application/fhir+json) or FHIR XML (application/fhir+xml)"
            ),
        )
    })
}

/// What a request body is, by its `Content-Type`.
pub enum BodyType {
    /// FHIR JSON, or no `Content-Type` at all.
    Json,
    Xml,
    /// Any other media type, as the header gives it.
    Other(String),
}

pub fn body_type(req: &HttpRequest) -> BodyType {
    let Some(content_type) = header_str(req.headers(), header::CONTENT_TYPE) else {
        return BodyType::Json;
    };
    match Format::of(&media_type(content_type)) {
        Some(Format::Json) => BodyType::Json,
        Some(Format::Xml) => BodyType::Xml,
        None => BodyType::Other(content_type.to_string()),
    }
}

/// Reads a request body of FHIR JSON or FHIR XML, at most `--max-body` bytes (413 beyond, with
/// or without a `Content-Length`), and returns it as FHIR JSON nested at most
/// `--max-json-depth` levels (400 beyond): an XML body is converted (400 when it is not FHIR
/// XML), and then takes the same path as a JSON one. Other media types are 415. Every handler
/// that takes a FHIR body reads it here.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, FhirError> {
    match body_type(req) {
        BodyType::Json => read_json(req, payload, state).await,
        BodyType::Xml => {
            let xml = read_bytes(req, payload, state).await?;
            let json = web::block(move || crate::fhir::xml::to_json(&xml))
                .await
                .map_err(|e| FhirError::internal(e.to_string()))??;
            check_depth(&json, state.config.max_json_depth)?;
            Ok(json.into())
        }
        BodyType::Other(content_type) => Err(FhirError::new(
            415,
            IssueCode::NotSupported,
            format!(
                "Content-Type {content_type}: this media type is not FHIR; send \
                 application/fhir+json or application/fhir+xml"
            ),
        )),
    }
}

/// Reads a JSON request body (FHIR JSON, a JSON Patch) as it is, at most `--max-body` bytes
/// and nested at most `--max-json-depth` levels.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<web::Bytes, FhirError> {
    let body = read_bytes(req, payload, state).await?;
    check_depth(&body, state.config.max_json_depth)?;
    Ok(body)
}

/// Reads a request body as it is, at most `--max-body` bytes (413 beyond).
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
        Ok(Ok(body)) => Ok(body),
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
    use actix_web::test::TestRequest;

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

    fn wanted_by(query: &str, accept: Option<&str>) -> (Option<Format>, bool) {
        let mut request = TestRequest::get().uri(&format!("/fhir/Binary/1{query}"));
        if let Some(accept) = accept {
            request = request.insert_header((header::ACCEPT, accept));
        }
        let wanted = wanted(&request.to_http_request());
        (wanted.format, wanted.fhir_first)
    }

    #[test]
    fn accept_is_read_with_its_quality_values() {
        use Format::{Json, Xml};
        for (query, accept, expected) in [
            ("", None, (Some(Json), false)),
            ("", Some(""), (Some(Json), false)),
            ("", Some("*/*"), (Some(Json), false)),
            ("", Some("application/*"), (Some(Json), false)),
            ("", Some("application/pdf"), (None, false)),
            ("", Some("application/fhir+json"), (Some(Json), true)),
            (
                "",
                Some("application/json; charset=utf-8"),
                (Some(Json), true),
            ),
            ("", Some("application/fhir+xml"), (Some(Xml), true)),
            ("", Some("TEXT/XML"), (Some(Xml), true)),
            (
                "",
                Some("application/fhir+xml, application/fhir+json"),
                (Some(Xml), true),
            ),
            (
                "",
                Some("application/fhir+xml;q=0.8, application/fhir+json"),
                (Some(Json), true),
            ),
            (
                "",
                Some("application/fhir+json;q=0, application/fhir+xml;q=0.1"),
                (Some(Xml), true),
            ),
            ("", Some("application/fhir+json;q=0"), (None, false)),
            ("", Some("application/fhir+json;q=x"), (None, false)),
            // A browser: HTML first, XML later.
            (
                "",
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                (Some(Xml), false),
            ),
            (
                "",
                Some("application/pdf;q=0.5, application/fhir+json"),
                (Some(Json), true),
            ),
            (
                "?_format=xml",
                Some("application/fhir+json"),
                (Some(Xml), true),
            ),
            ("?_format=json", Some("application/pdf"), (Some(Json), true)),
            ("?_format=application/fhir%2Bxml", None, (Some(Xml), true)),
            ("?_format=pdf", None, (None, true)),
        ] {
            assert_eq!(wanted_by(query, accept), expected, "{query} {accept:?}");
        }
    }
}
