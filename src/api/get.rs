//! A GET as the read endpoints' code sees it, whether it came over HTTP or as a GET entry of a
//! Bundle, and what it answers. The endpoints (read, vread, history, search, capabilities)
//! take a [`Get`] and give an [`Answer`]; the HTTP handlers and `api/bundle.rs` only convert,
//! so an entry answers exactly what its endpoint does.

use super::AppState;
use super::http::{FHIR_JSON, base_url, header_str, query_pairs, version_headers};
use crate::bundle::{EntryResult, Read};
use crate::fhir::datetime::{Micros, parse_http_date};
use crate::fhir::resource::parse_etag;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse};

/// What a GET asks for.
#[derive(Debug, Clone)]
pub struct Get {
    /// The FHIR base URL, without a trailing slash: links and `fullUrl`s start with it.
    pub base: String,
    /// The path below the base, without a leading slash (`Patient/1/_history`); empty for
    /// the base itself.
    pub path: String,
    /// The query as the client wrote it (for self links).
    pub query: String,
    /// The parameters, decoded (the query's, and a `_search` form's).
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=strict`: unknown search parameters are refused, not ignored.
    pub strict: bool,
    /// `If-None-Match` (`ifNoneMatch`): ETags, or `*`.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since` (`ifModifiedSince`).
    pub if_modified_since: Option<Micros>,
}

impl Get {
    /// The GET of an HTTP request.
    pub fn of(req: &HttpRequest, state: &AppState) -> Get {
        let headers = req.headers();
        Get {
            base: base_url(req, state),
            path: req
                .path()
                .strip_prefix("/fhir")
                .unwrap_or(req.path())
                .trim_start_matches('/')
                .to_string(),
            query: req.query_string().to_string(),
            params: query_pairs(req),
            strict: strict(req),
            if_none_match: header_str(headers, header::IF_NONE_MATCH).map(String::from),
            if_modified_since: header_str(headers, header::IF_MODIFIED_SINCE)
                .and_then(parse_http_date),
        }
    }

    /// The GET of a Bundle entry, under the Bundle request's `base` and strictness.
    pub fn of_entry(read: &Read, base: &str, strict: bool) -> Get {
        Get {
            base: base.to_string(),
            path: read.path.clone(),
            query: read.query.clone(),
            params: form_urlencoded::parse(read.query.as_bytes())
                .into_owned()
                .collect(),
            strict,
            if_none_match: read.if_none_match.clone(),
            if_modified_since: read.if_modified_since,
        }
    }

    /// `{base}/{path}`, or the base itself for an empty path, with `?query` when not empty.
    pub fn url(&self, path: &str, query: &str) -> String {
        let mut url = self.base.clone();
        if !path.is_empty() {
            url.push('/');
            url.push_str(path);
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Whether a resource at version `vid`, updated at `last_updated`, is not modified for
    /// the conditions: `If-None-Match` naming it (or `*`), else `If-Modified-Since` not before
    /// it (to the second, as HTTP dates go).
    pub fn not_modified(&self, vid: u64, last_updated: Micros) -> bool {
        if let Some(tags) = &self.if_none_match {
            return tags
                .split(',')
                .any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(vid));
        }
        self.if_modified_since
            .is_some_and(|since| last_updated < since + 1_000_000)
    }
}

/// `Prefer: handling=strict`.
pub fn strict(req: &HttpRequest) -> bool {
    let prefer = header_str(req.headers(), header::HeaderName::from_static("prefer")).unwrap_or("");
    prefer.split(',').any(|p| p.trim() == "handling=strict")
}

/// What a GET answers: 200 with a FHIR JSON body, or 304; with the version's `ETag` and
/// `Last-Modified` when it is one version.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// `(vid, lastUpdated)` of the version answered.
    pub version: Option<(u64, Micros)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// 200 with `body`.
    pub fn ok(body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            version: None,
            body,
        }
    }

    /// 200 with version `vid` of a resource, `body`.
    pub fn version(vid: u64, last_updated: Micros, body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            version: Some((vid, last_updated)),
            body,
        }
    }

    /// 304: version `vid` is what the client has.
    pub fn not_modified(vid: u64, last_updated: Micros) -> Answer {
        Answer {
            status: 304,
            version: Some((vid, last_updated)),
            body: Vec::new(),
        }
    }

    /// The HTTP response.
    pub fn respond(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = HttpResponse::build(status);
        if let Some((vid, last_updated)) = self.version {
            version_headers(&mut response, vid, last_updated);
        }
        if self.status == 304 {
            return response.finish();
        }
        response.content_type(FHIR_JSON).body(self.body)
    }

    /// The answer of a Bundle entry.
    pub fn into_entry(self) -> EntryResult {
        EntryResult {
            status: self.status,
            vid: self.version.map(|(vid, _)| vid),
            last_modified: self.version.map(|(_, last_updated)| last_updated),
            resource: (self.status != 304).then_some(self.body),
            ..EntryResult::default()
        }
    }
}
