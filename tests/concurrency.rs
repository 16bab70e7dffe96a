//! Optimistic locking under concurrency: `If-Match` lets exactly one of many concurrent
//! writers of the same version win, and read-then-update loops lose no update.
mod common;

use common::fhir::{
    Fhir, FhirClient, Reply, assert_issue_code, entry_version, type_and_id, version_number,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Barrier;

/// PUTs `body` to its own `Type/id` with `If-Match: if_match`.
fn put(client: &FhirClient, body: &Value, if_match: &str) -> Reply {
    client.put_with(&type_and_id(body), body, &[("if-match", if_match)])
}

fn assert_conflict(reply: &Reply) {
    assert_issue_code(&reply.json(), &["conflict"], "conflict");
}

const COUNTER_URL: &str = "http://example.org/fhir/StructureDefinition/counter";

fn counter(resource: &Value) -> i64 {
    let extension = &resource["extension"][0];
    assert_eq!(extension["url"], COUNTER_URL, "{resource}");
    extension["valueInteger"].as_i64().expect("valueInteger")
}

/// Creates a Patient and returns it.
fn create(fhir: &Fhir, body: &Value) -> Value {
    fhir.post("Patient", body).expect(201, "create").json()
}

#[test]
fn of_fifty_concurrent_updates_of_version_1_exactly_one_wins() {
    let fhir = Fhir::start();
    let created = create(
        &fhir,
        &json!({"resourceType": "Patient", "name": [{"family": "Race"}]}),
    );
    let id = created["id"].as_str().expect("id").to_string();
    let path = format!("Patient/{id}");
    let threads = 50;
    let barrier = Barrier::new(threads);

    let results: Vec<(usize, Reply)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (fhir, barrier, path) = (&fhir, &barrier, &path);
                scope.spawn(move || {
                    let client = fhir.new_client();
                    // Never leave the barrier without the others, even when the read fails.
                    let prepared = catch_unwind(AssertUnwindSafe(|| {
                        let read = client.get(path);
                        read.expect(200, "read");
                        let etag = read.header("etag").expect("ETag");
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
                    (i, put(&client, &body, &etag))
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
    assert_eq!(reply.header("etag").as_deref(), Some("W/\"2\""));

    let current = fhir.get(&path).expect(200, "read").json();
    assert_eq!(version_number(&current), 2);
    assert_eq!(current["name"][0]["given"][0], format!("writer{winner}"));
    assert_eq!(current, reply.json(), "the stored version is the winner's");
    let entries = fhir.whole_history(&format!("{path}/_history"));
    assert_eq!(
        entries.iter().map(entry_version).collect::<Vec<_>>(),
        vec![2, 1]
    );
}

#[test]
fn read_then_update_loops_with_if_match_lose_no_update() {
    let fhir = Fhir::start();
    let created = create(
        &fhir,
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
                let (fhir, path) = (&fhir, &path);
                scope.spawn(move || {
                    let client = fhir.new_client();
                    let mut made = Vec::new();
                    let mut attempts = 0;
                    while made.len() < per_thread {
                        attempts += 1;
                        assert!(attempts < 20_000, "too many conflicts");
                        let read = client.get(path);
                        read.expect(200, "read");
                        let etag = read.header("etag").expect("ETag");
                        let mut body = read.json();
                        assert_eq!(etag, format!("W/\"{}\"", version_number(&body)));
                        let next = counter(&body) + 1;
                        body["extension"][0]["valueInteger"] = json!(next);
                        let reply = put(&client, &body, &etag);
                        match reply.status {
                            200 => {
                                let stored = reply.json();
                                assert_eq!(counter(&stored), next);
                                assert_eq!(
                                    reply.header("etag").as_deref(),
                                    Some(format!("W/\"{}\"", version_number(&stored)).as_str())
                                );
                                made.push((version_number(&stored), next));
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

    let current = fhir.get(&path).expect(200, "read").json();
    assert_eq!(version_number(&current), 1 + total as u64);
    assert_eq!(counter(&current), total as i64);

    let entries = fhir.whole_history(&format!("{path}/_history"));
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
