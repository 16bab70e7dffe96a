//! Views benchmark: every Synthea bundle of ../shared/data/synthea imported with `fhirlake
//! import`, then two SQL on FHIR views run over HTTP in each format (Parquet included), a few
//! rounds each: a patient demographics view (a row per Patient) and a flat Observation view (a
//! row per Observation). For each: rows, bytes, seconds from the request to the last byte,
//! and rows per second. Then, side by side: the time of a `$viewdefinition-export` of both
//! views to Parquet, the latency of a SQL aggregate over all Observations by `$sql`
//! (Observations per LOINC code per year), and DuckDB's time for the same query over the
//! exported Parquet file (DuckDB of the tests' venv, `tests/setup.sh`). Then the Observation
//! view materialized: its build, the same aggregate over its Arrow data, and its lag behind
//! the change log while patients are posted over HTTP.
//!
//! `cargo bench --bench views`; FHIRLAKE_BENCH_ROUNDS (default 3) rounds of each.

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::fhir::FhirClient;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// The SQL aggregate: Observations per LOINC code per year.
const AGGREGATE: &str = "SELECT code, substr(effective, 1, 4) AS year, count(*) AS n \
    FROM observation_flat GROUP BY code, substr(effective, 1, 4)";

fn views() -> [(&'static str, Value); 2] {
    [
        (
            "patient_demographics",
            json!({"resourceType": "ViewDefinition", "name": "patient_demographics",
                "resource": "Patient", "select": [
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
            json!({"resourceType": "ViewDefinition", "name": "observation_flat",
                "resource": "Observation", "select": [
                {"column": [
                    {"name": "id", "path": "getResourceKey()"},
                    {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                    {"name": "code", "path": "code.coding.first().code"},
                    {"name": "effective", "path": "effective.ofType(dateTime)"},
                    {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
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
        for format in ["json", "ndjson", "csv", "parquet"] {
            for _ in 0..rounds {
                let body = json!({"resourceType": "Parameters", "parameter": [
                    {"name": "viewResource", "resource": view},
                    {"name": "_format", "valueCode": format}
                ]});
                let started = Instant::now();
                let reply = client
                    .http
                    .post(format!("{}/ViewDefinition/$run", client.base))
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .unwrap();
                assert_eq!(reply.status(), 200, "{name} {format}");
                let bytes = reply.bytes().unwrap();
                let seconds = started.elapsed().as_secs_f64();
                let text = String::from_utf8_lossy(&bytes);
                let rows = match format {
                    "json" => serde_json::from_slice::<Value>(&bytes)
                        .unwrap()
                        .as_array()
                        .map_or(0, Vec::len),
                    "csv" => text.lines().count() - 1,
                    "ndjson" => text.lines().count(),
                    // Parquet: the rows of the same view in NDJSON.
                    _ => ndjson_rows(&client, &view),
                };
                println!(
                    "| {name} | {format} | {rows} | {} | {seconds:.2} | {:.0} |",
                    bytes.len(),
                    rows as f64 / seconds
                );
            }
        }
    }

    // The views stored, exported to Parquet, queried by SQL and by DuckDB.
    let mut ids = Vec::new();
    for (name, view) in views() {
        let created = client.post("/ViewDefinition", &view);
        created.expect(201, name);
        ids.push(created.json()["id"].as_str().unwrap().to_string());
    }
    let body = json!({"resourceType": "Parameters", "parameter": ids.iter().map(|id| json!(
        {"name": "view", "part": [{"name": "viewReference",
            "valueReference": {"reference": format!("ViewDefinition/{id}")}}]})).collect::<Vec<_>>()});
    let started = Instant::now();
    let kicked = client.post_with(
        "/$viewdefinition-export",
        &body,
        &[("Prefer", "respond-async")],
    );
    kicked.expect(202, "view export");
    let status = kicked.header("content-location").unwrap();
    let result = loop {
        let reply = client.http.get(&status).send().unwrap();
        match reply.status().as_u16() {
            202 | 429 => std::thread::sleep(Duration::from_millis(100)),
            200 => break reply.json::<Value>().unwrap(),
            other => panic!("view export: {other} {}", reply.text().unwrap_or_default()),
        }
    };
    let export_seconds = started.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("observation_flat.parquet");
    let location = result["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "output")
        .find(|p| p["part"][0]["valueString"] == "observation_flat")
        .unwrap()["part"][1]["valueUri"]
        .as_str()
        .unwrap()
        .to_string();
    let file = client.http.get(&location).send().unwrap().bytes().unwrap();
    std::fs::write(&parquet, &file).unwrap();
    println!();
    println!("| what | milliseconds |");
    println!("|---|---|");
    println!(
        "| $viewdefinition-export of both views to Parquet ({} bytes of Observations) | {:.0} |",
        file.len(),
        export_seconds * 1000.0
    );
    time_aggregate(&client, rounds, "all Observations");
    // The Observation view materialized: its build, the aggregate over its Arrow data, and
    // how far behind the log it stays while Synthea's patients are posted again.
    let mut marked = views()[1].1.clone();
    marked["id"] = json!(ids[1]);
    marked["extension"] = json!([{"url": MATERIALIZE, "valueBoolean": true}]);
    let started = Instant::now();
    client
        .put(&format!("/ViewDefinition/{}", ids[1]), &marked)
        .expect(200, "mark the view");
    while view_rows(&server, "observation_flat").is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "| observation_flat materialized ({} rows), from its PUT | {:.0} |",
        view_rows(&server, "observation_flat").unwrap(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    time_aggregate(&client, rounds, "the materialized Observations");
    let lag = lag_while_posting(&server, &client);
    println!(
        "| materialized view's lag behind the log while posting {} patients (2 clients): median / max | {:.0} / {:.0} |",
        lag.patients, lag.median_ms, lag.max_ms
    );

    let script = "import duckdb, sys, time\n\
        con = duckdb.connect()\n\
        query = sys.argv[2].replace('observation_flat', \"read_parquet('\" + sys.argv[1] + \"')\")\n\
        for _ in range(int(sys.argv[3])):\n\
        \x20   t = time.perf_counter(); rows = con.execute(query).fetchall()\n\
        \x20   print(len(rows), (time.perf_counter() - t) * 1000)\n";
    let output = Command::new(common::test_tool("venv/bin/python"))
        .args(["-c", script])
        .arg(&parquet)
        .arg(AGGREGATE)
        .arg(rounds.to_string())
        .output()
        .expect("python with duckdb");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let (groups, millis) = line.split_once(' ').unwrap();
        let millis: f64 = millis.parse().unwrap();
        println!(
            "| DuckDB, the same aggregate over the Parquet file ({groups} groups) | {millis:.0} |"
        );
    }
}

/// Times [`AGGREGATE`] by `$sql`, `rounds` times, and prints a row for each.
fn time_aggregate(client: &FhirClient, rounds: usize, over: &str) {
    for _ in 0..rounds {
        let started = Instant::now();
        let reply = client.post(
            "/$sql",
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "query", "valueString": AGGREGATE}]}),
        );
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        reply.expect(200, "$sql");
        let groups = reply.json().as_array().map_or(0, Vec::len);
        println!("| $sql aggregate over {over} ({groups} groups) | {millis:.0} |");
    }
}

/// The extension that marks a view for materialization.
const MATERIALIZE: &str = "https://fhirlake.dev/fhir/StructureDefinition/materialize";

/// A line of `/metrics` after `prefix`, as a number.
fn metric(server: &TestServer, prefix: &str) -> Option<u64> {
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.origin))
        .unwrap()
        .text()
        .unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .map(|value| value.trim().parse().unwrap())
}

/// The rows `/metrics` gives materialized view `name`.
fn view_rows(server: &TestServer, name: &str) -> Option<u64> {
    metric(server, &format!("fhirlake_view_rows{{view=\"{name}\"}} "))
}

/// How far the materialized views stayed behind the change log.
struct Lag {
    patients: usize,
    median_ms: f64,
    max_ms: f64,
}

/// Posts Synthea's patient bundles (up to 40) again from two clients, and meanwhile samples
/// the change-log head and the views' checkpoint every 20 ms: for each sample, the time until
/// the views' checkpoint reached that head.
fn lag_while_posting(server: &TestServer, client: &FhirClient) -> Lag {
    let patients: Vec<std::path::PathBuf> = common::synthea::files()
        .into_iter()
        .filter(|path| !common::synthea::is_shared(path))
        .take(40)
        .collect();
    let count = patients.len();
    let queue = std::sync::Mutex::new(patients);
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let mut reached: Vec<(Instant, u64)> = Vec::new();
    std::thread::scope(|scope| {
        let posters: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    loop {
                        let Some(path) = queue.lock().unwrap().pop() else {
                            return;
                        };
                        let bundle = common::synthea::read_bundle(&path);
                        client.post("", &bundle).expect(200, "transaction");
                    }
                })
            })
            .collect();
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let head = metric(server, "fhirlake_changelog_head_seq ").unwrap();
                let lag =
                    metric(server, "fhirlake_consumer_lag_changes{consumer=\"views\"} ").unwrap();
                samples.push((Instant::now(), head, head.saturating_sub(lag)));
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        for poster in posters {
            poster.join().unwrap();
        }
        // Until the views have caught up with the last write.
        while metric(server, "fhirlake_consumer_lag_changes{consumer=\"views\"} ").unwrap() > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        for (at, head, checkpoint) in sampler.join().unwrap() {
            samples.push((at, head));
            reached.push((at, checkpoint));
        }
    });
    let mut delays: Vec<f64> = samples
        .iter()
        .filter_map(|(at, head)| {
            reached
                .iter()
                .find(|(when, checkpoint)| when >= at && checkpoint >= head)
                .map(|(when, _)| when.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    Lag {
        patients: count,
        median_ms: delays.get(delays.len() / 2).copied().unwrap_or(0.0),
        max_ms: delays.last().copied().unwrap_or(0.0),
    }
}

/// How many rows `view` has (by `$run` in NDJSON).
fn ndjson_rows(client: &FhirClient, view: &Value) -> usize {
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "viewResource", "resource": view},
        {"name": "_format", "valueCode": "ndjson"}
    ]});
    let reply = client.post("/ViewDefinition/$run", &body);
    reply.expect(200, "ndjson rows");
    reply.text.lines().count()
}
