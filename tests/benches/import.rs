//! Bulk import benchmark: every Synthea resource written as NDJSON, one file per type (and,
//! with FHIRLAKE_BENCH_COPIES=N, N copies of the set with new ids: `c{n}-{id}`, references
//! rewritten, for a set of about N x 92,000 resources), imported by `$import` from the server's
//! import root into an empty data directory, with validation and indexing on (the defaults).
//! Prints resources per second from the kick-off to the manifest, the server's peak resident
//! memory, and how long the search index took to catch up after the manifest.
//!
//! `cargo bench --bench import`; FHIRLAKE_BENCH_COPIES (default 1); `FHIRLAKE_BENCH_BINARY`
//! measures another `fhirlake` binary (such as a release build of an earlier commit).

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::fhir::{FhirClient, map_references, send};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn main() {
    let copies = common::bench::setting("FHIRLAKE_BENCH_COPIES", 1.0).max(1.0) as usize;
    let dir = tempfile::tempdir().unwrap();
    let (root, data) = (dir.path().join("root"), dir.path().join("data"));
    std::fs::create_dir_all(&root).unwrap();
    let original = common::synthea::resources_by_id();
    let copies = (0..copies).flat_map(|n| original.values().map(move |r| copy(r, n)));
    let (files, counts) = common::synthea::ndjson_by_type(&root, copies);
    let total: u64 = counts.values().sum();
    let parameters: Vec<Value> = files
        .iter()
        .map(|(resource_type, path)| {
            json!({"name": "input", "part": [
                {"name": "type", "valueCode": resource_type},
                {"name": "url", "valueUri": format!("file://{}", path.display())}]})
        })
        .collect();
    let body = json!({"resourceType": "Parameters", "parameter": parameters});

    let root_arg = root.display().to_string();
    let server = TestServer::spawn(
        TestServer::command_of(
            &common::bench::binary(),
            &data,
            &["--job-poll-interval", "100ms", "--import-root", &root_arg],
        ),
        &data,
    );
    let client = FhirClient::new(&server);
    let pid = server.pid().expect("the server's pid");
    let started = Instant::now();
    let reply = client.post_with("$import", &body, &[("Prefer", "respond-async")]);
    reply.expect(202, "kick-off");
    let status = reply.header("content-location").unwrap();
    let manifest = loop {
        let reply = send(client.http.get(&status));
        match reply.status {
            202 => std::thread::sleep(Duration::from_millis(100)),
            200 => break reply.json(),
            other => panic!("the import failed with {other}: {}", reply.text),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let imported: u64 = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    assert_eq!(imported, total, "{manifest}");
    let peak = peak_memory(pid);
    // Searchable: the index has caught up when a count search finds them all.
    let indexed = Instant::now();
    loop {
        let found = client.get("Observation?_summary=count").json()["total"].as_u64();
        if found == counts.get("Observation").copied() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("| import | resources | seconds | resources/s | peak RSS | index caught up after |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| $import, {} files | {total} | {seconds:.1} | {:.0} | {} MB | {:.1} s |",
        files.len(),
        total as f64 / seconds,
        peak / 1024,
        indexed.elapsed().as_secs_f64()
    );
}

/// `resource` as copy `n`: its id and every reference to a `Type/id` prefixed by `c{n}-`
/// (copy 0 is the original).
fn copy(resource: &Value, n: usize) -> Value {
    let mut copy = resource.clone();
    if n == 0 {
        return copy;
    }
    let id = copy["id"].as_str().unwrap().to_string();
    copy["id"] = json!(format!("c{n}-{id}"));
    map_references(&mut copy, &mut |reference| {
        let (resource_type, id) = reference.split_once('/')?;
        (!id.contains('/') && resource_type.chars().next()?.is_ascii_uppercase())
            .then(|| format!("{resource_type}/c{n}-{id}"))
    });
    copy
}

/// The peak resident memory of process `pid` (`VmHWM`) in KiB.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}
