//! PATCH over HTTP: JSON Patch, FHIRPath Patch and merge patch (fhirpy's), `If-Match`,
//! `Prefer`, conditional patch, validation of the result, the identity of the resource, PATCH
//! entries in batch and transaction Bundles, and no version for a patch that changes nothing.
mod common;

use common::changes::pull_all;
use common::fhir::{Fhir, FhirClient, Reply, assert_outcome, id_of, send};
use serde_json::{Value, json};

const JSON_PATCH: &str = "application/json-patch+json";
const FHIR_JSON: &str = "application/fhir+json";

/// PATCHes `path` with `body` as `content_type`, with `headers`.
fn patch_with(
    fhir: &FhirClient,
    path: &str,
    content_type: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = fhir
        .http
        .patch(fhir.url(path))
        .header("content-type", content_type)
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request)
}

fn patch(fhir: &FhirClient, path: &str, content_type: &str, body: &Value) -> Reply {
    patch_with(fhir, path, content_type, body, &[])
}

/// A FHIRPath Patch of `operations`: (type, path, more parts).
fn fhirpath_patch(operations: &[(&str, &str, Value)]) -> Value {
    let parameter: Vec<Value> = operations
        .iter()
        .map(|(kind, path, more)| {
            let mut parts = vec![
                json!({"name": "type", "valueCode": kind}),
                json!({"name": "path", "valueString": path}),
            ];
            parts.extend(more.as_array().cloned().unwrap_or_default());
            json!({"name": "operation", "part": parts})
        })
        .collect();
    json!({"resourceType": "Parameters", "parameter": parameter})
}

/// Creates a Patient with `family` and an identifier `mrn`; returns its `Patient/id`.
fn create_patient(fhir: &Fhir, family: &str, mrn: &str) -> String {
    let patient = json!({
        "resourceType": "Patient",
        "active": true,
        "identifier": [{"system": "http://example.org/mrn", "value": mrn}],
        "name": [{"family": family, "given": ["Ada"]}]
    });
    format!("Patient/{}", id_of(&fhir.create(&patient)))
}

fn version(reply: &Reply) -> String {
    reply.etag()
}

#[test]
fn each_patch_format_makes_a_new_version_and_a_change() {
    let fhir = Fhir::start();
    let path = create_patient(&fhir, "Chalmers", "1");
    // JSON Patch, as fhir-kit-client sends it.
    let reply = patch(
        &fhir,
        &path,
        JSON_PATCH,
        &json!([
            {"op": "test", "path": "/active", "value": true},
            {"op": "replace", "path": "/active", "value": false},
            {"op": "add", "path": "/name/0/given/-", "value": "Byron"}
        ]),
    );
    reply.expect(200, "JSON Patch");
    assert_eq!(version(&reply), "W/\"2\"");
    let patched = reply.resource();
    assert_eq!(patched["active"], json!(false));
    assert_eq!(patched["name"][0]["given"], json!(["Ada", "Byron"]));
    assert_eq!(patched["meta"]["versionId"], "2");
    assert!(reply.header("location").unwrap().ends_with("/_history/2"));
    // FHIRPath Patch.
    let reply = patch(
        &fhir,
        &path,
        FHIR_JSON,
        &fhirpath_patch(&[
            (
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "birthDate"},
                       {"name": "value", "valueDate": "1974-12-25"}]),
            ),
            ("delete", "Patient.name.given[0]", json!([])),
        ]),
    );
    reply.expect(200, "FHIRPath Patch");
    let patched = reply.resource();
    assert_eq!(patched["birthDate"], "1974-12-25");
    assert_eq!(patched["name"][0]["given"], json!(["Byron"]));
    // A merge patch as fhirpy's `patch()` sends it: plain JSON, null removes.
    let reply = patch(
        &fhir,
        &path,
        "application/json",
        &json!({"active": true, "birthDate": null}),
    );
    reply.expect(200, "merge patch");
    let patched = reply.resource();
    assert_eq!(patched["active"], json!(true));
    assert!(patched.get("birthDate").is_none());
    assert_eq!(patched["meta"]["versionId"], "4");
    // Each is a version, in the history and in the change stream.
    assert_eq!(fhir.whole_history(&format!("{path}/_history")).len(), 4);
    let changes = pull_all(&fhir, "");
    assert_eq!(changes.len(), 4, "{changes:?}");
    let read = fhir.get(&path).expect(200, "read").resource();
    assert_eq!(read, patched);
}

#[test]
fn a_failed_test_is_422_and_changes_nothing() {
    let fhir = Fhir::start();
    let path = create_patient(&fhir, "Chalmers", "1");
    let reply = patch(
        &fhir,
        &path,
        JSON_PATCH,
        &json!([
            {"op": "replace", "path": "/active", "value": false},
            {"op": "test", "path": "/name/0/family", "value": "Someone else"}
        ]),
    );
    let outcome = assert_outcome(&reply, 422, &["processing"]);
    assert!(
        outcome.to_string().contains("operation 1"),
        "names the operation: {outcome}"
    );
    // Paths that are not there, and FHIRPath paths that select nothing to replace.
    assert_outcome(
        &patch(
            &fhir,
            &path,
            JSON_PATCH,
            &json!([{"op": "remove", "path": "/telecom/0"}]),
        ),
        422,
        &["processing"],
    );
    assert_outcome(
        &patch(
            &fhir,
            &path,
            FHIR_JSON,
            &fhirpath_patch(&[(
                "replace",
                "Patient.birthDate",
                json!([{"name": "value", "valueDate": "2000-01-01"}]),
            )]),
        ),
        422,
        &["processing"],
    );
    let read = fhir.get(&path).expect(200, "read").resource();
    assert_eq!(
        (read["active"].clone(), version_of(&read)),
        (json!(true), "1")
    );
}

fn version_of(resource: &Value) -> &str {
    resource["meta"]["versionId"].as_str().unwrap()
}

#[test]
fn malformed_patches_are_400_and_other_media_types_415() {
    let fhir = Fhir::start();
    let path = create_patient(&fhir, "Chalmers", "1");
    for (content_type, body) in [
        (JSON_PATCH, json!({"op": "remove", "path": "/active"})),
        (JSON_PATCH, json!([{"op": "frobnicate", "path": "/active"}])),
        (JSON_PATCH, json!([{"op": "remove", "path": "active"}])),
        (JSON_PATCH, json!([{"op": "remove", "path": "/a~2b"}])),
        (FHIR_JSON, json!([1, 2])),
        (
            FHIR_JSON,
            fhirpath_patch(&[("frobnicate", "Patient.active", json!([]))]),
        ),
        (
            FHIR_JSON,
            fhirpath_patch(&[(
                "replace",
                "Patient.active.where(",
                json!([{"name": "value", "valueBoolean": false}]),
            )]),
        ),
        (
            FHIR_JSON,
            json!({"resourceType": "Parameters", "parameter": [{"name": "operation",
                   "part": [{"name": "type", "valueCode": "delete"}]}]}),
        ),
    ] {
        let reply = patch(&fhir, &path, content_type, &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
    }
    let not_json = send(
        fhir.http
            .patch(fhir.url(&path))
            .header("content-type", JSON_PATCH)
            .body("[{"),
    );
    assert_outcome(&not_json, 400, &["structure"]);
    for content_type in [
        "application/xml-patch+xml",
        "text/plain",
        "application/fhir+xml",
    ] {
        let reply = patch(&fhir, &path, content_type, &json!([]));
        assert_outcome(&reply, 415, &["not-supported"]);
    }
    let read = fhir.get(&path).expect(200, "read").resource();
    assert_eq!(version_of(&read), "1");
}

#[test]
fn the_result_must_be_the_same_valid_resource() {
    let fhir = Fhir::start();
    let path = create_patient(&fhir, "Chalmers", "1");
    for (body, status, code) in [
        (
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            400,
            "invalid",
        ),
        (json!([{"op": "remove", "path": "/id"}]), 400, "invalid"),
        (
            json!([{"op": "replace", "path": "/resourceType", "value": "Group"}]),
            400,
            "invalid",
        ),
        (
            json!([{"op": "add", "path": "/frobnicate", "value": 1}]),
            422,
            "structure",
        ),
        (
            json!([{"op": "replace", "path": "/active", "value": "yes"}]),
            422,
            "structure",
        ),
    ] {
        let reply = patch(&fhir, &path, JSON_PATCH, &body);
        assert_outcome(&reply, status, &[code]);
    }
    // An empty string the patch leaves is taken out with a warning, as an update's is.
    let reply = patch(
        &fhir,
        &path,
        JSON_PATCH,
        &json!([{"op": "add", "path": "/name/0/given/-", "value": ""}]),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["name"][0]["given"], json!(["Ada"]));
    assert!(
        reply.headers.get("x-fhir-request-validation").is_some(),
        "{:?}",
        reply.headers
    );
    // The validator judges the result as any update: an Observation without its status.
    let observation = fhir.create(&json!({
        "resourceType": "Observation", "status": "final",
        "code": {"text": "weight"}, "subject": {"reference": path}
    }));
    let observation_path = format!("Observation/{}", id_of(&observation));
    let reply = patch(
        &fhir,
        &observation_path,
        JSON_PATCH,
        &json!([{"op": "remove", "path": "/status"}]),
    );
    assert_eq!(reply.status, 422, "{}", reply.text);
    // `meta.versionId` in a patch changes nothing: the server sets it.
    let reply = patch(
        &fhir,
        &path,
        JSON_PATCH,
        &json!([{"op": "add", "path": "/meta/versionId", "value": "99"},
                {"op": "replace", "path": "/active", "value": false}]),
    );
    reply.expect(200, "versionId is the server's");
    assert_eq!(version_of(&reply.resource()), "2");
}

#[test]
fn if_match_prefer_and_missing_resources() {
    let fhir = Fhir::start();
    let path = create_patient(&fhir, "Chalmers", "1");
    let deactivate = json!([{"op": "replace", "path": "/active", "value": false}]);
    let reply = patch_with(
        &fhir,
        &path,
        JSON_PATCH,
        &deactivate,
        &[("If-Match", "W/\"2\"")],
    );
    assert_outcome(&reply, 412, &["conflict"]);
    let reply = patch_with(
        &fhir,
        &path,
        JSON_PATCH,
        &deactivate,
        &[("If-Match", "W/\"1\""), ("Prefer", "return=minimal")],
    );
    reply.expect(200, "If-Match of the current version");
    assert!(reply.text.is_empty());
    assert_eq!(version(&reply), "W/\"2\"");
    let reply = patch_with(
        &fhir,
        &path,
        JSON_PATCH,
        &json!([{"op": "add", "path": "/gender", "value": "female"}]),
        &[("Prefer", "return=OperationOutcome")],
    );
    let outcome = reply.expect(200, "outcome").resource();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome.to_string().contains("version 3"), "{outcome}");
    let reply = patch_with(&fhir, &path, JSON_PATCH, &deactivate, &[("If-Match", "3")]);
    reply.expect(200, "If-Match without W/");
    assert_outcome(
        &patch(&fhir, "Patient/nobody", JSON_PATCH, &deactivate),
        404,
        &["not-found"],
    );
    fhir.delete(&path).expect(204, "delete");
    assert_outcome(
        &patch(&fhir, &path, JSON_PATCH, &deactivate),
        410,
        &["deleted"],
    );
    assert_outcome(
        &patch(&fhir, "Patient/bad id!", JSON_PATCH, &deactivate),
        400,
        &["value"],
    );
    assert_outcome(
        &patch(&fhir, "Nothing/x", JSON_PATCH, &deactivate),
        404,
        &["not-found"],
    );
}

#[test]
fn a_patch_or_update_that_changes_nothing_makes_no_version() {
    let fhir = Fhir::start();
    let path = create_patient(&fhir, "Chalmers", "1");
    let created = fhir.get(&path).expect(200, "read").resource();
    // Only a test, a value replaced by itself, a FHIRPath delete of nothing: no change.
    for (content_type, body) in [
        (
            JSON_PATCH,
            json!([{"op": "test", "path": "/active", "value": true}]),
        ),
        (
            JSON_PATCH,
            json!([{"op": "replace", "path": "/active", "value": true}]),
        ),
        (
            FHIR_JSON,
            fhirpath_patch(&[("delete", "Patient.birthDate", json!([]))]),
        ),
        ("application/merge-patch+json", json!({"active": true})),
    ] {
        let reply = patch(&fhir, &path, content_type, &body);
        reply.expect(200, "unchanged");
        assert_eq!(version(&reply), "W/\"1\"", "{body}");
        assert_eq!(reply.resource(), created, "the current version, as stored");
    }
    let reply = patch_with(
        &fhir,
        &path,
        JSON_PATCH,
        &json!([]),
        &[("Prefer", "return=OperationOutcome")],
    );
    let outcome = reply.expect(200, "says so").resource();
    assert!(outcome.to_string().contains("unchanged"), "{outcome}");
    // An update with the same content, in another member order and with a stale meta.
    let mut same = created.clone();
    same["meta"] = json!({"versionId": "9", "lastUpdated": "2001-01-01T00:00:00Z"});
    let reordered: Value = {
        let mut members: Vec<(String, Value)> =
            same.as_object().unwrap().clone().into_iter().collect();
        members.reverse();
        Value::Object(members.into_iter().collect())
    };
    let reply = fhir.put(&path, &reordered);
    reply.expect(200, "unchanged update");
    assert_eq!(version(&reply), "W/\"1\"");
    assert_eq!(
        reply.header("last-modified"),
        fhir.get(&path).header("last-modified")
    );
    assert_eq!(fhir.whole_history(&format!("{path}/_history")).len(), 1);
    assert_eq!(pull_all(&fhir, "").len(), 1, "no change-log entry");
    // A real change still makes a version.
    let mut changed = created.clone();
    changed["active"] = json!(false);
    let reply = fhir.put(&path, &changed);
    assert_eq!(version(&reply), "W/\"2\"");
    assert_eq!(pull_all(&fhir, "").len(), 2);
}

#[test]
fn conditional_patch_patches_the_one_match() {
    let fhir = Fhir::start();
    let first = create_patient(&fhir, "Chalmers", "1");
    create_patient(&fhir, "Chalmers", "2");
    let deactivate = json!([{"op": "replace", "path": "/active", "value": false}]);
    let reply = patch(
        &fhir,
        "Patient?identifier=http://example.org/mrn|1",
        JSON_PATCH,
        &deactivate,
    );
    reply.expect(200, "one match");
    assert_eq!(
        format!("Patient/{}", id_of(&reply.resource())),
        first,
        "patched the match"
    );
    assert_outcome(
        &patch(
            &fhir,
            "Patient?identifier=http://example.org/mrn|3",
            JSON_PATCH,
            &deactivate,
        ),
        404,
        &["not-found"],
    );
    assert_outcome(
        &patch(&fhir, "Patient?family=Chalmers", JSON_PATCH, &deactivate),
        412,
        &["conflict"],
    );
    assert_outcome(
        &patch(&fhir, "Patient", JSON_PATCH, &deactivate),
        400,
        &["required"],
    );
}

/// A Binary holding `patch` as a JSON Patch.
fn binary(patch: &Value) -> Value {
    use base64::Engine as _;
    json!({
        "resourceType": "Binary",
        "contentType": JSON_PATCH,
        "data": base64::engine::general_purpose::STANDARD.encode(patch.to_string())
    })
}

fn entry(url: &str, resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "PATCH", "url": url}})
}

#[test]
fn bundles_carry_patch_entries() {
    let fhir = Fhir::start();
    let first = create_patient(&fhir, "Chalmers", "1");
    let second = create_patient(&fhir, "Levin", "2");
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(&first, binary(&json!([{"op": "replace", "path": "/active", "value": false}]))),
        entry(
            "Patient?identifier=http://example.org/mrn|2",
            fhirpath_patch(&[(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "gender"},
                       {"name": "value", "valueCode": "male"}]),
            )]),
        ),
        {"request": {"method": "GET", "url": first}}
    ]});
    let reply = fhir.bundle(&transaction);
    let response = reply.expect(200, "transaction").resource();
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries[0]["response"]["status"], "200 OK");
    assert_eq!(entries[0]["response"]["etag"], "W/\"2\"");
    assert_eq!(entries[1]["response"]["status"], "200 OK");
    assert_eq!(
        entries[2]["resource"]["active"],
        json!(false),
        "reads see the patch"
    );
    assert_eq!(fhir.get(&second).resource()["gender"], "male");

    // A transaction with a failing patch changes nothing.
    let failing = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry(&first, binary(&json!([{"op": "replace", "path": "/active", "value": true}]))),
        entry(&second, binary(&json!([{"op": "test", "path": "/gender", "value": "female"}])))
    ]});
    let outcome = assert_outcome(&fhir.bundle(&failing), 422, &["processing"]);
    assert!(outcome.to_string().contains("Bundle.entry[1]"), "{outcome}");
    assert_eq!(fhir.get(&first).resource()["active"], json!(false));

    // A batch reports each entry: a patch that fits, one that fails, one of nothing, a bad one.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        entry(&first, binary(&json!([{"op": "replace", "path": "/active", "value": true}]))),
        entry(&second, binary(&json!([{"op": "test", "path": "/gender", "value": "female"}]))),
        entry("Patient/nobody", binary(&json!([]))),
        entry(&first, json!({"resourceType": "Patient"})),
        entry(&second, binary(&json!([{"op": "test", "path": "/gender", "value": "male"}])))
    ]});
    let response = fhir.bundle(&batch).expect(200, "batch").resource();
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "200 OK",
            "422 Unprocessable Entity",
            "404 Not Found",
            "400 Bad Request",
            "200 OK"
        ]
    );
    assert_eq!(
        response["entry"][4]["response"]["etag"], "W/\"2\"",
        "a patch that changes nothing keeps the version"
    );
    assert_eq!(fhir.get(&first).resource()["active"], json!(true));
}

/// A JSON Patch that copies the whole resource into itself, again and again, doubles it each
/// time: it is refused (413) once its copies would add more than `--max-body`, long before it
/// could exhaust memory.
#[test]
fn copies_cannot_blow_a_resource_up() {
    let fhir = Fhir::with(common::TestServer::start_with(&["--max-body", "1048576"]));
    let path = create_patient(&fhir, "Chalmers", "1");
    let mut doubling = vec![json!({"op": "add", "path": "/x", "value": []})];
    doubling.extend((0..64).map(|_| json!({"op": "copy", "from": "", "path": "/x/-"})));
    let reply = patch(&fhir, &path, JSON_PATCH, &Value::Array(doubling));
    assert_outcome(&reply, 413, &["too-long"]);
    fhir.get(&path).expect(200, "the server is fine");
}

/// Concurrent patches of one resource without `If-Match` take turns: every one lands, on the
/// version the one before made, and none is lost.
#[test]
fn concurrent_patches_lose_nothing() {
    let fhir = Fhir::start();
    let path = create_patient(&fhir, "Chalmers", "0");
    let landed: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let client = fhir.new_client();
                let path = &path;
                scope.spawn(move || {
                    let mut landed = 0;
                    for n in 0..8 {
                        let add = json!([{"op": "add", "path": "/identifier/-",
                            "value": {"system": "http://example.org/n", "value": format!("{worker}-{n}")}}]);
                        patch(&client, path, JSON_PATCH, &add).expect(200, "a concurrent patch");
                        landed += 1;
                    }
                    landed
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(landed, 32);
    let read = fhir.get(&path).expect(200, "read").resource();
    assert_eq!(read["identifier"].as_array().unwrap().len(), 1 + landed);
    assert_eq!(version_of(&read), (1 + landed).to_string());
}
