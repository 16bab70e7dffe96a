//! Validation benchmark: every resource of every Synthea bundle in ../shared/data/synthea
//! checked in process, twice: against the R4 base definitions alone (the contract, primitive
//! formats included), then with its codes against the shipped terminology too (`Validator`).
//! For each: the cost per resource (median and p99 over resources, and the total), and what
//! the checks found.
//!
//! Then what a write takes in before validation: the strict JSON parse (duplicate member
//! names refused) against serde_json's own, and dropping empty elements; and the primitive
//! format checks alone, per resource: each primitive value checked as each primitive type of
//! its JSON kind (the mean of those is the cost of one check), times the values a resource
//! has, against the contract's cost.
//!
//! `cargo bench --bench validate`

#[path = "../common/mod.rs"]
mod common;

use fhirlake::terminology::Terminology;
use fhirlake::validate::primitives;
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
    let structure = measure("structure", &resources, fhirlake::validate::validate);
    let validator = Validator::new(Arc::new(Terminology::shipped_only()), Policy::default());
    measure("structure and codes", &resources, |resource| {
        validator.validate(resource)
    });
    intake(&resources);
    primitive_checks(&resources, structure);
}

/// The strict parse of every resource's JSON against serde_json's, and dropping empty elements.
fn intake(resources: &[Value]) {
    let bodies: Vec<Vec<u8>> = resources
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let time = |f: &dyn Fn(&[u8])| {
        let start = Instant::now();
        for body in &bodies {
            f(body);
        }
        start.elapsed()
    };
    // Twice each, alternated; the second round counts.
    let mut plain = Duration::ZERO;
    let mut strict = Duration::ZERO;
    for _ in 0..2 {
        plain = time(&|body| drop(serde_json::from_slice::<Value>(body).unwrap()));
        strict = time(&|body| drop(fhirlake::fhir::resource::parse_json(body).unwrap()));
    }
    let mut copies = resources.to_vec();
    let start = Instant::now();
    let dropped: usize = copies
        .iter_mut()
        .map(|r| fhirlake_model::drop_empty(r).len())
        .sum();
    let empty = start.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / resources.len() as f64;
    println!(
        "intake: parse per resource {:.1} µs with serde_json, {:.1} µs refusing duplicate names \
         ({:+.1}%); dropping empty elements {:.1} µs ({dropped} dropped)",
        per(plain),
        per(strict),
        (strict.as_secs_f64() / plain.as_secs_f64() - 1.0) * 100.0,
        per(empty),
    );
}

/// The primitive format checks alone: every string value checked as each string type, every
/// number as each numeric one; the mean of a check, times the values per resource, against
/// `structure` (the contract's whole cost).
fn primitive_checks(resources: &[Value], structure: Duration) {
    const STRINGS: &[&str] = &[
        "string",
        "code",
        "id",
        "uri",
        "url",
        "canonical",
        "oid",
        "uuid",
        "date",
        "dateTime",
        "instant",
        "time",
        "markdown",
        "base64Binary",
    ];
    const NUMBERS: &[&str] = &["integer", "unsignedInt", "positiveInt", "decimal"];
    fn leaves<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Object(members) => members.values().for_each(|v| leaves(v, out)),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::String(_) | Value::Number(_) => out.push(value),
            _ => {}
        }
    }
    let mut values = Vec::new();
    resources.iter().for_each(|r| leaves(r, &mut values));
    let mut checks = 0usize;
    let start = Instant::now();
    for value in &values {
        let types = if value.is_number() { NUMBERS } else { STRINGS };
        for type_code in types {
            std::hint::black_box(primitives::check(type_code, value));
            checks += 1;
        }
    }
    let per_check = start.elapsed().as_secs_f64() / checks as f64;
    let per_resource = per_check * values.len() as f64 / resources.len() as f64;
    let share = per_resource * resources.len() as f64 / structure.as_secs_f64();
    println!(
        "primitives: {} values ({:.1} per resource), {:.0} ns a check, {:.2} µs per resource: \
         {:.1}% of the contract's cost",
        values.len(),
        values.len() as f64 / resources.len() as f64,
        per_check * 1e9,
        per_resource * 1e6,
        share * 100.0,
    );
}

/// Validates every resource with `validate` (once first to warm what it reads: the
/// definitions, the regular expressions, the terminology), prints the cost and the issues, and
/// returns the whole time.
fn measure(name: &str, resources: &[Value], validate: impl Fn(&Value) -> Report) -> Duration {
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
                other => other.to_string(),
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
    total
}
