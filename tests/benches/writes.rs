//! Single writes, read-your-writes and searches under writes: `cargo bench --bench writes`.
//!
//! Starts the release `fhirlake` binary (validation at its default policy, the indexer on) on
//! a temporary data directory, loads `FHIRLAKE_BENCH_BUNDLES` Synthea patient bundles (default
//! 10) as transactions, then measures, one scenario after the other:
//!
//! - `create, 1 client`: sequential creates of the Synthea resources, one at a time;
//! - `create + search, 1 client`: a `POST /fhir/Patient` with a family name of its own, then
//!   `GET /fhir/Patient?family=<that name>`, which must find it (read your writes): the
//!   latency of the search alone;
//! - `create, 16 clients`: concurrent creates of the Synthea resources;
//! - `mixed`: 8 writers creating Synthea resources while 64 keep-alive readers read (two in
//!   three) and search (one in three) what the load put in; latencies of each kind.
//!
//! Every request must answer 2xx and every read-your-writes search must find its resource:
//! the benchmark fails otherwise. Settings: `FHIRLAKE_BENCH_SECONDS` (per scenario, default
//! 10), `FHIRLAKE_BENCH_BUNDLES`, `FHIRLAKE_BENCH_SCENARIOS` (a comma-separated subset of
//! `sequential,ryw,creates,mixed`; default all), `FHIRLAKE_BENCH_WRITERS` (the mixed load's
//! writers, default 8; 0 measures its reads and searches without writes),
//! `FHIRLAKE_BENCH_BINARY` (another `fhirlake` binary to measure, such as a release build of
//! an earlier commit).

#[path = "../common/mod.rs"]
mod common;

use common::bench::{percentile_ms, setting};
use common::{FHIR_JSON, TestServer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let seconds = setting("FHIRLAKE_BENCH_SECONDS", 10.0);
    let bundles = setting("FHIRLAKE_BENCH_BUNDLES", 10.0) as usize;
    let duration = Duration::from_secs_f64(seconds);
    let synthea = common::synthea::load(Some(bundles));
    let temp = tempfile::tempdir().expect("temp dir");
    let data = temp.path().join("data");
    let binary = common::bench::binary();
    let server = TestServer::spawn(TestServer::command_of(&binary, &data, &[]), &data);
    let http = common::client();
    let post = |body: &Value| {
        let response = http
            .post(&server.base)
            .header("Content-Type", FHIR_JSON)
            .header("Prefer", "return=minimal")
            .body(body.to_string())
            .send()
            .expect("POST bundle");
        assert!(
            response.status().is_success(),
            "{}",
            response.text().unwrap()
        );
    };
    post(&synthea.shared);
    let mut resources = Vec::new();
    let mut searches = Vec::new();
    for (_, bundle) in &synthea.patients {
        post(bundle);
        for entry in bundle["entry"].as_array().expect("entries") {
            let mut resource = entry["resource"].clone();
            resource.as_object_mut().expect("resource").remove("id");
            let ty = resource["resourceType"].as_str().expect("type").to_string();
            if let Some(query) = search_of(&resource) {
                searches.push(query);
            }
            resources.push((ty, resource.to_string()));
        }
    }
    searches.sort();
    searches.dedup();
    let loaded = resources.len();
    println!(
        "fhirlake write benchmark: {loaded} Synthea resources loaded, {} distinct searches, \
         {seconds} s per scenario",
        searches.len()
    );

    let chosen = std::env::var("FHIRLAKE_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "sequential,ryw,creates,mixed".into());
    let runs = |scenario: &str| chosen.split(',').any(|s| s == scenario);
    let mut rows = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let load = Arc::new(Load {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(128)
            .build()
            .expect("http client"),
        base: server.base.clone(),
        resources,
        searches,
        next: AtomicUsize::new(0),
    });
    if runs("sequential") {
        rows.push(runtime.block_on(creates(&load, 1, duration)));
    }
    if runs("ryw") {
        rows.push(create_then_search(&server.base, duration));
    }
    if runs("creates") {
        rows.push(runtime.block_on(creates(&load, 16, duration)));
    }
    if runs("mixed") {
        rows.extend(runtime.block_on(mixed(
            &load,
            setting("FHIRLAKE_BENCH_WRITERS", 8.0) as usize,
            64,
            duration,
        )));
    }

    println!();
    println!("| scenario | requests | errors | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            row.name,
            row.latencies.len(),
            row.errors.len(),
            row.latencies.len() as f64 / row.elapsed.as_secs_f64(),
            percentile_ms(&row.latencies, 50.0),
            percentile_ms(&row.latencies, 99.0),
        );
    }
    let errors: Vec<&String> = rows.iter().flat_map(|r| &r.errors).collect();
    if !errors.is_empty() {
        eprintln!("FAILED: {} requests failed, e.g.:", errors.len());
        for error in errors.iter().take(5) {
            eprintln!("  {error}");
        }
        std::process::exit(1);
    }
}

/// A search that the loaded data answers, derived from `resource`'s content: a Patient's
/// family name, an Observation's or a Condition's code, an Encounter's patient.
fn search_of(resource: &Value) -> Option<String> {
    let code = |r: &Value| -> Option<String> {
        let coding = &r["code"]["coding"][0];
        Some(format!(
            "code={}|{}",
            coding["system"].as_str()?,
            coding["code"].as_str()?
        ))
    };
    match resource["resourceType"].as_str()? {
        "Patient" => Some(format!(
            "Patient?family={}",
            resource["name"][0]["family"].as_str()?
        )),
        "Observation" => Some(format!("Observation?{}&_count=10", code(resource)?)),
        "Condition" => Some(format!("Condition?{}&_count=10", code(resource)?)),
        "Encounter" => Some(format!(
            "Encounter?subject={}&_count=10",
            resource["subject"]["reference"].as_str()?
        )),
        _ => None,
    }
}

/// What one scenario measured: latencies in microseconds, sorted.
struct Row {
    name: String,
    elapsed: Duration,
    latencies: Vec<u64>,
    errors: Vec<String>,
}

impl Row {
    fn new(name: impl Into<String>, elapsed: Duration, mut latencies: Vec<u64>) -> Row {
        latencies.sort_unstable();
        let row = Row {
            name: name.into(),
            elapsed,
            latencies,
            errors: Vec::new(),
        };
        println!(
            "{}: {} requests, p50 {:.2} ms, p99 {:.2} ms",
            row.name,
            row.latencies.len(),
            percentile_ms(&row.latencies, 50.0),
            percentile_ms(&row.latencies, 99.0)
        );
        row
    }
}

/// A Patient of its own: `family` is what a search finds it by.
fn patient(family: &str) -> String {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Bench"]}],
           "gender": "female", "birthDate": "1970-01-01"})
    .to_string()
}

fn create_then_search(base: &str, duration: Duration) -> Row {
    let http = common::client();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let family = format!("Ryw{}x{}", std::process::id(), latencies.len());
        let created = http
            .post(format!("{base}/Patient"))
            .header("Content-Type", FHIR_JSON)
            .body(patient(&family))
            .send()
            .expect("POST");
        assert!(
            created.status().is_success(),
            "create: {}",
            created.status()
        );
        let sent = Instant::now();
        let found: Value = http
            .get(format!("{base}/Patient?family={family}"))
            .send()
            .expect("GET")
            .json()
            .expect("searchset");
        latencies.push(sent.elapsed().as_micros() as u64);
        if found["entry"].as_array().map_or(0, Vec::len) != 1 {
            errors.push(format!(
                "the search after a create did not find it: {found}"
            ));
        }
    }
    let mut row = Row::new(
        "search right after a create, 1 client",
        started.elapsed(),
        latencies,
    );
    row.errors = errors;
    row
}

struct Load {
    http: reqwest::Client,
    base: String,
    /// Synthea resources without ids: type and JSON.
    resources: Vec<(String, String)>,
    searches: Vec<String>,
    next: AtomicUsize,
}

impl Load {
    /// Creates the next resource; its latency, or what went wrong.
    async fn create(&self) -> Result<u64, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.resources.len();
        let (ty, body) = &self.resources[n];
        self.timed(
            self.http
                .post(format!("{}/{ty}", self.base))
                .header("Content-Type", FHIR_JSON)
                .body(body.clone()),
        )
        .await
    }

    async fn timed(&self, request: reqwest::RequestBuilder) -> Result<u64, String> {
        let sent = Instant::now();
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(status.to_string());
        }
        Ok(sent.elapsed().as_micros() as u64)
    }
}

/// Per task: latencies and errors.
type Measured = (Vec<u64>, Vec<String>);

/// `count` tasks creating resources one after the other until `deadline`.
fn creating(
    load: &Arc<Load>,
    count: usize,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<Measured>> {
    (0..count)
        .map(|_| {
            let load = load.clone();
            tokio::spawn(async move {
                let mut measured: Measured = Default::default();
                while Instant::now() < deadline {
                    match load.create().await {
                        Ok(latency) => measured.0.push(latency),
                        Err(error) => measured.1.push(format!("create: {error}")),
                    }
                }
                measured
            })
        })
        .collect()
}

async fn creates(load: &Arc<Load>, clients: usize, duration: Duration) -> Row {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = creating(load, clients, deadline);
    let (latencies, errors) = gather(tasks).await;
    let mut row = Row::new(
        format!("create, {clients} client(s)"),
        started.elapsed(),
        latencies,
    );
    row.errors = errors;
    row
}

/// `writers` creating and `readers` reading and searching at once: a row for the writes, one
/// for the reads and one for the searches.
async fn mixed(load: &Arc<Load>, writers: usize, readers: usize, duration: Duration) -> Vec<Row> {
    // What the readers read: resources of the loaded data, found by a search first.
    let listed: Value = load
        .http
        .get(format!("{}/Observation?_count=200&_elements=id", load.base))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("searchset");
    let reads: Arc<Vec<String>> = Arc::new(
        listed["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                format!(
                    "{}/Observation/{}",
                    load.base,
                    e["resource"]["id"].as_str().unwrap()
                )
            })
            .collect(),
    );
    let started = Instant::now();
    let deadline = started + duration;
    let writing = creating(load, writers, deadline);
    let reading: Vec<_> = (0..readers)
        .map(|reader| {
            let load = load.clone();
            let reads = reads.clone();
            tokio::spawn(async move {
                let mut read: Measured = Default::default();
                let mut searched: Measured = Default::default();
                let mut n = reader;
                while Instant::now() < deadline {
                    n += readers;
                    let (url, into) = if reader % 3 == 0 {
                        let query = &load.searches[n % load.searches.len()];
                        (format!("{}/{query}", load.base), &mut searched)
                    } else {
                        (reads[n % reads.len()].clone(), &mut read)
                    };
                    match load.timed(load.http.get(url)).await {
                        Ok(latency) => into.0.push(latency),
                        Err(error) => into.1.push(format!("read or search: {error}")),
                    }
                }
                (read, searched)
            })
        })
        .collect();
    let (written, write_errors) = gather(writing).await;
    let mut reads_measured: Measured = Default::default();
    let mut searches_measured: Measured = Default::default();
    for task in reading {
        let (read, searched) = task.await.expect("reader");
        reads_measured.0.extend(read.0);
        reads_measured.1.extend(read.1);
        searches_measured.0.extend(searched.0);
        searches_measured.1.extend(searched.1);
    }
    let elapsed = started.elapsed();
    let label = format!("mixed ({writers} writers, {readers} readers)");
    let mut rows = vec![
        Row::new(format!("{label}: creates"), elapsed, written),
        Row::new(format!("{label}: reads"), elapsed, reads_measured.0),
        Row::new(format!("{label}: searches"), elapsed, searches_measured.0),
    ];
    rows[0].errors = write_errors;
    rows[1].errors = reads_measured.1;
    rows[2].errors = searches_measured.1;
    rows
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Measured>>) -> Measured {
    let mut all: Measured = Default::default();
    for task in tasks {
        let (latencies, errors) = task.await.expect("client task");
        all.0.extend(latencies);
        all.1.extend(errors);
    }
    all
}
