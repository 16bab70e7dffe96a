//! The NATS JetStream sink against a real nats-server (Debian's, installed by tests/setup.sh),
//! started by the test on a free port with its own store directory: concurrent writers while
//! nats-server is killed and restarted, and fhirlake too; the stream must end with exactly the
//! committed changes, in order, each once.

mod common;

use common::TestServer;
use common::changes::{NatsServer, pull_all, seq, stream_messages};
use common::fhir::{FhirClient, patient};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const STREAM: &str = "CHANGES";

/// Writes Patients with `writers` threads until `stop`.
fn writers(base: &str, stop: &Arc<AtomicBool>, count: usize) -> Vec<thread::JoinHandle<()>> {
    (0..count)
        .map(|n| {
            let (fhir, stop) = (FhirClient::at(base), stop.clone());
            thread::spawn(move || {
                let mut round = 0;
                while !stop.load(Ordering::SeqCst) {
                    let body = serde_json::to_vec(&patient(&format!("N{n}R{round}"))).unwrap();
                    let _ = fhir
                        .http
                        .post(fhir.url("Patient"))
                        .header("Content-Type", "application/fhir+json")
                        .body(body)
                        .send();
                    round += 1;
                }
            })
        })
        .collect()
}

#[test]
fn the_sink_publishes_every_change_once_in_order_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(&dir.path().join("nats"));
    let data = dir.path().join("data");
    let args = ["--sink", &nats.url(), "--sink-stream", STREAM];
    let mut server = TestServer::start_on(&data, &args);

    // nats-server restarted under load, then fhirlake killed under load.
    for round in 0..2 {
        let stop = Arc::new(AtomicBool::new(false));
        let running = writers(&server.base, &stop, 3);
        thread::sleep(Duration::from_millis(500));
        if round == 0 {
            nats.kill();
            thread::sleep(Duration::from_millis(500));
            nats.restart();
            thread::sleep(Duration::from_millis(500));
        } else {
            server.kill();
        }
        stop.store(true, Ordering::SeqCst);
        for writer in running {
            writer.join().unwrap();
        }
        if round == 1 {
            server = TestServer::start_on(&data, &args);
        }
    }
    let fhir = FhirClient::at(&server.base);
    fhir.create(&json!({"resourceType": "Basic", "code": {"text": "last"}}));
    let committed: Vec<u64> = pull_all(&fhir, "").iter().map(seq).collect();
    let head = *committed.last().unwrap();
    assert_eq!(committed, (1..=head).collect::<Vec<_>>());
    assert!(head > 20, "the writers got too few writes through: {head}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let messages = stream_messages(&nats.url(), STREAM);
        if messages.last().is_some_and(|(id, _)| *id == head) || Instant::now() > deadline {
            break messages;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let ids: Vec<u64> = messages.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids, committed,
        "the stream holds every change once, in order"
    );
    for (id, event) in &messages {
        assert_eq!(seq(event), *id);
    }
    assert_eq!(messages.last().unwrap().1["type"], "fhir.Basic.created");

    // The lag metric of the sink reaches 0.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = fhir
            .http
            .get(format!("{}/metrics", server.origin))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let line = format!("fhirlake_consumer_lag_changes{{consumer=\"sink/nats/{STREAM}\"}} 0");
        if metrics.contains(&line) {
            break;
        }
        assert!(Instant::now() < deadline, "no sink lag of 0 in {metrics}");
        thread::sleep(Duration::from_millis(100));
    }
}
