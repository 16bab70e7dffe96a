//! Erasure over HTTP against the real binary, on Synthea data: `$erase` of a version and of a
//! resource, `$purge` of a patient's compartment (a job, killed mid-way and resumed), and
//! `$bulk-delete`; who may erase.
//!
//! After an erasure nothing of the content is found by any reader: read, vread, history at
//! every level, search (`_content` too), `$everything`, `$changes` replayed from 0 and a new
//! SSE consumer from 0; a rest-hook receiver gets the `erased` event and the NATS sink deletes
//! the erased change's message from its stream; exports finished before are named in a purge's
//! result and exports after hold none of it; the change log stays gap-free and an unrelated
//! resource is untouched; and no file of the data directory holds the erased bytes, in use or
//! free.
//! Resources are chosen by content (a patient by its Synthea file and identifier), never by
//! server-assigned ids; jobs are paused by count (`FHIRLAKE_TEST_ERASE_PAUSE`), never by time.

mod common;

use common::auth::{HS256, bearer, token};
use common::changes::{Ended, NatsServer, pull_all, read_sse, seq, stream_messages};
use common::fhir::{Fhir, FhirClient, Reply, assert_outcome, send};
use common::receiver::Receiver;
use common::{TestServer, run_command, synthea};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A small Synthea patient and a large one (thousands of resources).
const SMALL: &str = "8a4c9c04";
const LARGE: &str = "e5a8d3f4";

/// The longest a test waits for a job.
const GIVE_UP: Duration = Duration::from_secs(600);

/// Imports the providers and the patient files `prefixes` into `data`.
fn import(data: &Path, prefixes: &[&str]) {
    let mut args = vec!["import".to_string(), "--quiet".to_string()];
    for prefix in ["0-hospitalInformation", "0-practitionerInformation"]
        .iter()
        .chain(prefixes)
    {
        args.push(synthea::path(prefix).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_command(&args, data);
}

/// The server's id of the Patient of the Synthea file `prefix`, found by its identifier.
fn patient_id(client: &FhirClient, prefix: &str) -> String {
    let patient = synthea::resources(prefix)
        .into_iter()
        .find(|r| r["resourceType"] == "Patient")
        .expect("a Patient");
    let identifier = &patient["identifier"][0];
    let query = format!(
        "{}|{}",
        identifier["system"].as_str().unwrap(),
        identifier["value"].as_str().unwrap()
    );
    let found = client.get_query("Patient", &[("identifier", &query)]);
    found.expect(200, "find the patient");
    let bundle = found.json();
    assert_eq!(
        bundle["entry"].as_array().map(Vec::len),
        Some(1),
        "one patient"
    );
    bundle["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every `Type/id` of the patient's compartment (the Patient too), by searches.
fn compartment(client: &FhirClient, id: &str) -> Vec<String> {
    let mut keys = vec![format!("Patient/{id}")];
    let mut reply = client.get_query(&format!("Patient/{id}/*"), &[("_count", "1000")]);
    loop {
        reply.expect(200, "compartment search");
        let bundle = reply.json();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            let key = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            );
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str().map(String::from));
        match next {
            Some(url) => reply = send(client.http.get(url)),
            None => return keys,
        }
    }
}

/// Polls a job's status URL until it ends; returns the last answer.
fn wait_for_end(client: &FhirClient, status: &str) -> Reply {
    let started = Instant::now();
    loop {
        let reply = send(client.http.get(status));
        if reply.status != 202 && reply.status != 429 {
            return reply;
        }
        assert!(started.elapsed() < GIVE_UP, "the job did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kicks off `path` by POST: the status URL.
fn kick_off(client: &FhirClient, path: &str) -> String {
    let reply = client.post(path, String::new());
    reply.expect(202, path);
    reply.header("content-location").expect("Content-Location")
}

/// Exports every Patient: the status URL and the files' content.
fn export_patients(client: &FhirClient) -> (String, String) {
    let reply = client.get_with("$export?_type=Patient", &[("Prefer", "respond-async")]);
    reply.expect(202, "export kick-off");
    let status = reply.header("content-location").unwrap();
    let done = wait_for_end(client, &status);
    done.expect(200, "the export's manifest");
    let mut content = String::new();
    for output in done.json()["output"].as_array().unwrap() {
        let file = send(client.http.get(output["url"].as_str().unwrap()));
        file.expect(200, "an export file");
        content.push_str(&file.text);
    }
    (status, content)
}

/// Every event of the change log from 0, checked gap-free, by the pull API.
fn events(client: &FhirClient) -> Vec<Value> {
    let events = pull_all(client, "");
    let seqs: Vec<u64> = events.iter().map(seq).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "the change log is gap-free");
    events
}

/// The events a new SSE consumer from 0 receives, up to `head`.
fn sse_events(client: &FhirClient, head: u64) -> Vec<Value> {
    let mut events = Vec::new();
    let ended = read_sse(&client.url("$changes/stream?since=0"), None, |event| {
        let at = seq(&event);
        events.push(event);
        at < head
    });
    assert_eq!(ended, Ended::Stopped);
    events
}

/// Asserts that nothing readable holds `marker` or names `key` with content.
fn assert_gone(client: &FhirClient, key: &str, marker: &str) {
    client.get(key).expect(404, "read after erasure");
    client
        .get(&format!("{key}/_history/1"))
        .expect(404, "vread after erasure");
    client
        .get(&format!("{key}/_history"))
        .expect(404, "instance history after erasure");
    let (resource_type, id) = key.split_once('/').unwrap();
    for path in [format!("{resource_type}/_history"), "_history".to_string()] {
        let entries = client.whole_history(&path);
        let text = serde_json::to_string(&entries).unwrap();
        assert!(!text.contains(marker), "{path} holds the erased content");
        assert!(
            !entries
                .iter()
                .any(|e| e["resource"]["resourceType"] == resource_type
                    && e["resource"]["id"] == id
                    || e["request"]["url"] == key),
            "{path} lists {key}"
        );
    }
    let found = client.get_query(resource_type, &[("_content", marker)]);
    found.expect(200, "_content search");
    assert_eq!(found.json()["entry"].as_array().map_or(0, Vec::len), 0);
    let head = events(client);
    for event in &head {
        assert!(
            !event.to_string().contains(marker),
            "$changes holds it: {event}"
        );
    }
    let last = seq(head.last().unwrap());
    for event in sse_events(client, last) {
        assert!(!event.to_string().contains(marker), "SSE holds it: {event}");
    }
}

#[test]
fn an_erased_version_and_resource_are_gone_from_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[SMALL]);
    let fhir = Fhir::on(&data, &[]);
    let patient = patient_id(&fhir, SMALL);
    let members = compartment(&fhir, &patient);
    let observation = members
        .iter()
        .find(|k| k.starts_with("Observation/"))
        .unwrap()
        .clone();
    let untouched = members
        .iter()
        .find(|k| k.starts_with("Encounter/"))
        .unwrap()
        .clone();
    let before = fhir.get(&untouched).json();
    // Version 2 holds a marker; version 3 another; version 2 is erased alone.
    let mut resource = fhir.get(&observation).json();
    resource["issued"] = json!("2001-01-01T00:00:00Z");
    resource["note"] = json!([{"text": "erasure-marker-two"}]);
    fhir.update(&resource).expect(200, "version 2");
    resource["note"] = json!([{"text": "erasure-marker-three"}]);
    fhir.update(&resource).expect(200, "version 3");
    let current = fhir.post(&format!("{observation}/_history/3/$erase"), String::new());
    assert_outcome(&current, 409, &["conflict"]);
    let missing = fhir.post(&format!("{observation}/_history/9/$erase"), String::new());
    assert_outcome(&missing, 404, &["not-found"]);
    fhir.post(&format!("{observation}/_history/2/$erase"), String::new())
        .expect(200, "erase version 2");
    fhir.get(&format!("{observation}/_history/2"))
        .expect(404, "vread of the erased version");
    let history = fhir.whole_history(&format!("{observation}/_history"));
    let vids: Vec<&str> = history
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(vids, vec!["3", "1"]);
    let total = fhir.get(&format!("{observation}/_history")).json()["total"].clone();
    assert_eq!(total, 2, "the instance's total counts what is left");
    let text = serde_json::to_string(&events(&fhir)).unwrap();
    assert!(!text.contains("erasure-marker-two") && text.contains("erasure-marker-three"));
    // The whole resource.
    fhir.post(&format!("{observation}/$erase"), String::new())
        .expect(200, "erase the resource");
    assert_gone(&fhir, &observation, "erasure-marker-three");
    assert_gone(&fhir, &observation, "erasure-marker-two");
    // History totals count what history lists: no erased entry.
    for path in ["Observation/_history", "_history"] {
        let listed = fhir.whole_history(path).len();
        let total = fhir.get_query(path, &[("_count", "1")]).json()["total"].clone();
        assert_eq!(total, listed, "{path}");
        let since = fhir.get_query(path, &[("_count", "1"), ("_since", "2001-01-01T00:00:00Z")]);
        assert_eq!(since.json()["total"], listed, "{path} since 2001");
    }
    let everything = fhir.get_query(
        &format!("Patient/{patient}/$everything"),
        &[("_count", "1000")],
    );
    everything.expect(200, "$everything");
    // Other resources may still refer to it (a dangling reference); none is it.
    let listed = everything.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(listed.iter().all(|e| format!(
        "{}/{}",
        e["resource"]["resourceType"].as_str().unwrap(),
        e["resource"]["id"].as_str().unwrap()
    ) != observation));
    assert!(!everything.json().to_string().contains("erasure-marker"));
    // The erased events: one per erased version, without data.
    let erased: Vec<Value> = events(&fhir)
        .into_iter()
        .filter(|e| {
            e["subject"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{observation}/"))
        })
        .collect();
    assert!(
        erased
            .iter()
            .all(|e| e["type"] == "fhir.Observation.erased" && e.get("data").is_none())
    );
    assert_eq!(
        erased.len(),
        3 + 3,
        "three entries rewritten, three events appended"
    );
    assert_eq!(
        fhir.get(&untouched).json(),
        before,
        "an unrelated resource is untouched"
    );
    // Erasing again: it does not exist.
    assert_outcome(
        &fhir.post(&format!("{observation}/$erase"), String::new()),
        404,
        &["not-found"],
    );
}

#[test]
fn a_purge_erases_the_compartment_and_a_bulk_delete_deletes_or_erases() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[SMALL, "6c8f3e83"]);
    let fhir = Fhir::on(&data, &["--job-poll-interval", "100ms"]);
    let patient = patient_id(&fhir, SMALL);
    let other = patient_id(&fhir, "6c8f3e83");
    let members = compartment(&fhir, &patient);
    let kept = compartment(&fhir, &other);
    assert!(members.len() > 50, "{}", members.len());
    let family = fhir.get(&format!("Patient/{patient}")).json()["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    // An export finished before the purge holds the patient: the purge's result names it.
    let before = export_patients(&fhir);
    assert!(before.1.contains(&family));
    let status = kick_off(&fhir, &format!("Patient/{patient}/$purge"));
    let done = wait_for_end(&fhir, &status);
    done.expect(200, "the purge's result");
    let result = done.json();
    assert_eq!(result["count"], members.len());
    assert_eq!(result["exportsHoldingErasedData"], json!([before.0]));
    // One started after does not.
    let after = export_patients(&fhir);
    assert!(!after.1.contains(&family) && after.1.contains("Patient"));
    for key in &members {
        fhir.get(key).expect(404, key);
        fhir.get(&format!("{key}/_history")).expect(404, key);
    }
    let text = serde_json::to_string(&fhir.system_history()).unwrap();
    assert!(!text.contains(&family) && !text.contains(&patient));
    let changes = serde_json::to_string(&events(&fhir)).unwrap();
    assert!(!changes.contains(&family));
    let found = fhir.get_query("Patient", &[("_content", &family)]);
    assert_eq!(found.json()["entry"].as_array().map_or(0, Vec::len), 0);
    assert_eq!(
        compartment(&fhir, &other),
        kept,
        "the other patient is untouched"
    );
    // $bulk-delete: tombstones of the other patient's Immunizations, then erasure of every
    // Observation.
    let status = kick_off(
        &fhir,
        &format!("Immunization/$bulk-delete?patient=Patient/{other}"),
    );
    wait_for_end(&fhir, &status).expect(200, "bulk delete");
    for key in kept.iter().filter(|k| k.starts_with("Immunization/")) {
        fhir.get(key).expect(410, "deleted");
    }
    let status = kick_off(&fhir, "Observation/$bulk-delete?hardDelete=true");
    wait_for_end(&fhir, &status).expect(200, "bulk erase");
    for key in kept.iter().filter(|k| k.starts_with("Observation/")) {
        fhir.get(&format!("{key}/_history")).expect(404, "erased");
    }
    let left = fhir
        .get_query("Observation", &[("_summary", "count")])
        .json();
    assert_eq!(left["total"], 0);
    events(&fhir);
}

#[test]
fn a_purge_killed_midway_resumes_and_never_leaves_a_resource_half_erased() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[LARGE]);
    let (patient, members) = {
        let fhir = Fhir::on(&data, &[]);
        let patient = patient_id(&fhir, LARGE);
        let members = compartment(&fhir, &patient);
        (patient, members)
    };
    assert!(members.len() > 1000, "{}", members.len());
    let args = ["--job-poll-interval", "100ms"];
    let mut command = TestServer::command(&data, &args);
    command.env("FHIRLAKE_TEST_ERASE_PAUSE", "600");
    let mut server = TestServer::spawn(command, &data);
    let client = FhirClient::new(&server);
    let status = kick_off(&client, &format!("Patient/{patient}/$purge"));
    // Wait until the job has erased at least 600 resources (it pauses there).
    let started = Instant::now();
    loop {
        let reply = send(client.http.get(&status));
        let progress = reply.header("x-progress").unwrap_or_default();
        let done: u64 = progress
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if done >= 600 {
            break;
        }
        assert!(started.elapsed() < GIVE_UP, "the purge did not get to 600");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each resource is wholly there (read and history agree) or wholly gone.
    let mut gone = 0;
    for key in &members {
        let read = client.get(key).status;
        let history = client.get(&format!("{key}/_history")).status;
        assert!(
            (read == 200 && history == 200) || (read == 404 && history == 404),
            "{key}: read {read}, history {history}"
        );
        gone += usize::from(read == 404);
    }
    assert!(gone >= 600 && gone < members.len(), "{gone}");
    server.kill();
    let server = TestServer::start_on(&data, &args);
    let client = FhirClient::new(&server);
    wait_for_end(
        &client,
        &status.replace(&status[..status.find("/fhir").unwrap()], &server.origin),
    )
    .expect(200, "the purge finishes after the restart");
    for key in &members {
        client.get(&format!("{key}/_history")).expect(404, key);
    }
    events(&client);
}

#[test]
fn erasure_needs_the_erase_scope_and_never_a_patient_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[SMALL]);
    let server = TestServer::start_on(&data, HS256);
    let admin = bearer(&server, &token("system/*.cruds fhirlake/erase", None));
    let patient = patient_id(&admin, SMALL);
    let observation = compartment(&admin, &patient)
        .into_iter()
        .find(|k| k.starts_with("Observation/"))
        .unwrap();
    let refused = [
        token("system/*.cruds", None),
        token("system/*.rs fhirlake/erase", None),
        token("patient/*.cruds fhirlake/erase", Some(&patient)),
        token("system/*.cruds patient/*.rs fhirlake/erase", Some(&patient)),
        token("system/Patient.cruds fhirlake/erase", None),
    ];
    for scope in &refused {
        let client = bearer(&server, scope);
        for path in [
            format!("{observation}/$erase"),
            format!("{observation}/_history/1/$erase"),
            format!("Patient/{patient}/$purge"),
            "Observation/$bulk-delete?hardDelete=true".to_string(),
        ] {
            assert_outcome(&client.post(&path, String::new()), 403, &["forbidden"]);
        }
    }
    admin.get(&observation).expect(200, "nothing was erased");
    admin
        .post(&format!("{observation}/$erase"), String::new())
        .expect(200, "the erase scope erases");
    admin.get(&observation).expect(404, "erased");
}

#[test]
fn a_rest_hook_and_the_nats_sink_hear_of_an_erasure_and_the_stream_forgets_it() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let receiver = Receiver::start(0);
    let data = dir.path().join("data");
    let url = nats.url();
    let args = [
        "--sink",
        &url,
        "--sink-stream",
        "ERASURE",
        "--subscription-endpoints",
        &receiver.url,
    ];
    let fhir = Fhir::on(&data, &args);
    fhir.create(
        &json!({"resourceType": "Subscription", "status": "requested",
        "reason": "erasure", "criteria": "Observation",
        "channel": {"type": "rest-hook", "endpoint": receiver.url,
                    "payload": "application/fhir+json"}}),
    );
    let marker = "erasure-marker-hook";
    let observation = fhir.create(&json!({"resourceType": "Observation", "status": "final",
        "code": {"text": marker}}));
    let key = format!("Observation/{}", observation["id"].as_str().unwrap());
    let heard = |what: &str| {
        let accepted = receiver.accepted.lock().unwrap();
        accepted
            .iter()
            .any(|n| n.headers.get("ce-type").map(String::as_str) == Some(what))
    };
    wait_until("the notification of the create", || {
        heard("fhir.Observation.created")
    });
    let in_stream = || serde_json::to_string(&stream_messages(&url, "ERASURE")).unwrap();
    wait_until("the create in the stream", || in_stream().contains(marker));
    fhir.post(&format!("{key}/$erase"), String::new())
        .expect(200, "erase");
    wait_until("the notification of the erasure", || {
        heard("fhir.Observation.erased")
    });
    let accepted = receiver.accepted.lock().unwrap().clone();
    let erased = accepted
        .iter()
        .find(|n| n.headers.get("ce-type").map(String::as_str) == Some("fhir.Observation.erased"))
        .unwrap();
    assert_eq!(erased.headers["ce-subject"], format!("{key}/_history/1"));
    assert!(erased.headers.contains_key("ce-erased") && erased.body.is_empty());
    // The stream holds the erased event and no longer the create's message.
    wait_until("the erased event in the stream", || {
        in_stream().contains("fhir.Observation.erased")
    });
    let messages = stream_messages(&url, "ERASURE");
    assert!(!serde_json::to_string(&messages).unwrap().contains(marker));
    let subject = format!("{key}/_history/1");
    let created = events(&fhir)
        .iter()
        .find(|e| e["subject"] == subject.as_str())
        .map(seq)
        .unwrap();
    assert!(messages.iter().all(|(id, _)| *id != created));
}

/// Waits until `check` holds, at most a minute.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn strange_erasure_requests_are_outcomes() {
    let fhir = Fhir::start();
    let patient = fhir.create(&json!({"resourceType": "Patient", "active": true}));
    let key = format!("Patient/{}", patient["id"].as_str().unwrap());
    for vid in ["0", "abc", "-1", "99999999999999999999999"] {
        let reply = fhir.post(&format!("{key}/_history/{vid}/$erase"), String::new());
        assert_outcome(&reply, 404, &["not-found"]);
    }
    let long = "x".repeat(65);
    assert_outcome(
        &fhir.post(&format!("Patient/{long}/$erase"), String::new()),
        400,
        &["value"],
    );
    assert_outcome(
        &fhir.post("Nothing/1/$erase", String::new()),
        404,
        &["not-found", "not-supported"],
    );
    assert_outcome(
        &fhir.post("Patient/none/$purge", String::new()),
        404,
        &["not-found"],
    );
    for query in [
        "hardDelete=maybe",
        "unknown-parameter=1",
        "_since=not-a-date",
    ] {
        let reply = fhir.post(&format!("Observation/$bulk-delete?{query}"), String::new());
        assert_outcome(&reply, 400, &["invalid", "not-supported", "value"]);
    }
    assert_outcome(
        &fhir.post(&format!("{key}/$purge?code=1"), String::new()),
        400,
        &["not-supported"],
    );
    fhir.get(&key).expect(200, "nothing was erased");
}

/// The files of `dir` (recursively) that hold `marker`'s bytes anywhere, in use or not.
fn files_holding(dir: &Path, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                if bytes
                    .windows(marker.len())
                    .any(|window| window == marker.as_bytes())
                {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn erased_bytes_leave_every_file_of_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[SMALL]);
    let mut fhir = Fhir::on(&data, &[]);
    // One word, lower case: the full-text index keeps it as one term, as written.
    let marker = "erasedmarkerqzx";
    let mut patient = fhir.create(&json!({
        "resourceType": "Patient",
        "name": [{"family": marker, "given": ["Ada"]}],
        "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{marker}</div>")}
    }));
    let key = format!("Patient/{}", patient["id"].as_str().unwrap());
    patient["active"] = json!(true);
    fhir.update(&patient).expect(200, "version 2");
    // A restart writes the index to disk: the erasure must reach its files too.
    assert!(fhir.server.terminate().success());
    let mut fhir = Fhir::on(&data, &[]);
    let found = fhir.get_query("Patient", &[("family", marker)]);
    assert_eq!(found.json()["total"], 1, "indexed before the erasure");
    // The index's files may hold it compressed; its segments are purged (`search::index`).
    assert!(
        files_holding(&data, marker)
            .iter()
            .any(|file| file.ends_with("fhirlake.redb")),
        "the store holds it"
    );
    fhir.post(&format!("{key}/$erase"), String::new())
        .expect(200, "erase");
    assert_gone(&fhir, &key, marker);
    // A purge frees many pages: more than later writes reuse.
    let purged = patient_id(&fhir, SMALL);
    let family = fhir.get(&format!("Patient/{purged}")).json()["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    let status = kick_off(&fhir, &format!("Patient/{purged}/$purge"));
    wait_for_end(&fhir, &status).expect(200, "the purge's result");
    // The running server scrubs the store's file a little after the erasures.
    let store = data.join("fhirlake.redb");
    wait_until("the store's file to lose the erased bytes", || {
        let left = files_holding(&data, marker)
            .into_iter()
            .chain(files_holding(&data, &family));
        !left.into_iter().any(|file| Path::new(&file) == store)
    });
    // `/metrics` counts the scrubs and the pages they zeroed.
    let metrics = send(fhir.http.get(format!("{}/metrics", fhir.server.origin))).text;
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("fhirlake_store_scrubs_total ") >= 1.0, "{metrics}");
    assert!(value("fhirlake_store_scrubbed_pages_total ") >= 1.0);
    let status = fhir.server.terminate();
    assert!(status.success(), "fhirlake stopped cleanly: {status}");
    for erased in [marker, family.as_str()] {
        assert_eq!(
            files_holding(&data, erased),
            Vec::<String>::new(),
            "files that still hold the erased bytes"
        );
    }
    // `fhirlake compact` gives the file's free pages back; the store still opens, whole.
    let size = || std::fs::metadata(&store).unwrap().len();
    let before = size();
    let said = run_command(&["compact"], &data);
    assert!(said.starts_with("compacted"), "{said}");
    assert!(size() < before, "{} after {before}", size());
    assert!(files_holding(&data, marker).is_empty());
    let fhir = Fhir::on(&data, &[]);
    fhir.get(&key).expect(404, "still erased after a restart");
    fhir.get(&format!("Patient/{purged}"))
        .expect(404, "still purged after a restart");
}

#[test]
fn a_purge_names_a_running_export_that_may_hold_what_it_erased() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[SMALL]);
    // Two job workers: the export pauses after its first resource, until it is cancelled.
    // A running export may hold what the purge erases (in the files it wrote before).
    let args = ["--job-poll-interval", "100ms", "--job-workers", "2"];
    let mut command = TestServer::command(&data, &args);
    command.env("FHIRLAKE_TEST_EXPORT_PAUSE", "1:never");
    let server = TestServer::spawn(command, &data);
    let client = FhirClient::new(&server);
    let patient = patient_id(&client, SMALL);
    let reply = client.get_with("$export?_type=Patient", &[("Prefer", "respond-async")]);
    reply.expect(202, "export kick-off");
    let export = reply.header("content-location").expect("Content-Location");
    wait_until("the export to run", || {
        let reply = send(client.http.get(&export));
        reply.status == 202 && reply.header("x-progress").is_some_and(|p| p != "queued")
    });
    let status = kick_off(&client, &format!("Patient/{patient}/$purge"));
    let done = wait_for_end(&client, &status);
    done.expect(200, "the purge's result");
    assert_eq!(done.json()["exportsHoldingErasedData"], json!([export]));
    send(client.http.delete(&export)).expect(202, "cancel the export");
}

/// A crash right after an erasure, before its scrub: the scrub is due again when the store
/// opens, and the erased bytes leave the file.
#[test]
fn an_erasure_a_crash_kept_from_its_scrub_is_scrubbed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &[SMALL]);
    let mut fhir = Fhir::on(&data, &["--job-poll-interval", "100ms"]);
    let patient = patient_id(&fhir, SMALL);
    let family = fhir.get(&format!("Patient/{patient}")).json()["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    let status = kick_off(&fhir, &format!("Patient/{patient}/$purge"));
    wait_for_end(&fhir, &status).expect(200, "the purge's result");
    // Killed at once: its scrub was due two seconds after the last erasure.
    fhir.server.kill();
    let store = data.join("fhirlake.redb");
    let held = || {
        files_holding(&data, &family)
            .iter()
            .any(|file| Path::new(file) == store)
    };
    assert!(held(), "the crash left the erased bytes in the file");
    let fhir = Fhir::on(&data, &[]);
    wait_until("the scrub after the restart", || !held());
    fhir.get(&format!("Patient/{patient}"))
        .expect(404, "still erased");
}
