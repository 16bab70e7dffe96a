//! What the hardening of issue 15 costs (request admission: URL, parameter, header and host
//! checks; the JSON nesting scan; nested Bundle entries counted; the panic boundaries):
//! `cargo bench --bench hardening`.
//!
//! Ingest (Synthea patient transactions posted by concurrent clients), reads (`GET Type/id` of
//! what was ingested) and searches (a fixed mix) over HTTP against this build's `fhirlake`,
//! and, when `FHIRLAKE_BENCH_BASELINE` names another `fhirlake` binary (a release build of the
//! commit before the checks), against that one too: rounds alternate the two binaries, each on
//! a fresh data directory, and the cost is the median over the rounds of this build's
//! throughput against the baseline's. Without a baseline it prints this build's figures alone.
//! Beside that, in process, the nesting scan's time over the same bodies against the ingest
//! time, a bound of its share that needs no baseline.
//!
//! Settings (environment): `FHIRLAKE_BENCH_BASELINE` (a binary), `FHIRLAKE_BENCH_BUNDLES`
//! (Synthea patient bundles, default 20), `FHIRLAKE_BENCH_CONCURRENCY` (clients, default 8),
//! `FHIRLAKE_BENCH_REQUESTS` (reads, and searches, per round, default 20,000 and a tenth of
//! that), `FHIRLAKE_BENCH_ROUNDS` (default 3).

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::bench::{percentile_ms, setting};
use common::synthea;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The searches of the mix, relative to the FHIR base.
const SEARCHES: &[&str] = &[
    "Patient?gender=female&_count=20",
    "Observation?code=http://loinc.org|8302-2&_count=20",
    "Observation?category=vital-signs&date=ge2015-01-01&_count=20",
    "Condition?clinical-status=active&_count=20",
    "Encounter?_sort=-date&_count=20",
    "Patient?name=a&_count=20",
];

/// What one round measured of one binary.
struct Measured {
    ingest: f64,
    read: f64,
    read_p50: f64,
    search: f64,
    search_p50: f64,
}

fn main() {
    let bundles = setting("FHIRLAKE_BENCH_BUNDLES", 20.0) as usize;
    let concurrency = setting("FHIRLAKE_BENCH_CONCURRENCY", 8.0) as usize;
    let reads = setting("FHIRLAKE_BENCH_REQUESTS", 20_000.0) as usize;
    let rounds = setting("FHIRLAKE_BENCH_ROUNDS", 3.0) as usize;
    let baseline = std::env::var_os("FHIRLAKE_BENCH_BASELINE").map(PathBuf::from);
    let this = PathBuf::from(env!("CARGO_BIN_EXE_fhirlake"));

    let data = synthea::load(Some(bundles));
    let shared = serde_json::to_vec(&data.shared).unwrap();
    let bodies: Vec<(usize, Vec<u8>)> = data
        .patients
        .iter()
        .map(|(_, b)| (synthea::entry_count(b), serde_json::to_vec(b).unwrap()))
        .collect();
    let megabytes = bodies.iter().map(|(_, b)| b.len()).sum::<usize>() as f64 / 1e6;
    println!(
        "{} patient bundles ({megabytes:.1} MB), {concurrency} clients, {reads} reads and {} \
         searches per round, {rounds} rounds",
        bodies.len(),
        reads / 10
    );

    // The scan every JSON body gets, alone: its share of the ingest time is measured below.
    let start = Instant::now();
    for (_, body) in &bodies {
        fhirlake::fhir::nesting::check_depth(body, 100).expect("Synthea nests shallowly");
    }
    let scan = start.elapsed().as_secs_f64();

    let mut binaries = vec![("this build", this)];
    if let Some(baseline) = baseline {
        binaries.push(("baseline", baseline));
    }
    println!();
    println!(
        "| round | binary | ingest resources/s | reads/s | read p50 ms | searches/s | search p50 ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let mut results: Vec<Vec<Measured>> = binaries.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        // Alternate which binary goes first, so neither always meets a warmer machine.
        let mut order: Vec<usize> = (0..binaries.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (name, binary) = &binaries[index];
            let measured = measure(binary, concurrency, reads, &shared, &bodies);
            println!(
                "| {} | {name} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} |",
                round + 1,
                measured.ingest,
                measured.read,
                measured.read_p50,
                measured.search,
                measured.search_p50
            );
            results[index].push(measured);
        }
    }

    let median = |mut found: Vec<f64>| {
        found.sort_by(f64::total_cmp);
        found[found.len() / 2]
    };
    let ingest = median(results[0].iter().map(|m| m.ingest).collect());
    println!();
    println!(
        "The JSON nesting scan of the {megabytes:.1} MB of bodies takes {:.1} ms in process: \
         {:.2}% of this build's median ingest time ({:.1} s).",
        scan * 1e3,
        scan / (bodies.iter().map(|(n, _)| n).sum::<usize>() as f64 / ingest) * 100.0,
        bodies.iter().map(|(n, _)| n).sum::<usize>() as f64 / ingest
    );
    if results.len() == 2 {
        type Metric = fn(&Measured) -> f64;
        let metrics: [(&str, Metric); 3] = [
            ("ingest", |m| m.ingest),
            ("reads", |m| m.read),
            ("searches", |m| m.search),
        ];
        for (what, metric) in metrics {
            let ratios: Vec<f64> = results[0]
                .iter()
                .zip(&results[1])
                .map(|(this, baseline)| metric(this) / metric(baseline))
                .collect();
            let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
            let ratio = median(ratios);
            println!(
                "{what}: throughput of this build / baseline per round {}: median {ratio:.3} \
                 (the checks cost {:.1}%)",
                listed.join(", "),
                (1.0 - ratio) * 100.0
            );
        }
    }
}

/// Starts `binary` on a fresh data directory, ingests the bundles, then reads and searches.
fn measure(
    binary: &Path,
    concurrency: usize,
    reads: usize,
    shared: &[u8],
    bodies: &[(usize, Vec<u8>)],
) -> Measured {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let server = TestServer::spawn(TestServer::command_of(binary, &data, &[]), &data);

    let client = common::client();
    let post = |body: &[u8]| -> Value {
        let response = client
            .post(&server.base)
            .header("Content-Type", common::FHIR_JSON)
            .header("Prefer", "return=minimal")
            .body(body.to_vec())
            .send()
            .expect("post bundle");
        assert_eq!(response.status().as_u16(), 200);
        response.json().expect("a transaction-response")
    };
    post(shared);
    let next = AtomicUsize::new(0);
    let created = Mutex::new(Vec::new());
    let start = Instant::now();
    parallel(concurrency, || {
        while let Some((_, body)) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
            let response = post(body);
            let mut created = created.lock().unwrap();
            for entry in response["entry"].as_array().into_iter().flatten() {
                if let Some(location) = entry["response"]["location"].as_str() {
                    let path: Vec<&str> = location.split('/').collect();
                    created.push(format!("{}/{}", path[0], path[1]));
                }
            }
        }
    });
    let resources: usize = bodies.iter().map(|(n, _)| n).sum();
    let ingest = resources as f64 / start.elapsed().as_secs_f64();
    let created = created.into_inner().unwrap();

    let get = |path: &str| {
        let response = client
            .get(format!("{}/{path}", server.base))
            .send()
            .expect("get");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.bytes().expect("body");
    };
    // A fixed order that jumps around the store: every 7919th resource, cyclically.
    let (read, read_p50) = timed(concurrency, reads, |i| {
        get(&created[(i * 7919) % created.len()])
    });
    let (search, search_p50) = timed(concurrency, reads / 10, |i| {
        get(SEARCHES[i % SEARCHES.len()])
    });
    Measured {
        ingest,
        read,
        read_p50,
        search,
        search_p50,
    }
}

/// Runs `request(i)` for i in 0..count on `concurrency` threads; returns requests per second
/// and the median latency in milliseconds.
fn timed(concurrency: usize, count: usize, request: impl Fn(usize) + Sync) -> (f64, f64) {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(count));
    let start = Instant::now();
    parallel(concurrency, || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                break;
            }
            let sent = Instant::now();
            request(i);
            let micros = sent.elapsed().as_micros() as u64;
            latencies.lock().unwrap().push(micros);
        }
    });
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort_unstable();
    (rate, percentile_ms(&latencies, 50.0))
}

fn parallel(threads: usize, work: impl Fn() + Sync) {
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(&work);
        }
    });
}
