//! HTTP load benchmark: `cargo bench --bench http`.
//!
//! Starts the release `fhirlake` binary on a temporary data directory and drives it over HTTP
//! with C concurrent clients (tokio tasks sharing one reqwest client), one scenario after the
//! other, each for a fixed time:
//!
//! - create: `POST /fhir/{type}` cycling through real Synthea resources (ids removed);
//! - read:   `GET /fhir/{type}/{id}` of resources created by the create scenario, random order;
//! - update: `PUT /fhir/{type}/{id}` of those resources (the ones with a `meta`), random
//!   order, each setting a `meta.tag` of its own (an update equal to the current version
//!   makes no version);
//! - patch:  `PATCH /fhir/{type}/{id}` setting such a tag with a JSON Patch;
//! - patch-fhirpath: adding such a tag with a FHIRPath Patch (`Parameters`).
//!
//! The three writes change the same element of the same resources, so their latencies
//! compare PATCH with PUT.
//!
//! Settings (environment): `FHIRLAKE_BENCH_CONCURRENCY` (clients, default 16),
//! `FHIRLAKE_BENCH_SECONDS` (per scenario, default 10), `FHIRLAKE_BENCH_BUNDLES` (Synthea patient
//! bundles to load, default 20). Client and server run on the same machine and share its cores,
//! so the numbers are a lower bound of what the server alone can do.
//!
//! Every request must answer 2xx: the benchmark counts the others and fails at the end if any.

#[path = "../common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::FHIR_JSON;
use common::bench::setting;

fn main() {
    let concurrency: usize = setting("FHIRLAKE_BENCH_CONCURRENCY", 16.0) as usize;
    let seconds = setting("FHIRLAKE_BENCH_SECONDS", 10.0);
    let bundles = setting("FHIRLAKE_BENCH_BUNDLES", 20.0) as usize;
    let duration = Duration::from_secs_f64(seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let resources = load_resources(bundles);
    let server = common::TestServer::start();
    println!(
        "fhirlake HTTP benchmark: {} resources from {bundles} Synthea bundles, {concurrency} \
         clients, {seconds} s per scenario, client and server sharing {cores} cores",
        resources.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let results = runtime.block_on(async {
        let bench = Arc::new(Bench {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            base: server.base.clone(),
            resources,
            created: Vec::new(),
            next: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
        });
        let (create, created) = run(Scenario::Create, &bench, concurrency, duration).await;
        let mut bench = Arc::into_inner(bench).expect("tasks finished");
        bench.created = created;
        assert!(
            !bench.created.is_empty(),
            "the create scenario created nothing"
        );
        let bench = Arc::new(bench);
        let (read, _) = run(Scenario::Read, &bench, concurrency, duration).await;
        let (update, _) = run(Scenario::Update, &bench, concurrency, duration).await;
        let (patch, _) = run(Scenario::Patch, &bench, concurrency, duration).await;
        let (fhirpath, _) = run(Scenario::PatchFhirPath, &bench, concurrency, duration).await;
        vec![create, read, update, patch, fhirpath]
    });
    let data_mb = dir_size(&server.data) as f64 / 1e6;
    drop(server);

    println!();
    println!("| scenario | clients | requests | errors | req/s | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {concurrency} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} |",
            r.name,
            r.requests(),
            r.errors,
            r.requests() as f64 / r.elapsed.as_secs_f64(),
            r.percentile(50.0),
            r.percentile(99.0),
            r.percentile(100.0),
        );
    }
    println!();
    println!(
        "Release build, client and server on the same {cores}-core machine (the load generator \
         takes part of the CPU); each write is a durable redb commit. Data directory after the \
         run: {data_mb:.1} MB."
    );

    let errors: usize = results.iter().map(|r| r.errors).sum();
    if errors > 0 {
        eprintln!();
        eprintln!("FAILED: {errors} requests did not answer 2xx");
        for r in &results {
            for sample in &r.error_samples {
                eprintln!("  {}: {sample}", r.name);
            }
        }
        std::process::exit(1);
    }
}

/// A resource to create: its type and its JSON without `id`.
struct Resource {
    ty: String,
    body: &'static [u8],
    /// Whether it has a `meta` (where a patch adds its tag).
    has_meta: bool,
}

/// The resources of the first `bundles` Synthea patient bundles, without their ids.
fn load_resources(bundles: usize) -> Vec<Resource> {
    let synthea = common::synthea::load(Some(bundles));
    let mut resources = Vec::new();
    for (_, bundle) in &synthea.patients {
        for entry in bundle["entry"].as_array().expect("bundle entries") {
            let mut resource = entry["resource"].clone();
            let object = resource.as_object_mut().expect("resource object");
            object.remove("id");
            let ty = object["resourceType"]
                .as_str()
                .expect("resourceType")
                .into();
            let has_meta = resource.get("meta").is_some();
            let body = serde_json::to_vec(&resource).expect("serialize");
            // Bodies live for the whole run; leaking them lets every request send them without
            // copying.
            resources.push(Resource {
                ty,
                body: Box::leak(body.into_boxed_slice()),
                has_meta,
            });
        }
    }
    assert!(!resources.is_empty(), "no Synthea bundles in ../shared");
    resources
}

/// A resource the create scenario created.
struct Created {
    ty: String,
    id: String,
    /// Index into [`Bench::resources`].
    resource: usize,
}

struct Bench {
    http: reqwest::Client,
    base: String,
    resources: Vec<Resource>,
    created: Vec<Created>,
    /// The next resource to create.
    next: AtomicUsize,
    /// The number of the next write's tag: each update and patch changes its resource.
    writes: AtomicUsize,
}

#[derive(Clone, Copy)]
enum Scenario {
    Create,
    Read,
    Update,
    Patch,
    PatchFhirPath,
}

/// What one scenario measured.
struct Outcome {
    name: &'static str,
    elapsed: Duration,
    /// Latency of every request, sorted, in microseconds.
    latencies: Vec<u64>,
    errors: usize,
    error_samples: Vec<String>,
}

impl Outcome {
    fn requests(&self) -> usize {
        self.latencies.len()
    }

    /// The `p`th percentile latency in milliseconds.
    fn percentile(&self, p: f64) -> f64 {
        common::bench::percentile_ms(&self.latencies, p)
    }
}

/// What one client task measured.
#[derive(Default)]
struct TaskResult {
    latencies: Vec<u64>,
    errors: usize,
    error_samples: Vec<String>,
    created: Vec<Created>,
}

/// Runs `scenario` with `concurrency` client tasks for `duration`; prints and returns the
/// outcome together with what the tasks created.
async fn run(
    scenario: Scenario,
    bench: &Arc<Bench>,
    concurrency: usize,
    duration: Duration,
) -> (Outcome, Vec<Created>) {
    let name = match scenario {
        Scenario::Create => "create",
        Scenario::Read => "read",
        Scenario::Update => "update",
        Scenario::Patch => "patch",
        Scenario::PatchFhirPath => "patch-fhirpath",
    };
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| tokio::spawn(client_task(scenario, bench.clone(), task, deadline)))
        .collect();
    let mut outcome = Outcome {
        name,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        errors: 0,
        error_samples: Vec::new(),
    };
    let mut created = Vec::new();
    for task in tasks {
        let result = task.await.expect("client task");
        outcome.latencies.extend(result.latencies);
        outcome.errors += result.errors;
        for sample in result.error_samples {
            if outcome.error_samples.len() < 5 {
                outcome.error_samples.push(sample);
            }
        }
        created.extend(result.created);
    }
    outcome.elapsed = started.elapsed();
    outcome.latencies.sort_unstable();
    println!(
        "{name:>6}: {} requests, {} errors, {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        outcome.requests(),
        outcome.errors,
        outcome.requests() as f64 / outcome.elapsed.as_secs_f64(),
        outcome.percentile(50.0),
        outcome.percentile(99.0),
        outcome.percentile(100.0),
    );
    (outcome, created)
}

/// One client: sends requests of `scenario`, one at a time, until `deadline`.
async fn client_task(
    scenario: Scenario,
    bench: Arc<Bench>,
    task: usize,
    deadline: Instant,
) -> TaskResult {
    let mut result = TaskResult::default();
    let mut rng = Rng::new(task as u64);
    while Instant::now() < deadline {
        let started = Instant::now();
        let mut created = None;
        let request = match scenario {
            Scenario::Create => {
                let i = bench.next.fetch_add(1, Ordering::Relaxed) % bench.resources.len();
                let resource = &bench.resources[i];
                created = Some(i);
                bench
                    .http
                    .post(format!("{}/{}", bench.base, resource.ty))
                    .header("Content-Type", FHIR_JSON)
                    .body(resource.body)
            }
            Scenario::Read => {
                let c = &bench.created[rng.below(bench.created.len())];
                bench.http.get(format!("{}/{}/{}", bench.base, c.ty, c.id))
            }
            Scenario::Update => {
                let c = bench.with_meta(&mut rng);
                let mut body: serde_json::Value =
                    serde_json::from_slice(bench.resources[c.resource].body).expect("JSON");
                body["id"] = c.id.clone().into();
                body["meta"]["tag"] = serde_json::json!([bench.tag()]);
                bench
                    .http
                    .put(format!("{}/{}/{}", bench.base, c.ty, c.id))
                    .header("Content-Type", FHIR_JSON)
                    .body(serde_json::to_vec(&body).expect("JSON"))
            }
            Scenario::Patch => {
                let c = bench.with_meta(&mut rng);
                let patch = serde_json::json!([
                    {"op": "add", "path": "/meta/tag", "value": [bench.tag()]}
                ]);
                bench
                    .http
                    .patch(format!("{}/{}/{}", bench.base, c.ty, c.id))
                    .header("Content-Type", "application/json-patch+json")
                    .body(patch.to_string())
            }
            Scenario::PatchFhirPath => {
                let c = bench.with_meta(&mut rng);
                let patch = serde_json::json!({"resourceType": "Parameters", "parameter": [
                    {"name": "operation", "part": [
                        {"name": "type", "valueCode": "add"},
                        {"name": "path", "valueString": format!("{}.meta", c.ty)},
                        {"name": "name", "valueString": "tag"},
                        {"name": "value", "valueCoding": bench.tag()}
                    ]}
                ]});
                bench
                    .http
                    .patch(format!("{}/{}/{}", bench.base, c.ty, c.id))
                    .header("Content-Type", FHIR_JSON)
                    .body(patch.to_string())
            }
        };
        let answer = async {
            let response = request.send().await?;
            let status = response.status();
            let location = response
                .headers()
                .get("Location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, location, body))
        }
        .await;
        result.latencies.push(started.elapsed().as_micros() as u64);
        let failure = match answer {
            Ok((status, location, _)) if status.is_success() => match (created, location) {
                (None, _) => None,
                (Some(resource), Some(location)) => match created_id(&location) {
                    Some((ty, id)) => {
                        result.created.push(Created { ty, id, resource });
                        None
                    }
                    None => Some(format!("create answered Location {location}")),
                },
                (Some(_), None) => Some("create answered without Location".to_string()),
            },
            Ok((status, _, body)) => Some(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
            Err(e) => Some(e.to_string()),
        };
        if let Some(failure) = failure {
            result.errors += 1;
            if result.error_samples.len() < 5 {
                result.error_samples.push(failure);
            }
        }
    }
    result
}

impl Bench {
    /// A random created resource that has a `meta` (most Synthea resources do), which every
    /// write scenario tags: in the same place, so that they compare.
    fn with_meta(&self, rng: &mut Rng) -> &Created {
        let mut pick = || &self.created[rng.below(self.created.len())];
        let first = pick();
        std::iter::once(first)
            .chain(std::iter::repeat_with(pick).take(64))
            .find(|c| self.resources[c.resource].has_meta)
            .unwrap_or(first)
    }

    /// A tag no other write of the run has.
    fn tag(&self) -> serde_json::Value {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        serde_json::json!({"system": "http://example.org/fhirlake/bench", "code": format!("w{n}")})
    }
}

/// `{base}/{type}/{id}/_history/1` -> `(type, id)`
fn created_id(location: &str) -> Option<(String, String)> {
    let mut parts = location.rsplit('/');
    let (_vid, _history, id, ty) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((ty.to_string(), id.to_string()))
}

/// Total size of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// xorshift64*: random enough to spread reads and updates, no extra crate.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(0x9e37_79b9_7f4a_7c15 ^ (seed + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}
