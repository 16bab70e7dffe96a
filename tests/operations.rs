//! The endpoints for operators outside `/fhir` (`/health`, `/ready`, `/metrics`), request ids
//! and JSON logs.
mod common;

use common::TestServer;
use common::fhir::{Fhir, Reply, assert_outcome, id_of, patient, send, type_and_id};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// `GET` of a path outside the FHIR base (`/health`), with `headers`.
fn get_root(fhir: &Fhir, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = fhir.http.get(format!("{}{path}", fhir.server.origin));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request)
}

/// One sample of the OpenMetrics text: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// The samples of an OpenMetrics text (this server's: no label value has a comma or a quote).
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').expect("labels end")),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|label| !label.is_empty())
                .map(|label| {
                    let (key, value) = label.split_once('=').expect("label=value");
                    (key.to_string(), value.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap_or_else(|_| panic!("value of {line}")),
            }
        })
        .collect()
}

/// The metrics a server exports now, checking the content type.
fn scrape(fhir: &Fhir) -> Vec<Sample> {
    let reply = get_root(fhir, "/metrics", &[]);
    reply.expect(200, "GET /metrics");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        reply.headers
    );
    assert!(reply.text.ends_with("# EOF\n"), "{}", reply.text);
    samples(&reply.text)
}

/// The value of the sample `name` whose labels include `labels`; panics when there is none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {samples:#?}"))
        .value
}

fn find<'s>(samples: &'s [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'s Sample> {
    samples.iter().find(|sample| {
        sample.name == name
            && labels
                .iter()
                .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
    })
}

#[test]
fn health_and_ready() {
    let fhir = Fhir::start();
    let health = get_root(&fhir, "/health", &[]);
    health.expect(200, "GET /health");
    assert_eq!(health.json(), json!({"status": "pass"}));
    let ready = get_root(&fhir, "/ready", &[]);
    ready.expect(200, "GET /ready");
    assert_eq!(
        ready.json(),
        json!({"status": "pass", "checks":
            {"store": "pass", "search-index": "pass", "profiles": "pass"}})
    );
    let post = send(fhir.http.post(format!("{}/health", fhir.server.origin)));
    assert_outcome(&post, 405, &["not-supported"]);
}

#[test]
fn unknown_paths_are_fhir_404s() {
    let fhir = Fhir::start();
    for path in ["/nothing", "/healthz", "/metrics/x", "/fhir/Patient/1/x/y"] {
        assert_outcome(&get_root(&fhir, path, &[]), 404, &["not-found"]);
    }
}

#[test]
fn metrics_count_requests_by_interaction() {
    let fhir = Fhir::start();
    let before = scrape(&fhir);
    assert_eq!(value(&before, "fhirlake_changelog_head_seq", &[]), 0.0);
    assert!(value(&before, "fhirlake_store_size_bytes", &[]) > 0.0);

    let created: Vec<Value> = (0..3)
        .map(|i| fhir.create(&patient(&format!("M{i}"))))
        .collect();
    let first = &created[0];
    let path = type_and_id(first);
    fhir.get(&path).expect(200, "read");
    fhir.get(&format!("{path}/_history/1")).expect(200, "vread");
    let mut changed = first.clone();
    changed["active"] = json!(false);
    fhir.update(&changed).expect(200, "update");
    fhir.delete(&type_and_id(&created[1])).expect(204, "delete");
    fhir.get(&format!("{path}/_history"))
        .expect(200, "history-instance");
    fhir.get("Patient/_history").expect(200, "history-type");
    fhir.get("_history").expect(200, "history-system");
    fhir.get("metadata").expect(200, "capabilities");
    let entry = |family: &str| json!({"resource": patient(family), "request": {"method": "POST", "url": "Patient"}});
    let transaction = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [entry("T1"), entry("T2")]});
    fhir.bundle(&transaction).expect(200, "transaction");
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [entry("B1")]});
    fhir.bundle(&batch).expect(200, "batch");
    // Whatever search answers today, it is counted as a search.
    fhir.get("Patient");
    send(fhir.http.get(&fhir.base));
    fhir.get(&format!("Patient/{}-missing", id_of(first)))
        .expect(404, "read of nothing");
    get_root(&fhir, "/nothing", &[]).expect(404, "unknown path");
    let writes = 3 + 1 + 1 + 2 + 1;

    let after = scrape(&fhir);
    let requests = "fhirlake_http_requests_total";
    let creates = value(
        &after,
        requests,
        &[("interaction", "create"), ("status", "201")],
    );
    assert!(creates >= 3.0, "{creates} creates counted");
    assert_eq!(
        value(
            &after,
            requests,
            &[("interaction", "read"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            requests,
            &[("interaction", "delete"), ("status", "204")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            requests,
            &[("interaction", "other"), ("status", "404")]
        ),
        1.0
    );
    for interaction in [
        "create",
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "history-type",
        "history-system",
        "search-type",
        "search-system",
        "transaction",
        "batch",
        "capabilities",
        "other",
    ] {
        assert!(
            find(&after, requests, &[("interaction", interaction)]).is_some(),
            "no request counted as {interaction}"
        );
    }

    // The latency histogram of creates: cumulative buckets up to +Inf, which holds them all.
    let buckets: Vec<&Sample> = after
        .iter()
        .filter(|s| {
            s.name == "fhirlake_http_request_duration_seconds_bucket"
                && s.labels["interaction"] == "create"
        })
        .collect();
    assert!(buckets.len() > 5, "{buckets:#?}");
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "{buckets:#?}"
    );
    let all = buckets.last().expect("a bucket");
    assert_eq!(all.labels["le"], "+Inf");
    let count = value(
        &after,
        "fhirlake_http_request_duration_seconds_count",
        &[("interaction", "create")],
    );
    assert_eq!(all.value, count);
    assert!(count >= 3.0);
    assert!(
        value(
            &after,
            "fhirlake_http_request_duration_seconds_sum",
            &[("interaction", "create")]
        ) > 0.0
    );

    assert_eq!(
        value(&after, "fhirlake_changelog_head_seq", &[]),
        writes as f64
    );
    assert_eq!(fhir.system_history().len(), writes);
    assert!(value(&after, "fhirlake_store_size_bytes", &[]) > 0.0);
    // The search indexer reports its lag; a search waits for it, so after one it is zero.
    fhir.get("Patient?_summary=count").expect(200, "search");
    let caught_up = scrape(&fhir);
    assert_eq!(
        value(
            &caught_up,
            "fhirlake_consumer_lag_changes",
            &[("consumer", "search-indexer")]
        ),
        0.0
    );
}

#[test]
fn request_ids_are_echoed_or_made() {
    let fhir = Fhir::start();
    let given = fhir.get_with("metadata", &[("x-request-id", "client-42:a/b")]);
    assert_eq!(
        given.header("x-request-id").as_deref(),
        Some("client-42:a/b")
    );

    let made: Vec<String> = (0..2)
        .map(|_| {
            let reply = fhir.get("Patient/missing");
            reply.expect(404, "read of nothing");
            reply.header("x-request-id").expect("an X-Request-Id")
        })
        .collect();
    assert_ne!(made[0], made[1]);
    for id in &made {
        uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id} is not a UUID: {e}"));
    }

    let long = "x".repeat(129);
    for bad in ["two words", "quote\"d", long.as_str()] {
        let reply = get_root(&fhir, "/health", &[("x-request-id", bad)]);
        let id = reply.header("x-request-id").expect("an X-Request-Id");
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "{bad:?} answered with {id}"
        );
    }
}

#[test]
fn json_logs() {
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let mut command = TestServer::command(&data, &["--log-format", "json"]);
    command.env("RUST_LOG", "info").stderr(Stdio::piped());
    let mut server = TestServer::spawn(command, &data);
    let stderr = server.take_stderr().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map(|line| line.expect("read stderr"))
            .collect::<Vec<String>>()
    });
    let fhir = Fhir::with(server);
    fhir.get_with("metadata", &[("x-request-id", "json-log-1")])
        .expect(200, "capabilities");
    let mut server = fhir.server;
    assert!(server.terminate().success());
    let lines = reader.join().expect("stderr reader");

    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(events.len() >= 3, "{lines:#?}");
    for event in &events {
        assert!(event["timestamp"].is_string(), "{event}");
        assert!(event["level"].is_string(), "{event}");
        assert!(event["message"].is_string(), "{event}");
    }
    let request = events
        .iter()
        .find(|e| e["message"] == "request" && e["request_id"] == "json-log-1")
        .unwrap_or_else(|| panic!("no request line: {lines:#?}"));
    assert_eq!(request["method"], "GET");
    assert_eq!(request["path"], "/fhir/metadata");
    assert_eq!(request["interaction"], "capabilities");
    assert_eq!(request["status"], 200);
    assert!(request["micros"].is_u64(), "{request}");
}
