//! Instance, type and system history: order, entries, paging (also while writes arrive),
//! `_since` and `_at`.
mod common;

use common::{FHIR_JSON, TestServer};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Sets the flag when dropped, so a writer thread stops even when the paging side panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const RESPONSE_CONTENT_TYPE: &str = "application/fhir+json; charset=utf-8";

struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is not ASCII").to_string())
    }

    fn expect(&self, status: u16, what: &str) -> &Reply {
        assert_eq!(
            self.status, status,
            "{what}: expected {status}, got {} with body {}",
            self.status, self.text
        );
        self
    }

    fn resource(&self) -> Value {
        assert_eq!(
            self.header("content-type").as_deref(),
            Some(RESPONSE_CONTENT_TYPE),
            "content type of {}",
            self.text
        );
        self.json()
    }
}

fn send(request: RequestBuilder) -> Reply {
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

struct Fhir {
    server: TestServer,
    client: Client,
}

impl Fhir {
    fn start() -> Fhir {
        Fhir {
            server: TestServer::start(),
            client: common::client(),
        }
    }

    fn get(&self, path: &str) -> Reply {
        send(self.client.get(self.server.url(path)))
    }

    fn get_query(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        send(self.client.get(self.server.url(path)).query(query))
    }

    fn create(&self, body: &Value) -> Value {
        create_with(&self.client, &self.server, body)
    }

    fn update(&self, body: &Value) -> Reply {
        let path = format!(
            "{}/{}",
            body["resourceType"].as_str().expect("type"),
            body["id"].as_str().expect("id")
        );
        send(
            self.client
                .put(self.server.url(&path))
                .header("content-type", FHIR_JSON)
                .body(body.to_string()),
        )
    }

    fn update_ok(&self, body: &Value, status: u16) -> Value {
        self.update(body).expect(status, "update").resource()
    }

    fn delete(&self, path: &str) {
        send(self.client.delete(self.server.url(path))).expect(204, "delete");
    }

    /// Every entry of a history, following `next` links; asserts the bundle shape of every
    /// page and that every page but the last is full when `count` is given.
    fn history(&self, path: &str, query: &[(&str, &str)], count: Option<usize>) -> Vec<Value> {
        let first = self.get_query(path, query);
        follow_pages(&self.client, first, count, || {})
    }
}

fn create_with(client: &Client, server: &TestServer, body: &Value) -> Value {
    let kind = body["resourceType"].as_str().expect("resourceType");
    send(
        client
            .post(server.url(kind))
            .header("content-type", FHIR_JSON)
            .body(body.to_string()),
    )
    .expect(201, "create")
    .resource()
}

/// Reads every page starting with `first`, calling `between` before each `next` request.
fn follow_pages(
    client: &Client,
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
        assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
        assert_eq!(bundle["type"], "history", "{bundle}");
        let links = bundle["link"].as_array().cloned().unwrap_or_default();
        let link = |relation: &str| {
            links
                .iter()
                .find(|l| l["relation"] == relation)
                .map(|l| l["url"].as_str().expect("link url").to_string())
        };
        assert!(link("self").is_some(), "no self link: {bundle}");
        let page: Vec<Value> = bundle["entry"].as_array().cloned().unwrap_or_default();
        let next = link("next");
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
                reply = send(client.get(url));
            }
            None => return entries,
        }
    }
}

/// (type, id, version) of a history entry, from fullUrl and response.etag.
fn key(base: &str, entry: &Value) -> (String, String, u64) {
    let full_url = entry["fullUrl"].as_str().expect("fullUrl");
    let rest = full_url
        .strip_prefix(&format!("{base}/"))
        .unwrap_or_else(|| panic!("fullUrl {full_url:?} is not under {base}"));
    let (kind, id) = rest
        .split_once('/')
        .unwrap_or_else(|| panic!("fullUrl {full_url:?}"));
    assert!(!id.contains('/'), "fullUrl {full_url:?} has a version");
    let etag = entry["response"]["etag"].as_str().expect("response.etag");
    let version = etag
        .strip_prefix("W/\"")
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("etag {etag:?}"));
    (kind.to_string(), id.to_string(), version)
}

fn keys(base: &str, entries: &[Value]) -> Vec<(String, String, u64)> {
    entries.iter().map(|e| key(base, e)).collect()
}

fn key_of(resource: &Value) -> (String, String, u64) {
    (
        resource["resourceType"].as_str().expect("type").to_string(),
        resource["id"].as_str().expect("id").to_string(),
        resource["meta"]["versionId"]
            .as_str()
            .expect("versionId")
            .parse()
            .expect("numeric versionId"),
    )
}

fn instant(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not an instant: {e}"))
}

fn last_updated(resource: &Value) -> OffsetDateTime {
    instant(
        resource["meta"]["lastUpdated"]
            .as_str()
            .expect("lastUpdated"),
    )
}

fn modified(entry: &Value) -> OffsetDateTime {
    instant(
        entry["response"]["lastModified"]
            .as_str()
            .expect("response.lastModified"),
    )
}

/// Asserts the entries are newest first (by response.lastModified).
fn assert_newest_first(entries: &[Value]) {
    for pair in entries.windows(2) {
        assert!(
            modified(&pair[0]) >= modified(&pair[1]),
            "history not newest first: {} before {}",
            pair[0]["response"],
            pair[1]["response"]
        );
    }
}

/// Asserts the entry of one version: fullUrl, request, response and resource.
fn assert_entry(
    base: &str,
    entry: &Value,
    method: &str,
    statuses: &[&str],
    resource: Option<&Value>,
) {
    let (kind, id, version) = key(base, entry);
    assert_eq!(entry["fullUrl"], format!("{base}/{kind}/{id}"), "{entry}");
    assert_eq!(entry["request"]["method"], method, "{entry}");
    let url = if method == "POST" {
        kind.clone()
    } else {
        format!("{kind}/{id}")
    };
    assert_eq!(entry["request"]["url"], url, "{entry}");
    let status = entry["response"]["status"].as_str().expect("status");
    assert!(
        statuses.contains(&status),
        "response.status {status:?} not in {statuses:?}: {entry}"
    );
    assert_eq!(entry["response"]["etag"], format!("W/\"{version}\""));
    match resource {
        Some(resource) => {
            assert_eq!(&entry["resource"], resource, "entry resource");
            assert_eq!(modified(entry), last_updated(resource));
        }
        None => assert!(
            entry.get("resource").is_none(),
            "a delete entry has no resource: {entry}"
        ),
    }
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}]})
}

fn observation(text: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final", "code": {"text": text}})
}

fn k(kind: &str, id: &str, version: u64) -> (String, String, u64) {
    (kind.to_string(), id.to_string(), version)
}

fn id_of(resource: &Value) -> String {
    resource["id"].as_str().expect("id").to_string()
}

#[test]
fn instance_history_lists_every_version_newest_first() {
    let fhir = Fhir::start();
    let base = fhir.server.base.clone();
    let v1 = fhir.create(&patient("One"));
    let id = id_of(&v1);
    // Another resource written in between must not show up.
    let other = fhir.create(&patient("Other"));
    let mut body = v1.clone();
    body["name"][0]["family"] = json!("Two");
    let v2 = fhir.update_ok(&body, 200);
    fhir.update_ok(&other, 200);
    fhir.delete(&format!("Patient/{id}"));
    let v4 = fhir.update_ok(&v1, 201);
    assert_eq!(v4["meta"]["versionId"], "4");

    let entries = fhir.history(&format!("Patient/{id}/_history"), &[], None);
    assert_eq!(
        keys(&base, &entries),
        vec![
            k("Patient", &id, 4),
            k("Patient", &id, 3),
            k("Patient", &id, 2),
            k("Patient", &id, 1)
        ]
    );
    assert_newest_first(&entries);
    // The entry shows the request that made the version and the status it was answered.
    assert_entry(&base, &entries[0], "PUT", &["201"], Some(&v4));
    assert_entry(&base, &entries[1], "DELETE", &["204"], None);
    assert_entry(&base, &entries[2], "PUT", &["200"], Some(&v2));
    assert_entry(&base, &entries[3], "POST", &["201"], Some(&v1));
    assert!(modified(&entries[1]) > modified(&entries[2]));
    assert!(modified(&entries[0]) > modified(&entries[1]));

    // A resource whose first version came from update-as-create: the entry is that PUT.
    let mut body = patient("Put");
    body["id"] = json!("by-put");
    let first = fhir.update_ok(&body, 201);
    let second = fhir.update_ok(&body, 200);
    let entries = fhir.history("Patient/by-put/_history", &[], None);
    assert_eq!(entries.len(), 2);
    assert_entry(&base, &entries[0], "PUT", &["200"], Some(&second));
    assert_entry(&base, &entries[1], "PUT", &["201"], Some(&first));
}

#[test]
fn type_and_system_history_hold_the_right_versions_in_write_order() {
    let fhir = Fhir::start();
    let base = fhir.server.base.clone();
    let p1 = fhir.create(&patient("P1"));
    let o1v1 = fhir.create(&observation("O1"));
    let p1v2 = fhir.update_ok(&p1, 200);
    let p2 = fhir.create(&patient("P2"));
    fhir.delete(&format!("Observation/{}", id_of(&o1v1)));
    let (p1, o1, p2) = (id_of(&p1), id_of(&o1v1), id_of(&p2));

    let patients = fhir.history("Patient/_history", &[], None);
    assert_eq!(
        keys(&base, &patients),
        vec![
            k("Patient", &p2, 1),
            k("Patient", &p1, 2),
            k("Patient", &p1, 1)
        ]
    );
    assert_entry(&base, &patients[1], "PUT", &["200"], Some(&p1v2));
    assert_newest_first(&patients);

    let observations = fhir.history("Observation/_history", &[], None);
    assert_eq!(
        keys(&base, &observations),
        vec![k("Observation", &o1, 2), k("Observation", &o1, 1)]
    );
    assert_entry(&base, &observations[0], "DELETE", &["204"], None);
    assert_entry(&base, &observations[1], "POST", &["201"], Some(&o1v1));

    let all = fhir.history("_history", &[], None);
    assert_eq!(
        keys(&base, &all),
        vec![
            k("Observation", &o1, 2),
            k("Patient", &p2, 1),
            k("Patient", &p1, 2),
            k("Observation", &o1, 1),
            k("Patient", &p1, 1),
        ]
    );
    assert_newest_first(&all);

    // A type without any resource has an empty history; the Bundle is still well formed.
    assert!(fhir.history("Condition/_history", &[], None).is_empty());
}

#[test]
fn default_page_size_is_50() {
    let fhir = Fhir::start();
    let base = fhir.server.base.clone();
    let mut resource = fhir.create(&patient("Many"));
    for _ in 0..54 {
        resource = fhir.update_ok(&resource, 200);
    }
    let id = id_of(&resource);
    let first = fhir
        .get(&format!("Patient/{id}/_history"))
        .expect(200, "history")
        .resource();
    assert_eq!(first["entry"].as_array().map(Vec::len), Some(50));
    let entries = fhir.history(&format!("Patient/{id}/_history"), &[], Some(50));
    let versions: Vec<u64> = keys(&base, &entries).iter().map(|k| k.2).collect();
    assert_eq!(versions, (1..=55).rev().collect::<Vec<_>>());
}

#[test]
fn system_history_paging_visits_every_version_once_while_writes_arrive() {
    let fhir = Fhir::start();
    let base = fhir.server.base.clone();
    // 20 patients, 10 of them updated, 5 deleted: 35 versions.
    let mut existing = Vec::new();
    for i in 0..20 {
        let p = fhir.create(&patient(&format!("Page{i}")));
        existing.push(key_of(&p));
        if i % 2 == 0 {
            existing.push(key_of(&fhir.update_ok(&p, 200)));
        }
        if i % 4 == 1 {
            fhir.delete(&format!("Patient/{}", id_of(&p)));
            existing.push(k("Patient", &id_of(&p), 2));
        }
    }
    assert_eq!(existing.len(), 35);

    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let entries = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let client = common::client();
            let mut created = HashSet::new();
            while !stop.load(Ordering::SeqCst) {
                let o = create_with(&client, &fhir.server, &observation("concurrent"));
                created.insert(key_of(&o));
                written.fetch_add(1, Ordering::SeqCst);
            }
            created
        });
        let _stop_writer = StopOnDrop(&stop);
        let first = fhir.get_query("_history", &[("_count", "4")]);
        let mut seen = written.load(Ordering::SeqCst);
        // Before every next page, wait until at least one more write has been committed.
        let entries = follow_pages(&fhir.client, first, Some(4), || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while written.load(Ordering::SeqCst) <= seen {
                assert!(Instant::now() < deadline, "the writer makes no progress");
                std::thread::sleep(Duration::from_millis(1));
            }
            seen = written.load(Ordering::SeqCst);
        });
        stop.store(true, Ordering::SeqCst);
        let created = writer.join().expect("writer thread");
        assert!(created.len() >= 8, "writes arrived during paging");
        // Whatever the pages show beyond the initial versions must be the writer's.
        for entry in &entries {
            let key = key(&base, entry);
            assert!(
                existing.contains(&key) || created.contains(&key),
                "unknown version {key:?}"
            );
        }
        entries
    });

    let visited = keys(&base, &entries);
    let unique: HashSet<_> = visited.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        visited.len(),
        "a version was visited twice: {visited:?}"
    );
    for key in &existing {
        assert!(unique.contains(key), "version {key:?} was never visited");
    }
    assert_newest_first(&entries);
}

#[test]
fn instance_history_paging_is_stable_while_the_instance_changes() {
    let fhir = Fhir::start();
    let base = fhir.server.base.clone();
    let mut resource = fhir.create(&patient("Moving"));
    for _ in 0..22 {
        resource = fhir.update_ok(&resource, 200);
    }
    let id = id_of(&resource);
    let path = format!("Patient/{id}/_history");

    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let entries = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let client = common::client();
            let mut body = resource.clone();
            while !stop.load(Ordering::SeqCst) {
                body = send(
                    client
                        .put(fhir.server.url(&format!("Patient/{id}")))
                        .header("content-type", FHIR_JSON)
                        .body(body.to_string()),
                )
                .expect(200, "concurrent update")
                .resource();
                written.fetch_add(1, Ordering::SeqCst);
            }
        });
        let _stop_writer = StopOnDrop(&stop);
        let first = fhir.get_query(&path, &[("_count", "5")]);
        let mut seen = written.load(Ordering::SeqCst);
        let entries = follow_pages(&fhir.client, first, Some(5), || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while written.load(Ordering::SeqCst) <= seen {
                assert!(Instant::now() < deadline, "the writer makes no progress");
                std::thread::sleep(Duration::from_millis(1));
            }
            seen = written.load(Ordering::SeqCst);
        });
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("writer thread");
        entries
    });
    let versions: Vec<u64> = keys(&base, &entries).iter().map(|k| k.2).collect();
    let newest = versions[0];
    assert!(newest >= 23, "versions {versions:?}");
    assert_eq!(
        versions,
        (1..=newest).rev().collect::<Vec<_>>(),
        "paging must visit every version exactly once, newest first"
    );
}

#[test]
fn since_keeps_versions_updated_at_or_after_it() {
    let fhir = Fhir::start();
    let base = fhir.server.base.clone();
    let p1 = fhir.create(&patient("Before"));
    let p2 = fhir.create(&patient("Since"));
    let p2v2 = fhir.update_ok(&p2, 200);
    let p3 = fhir.create(&patient("After"));
    let since = p2["meta"]["lastUpdated"].as_str().expect("lastUpdated");
    let expected = vec![key_of(&p3), key_of(&p2v2), key_of(&p2)];

    let entries = fhir.history("_history", &[("_since", since)], None);
    assert_eq!(keys(&base, &entries), expected);
    let entries = fhir.history("Patient/_history", &[("_since", since)], None);
    assert_eq!(keys(&base, &entries), expected);
    let entries = fhir.history(
        &format!("Patient/{}/_history", id_of(&p2)),
        &[("_since", since)],
        None,
    );
    assert_eq!(keys(&base, &entries), vec![key_of(&p2v2), key_of(&p2)]);
    let entries = fhir.history(
        &format!("Patient/{}/_history", id_of(&p1)),
        &[("_since", since)],
        None,
    );
    assert!(entries.is_empty(), "{entries:?}");

    // The same instant written with another offset.
    let shifted = last_updated(&p2)
        .to_offset(time::macros::offset!(+05:30))
        .format(&Rfc3339)
        .expect("format");
    let entries = fhir.history("_history", &[("_since", &shifted)], None);
    assert_eq!(keys(&base, &entries), expected, "_since={shifted}");

    // Paging keeps the filter.
    let entries = fhir.history("_history", &[("_since", since), ("_count", "1")], Some(1));
    assert_eq!(keys(&base, &entries), expected);

    // dateTime precisions.
    assert!(
        fhir.history("_history", &[("_since", "2999-01-01")], None)
            .is_empty()
    );
    assert_eq!(
        fhir.history("_history", &[("_since", "2000-01-01")], None)
            .len(),
        4
    );
    assert_eq!(
        fhir.history("_history", &[("_since", "2000")], None).len(),
        4
    );
    assert_eq!(
        fhir.history("_history", &[("_since", "2000-01-01T00:00:00Z")], None)
            .len(),
        4
    );
}

fn millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("format")
}

#[test]
fn at_returns_the_versions_current_at_that_time() {
    let fhir = Fhir::start();
    let base = fhir.server.base.clone();
    let older = fhir.create(&patient("Older"));
    let v1 = fhir.create(&patient("Target"));
    std::thread::sleep(Duration::from_millis(200));
    let v2 = fhir.update_ok(&v1, 200);
    std::thread::sleep(Duration::from_millis(20));
    let newer = fhir.create(&patient("Newer"));
    let id = id_of(&v1);
    let instance = format!("Patient/{id}/_history");

    let between = millis(last_updated(&v1) + Duration::from_millis(100));
    assert!(last_updated(&v2) > instant(&between) + Duration::from_millis(50));
    let entries = fhir.history(&instance, &[("_at", &between)], None);
    assert_eq!(keys(&base, &entries), vec![key_of(&v1)], "_at={between}");
    assert_eq!(entries[0]["resource"], v1);

    // Type and system level: the versions current then, and nothing created later.
    let expected = vec![key_of(&v1), key_of(&older)];
    let entries = fhir.history("Patient/_history", &[("_at", &between)], None);
    assert_eq!(keys(&base, &entries), expected, "_at={between}");
    let entries = fhir.history("_history", &[("_at", &between)], None);
    assert_eq!(keys(&base, &entries), expected, "_at={between}");

    // After the update: v2 only.
    let later = millis(last_updated(&newer) + Duration::from_millis(5));
    let entries = fhir.history(&instance, &[("_at", &later)], None);
    assert_eq!(keys(&base, &entries), vec![key_of(&v2)], "_at={later}");
    let entries = fhir.history("Patient/_history", &[("_at", &later)], None);
    assert_eq!(
        keys(&base, &entries),
        vec![key_of(&newer), key_of(&v2), key_of(&older)],
        "_at={later}"
    );

    // Before anything existed.
    assert!(
        fhir.history(&instance, &[("_at", "2000-01-01")], None)
            .is_empty()
    );

    // A whole day (when both versions fall on it): both were current during that day.
    let day = |t: OffsetDateTime| t.date().to_string();
    if day(last_updated(&v1)) == day(last_updated(&v2)) {
        let at = day(last_updated(&v1));
        let entries = fhir.history(&instance, &[("_at", &at)], None);
        assert_eq!(
            keys(&base, &entries),
            vec![key_of(&v2), key_of(&v1)],
            "_at={at}"
        );
    }
}

#[test]
fn history_of_unknown_instance_or_type_is_404() {
    let fhir = Fhir::start();
    let reply = fhir.get("Patient/unknown/_history");
    reply.expect(404, "history of an unknown instance");
    let outcome = reply.resource();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "not-found", "{outcome}");

    let reply = fhir.get("Nonsense/_history");
    reply.expect(404, "history of an unknown type");
    assert_eq!(reply.resource()["resourceType"], "OperationOutcome");

    // A deleted resource still has its history.
    let p = fhir.create(&patient("Gone"));
    fhir.delete(&format!("Patient/{}", id_of(&p)));
    let entries = fhir.history(&format!("Patient/{}/_history", id_of(&p)), &[], None);
    assert_eq!(entries.len(), 2);
}

#[test]
fn bad_count_is_400() {
    let fhir = Fhir::start();
    let p = fhir.create(&patient("Count"));
    let instance = format!("Patient/{}/_history", id_of(&p));
    for path in ["_history", "Patient/_history", instance.as_str()] {
        for count in ["abc", "-1", "1.5", "2x"] {
            let reply = fhir.get_query(path, &[("_count", count)]);
            reply.expect(400, &format!("{path}?_count={count}"));
            let outcome = reply.resource();
            assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
            assert_eq!(outcome["issue"][0]["severity"], "error", "{outcome}");
            let code = outcome["issue"][0]["code"].as_str().expect("code");
            assert!(
                ["invalid", "value", "processing"].contains(&code),
                "code {code}"
            );
        }
        let entries = fhir.history(path, &[("_count", "1")], Some(1));
        assert_eq!(entries.len(), 1);
        let entries = fhir.history(path, &[("_count", "1000")], Some(1000));
        assert_eq!(entries.len(), 1, "_count=1000 is allowed");
    }
}
