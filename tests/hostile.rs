//! The hostile-input corpus: what a broken or hostile client sends, against the real binary.
//!
//! Every request of the corpus is answered 2xx or 4xx, never 5xx, and every 4xx carries an
//! OperationOutcome; afterwards the same server process (it did not exit) still answers a read.
//! Where the answer is a limit's, its exact status is checked too. The few requests that
//! actix-http refuses itself before fhirlake sees them (a 4xx with an empty body) are listed on
//! their own, in [`what_the_http_layer_refuses_itself_is_a_bodyless_4xx`].
//!
//! Then panics, injected where a test can reach them only in a debug build with
//! `FHIRLAKE_TEST_FAULTS` set (see `src/panics.rs`): in a handler, the writer and the indexer,
//! each costing only its own request. Last, property tests: generated search URLs and Bundles
//! are never answered 5xx.
mod common;

use common::fhir::{Fhir, Reply, patient, send};
use common::{FHIR_JSON, TestServer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---- a raw HTTP/1.1 client: what reqwest refuses to send ------------------------------------

/// One answer read off a connection.
struct RawReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A connection to a server, kept open across requests.
struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    fn open(server: &TestServer) -> Connection {
        let address = server.origin.trim_start_matches("http://");
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Connection {
            stream: BufReader::new(stream),
        }
    }

    /// Writes `request` as it is and reads one answer. A server that refuses a request may
    /// close before reading all of it; the write error is then ignored and the answer read.
    fn send(&mut self, request: &[u8]) -> RawReply {
        let _ = self.stream.get_mut().write_all(request);
        self.read_reply()
    }

    fn read_reply(&mut self) -> RawReply {
        let mut status_line = String::new();
        self.stream
            .read_line(&mut status_line)
            .expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("a header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header");
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut reply = RawReply {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = reply.header("content-length") {
            let mut body = vec![0; length.parse().expect("a length")];
            self.stream.read_exact(&mut body).expect("the body");
            reply.body = body;
        } else if reply
            .header("transfer-encoding")
            .is_some_and(|te| te.contains("chunked"))
        {
            loop {
                let mut size = String::new();
                self.stream.read_line(&mut size).expect("a chunk size");
                let size = usize::from_str_radix(size.trim(), 16).expect("hex");
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).expect("a chunk");
                if size == 0 {
                    break;
                }
                reply.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            let _ = self.stream.read_to_end(&mut reply.body);
        }
        reply
    }
}

/// A request as bytes: `Host` (unless `headers` has one), `Content-Length` of a body, and
/// `Connection: close`.
fn request(method: &str, target: &[u8], headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        out.extend_from_slice(b"Host: 127.0.0.1\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    out
}

// ---- judging answers ------------------------------------------------------------------------

/// Asserts an answer to a hostile request: below 500, or 501 for what fhirlake does not
/// implement (an honest refusal, not a failure: its issue code must be `not-supported`); every
/// 4xx and 5xx is an OperationOutcome (FHIR JSON, an error issue with a diagnostics text).
fn judge(what: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let shown = || common::fhir::truncated(&text);
    assert!(
        status < 500 || status == 501,
        "{what}: {status} {}",
        shown()
    );
    if status == 501 {
        assert!(
            text.contains(r#""code":"not-supported""#),
            "{what}: {}",
            shown()
        );
    }
    if status >= 400 {
        assert!(
            content_type.is_some_and(|t| t.starts_with("application/fhir+json")),
            "{what}: {status} with content type {content_type:?}: {}",
            shown()
        );
        let outcome: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {}", shown()));
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
        assert_eq!(
            outcome["issue"][0]["severity"], "error",
            "{what}: {outcome}"
        );
        assert!(
            outcome["issue"][0]["diagnostics"].is_string(),
            "{what}: {outcome}"
        );
    }
}

/// One request of the corpus.
enum Request {
    Http(Box<RequestBuilder>),
    Raw(Vec<u8>),
}

/// A request reqwest sends.
fn sent(request: RequestBuilder) -> Request {
    Request::Http(Box::new(request))
}

struct Case {
    what: String,
    request: Request,
    /// The status when it is known exactly (a limit's).
    status: Option<u16>,
}

/// The corpus as it is built: `add` a request with any answer below 500, `expect` one with an
/// exact status.
#[derive(Default)]
struct Corpus(Vec<Case>);

impl Corpus {
    fn add(&mut self, what: impl Into<String>, request: Request) {
        self.push(what, request, None);
    }

    fn expect(&mut self, what: impl Into<String>, status: u16, request: Request) {
        self.push(what, request, Some(status));
    }

    fn push(&mut self, what: impl Into<String>, request: Request, status: Option<u16>) {
        self.0.push(Case {
            what: what.into(),
            request,
            status,
        });
    }

    /// Sends every request, judges every answer, and returns how many there were.
    fn run(self, server: &TestServer) -> usize {
        let count = self.0.len();
        for case in self.0 {
            let (status, content_type, body) = match case.request {
                Request::Http(request) => {
                    let reply = send(*request);
                    let content_type = reply.header("content-type");
                    (reply.status, content_type, reply.text.into_bytes())
                }
                Request::Raw(bytes) => {
                    let reply = Connection::open(server).send(&bytes);
                    let content_type = reply.header("content-type").map(String::from);
                    (reply.status, content_type, reply.body)
                }
            };
            judge(&case.what, status, content_type.as_deref(), &body);
            if let Some(expected) = case.status {
                assert_eq!(
                    status,
                    expected,
                    "{}: {}",
                    case.what,
                    common::fhir::truncated(&String::from_utf8_lossy(&body))
                );
            }
        }
        count
    }
}

/// Creates a Patient to read at the end, and returns its path.
fn sentinel(fhir: &Fhir) -> String {
    let created = fhir.create(&patient("Sentinel"));
    format!("Patient/{}", created["id"].as_str().expect("id"))
}

/// The server is the process it was (it did not exit) and reads `path`.
fn still_serving(fhir: &mut Fhir, path: &str) {
    assert!(fhir.server.is_running(), "the server process exited");
    let read = fhir.get(path);
    read.expect(200, "the sentinel read afterwards");
    assert_eq!(read.json()["name"][0]["family"], "Sentinel");
}

// ---- nested JSON ----------------------------------------------------------------------------

/// How deeply arrays and objects nest in `value`.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The recursive shapes of R4 (extensions in extensions, items in items, concepts in
/// concepts, parts in parts, Bundles in Bundles): each as deep as it gets without passing
/// `max` levels of nesting, and one step deeper (past `max`).
fn nested_resources(max: usize) -> Vec<(Value, Value)> {
    type Wrap = fn(Value) -> Value;
    let shapes: [(Value, Wrap, Wrap); 5] = [
        (
            json!({"url": "http://example.org/e", "valueString": "leaf"}),
            |e| json!({"url": "http://example.org/e", "extension": [e]}),
            |e| json!({"resourceType": "Patient", "extension": [e]}),
        ),
        (
            json!({"linkId": "leaf", "text": "leaf"}),
            |i| json!({"linkId": "x", "item": [i]}),
            |i| {
                json!({"resourceType": "QuestionnaireResponse", "status": "completed",
                "item": [i]})
            },
        ),
        (
            json!({"code": "leaf"}),
            |c| json!({"code": format!("c{}", depth(&c)), "concept": [c]}),
            |c| {
                json!({"resourceType": "CodeSystem", "status": "draft",
                "content": "complete", "concept": [c]})
            },
        ),
        (
            json!({"name": "leaf", "valueString": "leaf"}),
            |p| json!({"name": "x", "part": [p]}),
            |p| json!({"resourceType": "Parameters", "parameter": [p]}),
        ),
        (
            json!({"resourceType": "Bundle", "type": "collection"}),
            |b| {
                json!({"resourceType": "Bundle", "type": "collection",
                "entry": [{"fullUrl": "urn:uuid:8a4b6b1a-0c61-4e1c-9e2e-3c1f5d7a9b00",
                    "resource": b}]})
            },
            |b| b,
        ),
    ];
    shapes
        .into_iter()
        .map(|(leaf, wrap, root)| {
            let mut inner = leaf;
            loop {
                let deeper = wrap(inner.clone());
                if depth(&root(deeper.clone())) > max {
                    return (root(inner), root(deeper));
                }
                inner = deeper;
            }
        })
        .collect()
}

/// `[[[...]]]` or `{"a":{"a":...}}`, `levels` deep, as bytes.
fn nested_text(levels: usize, object: bool) -> Vec<u8> {
    let (open, close) = if object {
        (r#"{"a":"#, "}")
    } else {
        ("[", "]")
    };
    let mut text = open.repeat(levels);
    if object {
        text.push('1');
    }
    text.push_str(&close.repeat(levels));
    text.into_bytes()
}

// ---- the corpus -----------------------------------------------------------------------------

#[test]
fn hostile_requests_get_4xx_outcomes_or_2xx_and_the_server_stays_up() {
    let mut fhir = Fhir::start();
    let read_path = sentinel(&fhir);
    let http = &fhir.http;
    let url = |path: &str| fhir.url(path);
    let json_post = |path: &str, body: Vec<u8>| {
        sent(
            http.post(url(path))
                .header("content-type", FHIR_JSON)
                .body(body),
        )
    };
    let get = |path: &str| sent(http.get(url(path)));
    let query = |path: &str, pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sent(http.get(url(path)).query(&pairs))
    };
    let raw = |method: &str, target: &[u8], headers: &[(&str, &str)], body: &[u8]| {
        Request::Raw(request(method, target, headers, body))
    };
    let mut corpus = Corpus::default();

    // JSON nested 10,000 levels deep, on every route that reads JSON; and one level past the
    // limit (100 by default) in an otherwise valid Patient.
    for object in [false, true] {
        let deep = nested_text(10_000, object);
        let shape = if object { "objects" } else { "arrays" };
        for path in [
            "Patient",
            "",
            "Patient/$validate",
            "ValueSet/$expand",
            "CodeSystem/$lookup",
            "ValueSet/$validate-code",
            "CodeSystem/$subsumes",
        ] {
            corpus.expect(
                format!("POST {path} of {shape} nested 10,000 deep"),
                400,
                json_post(path, deep.clone()),
            );
        }
        for path in ["Patient/deep", "Patient?name=deep"] {
            corpus.expect(
                format!("PUT {path} of {shape} nested 10,000 deep"),
                400,
                sent(
                    http.put(url(path))
                        .header("content-type", FHIR_JSON)
                        .body(deep.clone()),
                ),
            );
        }
        corpus.expect(
            format!("POST Patient/_search with JSON of {shape} nested 10,000 deep"),
            415,
            json_post("Patient/_search", deep.clone()),
        );
    }
    for (within, over) in nested_resources(100) {
        let kind = within["resourceType"].as_str().unwrap().to_string();
        corpus.expect(
            format!("{kind} nested {} deep", depth(&over)),
            400,
            json_post(&kind, over.to_string().into_bytes()),
        );
        corpus.add(
            format!("{kind} nested {} deep", depth(&within)),
            json_post(&kind, within.to_string().into_bytes()),
        );
    }

    // Huge numbers: beyond f64, 400 digits, in resources and in searches.
    let digits = "9".repeat(400);
    for number in [
        "1e400",
        "-1e400",
        "1e-400",
        &digits,
        &format!("0.{digits}1"),
    ] {
        let observation = format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"text":"n"}},
                "valueQuantity":{{"value":{number},"unit":"g"}}}}"#
        );
        corpus.add(
            format!("Observation with value {}", &number[..number.len().min(12)]),
            json_post("Observation", observation.into_bytes()),
        );
        let patient = format!(r#"{{"resourceType":"Patient","multipleBirthInteger":{number}}}"#);
        corpus.add(
            "Patient with a huge multipleBirthInteger",
            json_post("Patient", patient.into_bytes()),
        );
        for (name, value) in [
            ("value-quantity", number.to_string()),
            ("value-quantity", format!("gt{number}")),
            ("date", format!("ge{number}")),
            ("_count", number.to_string()),
        ] {
            corpus.add(
                format!("search {name}={}", &value[..value.len().min(14)]),
                query("Observation", &[(name, &value)]),
            );
        }
    }
    for count in ["99999999999999999999999", "-1", "1e9", "0x10", ""] {
        corpus.add(
            format!("_count={count}"),
            query("Patient", &[("_count", count)]),
        );
    }
    corpus.add(
        "a vread of a huge version",
        get(&format!("{read_path}/_history/{digits}")),
    );

    // Bytes that are not UTF-8, and NULs.
    corpus.expect(
        "a Patient that is not UTF-8",
        400,
        json_post(
            "Patient",
            b"{\"resourceType\":\"Patient\",\"gender\":\"\xff\xfe\"}".to_vec(),
        ),
    );
    corpus.expect(
        "a Bundle that is not UTF-8",
        400,
        json_post(
            "",
            b"{\"resourceType\":\"Bundle\",\"type\":\"batch\xc3\"}".to_vec(),
        ),
    );
    corpus.expect(
        "$validate of a body that is not UTF-8",
        400,
        json_post("Patient/$validate", b"\xff".to_vec()),
    );
    corpus.expect("a query that is not UTF-8", 400, get("Patient?name=%FF"));
    corpus.expect("a split UTF-8 sequence", 400, get("Patient?name=%C3&x=%A9"));
    corpus.expect("a path that is not UTF-8", 400, get("Patient/%FF%FE"));
    corpus.expect(
        "a form that is not UTF-8",
        400,
        sent(
            http.post(url("Patient/_search"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b"name=\xff".to_vec()),
        ),
    );
    corpus.add(
        "a NUL in a name",
        json_post(
            "Patient",
            br#"{"resourceType":"Patient","name":[{"family":"a\u0000b"}]}"#.to_vec(),
        ),
    );
    corpus.expect(
        "a NUL in a body id",
        400,
        sent(
            http.put(url("Patient/nul"))
                .header("content-type", FHIR_JSON)
                .body(r#"{"resourceType":"Patient","id":"nu\u0000l"}"#),
        ),
    );
    corpus.expect("a NUL in a path id", 400, get("Patient/a%00b"));
    corpus.add("a NUL in a search value", get("Patient?name=a%00b"));
    corpus.add("a NUL in a text search", get("Patient?_content=%00"));

    // Content types.
    let body = patient("Typed").to_string();
    for content_type in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/fhir+xml",
        "",
        "application/fhir+json; charset=latin1; x=\"",
    ] {
        corpus.add(
            format!("POST Patient with Content-Type {content_type:?}"),
            sent(
                http.post(url("Patient"))
                    .header("content-type", content_type)
                    .body(body.clone()),
            ),
        );
    }
    corpus.add(
        "POST Patient without a Content-Type",
        sent(http.post(url("Patient")).body(body.clone())),
    );
    corpus.expect(
        "POST _search without a Content-Type",
        415,
        sent(http.post(url("Patient/_search")).body("name=x")),
    );

    // The search engine's own query syntax in search values: plain text to FHIR.
    for (name, value) in [
        ("name", "*"),
        ("name", "a OR b"),
        ("name", "field:x"),
        ("name", "[a TO z]"),
        ("name", "{a TO z}"),
        ("name", "a AND NOT b"),
        ("name", "\"unterminated"),
        ("name", "\\"),
        ("name", "a^2"),
        ("name", "a~2"),
        ("name", "+a -b"),
        ("name:exact", "*"),
        ("name:contains", "*"),
        ("family", "(a"),
        ("identifier", "*|*"),
        ("identifier", "|"),
        ("_id", "*"),
        ("_id", ".."),
        ("gender", "*"),
        ("birthdate", "*"),
        ("birthdate", "[2000 TO 2010]"),
        ("_tag", "*|*"),
        ("_content", "*"),
        ("_content", "a OR (b"),
        ("_content", "[a TO z]"),
        ("_text", "field:x"),
        ("_sort", "*"),
        ("_sort", "-"),
        ("_include", "*:*:*"),
        ("_include", "*"),
        ("_include", "Patient:*:*:*"),
        ("_include:iterate", "*:*"),
        ("_revinclude", "*:*:*"),
        ("_elements", "*"),
        ("_summary", "*"),
        ("_type", "*"),
        ("_has", "*"),
        ("_has:*:*:*", "*"),
        ("name:missing", "*"),
        ("general-practitioner:Practitioner.name", "*"),
        ("_format", "*"),
        ("_count", "*"),
        ("*", "*"),
        ("", ""),
    ] {
        corpus.add(
            format!("Patient?{name}={value}"),
            query("Patient", &[(name, value)]),
        );
    }
    corpus.add("a system search for *", query("", &[("_content", "*")]));
    corpus.add(
        "a conditional create with search syntax",
        sent(
            http.post(url("Patient"))
                .header("content-type", FHIR_JSON)
                .header("if-none-exist", "name=* OR field:x")
                .body(body.clone()),
        ),
    );

    // Bundles: reference cycles, duplicate fullUrls, Bundles in Bundles, strange entries.
    let linked = |full_url: &str, other: &str| {
        json!({"fullUrl": full_url,
            "resource": {"resourceType": "Patient", "link": [{"other": {"reference": other},
                "type": "seealso"}]},
            "request": {"method": "POST", "url": "Patient"}})
    };
    let a = "urn:uuid:0b5a3a55-50a3-4b8b-9f39-6f4f2e1f0a01";
    let b = "urn:uuid:0b5a3a55-50a3-4b8b-9f39-6f4f2e1f0a02";
    for kind in ["transaction", "batch"] {
        let bundles = [
            ("a reference cycle", vec![linked(a, b), linked(b, a)]),
            ("a self-reference", vec![linked(a, a)]),
            (
                "duplicate fullUrls",
                vec![linked(a, b), linked(a, a), linked(b, a)],
            ),
            (
                "a PUT to Patient/..",
                vec![json!({"resource": {"resourceType": "Patient", "id": ".."},
                    "request": {"method": "PUT", "url": "Patient/.."}})],
            ),
            (
                "a fullUrl of Patient/..",
                vec![linked("Patient/..", "Patient/.."), linked(b, "Patient/..")],
            ),
            (
                "a conditional reference with search syntax",
                vec![linked(a, "Patient?name=*"), linked(b, "Patient?_id=..")],
            ),
            (
                "an ifNoneExist with search syntax",
                vec![json!({"resource": {"resourceType": "Patient"},
                    "request": {"method": "POST", "url": "Patient",
                        "ifNoneExist": "name=[a TO z]&_id=*"}})],
            ),
            (
                "a Bundle in a Bundle in a Bundle",
                vec![
                    json!({"fullUrl": a, "request": {"method": "POST", "url": "Bundle"},
                    "resource": {"resourceType": "Bundle", "type": "collection",
                        "entry": [{"fullUrl": b, "resource": {"resourceType": "Bundle",
                            "type": "collection", "entry": [{"fullUrl": a,
                                "resource": {"resourceType": "Patient"}}]}}]}}),
                ],
            ),
            (
                "a batch inside",
                vec![json!({"request": {"method": "POST", "url": ""},
                    "resource": {"resourceType": "Bundle", "type": kind,
                        "entry": [linked(a, b)]}})],
            ),
            (
                "strange entries",
                vec![
                    json!({"request": {"method": "TRACE", "url": "Patient"}}),
                    json!({"request": {"method": "GET", "url": "../../etc/passwd"}}),
                    json!({"request": {"method": "GET", "url": "http://evil.example/x"}}),
                    json!({"request": {"method": "GET", "url": "Patient?_include=*:*:*"}}),
                    json!({"request": {"method": "DELETE", "url": "Patient/."}}),
                    json!({"request": {"method": "GET", "url": ""}}),
                    json!({"resource": null, "request": {"method": "POST", "url": "Patient"}}),
                    json!({"fullUrl": "x".repeat(10_000),
                        "resource": {"resourceType": "Patient"},
                        "request": {"method": "POST", "url": "Patient"}}),
                ],
            ),
        ];
        for (what, entries) in bundles {
            let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
            corpus.add(
                format!("a {kind} with {what}"),
                json_post("", bundle.to_string().into_bytes()),
            );
        }
    }
    for body in [
        json!({"resourceType": "Bundle", "type": "batch", "entry": []}),
        json!({"resourceType": "Bundle", "type": "batch", "entry": {}}),
        json!({"resourceType": "Bundle", "type": "batch", "entry": [1, "x", null]}),
        json!({"resourceType": "Bundle", "type": "document"}),
        json!({"resourceType": "Patient"}),
        json!([]),
    ] {
        corpus.add(
            format!("POST to the base of {body}"),
            json_post("", body.to_string().into_bytes()),
        );
    }

    // Repeated parameters, long URLs, many and large headers.
    let repeated = "a=1&".repeat(5000);
    corpus.expect(
        "5,000 query parameters",
        400,
        get(&format!("Patient?{repeated}")),
    );
    corpus.expect(
        "5,000 form parameters",
        400,
        sent(
            http.post(url("Patient/_search"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(repeated.clone()),
        ),
    );
    corpus.expect(
        "150 query and 100 form parameters",
        400,
        sent(
            http.post(url(&format!("Patient/_search?{}", "a=1&".repeat(150))))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("a=1&".repeat(100)),
        ),
    );
    corpus.add(
        "200 _include parameters",
        get(&format!("Patient?{}", "_include=Patient:link&".repeat(200))),
    );
    corpus.expect(
        "a URL of 40 KB",
        414,
        get(&format!("Patient?name={}", "x".repeat(40_000))),
    );
    let many: Vec<(String, String)> = (0..80)
        .map(|i| (format!("x-many-{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    corpus.expect("80 headers", 431, raw("GET", b"/fhir/Patient", &many, b""));
    let big = "b".repeat(40_000);
    corpus.expect(
        "a header of 40 KB",
        431,
        raw("GET", b"/fhir/Patient", &[("x-big", &big)], b""),
    );
    corpus.add(
        "an X-Request-Id of 10 KB",
        raw(
            "GET",
            b"/fhir/metadata",
            &[("x-request-id", &big[..10_000])],
            b"",
        ),
    );

    // Hosts that are no host[:port], in Host and in the forwarding headers.
    for (name, value) in [
        ("host", "evil.example\"<script>"),
        ("host", "user@evil.example"),
        ("host", "a b"),
        ("x-forwarded-host", "evil.example/<script>"),
        ("forwarded", "host=\"x<y\""),
        ("x-forwarded-proto", "javascript"),
    ] {
        let body = patient("Hosted").to_string();
        corpus.expect(
            format!("{name}: {value}"),
            400,
            raw(
                "POST",
                b"/fhir/Patient",
                &[(name, value), ("content-type", FHIR_JSON)],
                body.as_bytes(),
            ),
        );
    }

    // Methods, paths and ids.
    let put_dots = |id: &str| {
        let body = json!({"resourceType": "Patient", "id": id}).to_string();
        raw(
            "PUT",
            format!("/fhir/Patient/{id}").as_bytes(),
            &[("content-type", FHIR_JSON)],
            body.as_bytes(),
        )
    };
    corpus.expect("PUT Patient/..", 400, put_dots(".."));
    corpus.expect("PUT Patient/.", 400, put_dots("."));
    for target in [
        "/fhir/Patient/..",
        "/fhir/Patient/.",
        "/fhir/Patient/../_history",
        "/fhir/Patient/../Observation",
        "/fhir/Patient/../$everything",
    ] {
        corpus.expect(
            format!("GET {target}"),
            400,
            raw("GET", target.as_bytes(), &[], b""),
        );
    }
    corpus.expect(
        "a body id of ..",
        400,
        json_post(
            "Patient",
            json!({"resourceType": "Patient", "id": ".."})
                .to_string()
                .into_bytes(),
        ),
    );
    for target in [
        "/fhir/../../etc/passwd",
        "/fhir/%2E%2E/%2E%2E/etc/passwd",
        "/fhir//Patient",
        "/fhir/Patient/x/_history/-1",
        "/fhir/%00",
        "/fhir/Patient/a%2Fb",
        "/fhir/Patient?name=[a",
    ] {
        corpus.add(
            format!("GET {target}"),
            raw("GET", target.as_bytes(), &[], b""),
        );
    }
    for method in ["FOO", "TRACE", "OPTIONS", "PATCH", "CONNECT"] {
        corpus.add(
            format!("{method} /fhir/Patient"),
            raw(method, b"/fhir/Patient", &[], b""),
        );
    }
    for (name, value) in [
        ("if-match", "garbage"),
        ("if-match", "W/\"99999999999999999999999\""),
        ("prefer", "return=*"),
        ("accept", "*/*;q=x"),
        ("accept", "application/fhir+xml"),
        ("authorization", "Bearer garbage"),
    ] {
        corpus.add(
            format!("PUT with {name}: {value}"),
            sent(
                http.put(url("Patient/headed"))
                    .header("content-type", FHIR_JSON)
                    .header(name, value)
                    .body(json!({"resourceType": "Patient", "id": "headed"}).to_string()),
            ),
        );
    }

    let count = corpus.run(&fhir.server);
    assert!(count > 150, "the corpus has {count} requests");
    still_serving(&mut fhir, &read_path);
}

/// A `Host` that is a valid authority is what `Location` and `fullUrl` are made of.
#[test]
fn a_valid_host_is_used_in_locations() {
    let fhir = Fhir::start();
    let body = patient("Host").to_string();
    for host in ["fhir.example.org:9443", "[::1]:8080", "fhir_service"] {
        let reply = Connection::open(&fhir.server).send(&request(
            "POST",
            b"/fhir/Patient",
            &[("host", host), ("content-type", FHIR_JSON)],
            body.as_bytes(),
        ));
        assert_eq!(reply.status, 201, "{host}");
        let location = reply.header("location").expect("Location");
        assert!(
            location.starts_with(&format!("http://{host}/fhir/Patient/")),
            "{host}: {location}"
        );
    }
    // A proxy's forwarded host and scheme (any case) are used likewise.
    let reply = Connection::open(&fhir.server).send(&request(
        "POST",
        b"/fhir/Patient",
        &[
            ("x-forwarded-host", "public.example"),
            ("x-forwarded-proto", "HTTPS"),
            ("content-type", FHIR_JSON),
        ],
        body.as_bytes(),
    ));
    assert_eq!(reply.status, 201);
    let location = reply.header("location").expect("Location");
    assert!(
        location.starts_with("https://public.example/fhir/Patient/"),
        "{location}"
    );
}

/// Nested as deep as the JSON parser allows (127 levels, with `--max-json-depth 127`), every
/// recursive shape of R4 is created, read, searched, validated and put in a transaction without
/// overflowing a stack: fhirbolt's deserializer, the deepest, runs on a stack sized for it.
#[test]
fn resources_nested_as_deep_as_the_parser_allows_do_not_overflow_a_stack() {
    let mut fhir = Fhir::with(TestServer::start_with(&["--max-json-depth", "127"]));
    let read_path = sentinel(&fhir);
    for (resource, _) in nested_resources(127) {
        let kind = resource["resourceType"].as_str().unwrap().to_string();
        assert!(depth(&resource) >= 125, "{kind}: {}", depth(&resource));
        let created = fhir.post(&kind, &resource);
        created.expect(201, &format!("{kind} nested {} deep", depth(&resource)));
        let id = created.json()["id"].as_str().unwrap().to_string();
        for path in [
            format!("{kind}/{id}"),
            format!("{kind}/{id}?_summary=true"),
            format!("{kind}?_content=leaf"),
            format!("{kind}?_id={id}"),
            "_history".to_string(),
        ] {
            fhir.get(&path).expect(200, &path);
        }
        let validated = fhir.post(&format!("{kind}/$validate"), &resource);
        judge(
            &format!("$validate of {kind}"),
            validated.status,
            validated.header("content-type").as_deref(),
            validated.text.as_bytes(),
        );
        let mut updated = resource.clone();
        updated["id"] = json!(id);
        fhir.put(&format!("{kind}/{id}"), &updated)
            .expect(200, "update");
    }
    // One more level is the parser's refusal, still a 400 OperationOutcome.
    let too_deep = nested_text(128, false);
    let reply = fhir.post("Patient", too_deep);
    judge(
        "128 levels",
        reply.status,
        reply.header("content-type").as_deref(),
        reply.text.as_bytes(),
    );
    assert_eq!(reply.status, 400);
    still_serving(&mut fhir, &read_path);
}

/// Every route that reads a body honours `--max-body`, with a `Content-Length` or chunked
/// without one (413); the Bundle entry limit counts the entries of Bundles inside entries.
#[test]
fn body_and_bundle_limits_hold_on_every_route() {
    let mut fhir = Fhir::with(TestServer::start_with(&[
        "--max-body",
        "2000",
        "--max-bundle-entries",
        "4",
    ]));
    let read_path = sentinel(&fhir);
    let big = json!({"resourceType": "Parameters", "parameter": [{"name": "x",
        "valueString": "x".repeat(3000)}]})
    .to_string();
    for (method, path, content_type) in [
        ("POST", "Patient", FHIR_JSON),
        ("PUT", "Patient/big", FHIR_JSON),
        ("PUT", "Patient?name=big", FHIR_JSON),
        ("POST", "", FHIR_JSON),
        ("POST", "Patient/$validate", FHIR_JSON),
        ("POST", "ValueSet/$expand", FHIR_JSON),
        ("POST", "CodeSystem/$lookup", FHIR_JSON),
        (
            "POST",
            "Patient/_search",
            "application/x-www-form-urlencoded",
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for chunked in [false, true] {
            let body = if chunked {
                reqwest::blocking::Body::new(std::io::Cursor::new(big.clone().into_bytes()))
            } else {
                big.clone().into()
            };
            let reply = send(
                fhir.http
                    .request(method.clone(), fhir.url(path))
                    .header("content-type", content_type)
                    .body(body),
            );
            let what = format!("{method} {path} of 3 KB (chunked: {chunked})");
            judge(
                &what,
                reply.status,
                reply.header("content-type").as_deref(),
                reply.text.as_bytes(),
            );
            assert_eq!(reply.status, 413, "{what}");
        }
    }

    let entry = |resource: Value| {
        json!({"resource": resource, "request": {"method": "POST", "url":
            resource["resourceType"]}})
    };
    let collection = |count: usize| {
        json!({"resourceType": "Bundle", "type": "collection", "entry":
            (0..count).map(|_| json!({"resource": {"resourceType": "Basic",
                "code": {"text": "b"}}})).collect::<Vec<_>>()})
    };
    for kind in ["batch", "transaction"] {
        let bundle = |entries: Vec<Value>| {
            json!({"resourceType": "Bundle", "type": kind,
            "entry": entries})
        };
        let small = bundle(vec![entry(
            json!({"resourceType": "Basic", "code": {"text": "b"}}),
        )]);
        fhir.bundle(&small).expect(200, "one entry");
        let five = bundle(
            (0..5)
                .map(|_| {
                    entry(json!({"resourceType": "Basic",
            "code": {"text": "b"}}))
                })
                .collect(),
        );
        let nested = bundle(vec![entry(collection(4))]);
        let fits = bundle(vec![entry(collection(3))]);
        for (what, body, status) in [
            ("five entries", five, 413),
            ("a Bundle of four inside", nested, 413),
        ] {
            let reply = fhir.bundle(&body);
            let what = format!("a {kind} with {what}");
            judge(
                &what,
                reply.status,
                reply.header("content-type").as_deref(),
                reply.text.as_bytes(),
            );
            assert_eq!(reply.status, status, "{what}");
        }
        fhir.bundle(&fits).expect(200, "a Bundle of three inside");
    }
    still_serving(&mut fhir, &read_path);
}

/// What actix-http refuses before fhirlake sees the request: the right 4xx, but with an empty
/// body, since it writes these answers itself and has no hook for them (README, Limits). The
/// server goes on serving.
#[test]
fn what_the_http_layer_refuses_itself_is_a_bodyless_4xx() {
    let mut fhir = Fhir::start();
    let read_path = sentinel(&fhir);
    let long = format!("/fhir/Patient?name={}", "x".repeat(70_000));
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("x-many-{i}"), "v".to_string()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let huge = "h".repeat(140_000);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "a URL of 70 KB",
            request("GET", long.as_bytes(), &[], b""),
            400,
        ),
        (
            "200 headers",
            request("GET", b"/fhir/Patient", &many, b""),
            431,
        ),
        (
            "a header of 140 KB",
            request("GET", b"/fhir/Patient", &[("x-huge", &huge)], b""),
            431,
        ),
        ("a malformed request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "raw bytes that are not UTF-8 in the path",
            request("GET", b"/fhir/Pat\xffient", &[], b""),
            400,
        ),
        (
            "a NUL in a header",
            request("GET", b"/fhir/Patient", &[("x-nul", "a\0b")], b""),
            400,
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /fhir/Patient HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a Content-Length that is no number",
            b"POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, bytes, status) in cases {
        let reply = Connection::open(&fhir.server).send(&bytes);
        assert_eq!(reply.status, status, "{what}");
        assert!(
            reply.body.is_empty(),
            "{what}: a body after all; move it to the corpus"
        );
    }
    still_serving(&mut fhir, &read_path);
}

// ---- injected panics ------------------------------------------------------------------------

/// A server with the tests' faults enabled, its stderr (error lines) collected, and its data
/// directory's temporary parent (removed when dropped).
fn faulty_server() -> (Fhir, Arc<Mutex<String>>, tempfile::TempDir) {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let mut command = TestServer::command(&data, &[]);
    command
        .env("FHIRLAKE_TEST_FAULTS", "1")
        .env("RUST_LOG", "error")
        .stderr(Stdio::piped());
    let mut server = TestServer::spawn(command, &data);
    let stderr = server.take_stderr().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let collected = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let mut log = collected.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    (Fhir::with(server), log, temp)
}

/// Waits until a line of `log` holds every one of `parts` (the server writes it before it
/// answers; the collecting thread may lag a little).
fn logged(log: &Mutex<String>, parts: &[&str]) -> String {
    for _ in 0..600 {
        if let Some(line) = log
            .lock()
            .unwrap()
            .lines()
            .find(|line| parts.iter().all(|part| line.contains(part)))
        {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no log line with {parts:?}: {}", log.lock().unwrap());
}

#[test]
fn a_panic_in_a_handler_is_a_500_outcome_naming_the_request_and_the_connection_lives() {
    let (mut fhir, log, _temp) = faulty_server();
    let read_path = sentinel(&fhir);
    let mut connection = Connection::open(&fhir.server);
    let keep_alive = |target: &str, id: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-Id: {id}\r\n\r\n")
            .into_bytes()
    };
    let reply = connection.send(&keep_alive(
        "/fhir/no/such/route/fault-handler",
        "panic-test-1",
    ));
    assert_eq!(reply.status, 500);
    judge_outcome_500(&reply.body, "panic-test-1");
    assert_eq!(reply.header("x-request-id"), Some("panic-test-1"));
    // The same connection serves the next request.
    let reply = connection.send(&keep_alive(&format!("/fhir/{read_path}"), "after-panic"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-id"), Some("after-panic"));
    let line = logged(&log, &["panic", "panic-test-1", "fault"]);
    assert!(line.contains("ERROR"), "{line}");
    // A generated request id is named the same way.
    let reply = fhir.get("no/such/route/fault-handler");
    reply.expect(500, "a second panic");
    let id = reply.header("x-request-id").expect("a request id");
    judge_outcome_500(reply.text.as_bytes(), &id);
    still_serving(&mut fhir, &read_path);
}

/// A 500 OperationOutcome whose diagnostics name `request_id`.
fn judge_outcome_500(body: &[u8], request_id: &str) {
    let outcome: Value = serde_json::from_slice(body).expect("an OperationOutcome");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "exception");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains(request_id), "{diagnostics}");
}

#[test]
fn a_panic_in_the_writer_fails_its_requests_and_the_store_goes_on() {
    let (mut fhir, log, _temp) = faulty_server();
    let read_path = sentinel(&fhir);
    let faulty = json!({"resourceType": "Patient", "id": "fault-writer"});
    let reply = fhir.update(&faulty);
    reply.expect(500, "the write that panics");
    let outcome = reply.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    logged(&log, &["panic", "Writer"]);
    // A transaction with it is refused whole: its other write is not stored either.
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "beside"},
            "request": {"method": "PUT", "url": "Patient/beside"}},
        {"resource": faulty, "request": {"method": "PUT", "url": "Patient/fault-writer"}}]});
    let reply = fhir.bundle(&transaction);
    reply.expect(500, "a transaction with the write that panics");
    assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    fhir.get("Patient/beside")
        .expect(404, "nothing of the transaction");
    fhir.get("Patient/fault-writer")
        .expect(404, "nothing of the write");
    // The writer goes on.
    let after = patient("After");
    let created = fhir.create(&after);
    let after_path = format!("Patient/{}", created["id"].as_str().unwrap());
    assert_eq!(fhir.system_history().len(), 2, "the sentinel and After");
    still_serving(&mut fhir, &read_path);
    // And the store opens again with everything acknowledged and nothing else.
    let status = fhir.server.terminate();
    assert!(status.success(), "{status}");
    let fhir = Fhir::on(&fhir.server.data.clone(), &[]);
    fhir.get(&read_path)
        .expect(200, "the sentinel after a restart");
    fhir.get(&after_path).expect(200, "After after a restart");
    fhir.get("Patient/beside")
        .expect(404, "beside after a restart");
    assert_eq!(fhir.system_history().len(), 2);
    fhir.create(&patient("Later"));
}

#[test]
fn a_panic_in_the_indexer_costs_only_what_it_was_indexing() {
    let (mut fhir, log, _temp) = faulty_server();
    let read_path = sentinel(&fhir);
    let with = |id: &str, family: &str| {
        let mut resource = patient(family);
        resource["id"] = json!(id);
        resource
    };
    fhir.update(&with("fault-extract", "Faulty"))
        .expect(201, "extraction panics");
    fhir.update(&with("fault-index-commit", "Retried"))
        .expect(201, "the index commit panics once");
    fhir.update(&with("plain", "Plain")).expect(201, "plain");
    let found = |query: &str| -> Vec<String> {
        let bundle = fhir
            .get(&format!("Patient?{query}"))
            .expect(200, query)
            .json();
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        assert!(
            entries.iter().all(|e| e["search"]["mode"] != "outcome"),
            "{query}: the index is behind: {bundle}"
        );
        entries
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    // The batch whose commit panicked was retried: all three are indexed, and the index
    // follows later writes.
    assert_eq!(found("name=Plain"), ["plain"]);
    assert_eq!(found("name=Retried"), ["fault-index-commit"]);
    logged(&log, &["panic", "IndexCommit"]);
    // The resource whose extraction panicked is there, without the parameters that panicked
    // (all of them, here) but with its text.
    assert_eq!(found("name=Faulty"), Vec::<String>::new());
    assert_eq!(found("_content=Faulty"), ["fault-extract"]);
    logged(&log, &["fault-extract", "left out"]);
    fhir.update(&with("later", "Later")).expect(201, "later");
    assert_eq!(found("name=Later"), ["later"]);
    still_serving(&mut fhir, &read_path);
}

// ---- property tests -------------------------------------------------------------------------

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 100,
        ..Config::default()
    })
}

/// Judges an answer inside a property test.
fn judged(what: &str, reply: &Reply) -> Result<(), TestCaseError> {
    let content_type = reply.header("content-type");
    std::panic::catch_unwind(|| {
        judge(
            what,
            reply.status,
            content_type.as_deref(),
            reply.text.as_bytes(),
        )
    })
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "judged wrong".into());
        TestCaseError::fail(message)
    })
}

/// A search parameter name: real ones, with modifiers, chains and `_has`, and junk.
fn parameter_name() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![
        "name",
        "family",
        "given",
        "gender",
        "birthdate",
        "identifier",
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_content",
        "_text",
        "general-practitioner",
        "organization",
        "link",
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_type",
        "address-city",
        "telecom",
        "active",
        "deceased",
        "subject",
        "code",
        "date",
        "value-quantity",
        "patient",
        "_has",
        "_list",
        "_filter",
        "*",
        "",
    ]);
    let modifier = prop::sample::select(vec![
        "",
        "",
        "",
        ":exact",
        ":contains",
        ":missing",
        ":not",
        ":text",
        ":above",
        ":below",
        ":in",
        ":Patient",
        ":iterate",
        ":*",
        ":",
        "::",
    ]);
    let chain = prop::sample::select(vec![
        "",
        "",
        "",
        ".name",
        ".identifier",
        ".organization.name",
        ".",
        ".*",
        ":Observation:subject:code",
        ":Patient:link:name",
    ]);
    (base, modifier, chain).prop_map(|(b, m, c)| format!("{b}{m}{c}"))
}

/// A search value: prefixes, FHIR and search-engine syntax, numbers, dates, junk.
fn parameter_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        "(eq|ne|gt|lt|ge|le|sa|eb|ap)?[0-9.e+-]{1,12}",
        "[0-9]{1,4}(-[0-9]{2}(-[0-9]{2}(T[0-9:.]{1,12}(Z|[+-][0-9:]{1,6})?)?)?)?",
        "[a-z]{0,6}\\|[a-z0-9]{0,6}(\\|[a-z]{0,3})?",
        prop::sample::select(vec![
            "*",
            "*:*:*",
            "a OR b",
            "[a TO z]",
            "field:x",
            "\"",
            "\\",
            "Patient/..",
            "..",
            "%",
            "\u{0}",
            "é",
            "\u{FFFD}",
            "-",
            ",",
            ",,,",
            "null",
            "1e400",
        ])
        .prop_map(String::from),
    ]
}

#[test]
fn generated_search_urls_are_never_answered_5xx() {
    let mut fhir = Fhir::start();
    let read_path = sentinel(&fhir);
    let types = prop::sample::select(vec![
        "Patient",
        "Observation",
        "",
        "Patient/x/Observation",
        "Patient/x/*",
        "Foo",
        "Patient/_search",
        "_history",
        "Patient/x/$everything",
    ]);
    let pairs = prop::collection::vec((parameter_name(), parameter_value()), 0..6);
    let strategy = (types, pairs, any::<bool>());
    let result = runner(64).run(&strategy, |(path, pairs, post)| {
        let reply = if post && path.ends_with("_search") {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            send(
                fhir.http
                    .post(fhir.url(path))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body),
            )
        } else {
            send(fhir.http.get(fhir.url(path)).query(&pairs))
        };
        judged(&format!("{path} {pairs:?}"), &reply)
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    still_serving(&mut fhir, &read_path);
}

/// One generated Bundle entry, which may refer to the other entries' fullUrls.
fn bundle_entry() -> impl Strategy<Value = Value> {
    let full_url = prop::sample::select(vec![
        None,
        Some("urn:uuid:5a3e9c1e-7b1d-4d4e-9a1c-000000000001"),
        Some("urn:uuid:5a3e9c1e-7b1d-4d4e-9a1c-000000000002"),
        Some("urn:uuid:5a3e9c1e-7b1d-4d4e-9a1c-000000000003"),
        Some("Patient/p1"),
        Some("http://example.org/fhir/Patient/p2"),
        Some("Patient/.."),
        Some("urn:uuid:"),
        Some(""),
    ]);
    let reference = prop::sample::select(vec![
        "urn:uuid:5a3e9c1e-7b1d-4d4e-9a1c-000000000001",
        "urn:uuid:5a3e9c1e-7b1d-4d4e-9a1c-000000000002",
        "urn:uuid:5a3e9c1e-7b1d-4d4e-9a1c-000000000003",
        "Patient/p1",
        "Patient/..",
        "Patient?name=*",
        "Patient?_id=p1",
        "#contained",
        "http://example.org/fhir/Patient/p2",
    ]);
    let request = prop::sample::select(vec![
        ("POST", "Patient"),
        ("POST", "Observation"),
        ("PUT", "Patient/p1"),
        ("PUT", "Patient/p2"),
        ("PUT", "Patient/.."),
        ("DELETE", "Patient/p1"),
        ("DELETE", "Patient?name=x"),
        ("GET", "Patient/p1"),
        ("GET", "Patient?_include=*:*:*"),
        ("PATCH", "Patient/p1"),
        ("POST", "Bundle"),
        ("HEAD", ""),
    ]);
    let if_none_exist = prop::option::of(prop::sample::select(vec!["name=*", "_id=p1", "x"]));
    (full_url, reference, request, if_none_exist, any::<bool>()).prop_map(
        |(full_url, reference, (method, url), if_none_exist, nested)| {
            let resource_type = url.split(['/', '?']).next().unwrap_or_default();
            let id = url.split('/').nth(1);
            let mut resource = match resource_type {
                "Observation" => json!({"resourceType": "Observation", "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": reference}}),
                "Bundle" => json!({"resourceType": "Bundle", "type": "collection",
                    "entry": [{"fullUrl": reference, "resource": {"resourceType": "Patient",
                        "link": [{"other": {"reference": reference}, "type": "seealso"}]}}]}),
                _ => json!({"resourceType": "Patient",
                    "link": [{"other": {"reference": reference}, "type": "seealso"}]}),
            };
            if let Some(id) = id {
                resource["id"] = json!(id);
            }
            if nested {
                resource = json!({"resourceType": "Bundle", "type": "collection",
                    "entry": [{"resource": resource}]});
            }
            let mut entry = json!({"request": {"method": method, "url": url}});
            if matches!(method, "POST" | "PUT") {
                entry["resource"] = resource;
            }
            if let Some(full_url) = full_url {
                entry["fullUrl"] = json!(full_url);
            }
            if let Some(criteria) = if_none_exist {
                entry["request"]["ifNoneExist"] = json!(criteria);
            }
            entry
        },
    )
}

#[test]
fn generated_bundles_are_never_answered_5xx() {
    let mut fhir = Fhir::start();
    let read_path = sentinel(&fhir);
    let kind = prop::sample::select(vec!["batch", "transaction"]);
    let entries = prop::collection::vec(bundle_entry(), 1..6);
    let result = runner(48).run(&(kind, entries), |(kind, entries)| {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": entries});
        let reply = fhir.bundle(&bundle);
        judged(&bundle.to_string(), &reply)?;
        if reply.status == 200 {
            for entry in reply.json()["entry"].as_array().into_iter().flatten() {
                let status = entry["response"]["status"].as_str().unwrap_or_default();
                prop_assert!(
                    !status.starts_with('5') || status.starts_with("501"),
                    "{}: {}",
                    status,
                    bundle
                );
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    still_serving(&mut fhir, &read_path);
}
