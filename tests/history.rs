//! Instance, type and system history: order, entries, paging (also while writes arrive),
//! `_since`, `_at` and `total`.
mod common;

use common::fhir::{
    Fhir, FhirClient, assert_issue_code, entry_version, id_of, instant, last_updated, link, send,
    version_number,
};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Updates `body` (PUT to its own `Type/id`) with a change, asserts `status` and returns the
/// stored version. The change is a number no other write of the test run has (an update with
/// the same content makes no version).
fn update(fhir: &FhirClient, body: &Value, status: u16) -> Value {
    fhir.update(&changed(body))
        .expect(status, "update")
        .resource()
}

/// `body` with an extension holding a number of its own.
fn changed(body: &Value) -> Value {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut body = body.clone();
    body["extension"] = json!([{
        "url": "http://example.org/fhir/StructureDefinition/write",
        "valueInteger": WRITES.fetch_add(1, Ordering::SeqCst)
    }]);
    body
}

/// Creates a Patient and updates it until it has `versions` versions; returns the last.
fn patient_with_versions(fhir: &Fhir, family: &str, versions: usize) -> Value {
    let mut resource = fhir.create(&patient(family));
    for _ in 1..versions {
        resource = update(fhir, &resource, 200);
    }
    resource
}

/// Pages through the history at `path` with `_count=count` while another thread, with its own
/// client, keeps calling `write` until the paging is done; before every next page, waits until
/// at least one more write has been committed. Returns the entries.
fn page_while_writing(
    fhir: &Fhir,
    path: &str,
    count: usize,
    mut write: impl FnMut(&FhirClient) + Send,
) -> Vec<Value> {
    let stop = AtomicBool::new(false);
    let written = AtomicUsize::new(0);
    let count_text = count.to_string();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let client = fhir.new_client();
            while !stop.load(Ordering::SeqCst) {
                write(&client);
                written.fetch_add(1, Ordering::SeqCst);
            }
        });
        let _stop_writer = StopOnDrop(&stop);
        let first = fhir.get_query(path, &[("_count", count_text.as_str())]);
        let mut seen = written.load(Ordering::SeqCst);
        // Before every next page, wait until at least one more write has been committed.
        let entries = fhir.pages(first, Some(count), || {
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
    })
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
    (kind.to_string(), id.to_string(), entry_version(entry))
}

fn keys(base: &str, entries: &[Value]) -> Vec<(String, String, u64)> {
    entries.iter().map(|e| key(base, e)).collect()
}

fn key_of(resource: &Value) -> (String, String, u64) {
    (
        resource["resourceType"].as_str().expect("type").to_string(),
        resource["id"].as_str().expect("id").to_string(),
        version_number(resource),
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

#[test]
fn instance_history_lists_every_version_newest_first() {
    let fhir = Fhir::start();
    let v1 = fhir.create(&patient("One"));
    let id = id_of(&v1);
    // Another resource written in between must not show up.
    let other = fhir.create(&patient("Other"));
    let mut body = v1.clone();
    body["name"][0]["family"] = json!("Two");
    let v2 = update(&fhir, &body, 200);
    update(&fhir, &other, 200);
    fhir.delete(&format!("Patient/{id}")).expect(204, "delete");
    let v4 = update(&fhir, &v1, 201);
    assert_eq!(v4["meta"]["versionId"], "4");

    let entries = fhir.history(&format!("Patient/{id}/_history"), &[], None);
    assert_eq!(
        keys(&fhir.base, &entries),
        vec![
            k("Patient", &id, 4),
            k("Patient", &id, 3),
            k("Patient", &id, 2),
            k("Patient", &id, 1)
        ]
    );
    assert_newest_first(&entries);
    // The entry shows the request that made the version and the status it was answered.
    assert_entry(&fhir.base, &entries[0], "PUT", &["201"], Some(&v4));
    assert_entry(&fhir.base, &entries[1], "DELETE", &["204"], None);
    assert_entry(&fhir.base, &entries[2], "PUT", &["200"], Some(&v2));
    assert_entry(&fhir.base, &entries[3], "POST", &["201"], Some(&v1));
    assert!(modified(&entries[1]) > modified(&entries[2]));
    assert!(modified(&entries[0]) > modified(&entries[1]));

    // A resource whose first version came from update-as-create: the entry is that PUT.
    let mut body = patient("Put");
    body["id"] = json!("by-put");
    let first = update(&fhir, &body, 201);
    let second = update(&fhir, &body, 200);
    let entries = fhir.history("Patient/by-put/_history", &[], None);
    assert_eq!(entries.len(), 2);
    assert_entry(&fhir.base, &entries[0], "PUT", &["200"], Some(&second));
    assert_entry(&fhir.base, &entries[1], "PUT", &["201"], Some(&first));
}

#[test]
fn type_and_system_history_hold_the_right_versions_in_write_order() {
    let fhir = Fhir::start();
    let p1 = fhir.create(&patient("P1"));
    let o1v1 = fhir.create(&observation("O1"));
    let p1v2 = update(&fhir, &p1, 200);
    let p2 = fhir.create(&patient("P2"));
    fhir.delete(&format!("Observation/{}", id_of(&o1v1)))
        .expect(204, "delete");
    let (p1, o1, p2) = (id_of(&p1), id_of(&o1v1), id_of(&p2));

    let patients = fhir.history("Patient/_history", &[], None);
    assert_eq!(
        keys(&fhir.base, &patients),
        vec![
            k("Patient", &p2, 1),
            k("Patient", &p1, 2),
            k("Patient", &p1, 1)
        ]
    );
    assert_entry(&fhir.base, &patients[1], "PUT", &["200"], Some(&p1v2));
    assert_newest_first(&patients);

    let observations = fhir.history("Observation/_history", &[], None);
    assert_eq!(
        keys(&fhir.base, &observations),
        vec![k("Observation", &o1, 2), k("Observation", &o1, 1)]
    );
    assert_entry(&fhir.base, &observations[0], "DELETE", &["204"], None);
    assert_entry(&fhir.base, &observations[1], "POST", &["201"], Some(&o1v1));

    let all = fhir.history("_history", &[], None);
    assert_eq!(
        keys(&fhir.base, &all),
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
    let resource = patient_with_versions(&fhir, "Many", 55);
    let id = id_of(&resource);
    let first = fhir
        .get(&format!("Patient/{id}/_history"))
        .expect(200, "history")
        .resource();
    assert_eq!(first["entry"].as_array().map(Vec::len), Some(50));
    let entries = fhir.history(&format!("Patient/{id}/_history"), &[], Some(50));
    let versions: Vec<u64> = keys(&fhir.base, &entries).iter().map(|k| k.2).collect();
    assert_eq!(versions, (1..=55).rev().collect::<Vec<_>>());
}

#[test]
fn system_history_paging_visits_every_version_once_while_writes_arrive() {
    let fhir = Fhir::start();
    // 20 patients, 10 of them updated, 5 deleted: 35 versions.
    let mut existing = Vec::new();
    for i in 0..20 {
        let p = fhir.create(&patient(&format!("Page{i}")));
        existing.push(key_of(&p));
        if i % 2 == 0 {
            existing.push(key_of(&update(&fhir, &p, 200)));
        }
        if i % 4 == 1 {
            fhir.delete(&format!("Patient/{}", id_of(&p)))
                .expect(204, "delete");
            existing.push(k("Patient", &id_of(&p), 2));
        }
    }
    assert_eq!(existing.len(), 35);

    let mut created = HashSet::new();
    let entries = page_while_writing(&fhir, "_history", 4, |client| {
        created.insert(key_of(&client.create(&observation("concurrent"))));
    });
    assert!(created.len() >= 8, "writes arrived during paging");
    // Whatever the pages show beyond the initial versions must be the writer's.
    for entry in &entries {
        let key = key(&fhir.base, entry);
        assert!(
            existing.contains(&key) || created.contains(&key),
            "unknown version {key:?}"
        );
    }

    let visited = keys(&fhir.base, &entries);
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
    let resource = patient_with_versions(&fhir, "Moving", 23);
    let id = id_of(&resource);
    let path = format!("Patient/{id}/_history");

    let mut body = resource.clone();
    let entries = page_while_writing(&fhir, &path, 5, |client| {
        body = client
            .update(&changed(&body))
            .expect(200, "concurrent update")
            .resource();
    });
    let versions: Vec<u64> = keys(&fhir.base, &entries).iter().map(|k| k.2).collect();
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
    let p1 = fhir.create(&patient("Before"));
    let p2 = fhir.create(&patient("Since"));
    let p2v2 = update(&fhir, &p2, 200);
    let p3 = fhir.create(&patient("After"));
    let since = p2["meta"]["lastUpdated"].as_str().expect("lastUpdated");
    let expected = vec![key_of(&p3), key_of(&p2v2), key_of(&p2)];

    let entries = fhir.history("_history", &[("_since", since)], None);
    assert_eq!(keys(&fhir.base, &entries), expected);
    let entries = fhir.history("Patient/_history", &[("_since", since)], None);
    assert_eq!(keys(&fhir.base, &entries), expected);
    let entries = fhir.history(
        &format!("Patient/{}/_history", id_of(&p2)),
        &[("_since", since)],
        None,
    );
    assert_eq!(keys(&fhir.base, &entries), vec![key_of(&p2v2), key_of(&p2)]);
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
    assert_eq!(keys(&fhir.base, &entries), expected, "_since={shifted}");

    // Paging keeps the filter.
    let entries = fhir.history("_history", &[("_since", since), ("_count", "1")], Some(1));
    assert_eq!(keys(&fhir.base, &entries), expected);

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
    let older = fhir.create(&patient("Older"));
    let v1 = fhir.create(&patient("Target"));
    std::thread::sleep(Duration::from_millis(200));
    let v2 = update(&fhir, &v1, 200);
    std::thread::sleep(Duration::from_millis(20));
    let newer = fhir.create(&patient("Newer"));
    let id = id_of(&v1);
    let instance = format!("Patient/{id}/_history");

    let between = millis(last_updated(&v1) + Duration::from_millis(100));
    assert!(last_updated(&v2) > instant(&between) + Duration::from_millis(50));
    let entries = fhir.history(&instance, &[("_at", &between)], None);
    assert_eq!(
        keys(&fhir.base, &entries),
        vec![key_of(&v1)],
        "_at={between}"
    );
    assert_eq!(entries[0]["resource"], v1);

    // Type and system level: the versions current then, and nothing created later.
    let expected = vec![key_of(&v1), key_of(&older)];
    let entries = fhir.history("Patient/_history", &[("_at", &between)], None);
    assert_eq!(keys(&fhir.base, &entries), expected, "_at={between}");
    let entries = fhir.history("_history", &[("_at", &between)], None);
    assert_eq!(keys(&fhir.base, &entries), expected, "_at={between}");

    // After the update: v2 only.
    let later = millis(last_updated(&newer) + Duration::from_millis(5));
    let entries = fhir.history(&instance, &[("_at", &later)], None);
    assert_eq!(keys(&fhir.base, &entries), vec![key_of(&v2)], "_at={later}");
    let entries = fhir.history("Patient/_history", &[("_at", &later)], None);
    assert_eq!(
        keys(&fhir.base, &entries),
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
            keys(&fhir.base, &entries),
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
    fhir.delete(&format!("Patient/{}", id_of(&p)))
        .expect(204, "delete");
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
            let what = format!("{path}?_count={count}");
            let reply = fhir.get_query(path, &[("_count", count)]);
            reply.expect(400, &what);
            assert_issue_code(
                &reply.resource(),
                &["invalid", "value", "processing"],
                &what,
            );
        }
        let entries = fhir.history(path, &[("_count", "1")], Some(1));
        assert_eq!(entries.len(), 1);
        let entries = fhir.history(path, &[("_count", "1000")], Some(1000));
        assert_eq!(entries.len(), 1, "_count=1000 is allowed");
    }
}

/// Pages through the history at `path` with `query`: each page's `total`, and how many entries
/// all the pages list.
fn totals(fhir: &FhirClient, path: &str, query: &[(&str, &str)]) -> (Vec<Option<u64>>, usize) {
    let mut reply = fhir.get_query(path, query);
    let (mut totals, mut listed) = (Vec::new(), 0);
    loop {
        let page = reply.expect(200, path).resource();
        totals.push(page["total"].as_u64());
        listed += page["entry"].as_array().map_or(0, Vec::len);
        match link(&page, "next") {
            Some(next) => reply = send(fhir.http.get(next)),
            None => return (totals, listed),
        }
    }
}

/// A history path, its query, and how many entries it lists.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);

/// Every page of a history carries `total`: the number of entries all its pages list, with
/// `_since` and `_at` applied.
#[test]
fn history_bundles_carry_their_total_on_every_page() {
    let fhir = Fhir::start();
    let a = patient_with_versions(&fhir, "TotalA", 3);
    let b = fhir.create(&patient("TotalB"));
    fhir.delete(&format!("Patient/{}", id_of(&b)))
        .expect(204, "delete");
    fhir.create(&observation("total"));
    let since = a["meta"]["lastUpdated"].as_str().expect("lastUpdated");
    let of_a = format!("Patient/{}/_history", id_of(&a));
    let of_b = format!("Patient/{}/_history", id_of(&b));
    let cases: [Case; 14] = [
        (&of_a, &[], 3),
        (&of_a, &[("_count", "1")], 3),
        (&of_b, &[], 2),
        ("Patient/_history", &[("_count", "2")], 5),
        ("Observation/_history", &[], 1),
        ("_history", &[("_count", "4")], 6),
        ("_history", &[("_since", since)], 4),
        ("Patient/_history", &[("_since", since), ("_count", "1")], 3),
        (&of_a, &[("_since", since)], 1),
        (&of_a, &[("_at", since)], 1),
        ("Patient/_history", &[("_at", since)], 1),
        ("_history", &[("_since", "2999-01-01")], 0),
        ("Patient/_history", &[("_since", "2000")], 5),
        (&of_b, &[("_since", since)], 2),
    ];
    for (path, query, expected) in cases {
        let (page_totals, listed) = totals(&fhir, path, query);
        assert_eq!(listed, expected, "{path} {query:?}");
        assert!(
            page_totals.iter().all(|t| *t == Some(expected as u64)),
            "{path} {query:?}: totals {page_totals:?}, expected {expected}"
        );
    }
}

/// After retention trimmed the change log, type and system history (which read it) list what
/// it kept, and their total says so; an instance's history keeps every version.
#[test]
fn history_total_counts_what_retention_kept() {
    let temp = tempfile::tempdir().expect("temp dir");
    let fhir = Fhir::on(&temp.path().join("data"), &["--changes-retention", "1s"]);
    let a = patient_with_versions(&fhir, "Retained", 3);
    for n in 0..3 {
        fhir.create(&observation(&format!("trimmed {n}")));
    }
    let last = fhir.create(&patient("Last"));
    // Retention removes everything older than a second but the last change.
    let deadline = Instant::now() + Duration::from_secs(30);
    while totals(&fhir, "_history", &[]).1 > 1 {
        assert!(Instant::now() < deadline, "the log was not trimmed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let system = fhir.get("_history").expect(200, "history").resource();
    assert_eq!(system["total"], 1);
    assert_eq!(
        keys(&fhir.base, system["entry"].as_array().unwrap()),
        vec![key_of(&last)]
    );
    assert_eq!(totals(&fhir, "Patient/_history", &[]), (vec![Some(1)], 1));
    assert_eq!(
        totals(&fhir, "Observation/_history", &[]),
        (vec![Some(0)], 0)
    );
    let of_a = format!("Patient/{}/_history", id_of(&a));
    assert_eq!(totals(&fhir, &of_a, &[]), (vec![Some(3)], 3));
}
