//! Contract validation benchmark: every resource of every Synthea bundle in
//! ../shared/data/synthea checked against the R4 base definitions, in process: the cost per
//! resource (median and p99 over resources, and the total), and what the checks found.
//!
//! `cargo bench --bench validate`

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn main() {
    let dir = common::shared_dir().join("data/synthea");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the Synthea data")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let resources: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|path| {
            let bundle = common::synthea::read_bundle(path);
            bundle["entry"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|entry| entry["resource"].clone())
        })
        .collect();
    // Warm the definitions and the regular expressions.
    fhirlake::validate::validate(&resources[0]);
    let mut times = Vec::with_capacity(resources.len());
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    for resource in &resources {
        let began = Instant::now();
        let report = fhirlake::validate::validate(resource);
        times.push(began.elapsed());
        for issue in report.issues {
            let key = issue
                .diagnostics
                .split(':')
                .next()
                .unwrap_or("")
                .to_string();
            *found
                .entry(format!("{} {key}", issue.severity.as_str()))
                .or_default() += 1;
        }
    }
    let total = start.elapsed();
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "validated {} resources in {:.2} s: {:.0} resources/s; per resource p50 {:.1} µs, p99 {:.1} µs",
        resources.len(),
        total.as_secs_f64(),
        resources.len() as f64 / total.as_secs_f64(),
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100]),
    );
    println!("issues found (severity, rule or element): {found:#?}");
}
