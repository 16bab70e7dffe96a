//! A small FHIR client for the integration tests: requests against a [`TestServer`], answers
//! read completely ([`Reply`]), history paging, the OperationOutcome checks, and the JSON
//! helpers (ids, versions, instants, references) the tests share.
#![allow(dead_code)]

use super::{FHIR_JSON, TestServer};
use reqwest::Method;
use reqwest::blocking::{Body, Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::ops::Deref;
use std::path::Path;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The content type of every FHIR JSON answer.
pub const RESPONSE_CONTENT_TYPE: &str = "application/fhir+json; charset=utf-8";

/// One HTTP answer, read completely.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (without looking at the content type).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", truncated(&self.text)))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is not ASCII").to_string())
    }

    /// The ETag header, which must be there.
    pub fn etag(&self) -> String {
        self.header("etag")
            .unwrap_or_else(|| panic!("no ETag header in {:?}", self.headers))
    }

    /// Asserts the status (showing the body when it differs) and returns self.
    pub fn expect(&self, status: u16, what: &str) -> &Reply {
        assert_eq!(
            self.status,
            status,
            "{what}: expected {status}, got {} with body {}",
            self.status,
            truncated(&self.text)
        );
        self
    }

    /// Asserts a FHIR JSON body with the contract's content type and returns it.
    pub fn resource(&self) -> Value {
        assert_eq!(
            self.header("content-type").as_deref(),
            Some(RESPONSE_CONTENT_TYPE),
            "content type of {}",
            truncated(&self.text)
        );
        self.json()
    }
}

/// Sends a request and reads the whole answer; panics when there is no answer.
pub fn send(request: RequestBuilder) -> Reply {
    let response = request.send().expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().expect("read body");
    Reply {
        status,
        headers,
        text,
    }
}

/// `text`, cut after 2000 bytes for failure messages.
pub fn truncated(text: &str) -> String {
    if text.len() <= 2000 {
        text.to_string()
    } else {
        let mut end = 2000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &text[..end], text.len())
    }
}

/// A client of one server's FHIR base. Paths are relative to the base (`Patient/1`).
pub struct FhirClient {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub http: Client,
}

impl FhirClient {
    /// A client of `server` with its own connection pool.
    pub fn new(server: &TestServer) -> FhirClient {
        FhirClient::at(&server.base)
    }

    /// A client of the FHIR base `base` with its own connection pool.
    pub fn at(base: &str) -> FhirClient {
        FhirClient {
            base: base.to_string(),
            http: super::client(),
        }
    }

    /// A client of the FHIR base `base` that sends `Authorization: Bearer TOKEN` with every
    /// request.
    pub fn bearer(base: &str, token: &str) -> FhirClient {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {token}");
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&value).expect("a header value"),
        );
        FhirClient {
            base: base.to_string(),
            http: reqwest::blocking::Client::builder()
                .default_headers(headers)
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        super::url(&self.base, path)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(with_headers(self.http.get(self.url(path)), headers))
    }

    /// GETs an absolute URL the server handed out (a paging link) and expects a 200 resource.
    pub fn get_absolute(&self, url: &str) -> Value {
        send(self.http.get(url)).expect(200, url).resource()
    }

    /// POSTs a form body (`application/x-www-form-urlencoded`), as `_search` takes.
    pub fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        send(
            self.http
                .post(self.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
    }

    pub fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        send(self.http.get(self.url(path)).query(query))
    }

    /// Sends `body` as `application/fhir+json` with `method`, and `headers`.
    pub fn submit(
        &self,
        method: Method,
        path: &str,
        body: impl IntoBody,
        headers: &[(&str, &str)],
    ) -> Reply {
        let request = self
            .http
            .request(method, self.url(path))
            .header("content-type", FHIR_JSON)
            .body(body.into_body());
        send(with_headers(request, headers))
    }

    pub fn post(&self, path: &str, body: impl IntoBody) -> Reply {
        self.submit(Method::POST, path, body, &[])
    }

    pub fn post_with(&self, path: &str, body: impl IntoBody, headers: &[(&str, &str)]) -> Reply {
        self.submit(Method::POST, path, body, headers)
    }

    pub fn put(&self, path: &str, body: impl IntoBody) -> Reply {
        self.submit(Method::PUT, path, body, &[])
    }

    pub fn put_with(&self, path: &str, body: impl IntoBody, headers: &[(&str, &str)]) -> Reply {
        self.submit(Method::PUT, path, body, headers)
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.delete_with(path, &[])
    }

    pub fn delete_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(with_headers(self.http.delete(self.url(path)), headers))
    }

    /// Creates `body` (POST to its type): asserts 201 and returns the stored resource.
    pub fn create(&self, body: &Value) -> Value {
        let kind = body["resourceType"].as_str().expect("resourceType");
        self.post(kind, body).expect(201, "create").resource()
    }

    /// POSTs a batch or transaction Bundle to the base.
    pub fn bundle(&self, bundle: &Value) -> Reply {
        self.post("", bundle)
    }

    /// PUTs `body` to its own `Type/id`.
    pub fn update(&self, body: &Value) -> Reply {
        self.put(&type_and_id(body), body)
    }

    /// Every entry of a history (`path` with `query`), following `next` links; see
    /// [`FhirClient::pages`].
    pub fn history(&self, path: &str, query: &[(&str, &str)], count: Option<usize>) -> Vec<Value> {
        self.pages(self.get_query(path, query), count, || {})
    }

    /// Every entry of the history whose first page is `first`, calling `between` before each
    /// `next` request. Asserts that every page is a 200 history Bundle with a self link, and,
    /// when `count` is given, that no page is larger and every page but the last is full.
    pub fn pages(
        &self,
        first: Reply,
        count: Option<usize>,
        mut between: impl FnMut(),
    ) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut reply = first;
        let mut pages = 0;
        loop {
            reply.expect(200, "history page");
            let bundle = reply.resource();
            let shown = || truncated(&bundle.to_string());
            assert_eq!(bundle["resourceType"], "Bundle", "{}", shown());
            assert_eq!(bundle["type"], "history", "{}", shown());
            assert!(link(&bundle, "self").is_some(), "no self link: {}", shown());
            let page: Vec<Value> = bundle["entry"].as_array().cloned().unwrap_or_default();
            let next = link(&bundle, "next");
            if let Some(count) = count {
                assert!(page.len() <= count, "page larger than _count={count}");
                if next.is_some() {
                    assert_eq!(page.len(), count, "a page before the last must be full");
                }
            }
            entries.extend(page);
            pages += 1;
            assert!(pages < 1000, "paging does not end");
            match next {
                Some(url) => {
                    between();
                    reply = send(self.http.get(url));
                }
                None => return entries,
            }
        }
    }

    /// Every entry of the history at `path` (`_history`, `Type/_history` or
    /// `Type/id/_history`), newest first, in pages of 1000.
    pub fn whole_history(&self, path: &str) -> Vec<Value> {
        self.history(path, &[("_count", "1000")], None)
    }

    /// Every version in the system history, newest first.
    pub fn system_history(&self) -> Vec<Value> {
        self.whole_history("_history")
    }
}

/// A request body: a JSON value, or text or bytes that need not be JSON.
pub trait IntoBody {
    fn into_body(self) -> Body;
}

impl IntoBody for &Value {
    fn into_body(self) -> Body {
        self.to_string().into()
    }
}

impl IntoBody for String {
    fn into_body(self) -> Body {
        self.into()
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> Body {
        self.into()
    }
}

impl IntoBody for Body {
    fn into_body(self) -> Body {
        self
    }
}

fn with_headers(mut request: RequestBuilder, headers: &[(&str, &str)]) -> RequestBuilder {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
}

/// A running server and a client talking to it; derefs to its [`FhirClient`].
pub struct Fhir {
    pub server: TestServer,
    client: FhirClient,
}

impl Fhir {
    /// A server on a fresh temporary data directory.
    pub fn start() -> Fhir {
        Fhir::with(TestServer::start())
    }

    /// A server on `data` (kept after the test) with extra command-line arguments.
    pub fn on(data: &Path, extra: &[&str]) -> Fhir {
        Fhir::with(TestServer::start_on(data, extra))
    }

    pub fn with(server: TestServer) -> Fhir {
        let client = FhirClient::new(&server);
        Fhir { server, client }
    }

    /// Another client of the same server, with its own connections (for another thread).
    pub fn new_client(&self) -> FhirClient {
        FhirClient::new(&self.server)
    }
}

impl Deref for Fhir {
    type Target = FhirClient;

    fn deref(&self) -> &FhirClient {
        &self.client
    }
}

// ---- OperationOutcome checks ----------------------------------------------------------------

/// [`assert_outcome_for`] of an "error answer".
pub fn assert_outcome(reply: &Reply, status: u16, codes: &[&str]) -> Value {
    assert_outcome_for(reply, status, codes, "error answer")
}

/// Asserts an error answer: `status`, the FHIR JSON content type, and an OperationOutcome whose
/// first issue is an error with one of `codes` and a diagnostics message. Returns the outcome.
pub fn assert_outcome_for(reply: &Reply, status: u16, codes: &[&str], what: &str) -> Value {
    reply.expect(status, what);
    let outcome = reply.resource();
    assert_issue(&outcome, codes, what);
    outcome
}

/// Asserts an OperationOutcome whose first issue is an error with one of `codes` and a
/// diagnostics message.
pub fn assert_issue(outcome: &Value, codes: &[&str], what: &str) {
    assert_issue_code(outcome, codes, what);
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: diagnostics missing: {outcome}"
    );
}

/// Asserts an OperationOutcome whose first issue is an error with one of `codes`.
pub fn assert_issue_code(outcome: &Value, codes: &[&str], what: &str) {
    assert_eq!(
        outcome["resourceType"], "OperationOutcome",
        "{what}: {outcome}"
    );
    let issue = &outcome["issue"][0];
    assert_eq!(issue["severity"], "error", "{what}: {outcome}");
    let code = issue["code"].as_str().expect("issue code");
    assert!(
        codes.contains(&code),
        "{what}: issue code {code:?} is not one of {codes:?}: {outcome}"
    );
}

// ---- JSON helpers ---------------------------------------------------------------------------

/// A small valid Patient with the family name `family`.
pub fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "active": true,
        "gender": "female",
        "birthDate": "1970-02-03",
        "name": [{"family": family, "given": ["Ada"]}]
    })
}

pub fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

/// `Type/id` of a resource.
pub fn type_and_id(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().expect("resourceType"),
        resource["id"].as_str().expect("id")
    )
}

/// `meta.versionId`.
pub fn version_of(resource: &Value) -> &str {
    resource["meta"]["versionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no meta.versionId in {resource}"))
}

/// `meta.versionId` as a number.
pub fn version_number(resource: &Value) -> u64 {
    version_of(resource).parse().expect("numeric versionId")
}

/// Parses an RFC 3339 instant.
pub fn instant(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not an instant: {e}"))
}

/// `meta.lastUpdated`.
pub fn last_updated(resource: &Value) -> OffsetDateTime {
    instant(
        resource["meta"]["lastUpdated"]
            .as_str()
            .expect("meta.lastUpdated"),
    )
}

/// `W/"3"` -> 3
pub fn etag_version(etag: &str) -> Option<u64> {
    etag.strip_prefix("W/\"")?.strip_suffix('"')?.parse().ok()
}

/// The version of a history entry, from its `response.etag`.
pub fn entry_version(entry: &Value) -> u64 {
    let etag = entry["response"]["etag"].as_str().expect("response.etag");
    etag_version(etag).unwrap_or_else(|| panic!("etag {etag:?}"))
}

/// The url of a Bundle's link with `relation`.
pub fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().expect("link url").to_string())
}

/// The resource without `meta.versionId` and `meta.lastUpdated` (and without `meta` when
/// nothing else is left in it).
pub fn without_server_meta(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Some(object) = resource.as_object_mut()
        && let Some(meta) = object.get_mut("meta").and_then(Value::as_object_mut)
    {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            object.remove("meta");
        }
    }
    resource
}

/// The resource without `id`, `meta.versionId` and `meta.lastUpdated` (and without `meta`
/// when nothing else is left in it).
pub fn strip_server_fields(resource: &Value) -> Value {
    let mut resource = without_server_meta(resource);
    if let Some(object) = resource.as_object_mut() {
        object.remove("id");
    }
    resource
}

/// Every `reference` string in `value`, in document order.
pub fn references(value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    map_references(&mut value.clone(), &mut |reference| {
        out.push(reference.to_string());
        None
    });
    out
}

/// Checks every reference of `resource` (`what` in failures): none still points at a urn (a
/// document's `urn:uuid` identifier may stay), a local one (`#id`) names a contained resource,
/// and `check` accepts each other one. Returns how many references there are.
pub fn check_references(resource: &Value, what: &str, mut check: impl FnMut(&str)) -> usize {
    let references = references(resource);
    assert!(
        references.iter().all(|r| !r.starts_with("urn:")),
        "{what} still refers to a urn: {}",
        truncated(&resource.to_string())
    );
    let contained: HashSet<String> = resource["contained"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str().map(|id| format!("#{id}")))
        .collect();
    for reference in &references {
        if reference.starts_with('#') {
            assert!(
                contained.contains(reference),
                "{what}: {reference} names no contained resource"
            );
        } else {
            check(reference);
        }
    }
    references.len()
}

/// Replaces every `reference` string in `value` by `map(reference)` when it gives one.
pub fn map_references(value: &mut Value, map: &mut dyn FnMut(&str) -> Option<String>) {
    match value {
        Value::Object(object) => {
            for (key, member) in object.iter_mut() {
                match (key.as_str(), member) {
                    ("reference", Value::String(text)) => {
                        if let Some(new) = map(text) {
                            *text = new;
                        }
                    }
                    (_, member) => map_references(member, map),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| map_references(item, map)),
        _ => {}
    }
}
