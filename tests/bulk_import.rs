//! Bulk import over HTTP against the real binary: `$import` of the whole Synthea set as
//! NDJSON (one file per type, written here), gzip, the import root, a SIGKILL in the middle,
//! cancellation, authorization and `$bulk-submit`.
//!
//! The server's test pause (`FHIRLAKE_TEST_IMPORT_PAUSE=K`: once K lines are settled, wait
//! until stopped or cancelled) holds an import where a test wants it, by counts, never times.

mod common;

use common::auth::{HS256, bearer, token};
use common::fhir::{FhirClient, Reply, assert_outcome, send, type_and_id};
use common::{TestServer, synthea};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often the tests poll a job (the servers' `--job-poll-interval`).
const POLL: Duration = Duration::from_millis(100);

/// The longest a test waits for a job.
const GIVE_UP: Duration = Duration::from_secs(900);

/// A server whose import root is `root`, with the test pause `pause`.
fn spawn(data: &Path, root: &Path, extra: &[&str], pause: Option<u64>) -> TestServer {
    let root = root.display().to_string();
    let mut args = vec!["--job-poll-interval", "100ms", "--import-root", &root];
    args.extend(extra);
    let mut command = TestServer::command(data, &args);
    if let Some(pause) = pause {
        command.env("FHIRLAKE_TEST_IMPORT_PAUSE", pause.to_string());
    }
    TestServer::spawn(command, data)
}

/// The `file://` URL of `path`.
fn file_url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().unwrap().display())
}

/// `$import` Parameters of `inputs` (`(type, url)`).
fn import_parameters(inputs: &[(String, String)]) -> Value {
    let mut parameters = vec![
        json!({"name": "inputFormat", "valueCode": "application/fhir+ndjson"}),
        json!({"name": "inputSource", "valueUri": "https://provider.example/"}),
    ];
    parameters.extend(inputs.iter().map(|(resource_type, url)| {
        json!({"name": "input", "part": [
            {"name": "type", "valueCode": resource_type},
            {"name": "url", "valueUri": url},
        ]})
    }));
    json!({"resourceType": "Parameters", "parameter": parameters})
}

/// Kicks off `$import` of `inputs`; returns the status URL.
fn kick_off(client: &FhirClient, inputs: &[(String, String)]) -> String {
    let reply = client.post_with(
        "$import",
        &import_parameters(inputs),
        &[("Prefer", "respond-async")],
    );
    reply.expect(202, "$import");
    reply.header("content-location").expect("Content-Location")
}

/// Polls `status_url` until it is no longer 202; returns that answer.
fn wait_for_end(client: &FhirClient, status_url: &str) -> Reply {
    let started = Instant::now();
    loop {
        let reply = send(client.http.get(status_url));
        if reply.status != 202 {
            return reply;
        }
        assert!(reply.header("x-progress").is_some(), "X-Progress");
        assert!(started.elapsed() < GIVE_UP, "the import did not end");
        std::thread::sleep(POLL);
    }
}

/// Polls `status_url` until its `X-Progress` says at least `settled` resources.
fn wait_for_progress(client: &FhirClient, status_url: &str, settled: u64) {
    let started = Instant::now();
    loop {
        let reply = send(client.http.get(status_url));
        reply.expect(202, "an import under way");
        let progress = reply.header("x-progress").unwrap();
        let reached = progress
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .any(|n| n >= settled);
        if reached {
            return;
        }
        assert!(started.elapsed() < GIVE_UP, "no progress: {progress}");
        std::thread::sleep(POLL);
    }
}

/// The lines of a job's file.
fn fetch(client: &FhirClient, url: &str) -> Vec<Value> {
    let mut response = client.http.get(url).send().unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let mut text = String::new();
    response.read_to_string(&mut text).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The total of `GET /{type}/_history`: every version of every resource of the type.
fn versions(client: &FhirClient, resource_type: &str) -> u64 {
    let reply = client.get(&format!("{resource_type}/_history?_count=1"));
    reply.expect(200, "type history");
    reply.json()["total"].as_u64().expect("a history total")
}

/// The whole Synthea set as NDJSON, one file per type, with a broken line in the Patient
/// file; a SIGKILL once 25,000 lines are settled (past two checkpoints, within a file). After
/// the restart the job ends with the counts per type the files hold, the broken line reported
/// by file and line once, every resource read back as it was sent, and one version each.
#[test]
fn synthea_ndjson_imports_whole_through_a_sigkill() {
    let temp = tempfile::tempdir().unwrap();
    let (root, data) = (temp.path().join("root"), temp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let resources = synthea::resources_by_id();
    let (files, counts) = synthea::ndjson_by_type(&root, resources.values());
    // Line 3 of the Patient file: not JSON.
    let patients = std::fs::read_to_string(&files["Patient"]).unwrap();
    let mut lines: Vec<&str> = patients.lines().collect();
    lines.insert(2, "{\"resourceType\": \"Patient\", \"id\": ");
    std::fs::write(&files["Patient"], lines.join("\n") + "\n").unwrap();
    let patient_url = file_url(&files["Patient"]);
    let inputs: Vec<(String, String)> = files
        .iter()
        .map(|(t, path)| (t.clone(), file_url(path)))
        .collect();

    let mut server = spawn(&data, &root, &[], Some(25_000));
    let client = FhirClient::new(&server);
    let status = kick_off(&client, &inputs);
    wait_for_progress(&client, &status, 25_000);
    server.kill();
    let server = spawn(&data, &root, &[], None);
    let client = FhirClient::new(&server);
    let status = format!(
        "{}/_jobs/{}",
        server.base,
        status.rsplit('/').next().unwrap()
    );
    let reply = wait_for_end(&client, &status);
    reply.expect(200, "a completed import");
    let manifest = reply.json();
    assert_eq!(manifest["requiresAccessToken"], true);
    let imported: BTreeMap<String, u64> = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["type"].as_str().unwrap().into(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(imported, counts, "counts per type");
    // The broken line, once, by file and line.
    let errors = manifest["error"].as_array().unwrap();
    let rejected: Vec<Value> = errors
        .iter()
        .flat_map(|e| fetch(&client, e["url"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let outcome = &rejected[0];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.starts_with(&format!("{patient_url} line 3: ")),
        "{diagnostics}"
    );
    let source = &outcome["extension"][0]["extension"];
    assert_eq!(source[0]["valueUri"], patient_url.as_str());
    assert_eq!(source[1]["valueInteger"], 3);
    // One version of each resource: nothing loaded twice made a new one.
    for (resource_type, count) in &counts {
        assert_eq!(versions(&client, resource_type), *count, "{resource_type}");
    }
    // Read back as sent: the first and last resource of each type.
    for resource_type in counts.keys() {
        let of_type: Vec<&Value> = resources
            .values()
            .filter(|r| r["resourceType"] == resource_type.as_str())
            .collect();
        for sent in [of_type[0], of_type[of_type.len() - 1]] {
            let stored = client.get(&type_and_id(sent)).expect(200, "read").json();
            assert_eq!(
                &common::fhir::without_server_meta(&stored),
                sent,
                "{}",
                type_and_id(sent)
            );
        }
    }
}

/// Writes `text` gzip-compressed to `path`.
fn gzip(path: &Path, text: &str) {
    let mut encoder = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();
}

fn patient(id: Option<&str>, family: &str) -> Value {
    let mut patient = json!({"resourceType": "Patient", "name": [{"family": family}]});
    if let Some(id) = id {
        patient["id"] = json!(id);
    }
    patient
}

/// A gzipped input (named `.ndjson`: the bytes decide), resources without ids (stored once
/// each, however often the import is loaded), lines of another type than the input's, and
/// inputs outside the import root (400, nothing started).
#[test]
fn gzip_inputs_lines_without_ids_and_the_import_root() {
    let temp = tempfile::tempdir().unwrap();
    let (root, data) = (temp.path().join("root"), temp.path().join("data"));
    std::fs::create_dir_all(root.join("in")).unwrap();
    let lines: Vec<String> = [
        patient(Some("gz-1"), "Gzipped"),
        patient(None, "Anonymous"),
        json!({"resourceType": "Observation", "id": "not-a-patient", "status": "final",
            "code": {"text": "x"}}),
        patient(Some("gz-2"), "Gzipped"),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    let gz = root.join("in/patients.ndjson");
    gzip(&gz, &(lines.join("\n") + "\n"));
    std::fs::write(temp.path().join("outside.ndjson"), &lines[0]).unwrap();
    std::os::unix::fs::symlink(temp.path().join("outside.ndjson"), root.join("link.ndjson"))
        .unwrap();
    let server = spawn(&data, &root, &[], None);
    let client = FhirClient::new(&server);

    for outside in [
        format!("file://{}/../outside.ndjson", root.display()),
        file_url(&root.join("link.ndjson")),
        "file:///etc/passwd".to_string(),
        format!(
            "file://{}/missing.ndjson",
            root.canonicalize().unwrap().display()
        ),
        "http://127.0.0.1:1/Patient.ndjson".to_string(),
    ] {
        let reply = client.post_with(
            "$import",
            &import_parameters(&[("Patient".into(), outside.clone())]),
            &[("Prefer", "respond-async")],
        );
        assert_outcome(&reply, 400, &["forbidden", "not-found"]);
    }
    let reply = client.post_with(
        "$import",
        &import_parameters(&[]),
        &[("Prefer", "respond-async")],
    );
    assert_outcome(&reply, 400, &["required"]);

    let inputs = [("Patient".to_string(), file_url(&gz))];
    let mut anonymous = Vec::new();
    for round in 0..2 {
        let status = kick_off(&client, &inputs);
        // The id a line without one gets: the job's, the input's position and the line's.
        let job: String = status.rsplit('/').next().unwrap().replace('-', "");
        anonymous.push(format!("Patient/{job}-0-2"));
        let reply = wait_for_end(&client, &status);
        reply.expect(200, "import");
        let manifest = reply.json();
        assert_eq!(
            manifest["output"],
            json!([{"type": "Patient", "count": 3}]),
            "{round}"
        );
        let rejected = fetch(&client, manifest["error"][0]["url"].as_str().unwrap());
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            rejected[0]["extension"][0]["extension"][1]["valueInteger"],
            3
        );
    }
    // Two imports of the same file: the resource without an id was stored once per import.
    for path in &anonymous {
        let stored = client.get(path).expect(200, "read").json();
        assert_eq!(stored["name"][0]["family"], "Anonymous");
    }
    assert_eq!(
        versions(&client, "Patient"),
        4,
        "gz-1 and gz-2 once each, plus two"
    );
    assert_eq!(
        client.get("Patient/gz-2").expect(200, "read").json()["name"][0]["family"],
        "Gzipped"
    );
    client
        .get("Observation/not-a-patient")
        .expect(404, "not imported");
}

/// Serves `files` (path -> body) over HTTP/1.1 on 127.0.0.1, one request per connection,
/// until the test ends; any other path is a redirect to the first file. Returns its origin.
fn serve_files(files: Vec<(&'static str, Vec<u8>)>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let first = files[0].0;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let answer = match files.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => [
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                        .into_bytes(),
                    body.clone(),
                ]
                .concat(),
                None => format!(
                    "HTTP/1.1 302 Found\r\nLocation: {first}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .into_bytes(),
            };
            let _ = stream.write_all(&answer);
        }
    });
    origin
}

/// `http(s)://` inputs: fetched when `--subscription-endpoints` allows their address (a
/// loopback one here), plain or gzip (told by the bytes, not the name); a redirect is not
/// followed, and the input is reported as an error of the import.
#[test]
fn http_inputs_are_fetched_where_the_endpoint_rules_allow() {
    let temp = tempfile::tempdir().unwrap();
    let (root, data) = (temp.path().join("root"), temp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let mut gzipped = GzEncoder::new(Vec::new(), Compression::fast());
    gzipped
        .write_all(format!("{}\n", patient(Some("web-2"), "Fetched")).as_bytes())
        .unwrap();
    let origin = serve_files(vec![
        (
            "/plain.ndjson",
            format!("{}\n", patient(Some("web-1"), "Fetched")).into_bytes(),
        ),
        ("/named-plain.ndjson", gzipped.finish().unwrap()),
    ]);
    let allowed = format!("{origin}/");
    let server = spawn(&data, &root, &["--subscription-endpoints", &allowed], None);
    let client = FhirClient::new(&server);
    let inputs: Vec<(String, String)> = ["plain.ndjson", "named-plain.ndjson", "moved.ndjson"]
        .iter()
        .map(|name| ("Patient".to_string(), format!("{origin}/{name}")))
        .collect();
    let reply = wait_for_end(&client, &kick_off(&client, &inputs));
    reply.expect(200, "import over http");
    let manifest = reply.json();
    assert_eq!(manifest["output"], json!([{"type": "Patient", "count": 2}]));
    for id in ["web-1", "web-2"] {
        let stored = client.get(&format!("Patient/{id}")).expect(200, id).json();
        assert_eq!(stored["name"][0]["family"], "Fetched");
    }
    let errors = fetch(&client, manifest["error"][0]["url"].as_str().unwrap());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let said = errors[0].to_string();
    assert!(
        said.contains("moved.ndjson") && said.contains("302"),
        "{said}"
    );
}

/// A running import cancelled by DELETE on its status URL: 404 from then on, its files gone.
#[test]
fn an_import_is_cancelled() {
    let temp = tempfile::tempdir().unwrap();
    let (root, data) = (temp.path().join("root"), temp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    // A rejected line first: its error file is under way when the job is cancelled.
    let lines: Vec<String> = ["not json".to_string()]
        .into_iter()
        .chain((0..50).map(|n| patient(Some(&format!("c-{n}")), "Cancelled").to_string()))
        .collect();
    let file = root.join("Patient.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let server = spawn(&data, &root, &[], Some(20));
    let client = FhirClient::new(&server);
    let status = kick_off(&client, &[("Patient".into(), file_url(&file))]);
    wait_for_progress(&client, &status, 20);
    let job = status.rsplit('/').next().unwrap();
    assert!(data.join("jobs").join(job).exists(), "its error file");
    send(client.http.delete(&status)).expect(202, "cancel");
    assert_outcome(&send(client.http.get(&status)), 404, &["not-found"]);
    let started = Instant::now();
    while data.join("jobs").join(job).exists() {
        assert!(started.elapsed() < GIVE_UP, "the job's files stay");
        std::thread::sleep(POLL);
    }
}

/// Import needs create and update rights on every type it writes, unconfined: a `patient/`
/// token is refused, `system/Patient.cu` imports Patients only.
#[test]
fn import_needs_system_write_rights() {
    let temp = tempfile::tempdir().unwrap();
    let (root, data) = (temp.path().join("root"), temp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("Patient.ndjson");
    std::fs::write(&file, patient(Some("auth-1"), "Authorized").to_string()).unwrap();
    let server = spawn(&data, &root, HS256, None);
    let inputs = [("Patient".to_string(), file_url(&file))];
    for (scope, patient, status) in [
        ("patient/*.cruds", Some("auth-1"), 403),
        ("system/*.rs", None, 403),
        ("system/Observation.cu", None, 403),
    ] {
        let client = bearer(&server, &token(scope, patient));
        let reply = client.post_with(
            "$import",
            &import_parameters(&inputs),
            &[("Prefer", "respond-async")],
        );
        assert_outcome(&reply, status, &["forbidden"]);
    }
    let client = bearer(&server, &token("system/Patient.cu system/Patient.r", None));
    let status = kick_off(&client, &inputs);
    wait_for_end(&client, &status).expect(200, "import");
    client.get("Patient/auth-1").expect(200, "imported");
}

/// `$bulk-submit`: a submission of two manifests (file URLs under the import root), then
/// `completed`; `$bulk-submit-status` gives the status URL, whose manifest names the
/// submission and reports the rejected line with its manifest.
#[test]
fn bulk_submit_imports_the_manifests_of_a_submission() {
    let temp = tempfile::tempdir().unwrap();
    let (root, data) = (temp.path().join("root"), temp.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let root = root.canonicalize().unwrap();
    std::fs::write(
        root.join("p1.ndjson"),
        format!("{}\n{{broken\n", patient(Some("s-1"), "Submitted")),
    )
    .unwrap();
    gzip(
        &root.join("p2.ndjson"),
        &format!("{}\n", patient(Some("s-2"), "Submitted")),
    );
    let manifest = |file: &str| {
        json!({"transactionTime": "2026-01-01T00:00:00Z", "requiresAccessToken": false,
            "output": [{"type": "Patient", "url": file}], "error": []})
    };
    std::fs::write(root.join("m1.json"), manifest("p1.ndjson").to_string()).unwrap();
    std::fs::write(
        root.join("m2.json"),
        manifest(&file_url(&root.join("p2.ndjson"))).to_string(),
    )
    .unwrap();
    let server = spawn(&data, &root, &[], None);
    let client = FhirClient::new(&server);
    let submit = |extra: Vec<Value>| {
        let mut parameters = vec![
            json!({"name": "submitter", "valueIdentifier":
                {"system": "https://provider.example", "value": "p"}}),
            json!({"name": "submissionId", "valueString": "sub-1"}),
        ];
        parameters.extend(extra);
        client.post(
            "$bulk-submit",
            &json!({"resourceType": "Parameters", "parameter": parameters}),
        )
    };
    let manifest_param = |name: &str| {
        vec![
            json!({"name": "manifestUrl", "valueString": file_url(&root.join(name))}),
            json!({"name": "fhirBaseUrl", "valueString": "https://provider.example/fhir"}),
        ]
    };
    // What fhirlake does not do is refused, not ignored.
    for (name, value) in [
        (
            "replacesManifestUrl",
            json!({"valueString": file_url(&root.join("m1.json"))}),
        ),
        (
            "oauthMetadataUrl",
            json!({"valueString": "https://auth.example/.well-known"}),
        ),
        ("fileEncryptionKey", json!({"valueString": "a-key"})),
    ] {
        let mut parameter = value;
        parameter["name"] = json!(name);
        let mut parameters = manifest_param("m1.json");
        parameters.push(parameter);
        assert_outcome(&submit(parameters), 400, &["not-supported"]);
    }
    submit(manifest_param("m1.json")).expect(200, "first manifest");
    // Without its fhirBaseUrl: 400.
    assert_outcome(
        &submit(manifest_param("m2.json")[..1].to_vec()),
        400,
        &["required"],
    );
    let mut last = manifest_param("m2.json");
    last.push(json!({"name": "submissionStatus", "valueCoding":
        {"system": "http://hl7.org/fhir/event-status", "code": "completed"}}));
    submit(last).expect(200, "second manifest, completed");
    assert_outcome(&submit(manifest_param("m1.json")), 409, &["conflict"]);
    let status_request = json!({"resourceType": "Parameters", "parameter": [
        {"name": "submitter", "valueIdentifier":
            {"system": "https://provider.example", "value": "p"}},
        {"name": "submissionId", "valueString": "sub-1"}]});
    let reply = client.post_with(
        "$bulk-submit-status",
        &status_request,
        &[("Prefer", "respond-async")],
    );
    reply.expect(202, "$bulk-submit-status");
    let status = reply.header("content-location").unwrap();
    let reply = wait_for_end(&client, &status);
    reply.expect(200, "a completed submission");
    let manifest = reply.json();
    assert_eq!(manifest["submissionId"], "sub-1");
    let outcomes = manifest["outcome"].as_array().unwrap();
    assert_eq!(outcomes.len(), 1, "{manifest}");
    assert_eq!(
        outcomes[0]["manifestUrl"],
        file_url(&root.join("m1.json")).as_str()
    );
    let rejected = fetch(&client, outcomes[0]["url"].as_str().unwrap());
    assert_eq!(
        rejected[0]["extension"][0]["extension"][1]["valueInteger"],
        2
    );
    for id in ["s-1", "s-2"] {
        client.get(&format!("Patient/{id}")).expect(200, id);
    }
    // Another submitter's submission does not exist.
    let other = json!({"resourceType": "Parameters", "parameter": [
        {"name": "submitter", "valueIdentifier": {"value": "q"}},
        {"name": "submissionId", "valueString": "sub-1"}]});
    assert_outcome(
        &client.post("$bulk-submit-status", &other),
        404,
        &["not-found"],
    );
}
