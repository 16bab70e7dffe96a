//! Bulk export benchmark: every Synthea bundle of ../shared/data/synthea imported with
//! `fhirlake import`, then exported by `$export` to local files, a few rounds of each kind:
//! a system export of everything, a Patient export (each resource judged by its compartment)
//! and a system export with a `_typeFilter` (the search index's path). For each: resources
//! per second from the kick-off to the manifest, and the server's peak resident memory during
//! the export (`VmHWM`, reset before each one through `/proc/PID/clear_refs`), beside its
//! resident memory before it; and, sampled at each poll, the peaks of its two parts: anonymous
//! memory (the heap: redb's page cache among it) and file-backed pages (the search index's
//! memory-mapped files, which the kernel reclaims under pressure).
//!
//! `cargo bench --bench export`; FHIRLAKE_BENCH_ROUNDS (default 3) rounds of each kind;
//! FHIRLAKE_BENCH_COPIES (default 1) copies of every patient (11: a million resources). The
//! server takes its other settings from the environment (`FHIRLAKE_STORE_CACHE=256`).

#[path = "../common/mod.rs"]
mod common;

use common::TestServer;
use common::fhir::{FhirClient, send};
use std::time::{Duration, Instant};

fn main() {
    let rounds = common::bench::setting("FHIRLAKE_BENCH_ROUNDS", 3.0) as usize;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let copies = common::bench::setting("FHIRLAKE_BENCH_COPIES", 1.0) as usize;
    let files: Vec<String> = common::synthea::copies(copies)
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let mut args = vec!["import", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    let started = Instant::now();
    println!("{}", common::run_command(&args, &data));
    println!("imported in {:.1} s", started.elapsed().as_secs_f64());

    let server = TestServer::start_on(&data, &["--job-poll-interval", "100ms"]);
    let client = FhirClient::new(&server);
    let pid = server.pid().expect("the server's pid");
    println!();
    println!(
        "| export | resources | files | seconds | resources/s | RSS before | peak RSS | anon before → peak | file before → peak |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, path) in [
        ("system", "$export"),
        ("Patient", "Patient/$export"),
        (
            "system, _typeFilter",
            "$export?_typeFilter=Observation%3Fcategory%3Dlaboratory",
        ),
    ] {
        for _ in 0..rounds {
            let before = memory(pid, "VmRSS");
            let (anon, file) = (memory(pid, "RssAnon"), memory(pid, "RssFile"));
            let (mut peak_anon, mut peak_file) = (anon, file);
            // Resets VmHWM to the current RSS: the peak below is this export's.
            std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
            let started = Instant::now();
            let reply = client.get_with(path, &[("Prefer", "respond-async")]);
            reply.expect(202, "kick-off");
            let status = reply.header("content-location").unwrap();
            let manifest = loop {
                let reply = send(client.http.get(&status));
                peak_anon = peak_anon.max(memory(pid, "RssAnon"));
                peak_file = peak_file.max(memory(pid, "RssFile"));
                match reply.status {
                    202 => std::thread::sleep(Duration::from_millis(100)),
                    200 => break reply.json(),
                    other => panic!("the export failed with {other}: {}", reply.text),
                }
            };
            let seconds = started.elapsed().as_secs_f64();
            let peak = memory(pid, "VmHWM");
            let outputs = manifest["output"].as_array().unwrap();
            let resources: u64 = outputs.iter().map(|o| o["count"].as_u64().unwrap()).sum();
            println!(
                "| {name} | {resources} | {} | {seconds:.2} | {:.0} | {} MB | {} MB | {} → {} MB | {} → {} MB |",
                outputs.len(),
                resources as f64 / seconds,
                before / 1024,
                peak / 1024,
                anon / 1024,
                peak_anon / 1024,
                file / 1024,
                peak_file / 1024,
            );
            // Its files go before the next round.
            send(client.http.delete(&status)).expect(202, "delete");
        }
    }
}

/// A memory figure of process `pid` (`VmRSS`, `VmHWM`, `RssAnon`, `RssFile`) in KiB.
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
