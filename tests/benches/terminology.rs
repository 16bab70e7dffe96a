//! Terminology benchmark: `cargo bench --bench terminology`.
//!
//! 1. In process (the library, no HTTP): how long decoding the shipped content takes, then
//!    the cost of one `lookup`, `validate_code` (with a display to compare), value set
//!    membership, `subsumes` and a small expansion, each averaged over a fixed mix of codes
//!    (ICD-10-CM, SNOMED CT, LOINC, FHIR and HL7 code systems).
//! 2. Over HTTP: `GET /fhir/ValueSet/$validate-code` against the release `fhirlake` binary,
//!    cycling through a mix of requests (codes in value sets, codes in their system, with
//!    and without displays), by C concurrent clients (tokio tasks sharing one reqwest client)
//!    for S seconds. The aim is 20,000 requests/s or more on this 2-core machine,
//!    where client and server share the cores.
//!
//! Settings (environment): `FHIRLAKE_BENCH_CONCURRENCY` (clients, default 32),
//! `FHIRLAKE_BENCH_SECONDS` (default 10), `FHIRLAKE_BENCH_ITERATIONS` (in-process calls per
//! operation, default 200,000). Every HTTP request must answer 200: the benchmark fails at the
//! end otherwise.

#[path = "../common/mod.rs"]
mod common;

use common::bench::{percentile_ms, setting};
use fhirlake::terminology::{ExpandRequest, Terminology};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const GENDER: &str = "http://hl7.org/fhir/administrative-gender";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// (system, code, display) of the in-process mix.
const CODES: &[(&str, &str, Option<&str>)] = &[
    (
        ICD10CM,
        "E11.9",
        Some("Type 2 diabetes mellitus without complications"),
    ),
    (SNOMED, "195967001", Some("Asthma")),
    (SNOMED, "399144008", None),
    (LOINC, "8302-2", Some("Body height")),
    (GENDER, "female", Some("Female")),
    (ACT_CODE, "AMB", Some("ambulatory")),
];

/// (value set, system, code) of the in-process membership mix.
const MEMBERS: &[(&str, &str, &str)] = &[
    (
        "http://hl7.org/fhir/ValueSet/administrative-gender",
        GENDER,
        "female",
    ),
    (
        "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode",
        ACT_CODE,
        "AMB",
    ),
    (
        "http://hl7.org/fhir/ValueSet/clinical-findings",
        SNOMED,
        "195967001",
    ),
    (
        "http://hl7.org/fhir/ValueSet/observation-codes",
        LOINC,
        "8302-2",
    ),
];

/// The query strings of the HTTP mix: each must answer 200.
const QUERIES: &[&str] = &[
    "url=http://hl7.org/fhir/ValueSet/administrative-gender&system=http://hl7.org/fhir/administrative-gender&code=female",
    "url=http://hl7.org/fhir/ValueSet/observation-category&system=http://terminology.hl7.org/CodeSystem/observation-category&code=vital-signs&display=Vital%20Signs",
    "system=http://loinc.org&code=8302-2&display=Body%20Height",
    "system=http://snomed.info/sct&code=195967001&display=Asthma",
    "system=http://hl7.org/fhir/sid/icd-10-cm&code=E11.9",
    "url=http://terminology.hl7.org/ValueSet/v3-ActEncounterCode&system=http://terminology.hl7.org/CodeSystem/v3-ActCode&code=AMB",
    "url=http://hl7.org/fhir/ValueSet/condition-clinical&system=http://terminology.hl7.org/CodeSystem/condition-clinical&code=active",
    "system=http://hl7.org/fhir/sid/icd-10-cm&code=E11.99",
];

fn main() {
    let iterations = setting("FHIRLAKE_BENCH_ITERATIONS", 200_000.0) as usize;
    let concurrency = setting("FHIRLAKE_BENCH_CONCURRENCY", 32.0) as usize;
    let seconds = setting("FHIRLAKE_BENCH_SECONDS", 10.0);
    in_process(iterations);
    over_http(concurrency, Duration::from_secs_f64(seconds));
}

/// Runs `call` `iterations` times over `items` in turn; returns nanoseconds per call.
fn per_call<T>(iterations: usize, items: &[T], mut call: impl FnMut(&T)) -> f64 {
    let start = Instant::now();
    for i in 0..iterations {
        call(&items[i % items.len()]);
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn in_process(iterations: usize) {
    let terminology = Terminology::shipped_only();
    let start = Instant::now();
    Terminology::load_in_background();
    while !Terminology::is_loaded() {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "decoding the shipped terminology: {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    println!();
    println!("| in process | ns per call |");
    println!("|---|---:|");
    let row = |name: &str, ns: f64| println!("| {name} | {ns:.0} |");
    row(
        "lookup",
        per_call(iterations, CODES, |(system, code, _)| {
            black_box(terminology.lookup(system, code).unwrap());
        }),
    );
    row(
        "validate_code (with display)",
        per_call(iterations, CODES, |(system, code, display)| {
            black_box(terminology.validate_code(system, code, *display).unwrap());
        }),
    );
    row(
        "validate_in_value_set",
        per_call(iterations, MEMBERS, |(url, system, code)| {
            black_box(
                terminology
                    .validate_in_value_set(url, system, code, None)
                    .unwrap(),
            );
        }),
    );
    let pairs = [
        (ICD10CM, "E11", "E11.9"),
        (ACT_CODE, "_ActEncounterCode", "AMB"),
    ];
    row(
        "subsumes",
        per_call(iterations, &pairs, |(system, a, b)| {
            black_box(terminology.subsumes(system, a, b).unwrap());
        }),
    );
    let request = ExpandRequest::default();
    row(
        "expand (administrative-gender)",
        per_call(iterations / 10, &[()], |_| {
            black_box(
                terminology
                    .expand(
                        "http://hl7.org/fhir/ValueSet/administrative-gender",
                        &request,
                    )
                    .unwrap(),
            );
        }),
    );
}

/// What the HTTP load measured.
#[derive(Default)]
struct Load {
    latencies: Vec<u64>,
    errors: usize,
    error_samples: Vec<String>,
}

fn over_http(concurrency: usize, duration: Duration) {
    let server = common::TestServer::start();
    let client = common::client();
    // The first question waits until the shipped terminology is decoded.
    let warm_up = client
        .get(format!(
            "{}/ValueSet/$validate-code?{}",
            server.base, QUERIES[0]
        ))
        .send()
        .expect("warm-up request");
    assert!(
        warm_up.status().is_success(),
        "warm-up: {}",
        warm_up.status()
    );
    let urls: Arc<Vec<String>> = Arc::new(
        QUERIES
            .iter()
            .map(|query| format!("{}/ValueSet/$validate-code?{query}", server.base))
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client");
    let started = Instant::now();
    let deadline = started + duration;
    let load = runtime.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|task| {
                let (http, urls) = (http.clone(), urls.clone());
                tokio::spawn(async move {
                    let mut load = Load::default();
                    let mut next = task;
                    while Instant::now() < deadline {
                        let url = &urls[next % urls.len()];
                        next += 1;
                        let sent = Instant::now();
                        let answer = async {
                            let response = http.get(url).send().await?;
                            let status = response.status();
                            Ok::<_, reqwest::Error>((status, response.bytes().await?))
                        }
                        .await;
                        load.latencies.push(sent.elapsed().as_micros() as u64);
                        let failure = match answer {
                            Ok((status, _)) if status.is_success() => None,
                            Ok((status, body)) => Some(format!(
                                "{status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            )),
                            Err(error) => Some(error.to_string()),
                        };
                        if let Some(failure) = failure {
                            load.errors += 1;
                            if load.error_samples.len() < 3 {
                                load.error_samples.push(failure);
                            }
                        }
                    }
                    load
                })
            })
            .collect();
        let mut all = Load::default();
        for task in tasks {
            let load = task.await.expect("client task");
            all.latencies.extend(load.latencies);
            all.errors += load.errors;
            all.error_samples.extend(load.error_samples);
        }
        all
    });
    let elapsed = started.elapsed();
    let mut latencies = load.latencies;
    latencies.sort_unstable();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!("| over HTTP | clients | requests | errors | req/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| GET ValueSet/$validate-code | {concurrency} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
        latencies.len(),
        load.errors,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        percentile_ms(&latencies, 100.0),
    );
    println!();
    println!(
        "Release build; client and server share this machine's {cores} cores, so the rate is a \
         lower bound of what the server alone does."
    );
    drop(server);
    if load.errors > 0 {
        eprintln!("FAILED: {} requests did not answer 200", load.errors);
        for sample in &load.error_samples {
            eprintln!("  {sample}");
        }
        std::process::exit(1);
    }
}
