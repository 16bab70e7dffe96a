//! Change-stream benchmark: commit-to-SSE latency, and events per second to one SSE consumer
//! and to NATS JetStream while concurrent clients ingest at full speed.
//!
//! `cargo bench --bench changes` (needs `nats-server`: tests/setup.sh installs it).
//! FHIRLAKE_BENCH_WRITES (default 2000) sequential creates for the latency;
//! FHIRLAKE_BENCH_RESOURCES (default 50000) Patients, in transactions of 100 posted by
//! FHIRLAKE_BENCH_CONCURRENCY (default 4) clients, for the throughput.

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::changes::{Ended, NatsServer, read_sse, seq};
use common::fhir::{FhirClient, patient};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p`th percentile of sorted `values`.
fn percentile(values: &[Duration], p: f64) -> Duration {
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// Reads the SSE stream of `base` (from now on) in a thread until `count` events arrived;
/// each event's subject and arrival time.
fn follow(base: &str, count: usize) -> std::thread::JoinHandle<Vec<(String, Instant)>> {
    let url = format!("{base}/$changes/stream?content=id-only");
    std::thread::spawn(move || {
        let mut arrivals = Vec::with_capacity(count);
        read_sse(&url, None, |event| {
            arrivals.push((
                event["subject"].as_str().unwrap().to_string(),
                Instant::now(),
            ));
            arrivals.len() < count
        });
        arrivals
    })
}

fn main() {
    let writes = setting("FHIRLAKE_BENCH_WRITES", 2000);
    let resources = setting("FHIRLAKE_BENCH_RESOURCES", 50_000);
    let concurrency = setting("FHIRLAKE_BENCH_CONCURRENCY", 4);
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("nats"));
    let args = ["--sink", &nats.url(), "--sink-stream", "BENCH"];
    let server = TestServer::start_on(&dir.path().join("data"), &args);
    let fhir = FhirClient::at(&server.base);

    // Latency: one create at a time. The commit happens between the request's sending and its
    // 201 answer, so the time from each bounds commit-to-event from above and from below.
    let consumer = follow(&server.base, writes);
    std::thread::sleep(Duration::from_millis(300));
    let mut answered = HashMap::with_capacity(writes);
    for n in 0..writes {
        let body = serde_json::to_vec(&patient(&format!("L{n}"))).unwrap();
        let sent = Instant::now();
        let reply = fhir
            .http
            .post(fhir.url("Patient"))
            .header("Content-Type", common::FHIR_JSON)
            .header("Prefer", "return=minimal")
            .body(body)
            .send()
            .unwrap();
        let at = Instant::now();
        let location = reply.headers()["location"].to_str().unwrap();
        let subject = location.rsplit("/fhir/").next().unwrap().to_string();
        answered.insert(subject, (sent, at));
    }
    let arrivals = consumer.join().unwrap();
    type From = fn(&(Instant, Instant)) -> Instant;
    let starts: [(&str, From); 2] = [
        ("its request was sent", |(sent, _)| *sent),
        ("its 201 answer arrived", |(_, answered)| *answered),
    ];
    for (name, from) in starts {
        let mut latencies: Vec<Duration> = arrivals
            .iter()
            .map(|(subject, arrived)| arrived.saturating_duration_since(from(&answered[subject])))
            .collect();
        latencies.sort();
        println!(
            "SSE event latency over {writes} creates, from when {name}: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3
        );
    }

    // Throughput: transactions of 100 from concurrent clients; one SSE consumer; the sink.
    let bundles: Vec<Vec<u8>> = (0..resources.div_ceil(100))
        .map(|b| {
            let entry: Vec<_> = (0..100)
                .map(|n| {
                    json!({"resource": patient(&format!("T{b}N{n}")),
                    "request": {"method": "POST", "url": "Patient"}})
                })
                .collect();
            serde_json::to_vec(
                &json!({"resourceType": "Bundle", "type": "transaction", "entry": entry}),
            )
            .unwrap()
        })
        .collect();
    let events = bundles.len() * 100;
    let head = (writes + events) as u64;
    let consumer = {
        let url = format!("{}/$changes/stream?content=full", server.base);
        let last = writes as u64;
        std::thread::spawn(move || {
            let (mut last, mut first, mut done, mut reconnects) = (last, None, None, 0);
            // A consumer that falls a buffer behind is told to reconnect: it resumes.
            while let Ended::Reconnect(since) = read_sse(&url, Some(last), |event| {
                first.get_or_insert_with(Instant::now);
                last = seq(&event);
                done = Some(Instant::now());
                last < head
            }) {
                last = since;
                reconnects += 1;
            }
            (first.unwrap(), done.unwrap(), reconnects)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let queue = Arc::new(Mutex::new(bundles.into_iter()));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            let queue = queue.clone();
            let client = common::client();
            let base = server.base.clone();
            scope.spawn(move || {
                while let Some(body) = queue.lock().unwrap().next() {
                    let reply = client
                        .post(&base)
                        .header("Content-Type", common::FHIR_JSON)
                        .header("Prefer", "return=minimal")
                        .body(body)
                        .send()
                        .unwrap();
                    assert_eq!(reply.status(), 200);
                }
            });
        }
    });
    let ingested = start.elapsed();
    let (first, last, reconnects) = consumer.join().unwrap();
    println!(
        "ingest: {events} resources in {:.1} s ({:.0}/s); SSE consumer: all of them {:.2} s \
         after the last commit, {:.0} events/s, {reconnects} reconnects",
        ingested.as_secs_f64(),
        events as f64 / ingested.as_secs_f64(),
        last.saturating_duration_since(start + ingested)
            .as_secs_f64(),
        events as f64 / last.duration_since(first).as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let published = runtime.block_on(async {
        let client = async_nats::connect(nats.url()).await.unwrap();
        let context = async_nats::jetstream::new(client);
        let mut stream = context.get_stream("BENCH").await.unwrap();
        while stream.info().await.unwrap().state.last_sequence < head {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Instant::now()
    });
    println!(
        "NATS JetStream: all {head} changes published {:.2} s after the last commit ({:.0} events/s over the run)",
        published
            .saturating_duration_since(start + ingested)
            .as_secs_f64(),
        events as f64 / published.duration_since(start).as_secs_f64()
    );
}
