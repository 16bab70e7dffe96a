//! What every request must satisfy before it is routed: the limits a client controls in the
//! request head, text that decodes, and a host fit for the URLs fhirlake writes. A request that
//! fails is answered here with an OperationOutcome.
//!
//! - The request target is at most `--max-url` bytes (414), its query has at most
//!   `--max-params` parameters (400), and percent-decoded, both path and query are UTF-8 (400:
//!   otherwise they would be read with U+FFFD in place of what the client meant).
//! - At most `--max-headers` header fields (431), of at most `--max-header-bytes` bytes of names
//!   and values together (431).
//! - `Host` is a syntactically valid `host[:port]` (400, as RFC 9112 requires), and so are the
//!   host and scheme that `Location` and `fullUrl` are made of when no `--base-url` is set
//!   (they may come from `Forwarded` or `X-Forwarded-Host`/`-Proto`): a client cannot make the
//!   server write a URL with markup or another host's syntax in it.
//!
//! actix-http refuses some requests before any of this runs, with an empty body: a request
//! line or header it cannot parse, a target over 65,534 bytes, more than 96 headers, a head
//! over 128 KiB, raw bytes that are not ASCII in the target, an HTTP/1.1 request without
//! `Host`. Its limits are constants without a hook, so the defaults here stay below them:
//! everything between them is answered with an OperationOutcome.

use super::ApiError;
use super::AppState;
use super::http::valid_authority;
use crate::config::ServeConfig;
use crate::fhir::{FhirError, IssueCode};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

/// The middleware: checks the request head, then routes it.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refused = match req.app_data::<web::Data<AppState>>() {
        Some(state) => check(&req, &state.config).err(),
        None => None,
    };
    if let Some(error) = refused {
        let response = ApiError(error).error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn check(req: &ServiceRequest, config: &ServeConfig) -> Result<(), FhirError> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("", |target| target.as_str());
    if target.len() > config.max_url {
        return Err(FhirError::new(
            414,
            IssueCode::TooLong,
            format!(
                "the URL is {} bytes long; this server takes at most {} (--max-url): send long \
                 searches as POST _search with a form body",
                target.len(),
                config.max_url
            ),
        ));
    }
    let headers = req.headers();
    if headers.len() > config.max_headers {
        return Err(FhirError::new(
            431,
            IssueCode::TooLong,
            format!(
                "the request has {} header fields; this server takes at most {} (--max-headers)",
                headers.len(),
                config.max_headers
            ),
        ));
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > config.max_header_bytes {
        return Err(FhirError::new(
            431,
            IssueCode::TooLong,
            format!(
                "the request's headers hold {header_bytes} bytes; this server takes at most {} \
                 (--max-header-bytes)",
                config.max_header_bytes
            ),
        ));
    }
    let query = req.query_string();
    check_params(count_params(query.as_bytes()), config.max_params)?;
    check_utf8("path", req.uri().path().as_bytes())?;
    check_utf8("query", query.as_bytes())?;
    check_host(req, config)
}

/// How many parameters a query string or form body holds (its non-empty `&`-separated parts,
/// as they are read).
pub fn count_params(text: &[u8]) -> usize {
    text.split(|&b| b == b'&').filter(|p| !p.is_empty()).count()
}

/// 400 when a request has more than `max` parameters.
pub fn check_params(count: usize, max: usize) -> Result<(), FhirError> {
    if count > max {
        return Err(FhirError::bad_request(
            IssueCode::TooLong,
            format!(
                "the request has {count} parameters; this server takes at most {max} \
                 (--max-params)"
            ),
        ));
    }
    Ok(())
}

/// 400 when the percent-decoded `text` (the `what` of the request) is not UTF-8.
pub fn check_utf8(what: &str, text: &[u8]) -> Result<(), FhirError> {
    if percent_encoding::percent_decode(text)
        .decode_utf8()
        .is_err()
    {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            format!("the {what} is not UTF-8 once percent-decoded"),
        ));
    }
    Ok(())
}

/// `Host` must be a valid `host[:port]`; without `--base-url`, so must the host and scheme
/// the request's own URLs are made of (see [`super::http::base_url`]).
fn check_host(req: &ServiceRequest, config: &ServeConfig) -> Result<(), FhirError> {
    let invalid = |what: &str, value: &str| {
        FhirError::bad_request(
            IssueCode::Value,
            format!(
                "{what} '{}' is not a valid host[:port]",
                value.escape_debug()
            ),
        )
    };
    if let Some(host) = req.headers().get(header::HOST) {
        let host = host.to_str().map_err(|_| invalid("Host", "(not ASCII)"))?;
        if !valid_authority(host) {
            return Err(invalid("Host", host));
        }
    }
    if config.base_url.is_none() {
        let info = req.connection_info();
        if !valid_authority(info.host()) {
            return Err(invalid(
                "the host of Forwarded or X-Forwarded-Host",
                info.host(),
            ));
        }
        let scheme = info.scheme();
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(FhirError::bad_request(
                IssueCode::Value,
                format!(
                    "the scheme '{}' of Forwarded or X-Forwarded-Proto is not http or https",
                    scheme.escape_debug()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_the_non_empty_parts() {
        assert_eq!(count_params(b""), 0);
        assert_eq!(count_params(b"a=1"), 1);
        assert_eq!(count_params(b"a=1&&b&c="), 3);
        assert_eq!(count_params("a=1&".repeat(5000).as_bytes()), 5000);
        assert!(check_params(200, 200).is_ok());
        assert_eq!(check_params(201, 200).unwrap_err().status, 400);
    }

    #[test]
    fn percent_decoded_text_must_be_utf8() {
        for good in [
            "",
            "name=J%C3%B6rg",
            "a=%00",
            "%E2%82%AC",
            "plain/path",
            "%",
        ] {
            assert!(check_utf8("query", good.as_bytes()).is_ok(), "{good}");
        }
        for bad in ["name=%FF", "%C3", "a=%C3&b=%A9", "%ED%A0%80"] {
            assert_eq!(check_utf8("query", bad.as_bytes()).unwrap_err().status, 400);
        }
    }
}
