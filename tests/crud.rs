//! Create, read, vread, update (and update-as-create), delete and re-create over HTTP, with
//! every header of the contract, and a round trip of every resource type of a Synthea bundle.
mod common;

use common::fhir::{Fhir, Reply, assert_outcome, id_of, send, strip_server_fields, version_of};
use common::synthea;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// [`common::fhir::patient`] with two given names and a phone number.
/// Creates [`patient`]`(family)`: the stored Patient, its id and its path `Patient/id`.
fn create_patient(fhir: &Fhir, family: &str) -> (Value, String, String) {
    let created = fhir.create(&patient(family));
    let id = id_of(&created);
    let path = format!("Patient/{id}");
    (created, id, path)
}

fn patient(family: &str) -> Value {
    let mut patient = common::fhir::patient(family);
    patient["name"][0]["given"] = json!(["Ada", "B."]);
    patient["telecom"] = json!([{"system": "phone", "value": "555-0100", "use": "home"}]);
    patient
}

/// meta.lastUpdated, which must be an instant with microseconds in UTC.
fn last_updated(resource: &Value) -> OffsetDateTime {
    let text = resource["meta"]["lastUpdated"]
        .as_str()
        .expect("meta.lastUpdated");
    assert!(
        is_instant_with_micros(text),
        "meta.lastUpdated {text:?} is not an instant with microseconds in UTC"
    );
    common::fhir::last_updated(resource)
}

/// `YYYY-MM-DDThh:mm:ss.ffffffZ`
fn is_instant_with_micros(text: &str) -> bool {
    let pattern = b"dddd-dd-ddTdd:dd:dd.ddddddZ";
    text.len() == pattern.len()
        && text.bytes().zip(pattern.iter()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            other => c == *other,
        })
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(text: &str) -> OffsetDateTime {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text, format)
        .unwrap_or_else(|e| panic!("Last-Modified {text:?} is not an HTTP date: {e}"))
        .assume_utc()
}

/// Asserts ETag `W/"{version}"` and a Last-Modified equal to meta.lastUpdated (to the second).
fn assert_version_headers(reply: &Reply, resource: &Value) {
    let version = version_of(resource);
    assert_eq!(reply.etag(), format!("W/\"{version}\""));
    let modified = http_date(&reply.header("last-modified").expect("Last-Modified header"));
    let updated = last_updated(resource);
    assert_eq!(
        modified,
        updated.replace_nanosecond(0).unwrap(),
        "Last-Modified must be meta.lastUpdated truncated to the second"
    );
}

/// The path of the first difference between two JSON values, for readable failures.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, value) in x {
                match y.get(key) {
                    None => return Some(format!("{path}.{key} missing on the right")),
                    Some(other) => {
                        if let Some(d) = first_difference(value, other, &format!("{path}.{key}")) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{k} missing on the left"))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

/// Asserts that `stored` is `sent` apart from the server-managed fields.
fn assert_same_content(sent: &Value, stored: &Value, what: &str) {
    let left = strip_server_fields(sent);
    let right = strip_server_fields(stored);
    if let Some(difference) = first_difference(&left, &right, "") {
        panic!("{what}: stored resource differs from the one sent at {difference}");
    }
}

#[test]
fn create_assigns_id_and_meta_and_sends_location_etag_last_modified() {
    let fhir = Fhir::start();
    let mut body = patient("Lovelace");
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z"});
    let before = OffsetDateTime::now_utc();
    let reply = fhir.post("Patient", &body);
    reply.expect(201, "create");
    let created = reply.resource();
    let after = OffsetDateTime::now_utc();

    let id = id_of(&created);
    assert!(is_uuid(&id), "server-assigned id {id:?} is not a UUID");
    assert_ne!(id, "client-chosen", "the id in a POST body must be ignored");
    assert_eq!(created["resourceType"], "Patient");
    assert_eq!(version_of(&created), "1");
    let updated = last_updated(&created);
    let slack = time::Duration::seconds(5);
    assert!(
        updated >= before - slack && updated <= after + slack,
        "lastUpdated {updated} is not the time of the create ({before}..{after})"
    );
    assert_same_content(&body, &created, "create");
    assert_eq!(
        reply.header("location").as_deref(),
        Some(format!("{}/Patient/{id}/_history/1", fhir.server.base).as_str())
    );
    assert_version_headers(&reply, &created);

    // The client's id was not used, and a second create gets a fresh id.
    assert_outcome(&fhir.get("Patient/client-chosen"), 404, &["not-found"]);
    let second = fhir.create(&body);
    assert_ne!(id_of(&second), id);
    assert_eq!(version_of(&second), "1");
}

#[test]
fn location_uses_base_url_flag() {
    let temp = tempfile::tempdir().expect("temp dir");
    let fhir = Fhir::on(
        &temp.path().join("data"),
        &["--base-url", "https://fhir.example.org/r4"],
    );
    let reply = fhir.post("Patient", &patient("Base"));
    reply.expect(201, "create");
    let id = id_of(&reply.resource());
    assert_eq!(
        reply.header("location").as_deref(),
        Some(format!("https://fhir.example.org/r4/Patient/{id}/_history/1").as_str())
    );
}

#[test]
fn read_returns_stored_resource_with_etag_and_last_modified() {
    let fhir = Fhir::start();
    let created = fhir.create(&patient("Read"));
    let id = id_of(&created);

    let reply = fhir.get(&format!("Patient/{id}"));
    reply.expect(200, "read");
    let read = reply.resource();
    assert_eq!(
        read, created,
        "read must return exactly the stored resource"
    );
    assert_version_headers(&reply, &read);

    let reply = fhir.get(&format!("Patient/{id}/_history/1"));
    reply.expect(200, "vread");
    assert_eq!(reply.resource(), created);
    assert_version_headers(&reply, &created);

    assert_outcome(&fhir.get("Patient/does-not-exist"), 404, &["not-found"]);
    assert_outcome(
        &fhir.get(&format!("Patient/{id}/_history/2")),
        404,
        &["not-found"],
    );
    assert_outcome(
        &fhir.get(&format!("Patient/{id}/_history/0")),
        404,
        &["not-found"],
    );
    assert_outcome(
        &fhir.get("Patient/does-not-exist/_history/1"),
        404,
        &["not-found"],
    );
    // The same id under another type is another resource.
    assert_outcome(&fhir.get(&format!("Observation/{id}")), 404, &["not-found"]);
}

#[test]
fn if_none_match_gives_304_for_the_current_version_only() {
    let fhir = Fhir::start();
    let (created, _, path) = create_patient(&fhir, "Cache");

    let reply = fhir.get_with(&path, &[("if-none-match", "W/\"1\"")]);
    reply.expect(304, "If-None-Match of the current version");
    assert!(reply.text.is_empty(), "a 304 has no body: {:?}", reply.text);

    let reply = fhir.get_with(&path, &[("if-none-match", "W/\"7\"")]);
    reply.expect(200, "If-None-Match of another version");
    assert_eq!(reply.resource(), created);

    let mut changed = created.clone();
    changed["gender"] = json!("other");
    fhir.put(&path, &changed).expect(200, "update");

    let reply = fhir.get_with(&path, &[("if-none-match", "W/\"1\"")]);
    reply.expect(200, "If-None-Match of an old version");
    let current = reply.resource();
    assert_eq!(version_of(&current), "2");
    assert_eq!(current["gender"], "other");

    let reply = fhir.get_with(&path, &[("if-none-match", "W/\"2\"")]);
    reply.expect(304, "If-None-Match of the new current version");
    assert!(reply.text.is_empty());
}

#[test]
fn update_makes_a_new_version_and_keeps_the_old_one() {
    let fhir = Fhir::start();
    let (v1, id, path) = create_patient(&fhir, "Update");

    let mut body = v1.clone();
    body["name"][0]["family"] = json!("Updated");
    body["birthDate"] = json!("1971-04-05");
    // Client-supplied meta.versionId and meta.lastUpdated are replaced by the server's.
    body["meta"] = json!({"versionId": "99", "lastUpdated": "2001-01-01T00:00:00.000000Z"});
    let reply = fhir.put(&path, &body);
    reply.expect(200, "update");
    let v2 = reply.resource();
    assert_eq!(id_of(&v2), id);
    assert_eq!(version_of(&v2), "2");
    assert!(
        last_updated(&v2) > last_updated(&v1),
        "v2 lastUpdated {} must be after v1 {}",
        v2["meta"]["lastUpdated"],
        v1["meta"]["lastUpdated"]
    );
    assert_same_content(&body, &v2, "update");
    assert_version_headers(&reply, &v2);

    let reply = fhir.get(&path);
    reply.expect(200, "read after update");
    assert_eq!(reply.resource(), v2);
    assert_version_headers(&reply, &v2);

    let reply = fhir.get(&format!("{path}/_history/1"));
    reply.expect(200, "vread v1");
    assert_eq!(reply.resource(), v1, "version 1 must be kept unchanged");
    assert_version_headers(&reply, &v1);
    assert_eq!(
        fhir.get(&format!("{path}/_history/2"))
            .expect(200, "vread v2")
            .resource(),
        v2
    );

    // An update without changes makes no version: the answer is the current one.
    let reply = fhir.put(&path, &v2);
    reply.expect(200, "update without changes");
    assert_eq!(reply.resource(), v2);
    assert_eq!(reply.etag(), "W/\"2\"");
    assert_version_headers(&reply, &v2);

    // A third update with a change continues the sequence.
    let mut v3 = v2.clone();
    v3["gender"] = json!("other");
    let reply = fhir.put(&path, &v3);
    assert_eq!(version_of(&reply.resource()), "3");
    assert_eq!(reply.etag(), "W/\"3\"");
}

#[test]
fn update_as_create_keeps_the_client_id() {
    let fhir = Fhir::start();
    let id = "client-id.42";
    let mut body = patient("Client");
    body["id"] = json!(id);
    let reply = fhir.put(&format!("Patient/{id}"), &body);
    reply.expect(201, "update-as-create");
    let created = reply.resource();
    assert_eq!(id_of(&created), id);
    assert_eq!(version_of(&created), "1");
    assert_same_content(&body, &created, "update-as-create");
    assert_version_headers(&reply, &created);

    let reply = fhir.get(&format!("Patient/{id}"));
    reply.expect(200, "read after update-as-create");
    assert_eq!(reply.resource(), created);

    // A 64-character id is valid.
    let long = "a".repeat(64);
    let mut body = patient("Long");
    body["id"] = json!(long);
    fhir.put(&format!("Patient/{long}"), &body)
        .expect(201, "update-as-create with a 64-character id");
    fhir.get(&format!("Patient/{long}"))
        .expect(200, "read of a 64-character id");
}

#[test]
fn update_with_missing_or_different_id_is_400_and_stores_nothing() {
    let fhir = Fhir::start();
    let mut body = patient("Mismatch");
    body["id"] = json!("other-id");
    assert_outcome(
        &fhir.put("Patient/url-id", &body),
        400,
        &["invalid", "value", "structure", "processing"],
    );
    let body = patient("Missing");
    assert_outcome(
        &fhir.put("Patient/url-id", &body),
        400,
        &["invalid", "value", "structure", "required", "processing"],
    );
    assert_outcome(&fhir.get("Patient/url-id"), 404, &["not-found"]);
    assert_outcome(&fhir.get("Patient/other-id"), 404, &["not-found"]);

    // The same on an existing resource: it is left unchanged.
    let created = fhir.create(&patient("Existing"));
    let id = id_of(&created);
    let mut body = created.clone();
    body["id"] = json!("somebody-else");
    body["gender"] = json!("male");
    assert_outcome(
        &fhir.put(&format!("Patient/{id}"), &body),
        400,
        &["invalid", "value", "structure", "processing"],
    );
    assert_eq!(
        fhir.get(&format!("Patient/{id}"))
            .expect(200, "read")
            .resource(),
        created
    );
}

#[test]
fn if_match_guards_update_and_delete() {
    let fhir = Fhir::start();
    let (v1, _, path) = create_patient(&fhir, "Match");
    let mut body = v1.clone();
    body["gender"] = json!("male");

    // A version that is not the current one.
    let reply = fhir.put_with(&path, &body, &[("if-match", "W/\"2\"")]);
    assert_outcome(&reply, 412, &["conflict"]);
    assert_eq!(fhir.get(&path).expect(200, "read").resource(), v1);

    // The current version, in strong form.
    let reply = fhir.put_with(&path, &body, &[("if-match", "\"1\"")]);
    reply.expect(200, "update with If-Match \"1\"");
    assert_eq!(version_of(&reply.resource()), "2");

    // v1 is stale now.
    body["gender"] = json!("female");
    let reply = fhir.put_with(&path, &body, &[("if-match", "W/\"1\"")]);
    assert_outcome(&reply, 412, &["conflict"]);
    let current = fhir.get(&path).expect(200, "read").resource();
    assert_eq!(version_of(&current), "2");
    assert_eq!(current["gender"], "male");

    // The current version, in weak form.
    let reply = fhir.put_with(&path, &body, &[("if-match", "W/\"2\"")]);
    reply.expect(200, "update with If-Match W/\"2\"");
    assert_eq!(version_of(&reply.resource()), "3");
    assert_eq!(reply.etag(), "W/\"3\"");

    // If-Match on a resource that does not exist: 412 and nothing is created.
    let mut ghost = patient("Ghost");
    ghost["id"] = json!("ghost");
    let reply = fhir.put_with("Patient/ghost", &ghost, &[("if-match", "W/\"1\"")]);
    assert_outcome(&reply, 412, &["conflict"]);
    assert_outcome(&fhir.get("Patient/ghost"), 404, &["not-found"]);
    let reply = fhir.delete_with("Patient/ghost", &[("if-match", "W/\"1\"")]);
    assert_outcome(&reply, 412, &["conflict"]);

    // DELETE with a stale version: 412, the resource is still there.
    let reply = fhir.delete_with(&path, &[("if-match", "W/\"2\"")]);
    assert_outcome(&reply, 412, &["conflict"]);
    fhir.get(&path).expect(200, "read after refused delete");

    // DELETE with the current version.
    let reply = fhir.delete_with(&path, &[("if-match", "W/\"3\"")]);
    reply.expect(204, "delete with If-Match of the current version");
    assert_eq!(reply.etag(), "W/\"4\"");
    assert_outcome(&fhir.get(&path), 410, &["deleted"]);
}

#[test]
fn delete_then_read_vread_and_recreate() {
    let fhir = Fhir::start();
    let (v1, id, path) = create_patient(&fhir, "Delete");

    let reply = fhir.delete(&path);
    reply.expect(204, "delete");
    assert!(reply.text.is_empty(), "204 has no body: {:?}", reply.text);
    assert_eq!(reply.etag(), "W/\"2\"", "ETag of the tombstone");

    assert_outcome(&fhir.get(&path), 410, &["deleted"]);
    assert_outcome(&fhir.get(&format!("{path}/_history/2")), 410, &["deleted"]);
    assert_outcome(
        &fhir.get(&format!("{path}/_history/3")),
        404,
        &["not-found"],
    );
    assert_eq!(
        fhir.get(&format!("{path}/_history/1"))
            .expect(200, "vread of the version before the delete")
            .resource(),
        v1
    );
    // If-None-Match does not hide a deletion.
    assert_outcome(
        &fhir.get_with(&path, &[("if-none-match", "W/\"1\"")]),
        410,
        &["deleted"],
    );

    // Deleting again: 204 and no new version.
    fhir.delete(&path).expect(204, "second delete");
    let history = fhir
        .get(&format!("{path}/_history"))
        .expect(200, "history")
        .resource();
    assert_eq!(
        history["entry"].as_array().map(Vec::len),
        Some(2),
        "a second delete must not add a version: {history}"
    );

    // Update-as-create after the delete continues the version sequence.
    let mut body = patient("Reborn");
    body["id"] = json!(id);
    let reply = fhir.put(&path, &body);
    reply.expect(201, "re-create after delete");
    let v3 = reply.resource();
    assert_eq!(version_of(&v3), "3");
    assert_eq!(reply.etag(), "W/\"3\"");
    assert_same_content(&body, &v3, "re-create");
    assert_version_headers(&reply, &v3);
    assert_eq!(fhir.get(&path).expect(200, "read").resource(), v3);
    assert_outcome(&fhir.get(&format!("{path}/_history/2")), 410, &["deleted"]);

    let mut v4 = v3.clone();
    v4["gender"] = json!("other");
    let reply = fhir.put(&path, &v4);
    reply.expect(200, "update after re-create");
    assert_eq!(version_of(&reply.resource()), "4");
}

#[test]
fn delete_of_a_missing_resource_is_204_and_creates_nothing() {
    let fhir = Fhir::start();
    let reply = fhir.delete("Patient/never-was");
    reply.expect(204, "delete of a missing resource");
    assert!(reply.text.is_empty());
    fhir.delete("Patient/never-was")
        .expect(204, "second delete of a missing resource");
    // Still unknown rather than deleted: no tombstone was written.
    assert_outcome(&fhir.get("Patient/never-was"), 404, &["not-found"]);
    assert_outcome(&fhir.get("Patient/never-was/_history"), 404, &["not-found"]);
    let history = fhir
        .get("_history")
        .expect(200, "system history")
        .resource();
    assert!(
        history["entry"].as_array().is_none_or(Vec::is_empty),
        "no version may have been written: {history}"
    );
    // A later update-as-create starts at version 1.
    let mut body = patient("Late");
    body["id"] = json!("never-was");
    let reply = fhir.put("Patient/never-was", &body);
    reply.expect(201, "create after deleting nothing");
    assert_eq!(version_of(&reply.resource()), "1");
}

/// A create (POST to `path`, a type: 201) or an update (PUT to `path`, `Type/id`: 200) of
/// `body` with `Prefer: return={preference}`; asserts the status.
fn prefer(fhir: &Fhir, path: &str, body: &Value, preference: &str) -> Reply {
    let (interaction, method, status) = if path.contains('/') {
        ("update", Method::PUT, 200)
    } else {
        ("create", Method::POST, 201)
    };
    let prefer = format!("return={preference}");
    let reply = fhir.submit(method, path, body, &[("prefer", prefer.as_str())]);
    reply.expect(status, &format!("{interaction} {prefer}"));
    reply
}

/// Asserts the OperationOutcome of `Prefer: return=OperationOutcome`: an information issue.
fn assert_information(reply: &Reply) {
    let outcome = reply.resource();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");
}

#[test]
fn prefer_return_minimal_representation_and_operation_outcome() {
    let fhir = Fhir::start();

    let reply = prefer(&fhir, "Patient", &patient("Min"), "minimal");
    assert!(reply.text.is_empty(), "return=minimal: {:?}", reply.text);
    assert_eq!(reply.etag(), "W/\"1\"");
    assert!(reply.header("last-modified").is_some());
    let location = reply.header("location").expect("Location");
    let prefix = format!("{}/Patient/", fhir.server.base);
    let id = location
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix("/_history/1"))
        .unwrap_or_else(|| panic!("Location {location:?}"))
        .to_string();
    let stored = send(fhir.http.get(&location))
        .expect(200, "vread of the Location")
        .resource();
    assert_eq!(id_of(&stored), id);
    assert_same_content(&patient("Min"), &stored, "create return=minimal");

    let reply = prefer(&fhir, "Patient", &patient("Rep"), "representation");
    let created = reply.resource();
    assert_same_content(&patient("Rep"), &created, "create return=representation");

    let reply = prefer(&fhir, "Patient", &patient("OO"), "OperationOutcome");
    assert_information(&reply);
    assert_eq!(reply.etag(), "W/\"1\"");
    let location = reply.header("location").expect("Location");
    assert!(location.starts_with(&prefix) && location.ends_with("/_history/1"));

    // The same preferences on update, each with a change.
    let path = format!("Patient/{id}");
    let changed = |family: &str| {
        let mut body = stored.clone();
        body["name"][0]["family"] = json!(family);
        body
    };
    let reply = prefer(&fhir, &path, &changed("Min2"), "minimal");
    assert!(reply.text.is_empty(), "return=minimal: {:?}", reply.text);
    assert_eq!(reply.etag(), "W/\"2\"");

    let reply = prefer(&fhir, &path, &changed("OO2"), "OperationOutcome");
    assert_information(&reply);
    assert_eq!(reply.etag(), "W/\"3\"");

    let reply = prefer(&fhir, &path, &changed("Rep2"), "representation");
    let v4 = reply.resource();
    assert_eq!(version_of(&v4), "4");
    assert_same_content(&changed("Rep2"), &v4, "update return=representation");

    // An update without changes says so.
    let reply = prefer(&fhir, &path, &v4, "OperationOutcome");
    assert_information(&reply);
    assert_eq!(reply.etag(), "W/\"4\"");
    assert!(reply.text.contains("unchanged"), "{}", reply.text);
}

#[test]
fn synthea_resources_of_every_type_round_trip() {
    let resources = synthea::resources("057aa36e");
    // The first two resources of every type in the bundle.
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for resource in resources {
        let kind = resource["resourceType"].as_str().expect("type").to_string();
        let list = by_type.entry(kind).or_default();
        if list.len() < 2 {
            list.push(resource);
        }
    }
    for kind in ["Patient", "Encounter", "Observation", "Condition", "Claim"] {
        assert!(by_type.contains_key(kind), "bundle lacks {kind}");
    }
    assert!(by_type.len() >= 15, "types: {:?}", by_type.keys());

    let fhir = Fhir::start();
    for (kind, list) in &by_type {
        for sent in list {
            let what = format!("{kind} {}", sent["id"]);
            // Create: the server's id replaces Synthea's.
            let reply = fhir.post(kind, sent);
            reply.expect(201, &format!("create {what}"));
            let created = reply.resource();
            assert_same_content(sent, &created, &format!("create {what}"));
            assert_eq!(version_of(&created), "1");
            let id = id_of(&created);
            assert_ne!(Some(id.as_str()), sent["id"].as_str());

            let read = fhir
                .get(&format!("{kind}/{id}"))
                .expect(200, &format!("read {what}"))
                .resource();
            assert_same_content(sent, &read, &format!("read {what}"));
            assert_eq!(read, created);

            // Update with the same content under the server's id: nothing changes, the
            // answer is version 1 as stored.
            let mut body = sent.clone();
            body["id"] = json!(id);
            let reply = fhir.put(&format!("{kind}/{id}"), &body);
            reply.expect(200, &format!("update {what}"));
            assert_eq!(reply.resource(), created, "unchanged update of {what}");
            assert_eq!(reply.etag(), "W/\"1\"");

            // Update with a change (a tag), then the old version is still there.
            body["meta"] = json!({"tag": [{"system": "http://example.org/tags", "code": "seen"}]});
            let reply = fhir.put(&format!("{kind}/{id}"), &body);
            reply.expect(200, &format!("update {what}"));
            let updated = reply.resource();
            assert_eq!(version_of(&updated), "2");
            assert_same_content(&body, &updated, &format!("update {what}"));
            let old = fhir
                .get(&format!("{kind}/{id}/_history/1"))
                .expect(200, &format!("vread {what}"))
                .resource();
            assert_eq!(old, created);

            // Update-as-create under Synthea's own id.
            let original = sent["id"].as_str().expect("synthea id");
            let reply = fhir.put(&format!("{kind}/{original}"), sent);
            reply.expect(201, &format!("update-as-create {what}"));
            let stored = reply.resource();
            assert_eq!(id_of(&stored), original);
            assert_same_content(sent, &stored, &format!("update-as-create {what}"));
            let read = fhir
                .get(&format!("{kind}/{original}"))
                .expect(200, &format!("read {what} by its Synthea id"))
                .resource();
            assert_eq!(read, stored);
        }
    }
}

/// fhirpy's `get_or_create()` sends a conditional create as a query string: it is a
/// conditional create, as `If-None-Exist` is.
#[test]
fn a_create_with_a_query_is_a_conditional_create() {
    let fhir = Fhir::start();
    let mut body = patient("Query");
    body["identifier"] = json!([{"system": "http://example.org/mrn", "value": "42"}]);
    let criteria = "identifier=http://example.org/mrn|42";
    let first = fhir.post(&format!("Patient?{criteria}"), &body);
    first.expect(201, "no match: created");
    let created = first.resource();
    let again = fhir.post(&format!("Patient?{criteria}"), &body);
    again.expect(200, "one match: not created again");
    assert_eq!(again.resource(), created);
    // The same criteria in both places, in any order, are fine; different ones are 400.
    let both = fhir.post_with(
        &format!("Patient?{criteria}&_format=json"),
        &body,
        &[("If-None-Exist", criteria)],
    );
    both.expect(200, "the same criteria twice");
    assert_outcome(
        &fhir.post_with(
            &format!("Patient?{criteria}"),
            &body,
            &[("If-None-Exist", "identifier=http://example.org/mrn|43")],
        ),
        400,
        &["invalid"],
    );
    // `_format` alone is not a criterion: this is a plain create.
    fhir.post("Patient?_format=json", &body)
        .expect(201, "_format only");
    // Two now match: 412, nothing created.
    assert_outcome(
        &fhir.post(&format!("Patient?{criteria}"), &body),
        412,
        &["conflict"],
    );
    let found = fhir
        .get(&format!("Patient?{criteria}"))
        .expect(200, "search")
        .resource();
    assert_eq!(found["total"], 2, "{found}");
}

/// `If-None-Match: *` on a PUT creates only when the resource does not exist (RFC 9110); a
/// deleted resource does not. Versions name the current ones not to replace.
#[test]
fn put_with_if_none_match_creates_only() {
    let fhir = Fhir::start();
    let mut body = patient("Only");
    body["id"] = json!("only-once");
    let path = "Patient/only-once";
    fhir.put_with(path, &body, &[("If-None-Match", "*")])
        .expect(201, "absent: created");
    let mut changed = body.clone();
    changed["gender"] = json!("male");
    assert_outcome(
        &fhir.put_with(path, &changed, &[("If-None-Match", "*")]),
        412,
        &["conflict"],
    );
    assert_eq!(version_of(&fhir.get(path).resource()), "1");
    assert_outcome(
        &fhir.put_with(path, &changed, &[("If-None-Match", "W/\"1\"")]),
        412,
        &["conflict"],
    );
    fhir.put_with(path, &changed, &[("If-None-Match", "W/\"7\", W/\"8\"")])
        .expect(200, "not one of those versions");
    assert_outcome(
        &fhir.put_with(path, &body, &[("If-None-Match", "tomorrow")]),
        400,
        &["invalid"],
    );
    fhir.delete(path).expect(204, "delete");
    let reply = fhir.put_with(path, &body, &[("If-None-Match", "*")]);
    reply.expect(201, "deleted: created again");
    assert_eq!(reply.etag(), "W/\"4\"");
}
