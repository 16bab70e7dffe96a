//! `$run` benchmark: every Synthea bundle of ../shared/data/synthea imported with `fhirlake
//! import`, then two SQL on FHIR views run over HTTP in each format, a few rounds each: a
//! patient demographics view (a row per Patient) and a flat Observation view (a row per
//! Observation). For each: rows, bytes, seconds from the request to the last byte, and rows
//! per second.
//!
//! `cargo bench --bench views`; FHIRLAKE_BENCH_ROUNDS (default 3) rounds of each.

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::fhir::FhirClient;
use serde_json::{Value, json};
use std::time::Instant;

fn views() -> [(&'static str, Value); 2] {
    [
        (
            "patient_demographics",
            json!({"resourceType": "ViewDefinition", "resource": "Patient", "select": [
                {"column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "gender", "path": "gender"},
                    {"name": "birth_date", "path": "birthDate"}
                ]},
                {"forEachOrNull": "name.where(use = 'official').first()", "column": [
                    {"name": "family", "path": "family"},
                    {"name": "given", "path": "given.join(' ')"}
                ]}
            ]}),
        ),
        (
            "observation_flat",
            json!({"resourceType": "ViewDefinition", "resource": "Observation", "select": [
                {"column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                    {"name": "code", "path": "code.coding.first().code"},
                    {"name": "effective", "path": "effective.ofType(dateTime)"},
                    {"name": "value", "path": "value.ofType(Quantity).value"},
                    {"name": "unit", "path": "value.ofType(Quantity).unit"}
                ]}
            ]}),
        ),
    ]
}

fn main() {
    let rounds = common::bench::setting("FHIRLAKE_BENCH_ROUNDS", 3.0) as usize;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files: Vec<String> = common::synthea::files()
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let mut args = vec!["import", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    let started = Instant::now();
    println!("{}", common::run_command(&args, &data));
    println!("imported in {:.1} s", started.elapsed().as_secs_f64());

    let server = TestServer::start_on(&data, &[]);
    let client = FhirClient::new(&server);
    println!();
    println!("| view | format | rows | bytes | seconds | rows/s |");
    println!("|---|---|---|---|---|---|");
    for (name, view) in views() {
        for format in ["json", "ndjson", "csv"] {
            for _ in 0..rounds {
                let body = json!({"resourceType": "Parameters", "parameter": [
                    {"name": "viewResource", "resource": view},
                    {"name": "_format", "valueCode": format}
                ]});
                let started = Instant::now();
                let reply = client.post("/ViewDefinition/$run", &body);
                let seconds = started.elapsed().as_secs_f64();
                reply.expect(200, name);
                let rows = match format {
                    "json" => reply.json().as_array().map_or(0, Vec::len),
                    "csv" => reply.text.lines().count() - 1,
                    _ => reply.text.lines().count(),
                };
                println!(
                    "| {name} | {format} | {rows} | {} | {seconds:.2} | {:.0} |",
                    reply.text.len(),
                    rows as f64 / seconds
                );
            }
        }
    }
}
