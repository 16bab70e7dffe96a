//! Ingest benchmark: every Synthea bundle of ../shared/data/synthea posted as a transaction
//! over HTTP by concurrent clients, then the same bundles loaded with `fhirlake import`; each
//! with validation on (the default policy) and off, alternated, to give the cost of
//! validation as the ratio of the medians.
//!
//! `cargo bench --bench ingest`; FHIRLAKE_BENCH_CONCURRENCY (default 4) clients;
//! `FHIRLAKE_BENCH_BINARY` measures another `fhirlake` binary (such as a release build of an
//! earlier commit). Conditional references are resolved first (tests/common/synthea.rs), as
//! they need search.

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::synthea::{self, entry_count};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rounds of each validation setting, alternated so that both meet the same machine state;
/// the cost is the median of the rounds' ratios.
const ROUNDS: usize = 3;

fn main() {
    let concurrency: usize = std::env::var("FHIRLAKE_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let data = synthea::load(None);
    let resources: usize = data
        .patients
        .iter()
        .map(|(_, b)| entry_count(b))
        .sum::<usize>()
        + entry_count(&data.shared);
    let bodies: Vec<(usize, Vec<u8>)> = data
        .patients
        .iter()
        .map(|(_, bundle)| (entry_count(bundle), serde_json::to_vec(bundle).unwrap()))
        .collect();
    let megabytes = bodies.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / 1e6;
    println!(
        "{} patient bundles + shared resources: {resources} resources, {megabytes:.0} MB",
        bodies.len()
    );
    let input = tempfile::tempdir().unwrap();
    std::fs::write(
        input.path().join("0-shared.json"),
        serde_json::to_vec(&data.shared).unwrap(),
    )
    .unwrap();
    for (name, bundle) in &data.patients {
        let name = name.trim_end_matches(".gz");
        std::fs::write(input.path().join(name), serde_json::to_vec(bundle).unwrap()).unwrap();
    }
    let shared = serde_json::to_vec(&data.shared).unwrap();

    println!();
    println!(
        "| validation | ingest path | resources | seconds | resources/s | per bundle p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|");
    // Per round: (HTTP on/off, import on/off), each setting run right after the other.
    let mut ratios: Vec<(f64, f64)> = Vec::new();
    for _ in 0..ROUNDS {
        let mut rates = Vec::new();
        for validation in ["on", "off"] {
            let http = over_http(validation, concurrency, &shared, &bodies);
            let import = with_import(validation, input.path(), resources);
            rates.push((http, import));
        }
        ratios.push((rates[0].0 / rates[1].0, rates[0].1 / rates[1].1));
    }
    let median = |mut found: Vec<f64>| {
        found.sort_by(f64::total_cmp);
        found[found.len() / 2]
    };
    println!();
    for (path, found) in [
        ("HTTP", ratios.iter().map(|r| r.0).collect::<Vec<f64>>()),
        ("import", ratios.iter().map(|r| r.1).collect()),
    ] {
        let listed: Vec<String> = found.iter().map(|r| format!("{r:.3}")).collect();
        let ratio = median(found);
        println!(
            "{path}: throughput with validation on / off, per round {}: median {ratio:.3} \
             (validation costs {:.1}%)",
            listed.join(", "),
            (1.0 - ratio) * 100.0
        );
    }
}

/// Posts every patient bundle as a transaction, `concurrency` clients at once, to a server
/// with `--validation validation`; prints a row and returns the resources per second.
fn over_http(
    validation: &str,
    concurrency: usize,
    shared: &[u8],
    bodies: &[(usize, Vec<u8>)],
) -> f64 {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let server = TestServer::spawn(
        TestServer::command_of(
            &common::bench::binary(),
            &data,
            &["--validation", validation],
        ),
        &data,
    );
    let client = common::client();
    let post = |body: Vec<u8>| {
        let response = client
            .post(&server.base)
            .header("Content-Type", common::FHIR_JSON)
            .header("Prefer", "return=minimal")
            .body(body)
            .send()
            .expect("post bundle");
        assert_eq!(
            response.status().as_u16(),
            200,
            "{}",
            response.text().unwrap()
        );
    };
    post(shared.to_vec());
    let queue = Arc::new(Mutex::new(bodies.iter().cloned()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            let (queue, latencies, post) = (queue.clone(), latencies.clone(), &post);
            scope.spawn(move || {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some((_, body)) = next else { break };
                    let sent = Instant::now();
                    post(body);
                    latencies.lock().unwrap().push(sent.elapsed());
                }
            });
        }
    });
    let http = start.elapsed();
    let patient_resources: usize = bodies.iter().map(|(n, _)| n).sum();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort();
    let rate = patient_resources as f64 / http.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let percentile =
        |p: f64| ms(latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]);
    println!(
        "| {validation} | HTTP, {concurrency} clients posting transactions | {patient_resources} | {:.1} | {rate:.0} | {:.0} ms / {:.0} ms |",
        http.as_secs_f64(),
        percentile(0.5),
        percentile(0.99)
    );
    rate
}

/// Loads the bundles in `input` with `fhirlake import --validation validation` into a fresh
/// data directory; prints a row and returns the resources per second.
fn with_import(validation: &str, input: &std::path::Path, resources: usize) -> f64 {
    let target = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let output = std::process::Command::new(common::bench::binary())
        .args(["import", "--quiet", "--validation", validation, "--data"])
        .arg(target.path().join("data"))
        .arg(input)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fhirlake import");
    let import = start.elapsed();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rate = resources as f64 / import.as_secs_f64();
    println!(
        "| {validation} | `fhirlake import` (whole process: {}) | {resources} | {:.1} | {rate:.0} | |",
        summary.trim(),
        import.as_secs_f64()
    );
    rate
}
