//! Search benchmark: all Synthea bundles of ../shared/data/synthea imported unchanged, the
//! index rebuilt (`fhirlake reindex`, the indexing rate), then a fixed set of queries over
//! HTTP, each run `FHIRLAKE_BENCH_REPEAT` times (default 50) by one client: median and p99.
//! Among them the cost of paging on a total order: large pages, the largest `_offset`, and a
//! page deep in the results through its cursor.
//!
//! `cargo bench --bench search`; `FHIRLAKE_BENCH_BINARY` measures another `fhirlake` binary
//! (such as a release build of an earlier commit).

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::bench::binary;
use std::time::{Duration, Instant};

fn main() {
    let repeat: usize = std::env::var("FHIRLAKE_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let synthea = common::shared_dir().join("data/synthea");
    let binary = binary();
    let imported = common::run_command_of(
        &binary,
        &["import", "--quiet", synthea.to_str().unwrap()],
        &data,
    );
    let indexed = common::run_command_of(&binary, &["reindex"], &data);
    println!("{imported}\n{indexed}");

    let server = TestServer::spawn(TestServer::command_of(&binary, &data, &[]), &data);
    let client = common::client();
    let get = |query: &str| -> (Duration, serde_json::Value) {
        let start = Instant::now();
        let response = client.get(server.url(query)).send().expect("search");
        assert_eq!(response.status().as_u16(), 200, "{query}");
        let body: serde_json::Value = response.json().expect("json");
        (start.elapsed(), body)
    };
    let first = |query: &str, path: &dyn Fn(&serde_json::Value) -> &serde_json::Value| {
        path(&get(query).1["entry"][0]["resource"])
            .as_str()
            .unwrap()
            .to_string()
    };
    let patient = first("Patient?_count=1", &|r| &r["id"]);
    let family = first("Patient?_count=1", &|r| &r["name"][0]["family"]);
    // A practitioner who saw the patient, so that the two-link chain finds something.
    let seen_by = first(&format!("Encounter?patient={patient}&_count=1"), &|r| {
        &r["participant"][0]["individual"]["reference"]
    });
    let practitioner = get(&seen_by).1["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    // A page deep in the default order, reached through the next links (each starts after
    // the last match of the one before): page 201 of Observation at 50 a page.
    let mut deep = "Observation?_count=50".to_string();
    for _ in 0..200 {
        let next = get(&deep).1["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_string())
            .expect("a next page");
        deep = next
            .strip_prefix(&format!("{}/", server.base))
            .unwrap()
            .to_string();
    }
    let queries = [
        // The total order (lastUpdated, then the key as a tie-breaker) on large pages, at the
        // largest offset, and deep through a cursor; the page size of the paging report.
        "Observation?_count=1000".to_string(),
        "Observation?date=lt2010&_count=285".to_string(),
        "Observation?_count=50&_offset=10000".to_string(),
        deep.clone(),
        "Observation?code=http://loinc.org|8867-4&_count=10".to_string(),
        "Observation?code=http://loinc.org|8867-4&_summary=count".to_string(),
        "Patient?name=smi".to_string(),
        "Patient?gender=female&_count=10".to_string(),
        format!("Observation?date=ge2015&patient=Patient/{patient}&_count=10"),
        format!("Encounter?patient={patient}&_count=10"),
        "Observation?value-quantity=gt100&_count=10".to_string(),
        "Condition?onset-date=ge2010-01-01&_count=10".to_string(),
        "Patient?birthdate=lt1950&_count=10".to_string(),
        "MedicationRequest?status=active&_count=10".to_string(),
        "Observation?_summary=count".to_string(),
        "Claim?_summary=count".to_string(),
        "?_type=Observation,Claim,Encounter,Procedure&_summary=count".to_string(),
        "Condition?_sort=-onset-date&_count=10".to_string(),
        "Observation?code=http://loinc.org|8867-4&_sort=-date&_count=10".to_string(),
        "Observation?_sort=-date,code&_count=10".to_string(),
        "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140&_count=10"
            .to_string(),
        "Observation?component-value-quantity=80&_count=10".to_string(),
        format!("Observation?patient={patient}&_include=Observation:encounter&_count=50"),
        format!("Patient?_id={patient}&_revinclude=Observation:patient"),
        format!("Observation?subject:Patient.name={family}&_count=10"),
        format!("Observation?encounter.participant.name={practitioner}&_count=10"),
        "Patient?_has:Observation:patient:code=http://loinc.org|8867-4&_count=10".to_string(),
        format!("Patient/{patient}/Observation?code=http://loinc.org|8867-4&_count=10"),
        format!("Patient/{patient}/$everything"),
        format!("Patient/{patient}/$everything?_count=500"),
        format!("Patient/{patient}/$everything?start=2015-01-01&end=2015-12-31"),
        "Condition?_content=hypertension&_count=10".to_string(),
        "?_content=%22acute%20bronchitis%22&_count=10".to_string(),
        "Patient?_text=synthea&_summary=count".to_string(),
        "Patient?_summary=true&_count=50".to_string(),
    ];
    println!();
    println!("| query | matches | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for query in &queries {
        get(query); // warm
        let mut times = Vec::with_capacity(repeat);
        let mut total = 0;
        for _ in 0..repeat {
            let (elapsed, body) = get(query);
            total = body["total"].as_u64().unwrap_or(0);
            times.push(elapsed);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let p99 = times[((times.len() as f64 * 0.99) as usize).min(times.len() - 1)];
        println!(
            "| `{}` | {total} | {:.2} ms | {:.2} ms |",
            query
                .replace(&deep, "Observation?_count=50&_cursor=(page 201)")
                .replace(&patient, "x")
                .replace(&family, "Family")
                .replace(&practitioner, "Family"),
            ms(times[times.len() / 2]),
            ms(p99)
        );
    }
}
