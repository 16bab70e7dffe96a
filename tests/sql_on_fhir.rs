//! The official SQL on FHIR v2 test suite (`../shared/data/sql-on-fhir/tests/*.json`), every
//! test of every file, run against `fhirlake::views`: each view on its file's resources must
//! make the expected rows (in any order; numbers compared as numbers) and columns, and each
//! test that expects an error must get one. No test is skipped.

use fhirlake::views::{Rows, View};
use serde_json::Value;
use std::path::Path;

fn suite_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/sql-on-fhir/tests")
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Whether `made` and `expected` hold the same rows, each as often, in any order.
fn same_rows(made: &[Value], expected: &[Value]) -> bool {
    let mut left: Vec<&Value> = expected.iter().collect();
    for row in made {
        match left.iter().position(|e| same(row, e)) {
            Some(at) => {
                left.swap_remove(at);
            }
            None => return false,
        }
    }
    left.is_empty()
}

/// Runs one test; a description of how it failed, if it did.
fn run(test: &Value, resources: &[Value]) -> Result<(), String> {
    let expects_error = test.get("expectError").and_then(Value::as_bool) == Some(true);
    let outcome = View::parse(&test["view"]).and_then(|view| {
        let names: Vec<String> = view.column_names().map(str::to_string).collect();
        let rows = Rows::new(&view, resources.iter())
            .map(|row| row.map(|row| Value::Object(names.iter().cloned().zip(row).collect())))
            .collect::<Result<Vec<Value>, _>>()?;
        Ok((names, rows))
    });
    let (names, rows) = match (outcome, expects_error) {
        (Err(_), true) => return Ok(()),
        (Ok(made), true) => return Err(format!("expected an error, made {:?}", made.1)),
        (Err(e), false) => return Err(format!("unexpected error: {e}")),
        (Ok(made), false) => made,
    };
    if let Some(columns) = test.get("expectColumns") {
        let expected: Vec<&str> = columns
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if names != expected {
            return Err(format!("columns {names:?}, expected {expected:?}"));
        }
    }
    let expected = test["expect"].as_array().cloned().unwrap_or_default();
    if !same_rows(&rows, &expected) {
        return Err(format!(
            "rows {}\nexpected {}",
            Value::Array(rows),
            Value::Array(expected)
        ));
    }
    Ok(())
}

#[test]
fn the_official_suite_passes_every_test() {
    let mut files: Vec<_> = std::fs::read_dir(suite_dir())
        .expect("the SQL on FHIR suite in ../shared/data/sql-on-fhir/tests")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the suite has its files");
    let (mut passed, mut total) = (0, 0);
    let mut failures = Vec::new();
    for file in &files {
        let suite: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let resources = suite["resources"].as_array().cloned().unwrap_or_default();
        for test in suite["tests"].as_array().into_iter().flatten() {
            total += 1;
            match run(test, &resources) {
                Ok(()) => passed += 1,
                Err(why) => failures.push(format!(
                    "{} / {}: {why}",
                    file.file_name().unwrap().to_string_lossy(),
                    test["title"].as_str().unwrap_or("?")
                )),
            }
        }
    }
    println!("SQL on FHIR suite: {passed}/{total} passed");
    for failure in &failures {
        println!("FAILED {failure}");
    }
    assert!(total > 100, "the suite has its tests");
    assert!(failures.is_empty(), "{} of {total} failed", failures.len());
}
