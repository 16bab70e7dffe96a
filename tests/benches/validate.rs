//! Validation benchmark: every resource of every Synthea bundle in ../shared/data/synthea
//! checked in process, twice: against the R4 base definitions alone (the contract), then with
//! its codes against the shipped terminology too (`Validator`). For each: the cost per
//! resource (median and p99 over resources, and the total), and what the checks found.
//!
//! `cargo bench --bench validate`

#[path = "../common/mod.rs"]
mod common;

use fhirlake::terminology::Terminology;
use fhirlake::validate::{Policy, Report, Rule, Validator};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let resources: Vec<Value> = common::synthea::files()
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
    measure("structure", &resources, fhirlake::validate::validate);
    let validator = Validator::new(Arc::new(Terminology::shipped_only()), Policy::default());
    measure("structure and codes", &resources, |resource| {
        validator.validate(resource)
    });
}

/// Validates every resource with `validate` (once first to warm what it reads: the
/// definitions, the regular expressions, the terminology) and prints the cost and the issues.
fn measure(name: &str, resources: &[Value], validate: impl Fn(&Value) -> Report) {
    validate(&resources[0]);
    let mut times = Vec::with_capacity(resources.len());
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    for resource in resources {
        let began = Instant::now();
        let report = validate(resource);
        times.push(began.elapsed());
        for issue in report.issues {
            let key = match issue.rule {
                Rule::Structure => issue
                    .diagnostics
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                Rule::Binding(strength) => format!("binding {strength}"),
                Rule::Code(system) => format!("code {system}"),
            };
            *found
                .entry(format!("{} {key}", issue.severity.as_str()))
                .or_default() += 1;
        }
    }
    let total = start.elapsed();
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{name}: validated {} resources in {:.2} s: {:.0} resources/s; per resource p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs",
        resources.len(),
        total.as_secs_f64(),
        resources.len() as f64 / total.as_secs_f64(),
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100]),
        us(total) / resources.len() as f64,
    );
    println!("{name}: issues found (severity, rule or element): {found:#?}");
}
