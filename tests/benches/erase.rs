//! Erasure benchmark: every Synthea bundle of ../shared/data/synthea imported with
//! `fhirlake import`, then `$purge` of the patient with the most resources and
//! `$bulk-delete?hardDelete=true` of every Observation, each as a job from kick-off to its
//! result. For each: resources per second, and the redb file's size before and after (redb
//! reuses the pages it frees for later writes rather than shrinking the file, so the size after
//! is close to the size before); then the scrub of the free pages that follows it (pages
//! zeroed and the writer's time, from `/metrics`).
//!
//! `cargo bench --bench erase`.

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::fhir::{FhirClient, send};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files: Vec<String> = common::synthea::files()
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let mut args = vec!["import", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    println!("{}", common::run_command(&args, &data));

    let server = TestServer::start_on(&data, &["--job-poll-interval", "100ms"]);
    let client = FhirClient::new(&server);
    let patient = largest_patient(&client);
    println!();
    println!(
        "| operation | resources | seconds | resources/s | store before | store after | scrubbed pages | scrub seconds |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, path) in [
        (
            "$purge of the largest patient",
            format!("Patient/{patient}/$purge"),
        ),
        (
            "$bulk-delete hardDelete of every Observation",
            "Observation/$bulk-delete?hardDelete=true".to_string(),
        ),
    ] {
        let before = size(&data);
        // Two scrubs follow the operation's last erasure.
        let scrubs = metric(&client, &server, "fhirlake_store_scrubs_total") + 2.0;
        let started = Instant::now();
        let reply = client.post(&path, String::new());
        reply.expect(202, "kick-off");
        let status = reply.header("content-location").unwrap();
        let result = loop {
            let reply = send(client.http.get(&status));
            match reply.status {
                202 => std::thread::sleep(Duration::from_millis(100)),
                200 => break reply.json(),
                other => panic!("{name} failed with {other}: {}", reply.text),
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let count = result["count"].as_u64().unwrap();
        let after = size(&data);
        while metric(&client, &server, "fhirlake_store_scrubs_total") < scrubs {
            std::thread::sleep(Duration::from_millis(200));
        }
        let pages = metric(&client, &server, "fhirlake_store_scrubbed_pages_total");
        let scrub = metric(&client, &server, "fhirlake_store_scrub_seconds_total");
        println!(
            "| {name} | {count} | {seconds:.2} | {:.0} | {} MB | {} MB | {pages} (both, all so far) | {scrub:.2} (all so far) |",
            count as f64 / seconds,
            before / (1024 * 1024),
            after / (1024 * 1024),
        );
    }
}

/// The Patient with the most resources in its compartment (by `_summary=count`).
fn largest_patient(client: &FhirClient) -> String {
    let patients = client.get_query("Patient", &[("_count", "1000"), ("_elements", "id")]);
    patients.expect(200, "patients");
    let bundle: Value = patients.json();
    let ids: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    ids.into_iter()
        .max_by_key(|id| {
            let count = client.get_query(&format!("Patient/{id}/*"), &[("_summary", "count")]);
            count.json()["total"].as_u64().unwrap_or(0)
        })
        .expect("a patient")
}

/// The value of the metric `name` (without labels) in `/metrics`.
fn metric(client: &FhirClient, server: &TestServer, name: &str) -> f64 {
    let text = send(client.http.get(format!("{}/metrics", server.origin))).text;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// The redb file's size in bytes.
fn size(data: &Path) -> u64 {
    std::fs::metadata(data.join("fhirlake.redb")).unwrap().len()
}
