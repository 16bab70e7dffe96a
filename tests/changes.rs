//! The change stream over HTTP: the pull API, Server-Sent Events and the WebSocket, with
//! concurrent writers, consumers that disconnect and resume, filters, and a SIGKILL of the
//! server mid-stream. Every consumer must end with exactly the committed changes, in order,
//! without a gap, and without a duplicate once de-duplicated by event id.

mod common;

use common::TestServer;
use common::changes::{Ended, assert_exactly, pull_all, read_sse, read_websocket, seq};
use common::fhir::{Fhir, FhirClient, assert_outcome, patient};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

fn observation(code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]}})
}

#[test]
fn the_pull_api_replays_the_log_as_cloudevents() {
    let fhir = Fhir::start();
    let first = fhir.create(&patient("One"));
    let id = first["id"].as_str().unwrap().to_string();
    let mut updated = first.clone();
    updated["active"] = json!(false);
    fhir.update(&updated).expect(200, "update");
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("1234-5"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation("9999-9"), "request": {"method": "POST", "url": "Observation"}},
    ]});
    fhir.bundle(&transaction).expect(200, "transaction");
    fhir.delete(&format!("Patient/{id}")).expect(204, "delete");

    let events = pull_all(&fhir, "");
    assert_eq!(
        events.iter().map(seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let created = &events[0];
    assert_eq!(created["specversion"], "1.0");
    assert_eq!(created["type"], "fhir.Patient.created");
    assert_eq!(created["subject"], format!("Patient/{id}/_history/1"));
    assert_eq!(created["source"], "/fhir");
    assert_eq!(created["datacontenttype"], "application/fhir+json");
    assert_eq!(created["data"], first);
    assert!(created["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(events[1]["type"], "fhir.Patient.updated");
    assert_eq!(events[1]["data"]["active"], false);
    // One transaction, one txid: the seq of its first change.
    assert_eq!(events[2]["txid"], "3");
    assert_eq!(events[3]["txid"], "3");
    assert_eq!(events[1]["txid"], "2");
    assert_eq!(events[4]["type"], "fhir.Patient.deleted");
    assert!(events[4].get("data").is_none());

    // Pages: `next` is where to ask from, and moves past what the filter leaves out.
    let page = fhir.get("$changes?since=1&_count=2").json();
    assert_eq!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(seq)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(page["next"], 3);
    let page = fhir.get("$changes?since=5").json();
    assert_eq!(
        (page["events"].as_array().unwrap().len(), &page["next"]),
        (0, &json!(5))
    );
    let page = fhir
        .get("$changes?since=0&_type=Observation&_count=1")
        .json();
    assert_eq!(page["events"][0]["id"], "3");
    assert_eq!(page["next"], 3);
    let observations = pull_all(&fhir, "&_type=Observation&content=id-only");
    assert_eq!(observations.iter().map(seq).collect::<Vec<_>>(), vec![3, 4]);
    let subject = observations[0]["subject"].as_str().unwrap();
    assert_eq!(observations[0]["data"], json!({"reference": subject}));
    let matching = pull_all(&fhir, "&criteria=Observation%3Fcode%3D1234-5");
    assert_eq!(matching.iter().map(seq).collect::<Vec<_>>(), vec![3]);
    // A delete matches on the version it deleted.
    let patients = pull_all(&fhir, "&criteria=Patient%3Ffamily%3DOne");
    assert_eq!(patients.iter().map(seq).collect::<Vec<_>>(), vec![1, 2, 5]);

    for (query, status, code) in [
        ("since=x", 400, "invalid"),
        ("_count=-1", 400, "invalid"),
        ("_type=Nope", 400, "invalid"),
        ("criteria=Observation%3Fnope%3D1", 400, "not-supported"),
        ("criteria=Observation%3Fsubject.name%3Dx", 400, "invalid"),
        (
            "_type=Patient&criteria=Observation%3Fcode%3D1",
            400,
            "invalid",
        ),
        ("content=all", 400, "invalid"),
        ("foo=1", 400, "not-supported"),
    ] {
        let reply = fhir.get(&format!("$changes?{query}"));
        assert_outcome(&reply, status, &[code]);
    }
    let reply = fhir.get_with("$changes/stream", &[("Last-Event-ID", "nope")]);
    assert_outcome(&reply, 400, &["invalid"]);
    let reply = fhir.get_with("$changes/stream", &[("Accept", "application/json")]);
    assert_outcome(&reply, 406, &["not-supported"]);
    let reply = fhir.get("$changes/websocket");
    assert_outcome(&reply, 400, &["invalid"]);
    let reply = fhir.post("$changes", &json!({}));
    assert_outcome(&reply, 405, &["not-supported"]);
}

/// Writers that create, update and delete Patients and Observations until told to stop.
fn write(fhir: &FhirClient, writer: usize, rounds: usize) {
    for round in 0..rounds {
        let created = fhir.create(&patient(&format!("W{writer}R{round}")));
        let mut updated = created.clone();
        updated["active"] = json!(false);
        fhir.update(&updated).expect(200, "update");
        let code = if round % 2 == 0 { "1234-5" } else { "9999-9" };
        let observation = fhir.create(&observation(code));
        if round % 3 == 0 {
            let path = format!("Observation/{}", observation["id"].as_str().unwrap());
            fhir.delete(&path).expect(204, "delete");
        }
    }
}

/// A consumer that reads until the `stop` Basic resource's event, disconnecting once after
/// `disconnect_after` events and resuming a few events back (so some arrive twice).
fn consume(
    read: impl Fn(u64, &mut dyn FnMut(Value) -> bool) -> Ended,
    disconnect_after: usize,
) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    let mut disconnected = false;
    let mut from = 0;
    loop {
        let ended = read(from, &mut |event| {
            let stop = event["type"] == "fhir.Basic.created";
            events.push(event);
            if !disconnected && events.len() == disconnect_after {
                return false;
            }
            !stop
        });
        let last = events.last().map_or(0, seq);
        if events
            .last()
            .is_some_and(|e| e["type"] == "fhir.Basic.created")
        {
            return events;
        }
        match ended {
            Ended::Stopped => {
                disconnected = true;
                from = last.saturating_sub(3);
            }
            Ended::Reconnect(since) => from = since,
            Ended::Closed => panic!("the stream closed after {last}"),
        }
    }
}

#[test]
fn concurrent_writers_and_consumers_that_resume_see_every_change_once_in_order() {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 40;
    let fhir = Fhir::start();
    fhir.create(&patient("Before")); // a change before the consumers start
    let base = fhir.base.clone();
    let ws_base = base.replacen("http://", "ws://", 1);

    let sse = thread::spawn({
        let base = base.clone();
        move || {
            consume(
                |from, on_event| {
                    let last = (from > 0).then_some(from);
                    read_sse(&format!("{base}/$changes/stream"), last, on_event)
                },
                150,
            )
        }
    });
    let websocket = thread::spawn(move || {
        consume(
            |from, on_event| {
                read_websocket(
                    &format!("{ws_base}/$changes/websocket?since={from}"),
                    on_event,
                )
            },
            250,
        )
    });
    // Observations of code 1234-5: created in even rounds, deleted again every sixth round
    // (a delete matches on the version it deleted).
    let matches: usize = WRITERS
        * (0..ROUNDS)
            .map(|round| usize::from(round % 2 == 0) + usize::from(round % 6 == 0))
            .sum::<usize>();
    let matching = thread::spawn({
        let base = base.clone();
        move || {
            let mut events = Vec::new();
            let url = format!(
                "{base}/$changes/stream?criteria=Observation%3Fcode%3D1234-5&content=id-only"
            );
            read_sse(&url, None, |event| {
                events.push(event);
                events.len() < matches
            });
            events
        }
    });
    thread::sleep(Duration::from_millis(300));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let fhir = fhir.new_client();
            thread::spawn(move || write(&fhir, writer, ROUNDS))
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer");
    }
    fhir.create(&json!({"resourceType": "Basic", "code": {"text": "stop"}}));

    let committed: Vec<u64> = pull_all(&fhir, "").iter().map(seq).collect();
    let head = *committed.last().unwrap();
    assert_eq!(
        committed,
        (1..=head).collect::<Vec<_>>(),
        "the log is gap-free"
    );
    assert_exactly(&sse.join().expect("SSE consumer"), &committed, "SSE");
    assert_exactly(
        &websocket.join().expect("WebSocket consumer"),
        &committed,
        "WebSocket",
    );
    let expected: Vec<u64> = pull_all(&fhir, "&criteria=Observation%3Fcode%3D1234-5")
        .iter()
        .map(seq)
        .collect();
    assert_eq!(expected.len(), matches);
    let matched = matching.join().expect("filtered consumer");
    assert_exactly(&matched, &expected, "SSE with criteria");
    let live = matched
        .iter()
        .filter(|e| e["type"] != "fhir.Observation.deleted");
    assert!(live.clone().all(|e| e["data"]["reference"] == e["subject"]));
    assert_eq!(live.count(), WRITERS * ROUNDS / 2);
}

#[test]
fn a_sigkill_mid_stream_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_on(&data, &[]);
    let base = Arc::new(Mutex::new(server.base.clone()));
    let events = Arc::new(Mutex::new(Vec::<Value>::new()));
    // The consumer follows whichever server is up, resuming from the last id it holds.
    let consumer = thread::spawn({
        let (base, events) = (base.clone(), events.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        move || loop {
            let url = format!("{}/$changes/stream", base.lock().unwrap());
            let last = events.lock().unwrap().last().map(seq);
            let ended = read_sse(&url, last, |event| {
                let stop = event["type"] == "fhir.Basic.created";
                events.lock().unwrap().push(event);
                !stop
            });
            if ended == Ended::Stopped {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the consumer never got to the end"
            );
            thread::sleep(Duration::from_millis(100));
        }
    });
    // Acknowledged writes, as `Type/id/_history/vid`.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut server = server;
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let (fhir, acked, stop) =
                    (FhirClient::at(&server.base), acked.clone(), stop.clone());
                thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let body = serde_json::to_vec(&patient("Crash")).unwrap();
                        let Ok(reply) = fhir
                            .http
                            .post(fhir.url("Patient"))
                            .header("Content-Type", "application/fhir+json")
                            .body(body)
                            .send()
                        else {
                            return;
                        };
                        if reply.status() == 201 {
                            let location = reply.headers()["location"].to_str().unwrap();
                            let subject = location.rsplit("/fhir/").next().unwrap().to_string();
                            acked.lock().unwrap().insert(subject);
                        }
                    }
                })
            })
            .collect();
        // Killed mid-stream once the round has writes acknowledged (a count, not a time: a
        // slow machine gets there later, not never).
        let target = 20 * (round + 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while acked.lock().unwrap().len() < target && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.join().unwrap();
        }
        server = TestServer::start_on(&data, &[]);
        *base.lock().unwrap() = server.base.clone();
        eprintln!(
            "round {round}: {} acknowledged",
            acked.lock().unwrap().len()
        );
    }
    let fhir = FhirClient::at(&server.base);
    fhir.create(&json!({"resourceType": "Basic", "code": {"text": "stop"}}));
    consumer.join().expect("consumer");

    let committed: Vec<u64> = pull_all(&fhir, "").iter().map(seq).collect();
    let head = *committed.last().unwrap();
    assert_eq!(committed, (1..=head).collect::<Vec<_>>());
    let events = events.lock().unwrap().clone();
    assert_exactly(&events, &committed, "SSE across SIGKILLs");
    let subjects: HashSet<String> = events
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .collect();
    let acked = acked.lock().unwrap();
    assert!(acked.len() >= 40, "the writers got too few writes through");
    let missing: Vec<_> = acked.iter().filter(|s| !subjects.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes without an event: {missing:?}"
    );
}

#[test]
fn retention_trims_the_log_but_never_past_a_consumers_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // A Subscription whose endpoint never answers holds the log from its creation (seq 1).
    let endpoint = format!("http://127.0.0.1:{}/hook", common::changes::free_port());
    let args = [
        "--changes-retention",
        "1s",
        "--subscription-retry",
        "50ms",
        "--subscription-endpoints",
        &endpoint,
    ];
    let fhir = Fhir::with(TestServer::start_on(&dir.path().join("data"), &args));
    let subscription = fhir.create(&json!({
        "resourceType": "Subscription", "status": "active", "reason": "test",
        "criteria": "Patient", "channel": {"type": "rest-hook", "endpoint": endpoint}
    }));
    for n in 0..5 {
        fhir.create(&patient(&format!("R{n}")));
    }
    let trimmed = |since: u64| fhir.get(&format!("$changes?since={since}")).status == 410;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !trimmed(0) {
        assert!(std::time::Instant::now() < deadline, "nothing was trimmed");
        thread::sleep(Duration::from_millis(200));
    }
    assert_outcome(&fhir.get("$changes?since=0"), 410, &["not-found"]);
    thread::sleep(Duration::from_millis(2500));
    let kept: Vec<u64> = fhir.get("$changes?since=1").json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq)
        .collect();
    assert_eq!(
        kept[..5],
        [2, 3, 4, 5, 6],
        "the Subscription still needs them"
    );
    // Without it, everything older goes but the last change.
    fhir.delete(&format!(
        "Subscription/{}",
        subscription["id"].as_str().unwrap()
    ))
    .expect(204, "delete");
    let metrics = fhir
        .http
        .get(format!("{}/metrics", fhir.server.origin))
        .send()
        .unwrap();
    let metrics = metrics.text().unwrap();
    let head: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("fhirlake_changelog_head_seq "))
        .expect("the head metric")
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !trimmed(head - 2) {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was not trimmed"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let last = fhir.get(&format!("$changes?since={}", head - 1)).json();
    assert_eq!(last["events"][0]["type"], "fhir.Subscription.deleted");
    let reply = fhir.get_with("$changes/stream", &[("Last-Event-ID", "1")]);
    assert_outcome(&reply, 410, &["not-found"]);
}
