//! Patient isolation over HTTP: a `patient/` token learns nothing about other patients.
//!
//! Twin servers get the same requests in the same order. On `hidden` the other patient's data
//! exists (interleaved with the patient's own, so that hidden versions sit between visible
//! ones); on `absent` it never did. Every answer the patient's tokens get must be the same on
//! both, byte for byte once what differs between any two servers is normalized (timestamps,
//! server-assigned ids and request ids, search snapshot ids): status, headers and body. So a
//! hidden resource answers as an absent one, for every interaction and operation, and pages,
//! cursors, links and totals do not depend on hidden versions.
//!
//! The other tests here check the rule for writes under `patient/` scopes (every patient a
//! resource belongs to must be the token's) and which references are this server's.

mod common;

use common::TestServer;
use common::auth::{HS256, bearer, keys, observation, set, token};
use common::fhir::{FhirClient, Reply, assert_outcome, send};
use regex::Regex;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::LazyLock;

/// The public base both twins are configured with (`--base-url`): references under it are
/// this server's, whatever the port a twin listens on.
const BASE: &str = "https://fhirlake.test/fhir";

/// Whose data a seeding write is.
#[derive(Clone, Copy, PartialEq)]
enum Whose {
    /// The patient's own (or nobody's): written on both twins.
    Own,
    /// The other patient's: written on `hidden` only.
    Other,
}

/// One request: method, path under the base, body, headers.
#[derive(Clone)]
struct Ask {
    method: Method,
    path: String,
    body: Option<Body>,
    headers: Vec<(&'static str, String)>,
}

#[derive(Clone)]
enum Body {
    Json(Value),
    Form(Vec<(String, String)>),
}

fn get(path: &str) -> Ask {
    ask(Method::GET, path, None)
}

fn ask(method: Method, path: &str, body: Option<Value>) -> Ask {
    Ask {
        method,
        path: path.to_string(),
        body: body.map(Body::Json),
        headers: Vec::new(),
    }
}

impl Ask {
    fn header(mut self, name: &'static str, value: &str) -> Ask {
        self.headers.push((name, value.to_string()));
        self
    }

    fn send(&self, client: &FhirClient) -> Reply {
        let mut request = client
            .http
            .request(self.method.clone(), client.url(&self.path));
        match &self.body {
            Some(Body::Json(body)) => {
                request = request
                    .header("content-type", common::FHIR_JSON)
                    .body(body.to_string());
            }
            Some(Body::Form(pairs)) => request = request.form(pairs),
            None => {}
        }
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        send(request)
    }
}

/// Twin servers (see the module documentation) and an all-powerful client of each.
struct Twins {
    hidden: TestServer,
    absent: TestServer,
}

impl Twins {
    /// Starts both and writes [`seed`]: everything on `hidden`, the patient's own on `absent`.
    fn start() -> Twins {
        let args = [HS256, &["--base-url", BASE]].concat();
        let twins = Twins {
            hidden: TestServer::start_with(&args),
            absent: TestServer::start_with(&args),
        };
        let admin = token("system/*.cruds", None);
        for (whose, request) in seed() {
            for (server, on) in [(&twins.hidden, true), (&twins.absent, whose == Whose::Own)] {
                if !on {
                    continue;
                }
                let reply = request.send(&bearer(server, &admin));
                assert!(reply.status < 300, "seed {}: {}", request.path, reply.text);
            }
        }
        // The transaction of one commit that holds a resource of each patient.
        let entry = |resource: Value| {
            let path = format!("Observation/{}", resource["id"].as_str().unwrap());
            json!({"resource": resource, "request": {"method": "PUT", "url": path}})
        };
        let own = entry(observation("oa-tx", "pa", "laboratory", None));
        let other = entry(observation("ob-tx", "pb", "laboratory", None));
        for (server, entries) in [
            (&twins.hidden, vec![own.clone(), other]),
            (&twins.absent, vec![own]),
        ] {
            let transaction =
                json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            bearer(server, &admin)
                .bundle(&transaction)
                .expect(200, "seed transaction");
        }
        let last = observation("ob-last", "pb", "laboratory", None);
        bearer(&twins.hidden, &admin)
            .put("Observation/ob-last", &last)
            .expect(201, "the newest change is the other patient's");
        twins
    }

    /// Sends `request` with `token` to both twins; asserts that the normalized answers are
    /// the same and returns `hidden`'s.
    fn same(&self, token: &str, request: &Ask) -> Reply {
        let [hidden, _] = self.same_each(token, [request, request]);
        hidden
    }

    /// Sends `requests[0]` to `hidden` and `requests[1]` to `absent` with `token`; asserts that
    /// the normalized answers are the same and returns both.
    fn same_each(&self, token: &str, requests: [&Ask; 2]) -> [Reply; 2] {
        let hidden = requests[0].send(&bearer(&self.hidden, token));
        let absent = requests[1].send(&bearer(&self.absent, token));
        let what = format!("{} {}", requests[0].method, requests[0].path);
        assert_eq!(
            normalized(&hidden),
            normalized(&absent),
            "{what}: the answers differ between a hidden and an absent resource"
        );
        [hidden, absent]
    }

    /// [`Twins::same`] for a paged search or history, page after page through the `next`
    /// links; asserts that every page but the last is full (of matches) when `count` is given.
    /// Returns the entries of every page (none when the first is refused).
    /// Each twin pages through its own links: a cursor names the last match by its sort key,
    /// which (its lastUpdated) differs between the twins.
    fn same_pages(&self, token: &str, first: &Ask, count: Option<usize>) -> Vec<Value> {
        let mut requests = [first.clone(), first.clone()];
        let mut entries = Vec::new();
        for _ in 0..200 {
            let replies = self.same_each(token, [&requests[0], &requests[1]]);
            let reply = &replies[0];
            if reply.status != 200 {
                // Refused alike (a token without the scope).
                return entries;
            }
            let bundle = reply.json();
            let page: Vec<Value> = bundle["entry"].as_array().cloned().unwrap_or_default();
            let next = common::fhir::link(&bundle, "next");
            let counted = page
                .iter()
                .filter(|e| {
                    !["outcome", "include"].contains(&e["search"]["mode"].as_str().unwrap_or(""))
                })
                .count();
            if let (Some(count), Some(_)) = (count, &next) {
                assert_eq!(
                    counted, count,
                    "{}: a page short of _count",
                    requests[0].path
                );
            }
            entries.extend(page);
            if next.is_none() {
                return entries;
            }
            for (request, reply) in requests.iter_mut().zip(&replies) {
                let next = common::fhir::link(&reply.json(), "next").expect("a next link");
                // Links name the configured public base; each twin is asked on its own port.
                let relative = next.strip_prefix(BASE).expect("a link under the base");
                *request = get(relative);
            }
        }
        panic!("{}: paging does not end", first.path)
    }
}

/// The seeding writes, in order; the other patient's are interleaved with the patient's own.
fn seed() -> Vec<(Whose, Ask)> {
    use Whose::{Other, Own};
    let put = |resource: Value| {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        ask(Method::PUT, &path, Some(resource))
    };
    let mut ob_lab = observation("ob-lab", "pb", "laboratory", None);
    ob_lab["performer"] = json!([{"reference": "Practitioner/dr"},
        {"reference": "Practitioner/dr2"}]);
    let mut oa_vital = observation("oa-vital", "pa", "vital-signs", None);
    let first_vital = oa_vital.clone();
    oa_vital["status"] = json!("amended");
    let mut ob_2 = observation("ob-2", "pb", "vital-signs", None);
    let first_2 = ob_2.clone();
    ob_2["status"] = json!("amended");
    vec![
        (
            Own,
            put(json!({"resourceType": "Patient", "id": "pa", "name": [{"family": "Alpha"}]})),
        ),
        (
            Other,
            put(json!({"resourceType": "Patient", "id": "pb", "name": [{"family": "Beta"}]})),
        ),
        (
            Own,
            put(json!({"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doc"}]})),
        ),
        (
            Own,
            put(
                json!({"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Second"}]}),
            ),
        ),
        (Other, put(ob_lab)),
        (
            Own,
            put(observation(
                "oa-lab",
                "pa",
                "laboratory",
                Some("Practitioner/dr"),
            )),
        ),
        (Other, put(first_2)),
        (Other, put(ob_2)),
        (Own, put(first_vital)),
        (
            Other,
            put(
                json!({"resourceType": "Encounter", "id": "eb", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB"},
                "subject": {"reference": "Patient/pb"}}),
            ),
        ),
        (Own, put(oa_vital)),
        (Other, put(observation("ob-del", "pb", "laboratory", None))),
        (Other, ask(Method::DELETE, "Observation/ob-del", None)),
        (
            Own,
            put(observation(
                "oa-shared",
                "pa",
                "laboratory",
                Some("Patient/pb"),
            )),
        ),
        // Another server's patient pa is not this server's.
        (
            Other,
            put(observation(
                "ox-ext",
                "https://elsewhere.example/fhir/Patient/pa",
                "laboratory",
                None,
            )),
        ),
        // This server's own base: the patient's.
        (
            Own,
            put(observation(
                "oa-base",
                &format!("{BASE}/Patient/pa"),
                "laboratory",
                None,
            )),
        ),
        (
            Other,
            put(
                json!({"resourceType": "Subscription", "id": "sub-b", "status": "off",
                "reason": "test", "criteria": "Observation?subject=Patient/pb",
                "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}}),
            ),
        ),
    ]
}

/// An answer as text, with what differs between any two servers normalized: the status, the
/// headers (but `date` and `content-length`) sorted, then the body.
fn normalized(reply: &Reply) -> String {
    let mut headers: Vec<String> = reply
        .headers
        .iter()
        .filter(|(name, _)| !["date", "content-length"].contains(&name.as_str()))
        .map(|(name, value)| format!("{name}: {}", normalize(value.to_str().unwrap())))
        .collect();
    headers.sort();
    format!(
        "{}\n{}\n\n{}",
        reply.status,
        headers.join("\n"),
        normalize(&reply.text)
    )
}

/// `text` with instants, HTTP dates, UUIDs (server-assigned ids, request ids), search snapshot
/// ids and the instant of a history or search cursor replaced by placeholders.
fn normalize(text: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
        [
            (
                r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
                "<instant>",
            ),
            (
                r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT",
                "<http-date>",
            ),
            (
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "<uuid>",
            ),
            (r"_snapshot=\d+", "_snapshot=<snapshot>"),
            // A history cursor starts with the lastUpdated (µs) of the last entry shown.
            (r"_cursor=\d+_", "_cursor=<instant>_"),
            // A search cursor starts with the sort key of the last match shown: by default its
            // lastUpdated, 8 bytes in hex.
            (r"_cursor=[0-9a-f]{16}\.", "_cursor=<instant>."),
        ]
        .into_iter()
        .map(|(pattern, placeholder)| (Regex::new(pattern).unwrap(), placeholder))
        .collect()
    });
    RULES
        .iter()
        .fold(text.to_string(), |text, (pattern, placeholder)| {
            pattern.replace_all(&text, *placeholder).into_owned()
        })
}

/// The patient's tokens: reading, writing, and reading through a scope query (judged in a
/// scratch index rather than by membership).
fn patient_tokens() -> [String; 3] {
    [
        token("patient/*.rs user/Practitioner.rs", Some("pa")),
        token("patient/*.cruds user/Practitioner.rs", Some("pa")),
        token(
            "patient/Observation.rs?category=laboratory patient/Patient.rs",
            Some("pa"),
        ),
    ]
}

/// Reads, searches, includes, chains, `_has`, compartments, `$everything`, `$validate`,
/// terminology, `$changes` and Subscriptions: the same on both twins.
#[test]
fn reads_and_searches_answer_alike_for_hidden_and_absent() {
    let twins = Twins::start();
    for token in patient_tokens() {
        let reads = [
            "Patient/pb",
            "Patient/pa",
            "Observation/ob-lab",
            "Observation/ob-del",
            "Observation/ox-ext",
            "Observation/oa-base",
            "Observation/nothing",
            "Encounter/eb",
            "Subscription/sub-b",
            "Observation/ob-lab/_history/1",
            "Observation/ob-2/_history/2",
            "Observation/ob-del/_history/2",
            "Observation/ob-lab?_summary=true",
            "Observation/ob-lab?_elements=status",
        ];
        for path in reads {
            twins.same(&token, &get(path));
        }
        twins.same(
            &token,
            &get("Observation/ob-lab").header("if-none-match", "W/\"1\""),
        );
        let searches = [
            "Observation",
            "Observation?subject=Patient/pb",
            "Observation?subject=pb",
            "Observation?subject=Patient/pa",
            "Observation?subject=pa",
            "Observation?subject=https://elsewhere.example/fhir/Patient/pa",
            "Observation?_id=ob-lab,oa-lab,ox-ext",
            "Observation?_total=accurate&_sort=-_lastUpdated",
            "Observation?_summary=count",
            "Patient",
            "Patient?name=Beta",
            "Patient?_content=Beta",
            "?_type=Patient,Observation,Encounter",
            "Encounter?patient=pb",
            "Subscription",
            "Observation?_include=Observation:performer&_include=Observation:subject",
            "Patient?_revinclude=Observation:subject",
            "Practitioner?_revinclude=Observation:performer",
            // From a hidden Observation, iterating would reach a visible Practitioner.
            "Practitioner?_id=dr&_revinclude=Observation:performer\
             &_include:iterate=Observation:performer",
            "Observation?subject:Patient.name=Beta",
            "Observation?performer:Practitioner.name=Second",
            "Practitioner?_has:Observation:performer:subject=Patient/pb",
            "Practitioner?_has:Observation:performer:category=laboratory",
            "Patient?_has:Observation:subject:_id=ob-lab",
            "Patient/pb/Observation",
            "Patient/pb/*",
            "Patient/pa/*",
            "Encounter/eb/*",
            "Patient/pb/$everything",
            "Patient/pa/$everything",
            "Encounter/eb/$everything",
        ];
        for path in searches {
            twins.same(&token, &get(path));
        }
        let form = |pairs: &[(&str, &str)]| Ask {
            method: Method::POST,
            path: "Observation/_search".into(),
            body: Some(Body::Form(
                pairs
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            )),
            headers: Vec::new(),
        };
        twins.same(&token, &form(&[("subject", "Patient/pb")]));
        twins.same(&token, &form(&[("category", "laboratory")]));
        // Paged one by one: every page full, the same links.
        for path in [
            "Observation?_count=1",
            "?_type=Patient,Observation&_count=1&_total=accurate",
            "Patient/pa/$everything?_count=1",
        ] {
            twins.same_pages(&token, &get(path), Some(1));
        }

        // $validate: of a hidden id as of an absent one, in every mode.
        let mine = observation("ob-lab", "pa", "laboratory", None);
        for mode in ["", "?mode=create", "?mode=update", "?mode=delete"] {
            let path = format!("Observation/ob-lab/$validate{mode}");
            twins.same(&token, &ask(Method::POST, &path, Some(mine.clone())));
            twins.same(&token, &ask(Method::POST, &path, None));
            twins.same(&token, &get(&path));
            let patient = format!("Patient/pb/$validate{mode}");
            twins.same(&token, &get(&patient));
        }
        let parameters = json!({"resourceType": "Parameters", "parameter": [
            {"name": "mode", "valueCode": "delete"}]});
        twins.same(
            &token,
            &ask(
                Method::POST,
                "Observation/ob-del/$validate",
                Some(parameters),
            ),
        );

        // Terminology touches no patient data.
        for path in [
            "CodeSystem/$lookup?system=http://hl7.org/fhir/sid/icd-10-cm&code=E11.9",
            "ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender",
            "ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/administrative-gender\
             &system=http://hl7.org/fhir/administrative-gender&code=female",
        ] {
            twins.same(&token, &get(path));
        }
        // The change stream needs unconfined read: refused alike.
        for path in ["$changes?since=0", "$changes/stream?since=0"] {
            let reply = twins.same(&token, &get(path));
            assert_outcome(&reply, 403, &["forbidden"]);
        }
    }
}

/// History of the system, of a type and of an instance, paged one by one: every page full of
/// visible versions, links and cursors that do not depend on the hidden ones.
#[test]
fn history_pages_hold_visible_versions_only() {
    let twins = Twins::start();
    for token in patient_tokens() {
        for path in [
            "_history",
            "Observation/_history",
            "Patient/_history",
            "Encounter/_history",
            "Observation/oa-vital/_history",
        ] {
            let paged = format!("{path}?_count=1");
            let one_by_one = twins.same_pages(&token, &get(&paged), Some(1));
            let whole = twins.same_pages(&token, &get(path), None);
            assert_eq!(one_by_one, whole, "{path}: paged one by one");
            let paged = format!("{path}?_count=2");
            twins.same_pages(&token, &get(&paged), Some(2));
        }
        for path in [
            "Observation/ob-lab/_history",
            "Observation/ob-2/_history",
            "Observation/ob-del/_history",
            "Patient/pb/_history",
        ] {
            assert_outcome(&twins.same(&token, &get(path)), 404, &["not-found"]);
        }
    }
    // The whole history of the patient as the reading token sees it.
    let reader = &patient_tokens()[0];
    let entries = twins.same_pages(reader, &get("_history"), None);
    let seen: Vec<String> = entries
        .iter()
        .map(|e| {
            let r = &e["resource"];
            let url = e["request"]["url"].as_str().unwrap_or_default();
            format!("{}/{}", r["resourceType"], r["id"]).replace('"', "") + " " + url
        })
        .collect();
    assert_eq!(seen.len(), 9, "{seen:#?}");

    // A cursor made up to name a hidden version (of the transaction that also holds one of
    // the patient's) pages as one naming nothing.
    for token in patient_tokens() {
        // The lastUpdated of the transaction, in µs, on each twin.
        let at = |server: &TestServer| {
            let history = get("Observation/oa-tx/_history").send(&bearer(server, &token));
            let instant = history.json()["entry"][0]["response"]["lastModified"]
                .as_str()
                .unwrap()
                .to_string();
            let instant = time::OffsetDateTime::parse(
                &instant,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            instant.unix_timestamp_nanos() / 1000
        };
        let (hidden_at, absent_at) = (at(&twins.hidden), at(&twins.absent));
        for (name, vid) in [("ob-tx", 1), ("oa-tx", 1), ("nothing", 1)] {
            let cursor = |at: i128| format!("_history?_cursor={at}_Observation_{name}_{vid}");
            let hidden = get(&cursor(hidden_at)).send(&bearer(&twins.hidden, &token));
            let absent = get(&cursor(absent_at)).send(&bearer(&twins.absent, &token));
            assert_eq!(
                normalized(&hidden),
                normalized(&absent),
                "a cursor naming {name}"
            );
        }
    }
}

/// Writes of a hidden id answer as writes of an absent one, and change nothing.
#[test]
fn writes_answer_alike_for_hidden_and_absent() {
    let twins = Twins::start();
    let writer = &patient_tokens()[1];
    let mine = |id: &str| observation(id, "pa", "laboratory", None);
    let entry = |method: &str, url: &str, resource: Option<Value>, if_match: Option<&str>| {
        let mut entry = json!({"request": {"method": method, "url": url}});
        if let Some(resource) = resource {
            entry["resource"] = resource;
        }
        if let Some(tag) = if_match {
            entry["request"]["ifMatch"] = json!(tag);
        }
        entry
    };
    let bundle = |kind: &str, entries: Vec<Value>| json!({"resourceType": "Bundle", "type": kind, "entry": entries});
    let requests = vec![
        ask(Method::PUT, "Observation/ob-lab", Some(mine("ob-lab"))),
        ask(Method::PUT, "Observation/ob-lab", Some(mine("ob-lab"))).header("if-match", "W/\"1\""),
        ask(Method::PUT, "Observation/ob-del", Some(mine("ob-del"))),
        ask(Method::PUT, "Observation/nothing", Some(mine("nothing"))),
        ask(
            Method::PUT,
            "Patient/pb",
            Some(json!({"resourceType": "Patient", "id": "pb"})),
        ),
        ask(Method::DELETE, "Observation/ob-lab", None),
        ask(Method::DELETE, "Observation/ob-lab", None).header("if-match", "W/\"1\""),
        ask(Method::DELETE, "Observation/ob-lab", None).header("prefer", "return=OperationOutcome"),
        ask(Method::DELETE, "Observation/ob-del", None),
        ask(Method::DELETE, "Patient/pb", None),
        ask(Method::DELETE, "Subscription/sub-b", None),
        ask(
            Method::POST,
            "Observation",
            Some(observation("", "pb", "laboratory", None)),
        ),
        ask(
            Method::POST,
            "Observation",
            Some(observation("", "pa", "laboratory", Some("Patient/pb"))),
        ),
        ask(Method::POST, "Observation", Some(mine(""))).header("if-none-exist", "_id=ob-lab"),
        ask(Method::PUT, "Observation?_id=ob-lab", Some(mine(""))),
        ask(Method::PUT, "Observation?_id=ob-lab", Some(mine("ob-lab"))),
        ask(Method::DELETE, "Observation?_id=ob-lab", None),
        ask(Method::DELETE, "Observation?subject=Patient/pb", None),
        // PATCH, as a merge patch sent as FHIR JSON (fhirpy's way).
        ask(
            Method::PATCH,
            "Observation/ob-lab",
            Some(json!({"status": "amended"})),
        ),
        ask(
            Method::PATCH,
            "Observation/ob-del",
            Some(json!({"status": "amended"})),
        ),
        ask(
            Method::PATCH,
            "Observation?_id=ob-lab",
            Some(json!({"status": "amended"})),
        ),
        ask(
            Method::POST,
            "",
            Some(bundle(
                "batch",
                vec![
                    entry("GET", "Observation/ob-lab", None, None),
                    entry("GET", "Observation/ob-lab/_history/1", None, None),
                    entry("GET", "Patient/pb", None, None),
                    entry("PUT", "Observation/ob-lab", Some(mine("ob-lab")), None),
                    entry(
                        "PUT",
                        "Observation/ob-2",
                        Some(mine("ob-2")),
                        Some("W/\"2\""),
                    ),
                    entry("DELETE", "Observation/ob-lab", None, None),
                    entry("DELETE", "Observation/ob-2", None, Some("W/\"2\"")),
                    entry(
                        "POST",
                        "Observation",
                        Some(observation("", "pb", "laboratory", None)),
                        None,
                    ),
                    entry("DELETE", "Observation/nothing", None, None),
                ],
            )),
        ),
        ask(
            Method::POST,
            "",
            Some(bundle(
                "transaction",
                vec![entry(
                    "PUT",
                    "Observation/ob-lab",
                    Some(mine("ob-lab")),
                    None,
                )],
            )),
        ),
        ask(
            Method::POST,
            "",
            Some(bundle(
                "transaction",
                vec![entry("DELETE", "Observation/ob-lab", None, None)],
            )),
        ),
        ask(
            Method::POST,
            "",
            Some(bundle(
                "transaction",
                vec![entry("DELETE", "Observation/ob-2", None, Some("W/\"2\""))],
            )),
        ),
        ask(
            Method::POST,
            "Subscription",
            Some(
                json!({"resourceType": "Subscription", "status": "off", "reason": "test",
                "criteria": "Observation?subject=Patient/pa",
                "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}}),
            ),
        ),
    ];
    for request in &requests {
        twins.same(writer, request);
    }
    // Nothing of the other patient's changed.
    let admin = token("system/*.cruds", None);
    let hidden = bearer(&twins.hidden, &admin);
    for (path, etag) in [
        ("Observation/ob-lab", "W/\"1\""),
        ("Observation/ob-2", "W/\"2\""),
        ("Patient/pb", "W/\"1\""),
        ("Subscription/sub-b", "W/\"1\""),
    ] {
        let reply = hidden.get(path);
        reply.expect(200, path);
        assert_eq!(reply.etag(), etag, "{path}");
    }
    assert_eq!(hidden.get("Observation/ob-del").status, 410);
    // And the patient's history still reads alike.
    twins.same_pages(writer, &get("_history?_count=1"), Some(1));
}

/// A write under a `patient/` scope is allowed only when every patient the resource belongs
/// to (before and after) is the token's patient, and it belongs to one.
#[test]
fn patient_writes_belong_to_the_patient_alone() {
    let server = TestServer::start_with(&[HS256, &["--base-url", BASE]].concat());
    let admin = bearer(&server, &token("system/*.cruds", None));
    for resource in [
        json!({"resourceType": "Patient", "id": "pa"}),
        json!({"resourceType": "Patient", "id": "pb"}),
        json!({"resourceType": "Practitioner", "id": "dr"}),
        observation("oa-shared", "pa", "laboratory", Some("Patient/pb")),
        observation("oa-lab", "pa", "laboratory", None),
    ] {
        admin.update(&resource).expect(201, "seed");
    }
    let pa = bearer(&server, &token("patient/*.cruds", Some("pa")));
    let refused = |reply: Reply, what: &str| {
        let outcome = assert_outcome(&reply, 403, &["forbidden"]);
        assert!(outcome.to_string().contains("pa"), "{what}: {outcome}");
    };
    // Created: one patient's each time, the token's.
    pa.post(
        "Observation",
        &observation("", "pa", "laboratory", Some("Practitioner/dr")),
    )
    .expect(201, "own");
    pa.post(
        "Observation",
        &observation("", &format!("{BASE}/Patient/pa"), "laboratory", None),
    )
    .expect(201, "own, by this server's absolute URL");
    for (what, body) in [
        (
            "subject other, performer self",
            observation("", "pb", "laboratory", Some("Patient/pa")),
        ),
        (
            "subject self, performer other",
            observation("", "pa", "laboratory", Some("Patient/pb")),
        ),
        (
            "another server's patient pa",
            observation(
                "",
                "https://elsewhere.example/fhir/Patient/pa",
                "laboratory",
                None,
            ),
        ),
        (
            "a versioned reference to the other",
            observation("", "pa", "laboratory", Some("Patient/pb/_history/1")),
        ),
    ] {
        refused(pa.post("Observation", &body), what);
    }
    // Belonging to nobody: not the token's to write.
    refused(
        pa.post(
            "Organization",
            &json!({"resourceType": "Organization", "name": "x"}),
        ),
        "an Organization",
    );
    // The token's own Patient, but not linked to another.
    pa.put(
        "Patient/pa",
        &json!({"resourceType": "Patient", "id": "pa", "active": true}),
    )
    .expect(200, "own Patient");
    refused(
        pa.put(
            "Patient/pa",
            &json!({"resourceType": "Patient", "id": "pa",
                "link": [{"other": {"reference": "Patient/pb"}, "type": "seealso"}]}),
        ),
        "own Patient linked to another",
    );
    // Before as after: a resource the other patient shares cannot be changed or deleted.
    refused(
        pa.put(
            "Observation/oa-shared",
            &observation("oa-shared", "pa", "laboratory", None),
        ),
        "update of a shared one",
    );
    refused(pa.delete("Observation/oa-shared"), "delete of a shared one");
    refused(
        pa.put(
            "Observation/oa-lab",
            &observation("oa-lab", "pa", "laboratory", Some("Patient/pb")),
        ),
        "update into a shared one",
    );
    // Conditional writes and Bundle entries follow the same rule.
    refused(
        pa.post_with(
            "Observation",
            &observation("", "pa", "laboratory", Some("Patient/pb")),
            &[("if-none-exist", "_id=none")],
        ),
        "conditional create",
    );
    refused(
        pa.put(
            "Observation?_id=oa-lab",
            &observation("", "pa", "laboratory", Some("Patient/pb")),
        ),
        "conditional update",
    );
    assert_outcome(&pa.delete("Observation?_id=oa-shared"), 403, &["forbidden"]);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("", "pa", "laboratory", Some("Patient/pb")),
         "request": {"method": "POST", "url": "Observation"}}]});
    assert_outcome(&pa.bundle(&transaction), 403, &["forbidden"]);
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation("", "pb", "laboratory", Some("Patient/pa")),
         "request": {"method": "POST", "url": "Observation"}}]});
    let reply = pa.bundle(&batch).expect(200, "batch").json();
    assert_eq!(reply["entry"][0]["response"]["status"], "403 Forbidden");
    // Nothing landed in the other patient's record.
    let found = admin
        .get("Observation?subject=Patient/pb")
        .expect(200, "search")
        .json();
    assert_eq!(keys(&found), set(&[]));
    let found = admin
        .get("Patient/pb/Observation")
        .expect(200, "search")
        .json();
    assert_eq!(keys(&found), set(&["Observation/oa-shared"]));
}

/// Absolute references are this server's only under its `--base-url`: searches, compartments,
/// includes and reads agree, and the index follows a change of the base.
#[test]
fn references_to_another_server_are_not_this_servers() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let args = [HS256, &["--base-url", BASE]].concat();
    let server = TestServer::start_on(&data, &args);
    let admin = bearer(&server, &token("system/*.cruds", None));
    let elsewhere = "https://elsewhere.example/fhir/Patient/pa";
    for resource in [
        json!({"resourceType": "Patient", "id": "pa"}),
        observation("o-local", "pa", "laboratory", None),
        observation("o-base", &format!("{BASE}/Patient/pa"), "laboratory", None),
        observation("o-versioned", "Patient/pa/_history/1", "laboratory", None),
        observation("o-elsewhere", elsewhere, "laboratory", None),
    ] {
        admin.update(&resource).expect(201, "seed");
    }
    let local = set(&[
        "Observation/o-local",
        "Observation/o-base",
        "Observation/o-versioned",
    ]);
    let found = |client: &FhirClient, path: &str| keys(&client.get(path).expect(200, path).json());
    for path in [
        "Observation?subject=Patient/pa",
        "Observation?subject=pa",
        "Observation?subject:Patient=pa",
        &format!("Observation?subject={BASE}/Patient/pa"),
        "Patient/pa/Observation",
    ] {
        assert_eq!(found(&admin, path), local, "{path}");
    }
    assert_eq!(
        found(&admin, &format!("Observation?subject={elsewhere}")),
        set(&["Observation/o-elsewhere"])
    );
    assert_eq!(
        found(&admin, "Patient?_has:Observation:subject:_id=o-elsewhere"),
        set(&[])
    );
    assert_eq!(
        found(
            &admin,
            "Observation?_id=o-elsewhere&_include=Observation:subject"
        ),
        set(&["Observation/o-elsewhere"])
    );
    let everything = found(&admin, "Patient/pa/$everything");
    assert!(
        !everything.contains("Observation/o-elsewhere"),
        "{everything:?}"
    );
    let pa = bearer(&server, &token("patient/*.rs", Some("pa")));
    assert_outcome(&pa.get("Observation/o-elsewhere"), 404, &["not-found"]);
    pa.get("Observation/o-base")
        .expect(200, "this server's base");
    let mut mine = local.clone();
    mine.insert("Patient/pa".into());
    assert_eq!(found(&pa, "Observation"), local);
    assert_eq!(found(&pa, "Patient/pa/*"), mine);

    // Another base: what was this server's is now another's, and the reverse.
    drop(server);
    let args = [HS256, &["--base-url", "https://elsewhere.example/fhir"]].concat();
    let server = TestServer::start_on(&data, &args);
    let admin = bearer(&server, &token("system/*.cruds", None));
    assert_eq!(
        found(&admin, "Observation?subject=Patient/pa"),
        set(&[
            "Observation/o-local",
            "Observation/o-versioned",
            "Observation/o-elsewhere"
        ])
    );
}
