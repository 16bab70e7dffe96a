//! Optimistic locking under concurrency: `If-Match` lets exactly one of many concurrent
//! writers of the same version win, and read-then-update loops lose no update.
mod common;

use common::{FHIR_JSON, TestServer};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Barrier;

struct Reply {
    status: u16,
    etag: Option<String>,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text))
    }

    fn expect(&self, status: u16, what: &str) -> &Reply {
        assert_eq!(
            self.status, status,
            "{what}: expected {status}, got {} with body {}",
            self.status, self.text
        );
        self
    }
}

fn send(request: RequestBuilder) -> Reply {
    let response = request.send().expect("request failed");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().expect("ASCII ETag").to_string());
    let text = response.text().expect("read body");
    Reply { status, etag, text }
}

fn put(client: &Client, server: &TestServer, body: &Value, if_match: &str) -> Reply {
    let path = format!(
        "{}/{}",
        body["resourceType"].as_str().expect("type"),
        body["id"].as_str().expect("id")
    );
    send(
        client
            .put(server.url(&path))
            .header("content-type", FHIR_JSON)
            .header("if-match", if_match)
            .body(body.to_string()),
    )
}

fn version_of(resource: &Value) -> u64 {
    resource["meta"]["versionId"]
        .as_str()
        .expect("versionId")
        .parse()
        .expect("numeric versionId")
}

fn assert_conflict(reply: &Reply) {
    let outcome = reply.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    assert_eq!(outcome["issue"][0]["severity"], "error", "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "conflict", "{outcome}");
}

const COUNTER_URL: &str = "http://example.org/fhir/StructureDefinition/counter";

fn counter(resource: &Value) -> i64 {
    let extension = &resource["extension"][0];
    assert_eq!(extension["url"], COUNTER_URL, "{resource}");
    extension["valueInteger"].as_i64().expect("valueInteger")
}

fn create(server: &TestServer, body: &Value) -> Value {
    let reply = send(
        common::client()
            .post(server.url("Patient"))
            .header("content-type", FHIR_JSON)
            .body(body.to_string()),
    );
    reply.expect(201, "create");
    reply.json()
}

/// Every entry of an instance history (following `next` links).
fn history(client: &Client, server: &TestServer, path: &str) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut url = format!("{}?_count=1000", server.url(path));
    loop {
        let bundle = send(client.get(&url)).expect(200, "history").json();
        assert_eq!(bundle["type"], "history", "{bundle}");
        entries.extend(bundle["entry"].as_array().cloned().unwrap_or_default());
        let next = bundle["link"].as_array().and_then(|links| {
            links
                .iter()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .map(str::to_string)
        });
        match next {
            Some(next) => url = next,
            None => return entries,
        }
    }
}

fn entry_version(entry: &Value) -> u64 {
    let etag = entry["response"]["etag"].as_str().expect("etag");
    etag.strip_prefix("W/\"")
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("etag {etag:?}"))
}

#[test]
fn of_fifty_concurrent_updates_of_version_1_exactly_one_wins() {
    let server = TestServer::start();
    let created = create(
        &server,
        &json!({"resourceType": "Patient", "name": [{"family": "Race"}]}),
    );
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("Patient/{id}");
    let threads = 50;
    let barrier = Barrier::new(threads);

    let results: Vec<(usize, Reply)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (server, barrier, path) = (&server, &barrier, &path);
                scope.spawn(move || {
                    let client = common::client();
                    // Never leave the barrier without the others, even when the read fails.
                    let prepared = catch_unwind(AssertUnwindSafe(|| {
                        let read = send(client.get(server.url(path)));
                        read.expect(200, "read");
                        let etag = read.etag.clone().expect("ETag");
                        assert_eq!(etag, "W/\"1\"");
                        let mut body = read.json();
                        body["name"][0]["given"] = json!([format!("writer{i}")]);
                        (body, etag)
                    }));
                    barrier.wait();
                    let (body, etag) = match prepared {
                        Ok(prepared) => prepared,
                        Err(panic) => resume_unwind(panic),
                    };
                    (i, put(&client, server, &body, &etag))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });

    let winners: Vec<&(usize, Reply)> = results.iter().filter(|(_, r)| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "statuses: {:?}",
        results.iter().map(|(_, r)| r.status).collect::<Vec<_>>()
    );
    for (_, reply) in results.iter().filter(|(_, r)| r.status != 200) {
        assert_eq!(reply.status, 412, "a loser must get 412: {}", reply.text);
        assert_conflict(reply);
    }
    let (winner, reply) = winners[0];
    assert_eq!(reply.etag.as_deref(), Some("W/\"2\""));

    let client = common::client();
    let current = send(client.get(server.url(&path)))
        .expect(200, "read")
        .json();
    assert_eq!(version_of(&current), 2);
    assert_eq!(current["name"][0]["given"][0], format!("writer{winner}"));
    assert_eq!(current, reply.json(), "the stored version is the winner's");
    let entries = history(&client, &server, &format!("{path}/_history"));
    assert_eq!(
        entries.iter().map(entry_version).collect::<Vec<_>>(),
        vec![2, 1]
    );
}

#[test]
fn read_then_update_loops_with_if_match_lose_no_update() {
    let server = TestServer::start();
    let created = create(
        &server,
        &json!({
            "resourceType": "Patient",
            "extension": [{"url": COUNTER_URL, "valueInteger": 0}],
            "name": [{"family": "Counter"}]
        }),
    );
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("Patient/{id}");
    let threads = 8;
    let per_thread = 20;

    // Each thread returns the (version, counter) of every update it made.
    let made: Vec<Vec<(u64, i64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (server, path) = (&server, &path);
                scope.spawn(move || {
                    let client = common::client();
                    let mut made = Vec::new();
                    let mut attempts = 0;
                    while made.len() < per_thread {
                        attempts += 1;
                        assert!(attempts < 20_000, "too many conflicts");
                        let read = send(client.get(server.url(path)));
                        read.expect(200, "read");
                        let etag = read.etag.clone().expect("ETag");
                        let mut body = read.json();
                        assert_eq!(etag, format!("W/\"{}\"", version_of(&body)));
                        let next = counter(&body) + 1;
                        body["extension"][0]["valueInteger"] = json!(next);
                        let reply = put(&client, server, &body, &etag);
                        match reply.status {
                            200 => {
                                let stored = reply.json();
                                assert_eq!(counter(&stored), next);
                                assert_eq!(
                                    reply.etag.as_deref(),
                                    Some(format!("W/\"{}\"", version_of(&stored)).as_str())
                                );
                                made.push((version_of(&stored), next));
                            }
                            412 => assert_conflict(&reply),
                            other => panic!("update answered {other}: {}", reply.text),
                        }
                    }
                    made
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });

    let total = threads * per_thread;
    let all: Vec<(u64, i64)> = made.into_iter().flatten().collect();
    assert_eq!(all.len(), total);
    let versions: BTreeSet<u64> = all.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        (2..=1 + total as u64).collect::<BTreeSet<_>>(),
        "every successful update must have made its own version"
    );
    for (version, value) in &all {
        assert_eq!(
            *value,
            *version as i64 - 1,
            "version {version} holds counter {value}: an update was lost"
        );
    }

    let client = common::client();
    let current = send(client.get(server.url(&path)))
        .expect(200, "read")
        .json();
    assert_eq!(version_of(&current), 1 + total as u64);
    assert_eq!(counter(&current), total as i64);

    let entries = history(&client, &server, &format!("{path}/_history"));
    let listed: Vec<u64> = entries.iter().map(entry_version).collect();
    assert_eq!(
        listed,
        (1..=1 + total as u64).rev().collect::<Vec<_>>(),
        "history must hold every version exactly once, newest first"
    );
    for entry in &entries {
        let resource = &entry["resource"];
        assert_eq!(
            counter(resource),
            entry_version(entry) as i64 - 1,
            "history entry {}",
            entry["response"]
        );
    }
}
