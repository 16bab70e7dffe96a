//! `fhirlake import`: loads Bundles and NDJSON files into a data directory through the same
//! commit path as the server, so the change log sees every resource. It is an operator's
//! command: it runs with `Access::Open`, and validates every resource under the policy.
//!
//! - A transaction or batch Bundle is processed exactly as `POST /fhir` would.
//! - Any other Bundle (collection, searchset...), a single resource, or an NDJSON file (one
//!   resource per line, as Bulk Data `$export` writes them): each resource is stored on its
//!   own, with its id (update-as-create) when it has one, else with a new id.
//!
//! A rejected file, entry or line is reported and the rest goes on. Files start in name order
//! (Synthea's `0-...` batch files first), `jobs` at a time.

use crate::auth::Access;
use crate::bundle::{self, Deletes, EntryResult, Kind, Options, Reads};
use crate::fhir::resource::{Intake, check_value, id_of, parse_json};
use crate::fhir::{FhirError, Return};
use crate::search::Engine;
use crate::store::Store;
use crate::store::commit::{Action, Applied, CommitError, Write};
use crate::validate::Validator;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How many resources of one file may wait for their commit at once.
const WINDOW: usize = 2_000;

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: u64,
    pub stored: u64,
    pub rejected: u64,
    pub failed_files: u64,
    /// The validator's warnings about the resources stored.
    pub warnings: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn per_second(&self) -> f64 {
        self.stored as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Counters shared by the files being imported, read by the progress bar.
#[derive(Default)]
struct Counters {
    stored: AtomicU64,
    rejected: AtomicU64,
    failed_files: AtomicU64,
    /// The validator's warnings about the resources stored.
    warnings: AtomicU64,
}

/// Imports `paths` (files, or directories of files) into `store`, `jobs` files at a time.
pub fn run(
    store: &Store,
    search: &Arc<Engine>,
    validator: &Arc<Validator>,
    paths: &[PathBuf],
    jobs: usize,
    progress: bool,
) -> anyhow::Result<Summary> {
    let files = collect(paths)?;
    let bar = if progress {
        ProgressBar::new(files.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}  [{elapsed_precise}]")
            .expect("a valid template"),
    );
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(jobs.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let queue = Arc::new(std::sync::Mutex::new(files.clone().into_iter()));
        let deferred = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..jobs.max(1) {
            let (queue, store, search, validator, counters, bar, deferred) = (
                queue.clone(),
                store.clone(),
                search.clone(),
                validator.clone(),
                counters.clone(),
                bar.clone(),
                deferred.clone(),
            );
            workers.spawn(async move {
                loop {
                    let next = queue.lock().expect("file queue").next();
                    let Some(file) = next else { break };
                    if import_file(&store, &search, &validator, &file, &counters, &bar)
                        .await
                        .is_err()
                    {
                        // It may refer to what a later file creates: try it again at the end.
                        deferred.lock().expect("deferred files").push(file);
                    }
                    bar.inc(1);
                    let stored = counters.stored.load(Ordering::Relaxed);
                    let rate = stored as f64 / start.elapsed().as_secs_f64().max(1e-9);
                    bar.set_message(format!(
                        "{stored} resources ({rate:.0}/s), {} rejected",
                        counters.rejected.load(Ordering::Relaxed)
                    ));
                }
            });
        }
        while workers.join_next().await.is_some() {}
        let deferred = std::mem::take(&mut *deferred.lock().expect("deferred files"));
        for file in deferred {
            if let Err(error) = import_file(store, search, validator, &file, &counters, &bar).await
            {
                counters.failed_files.fetch_add(1, Ordering::Relaxed);
                report(&bar, format!("rejected {}: {error}", file.display()));
            }
        }
    });
    bar.finish();
    Ok(Summary {
        files: files.len() as u64,
        stored: counters.stored.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        failed_files: counters.failed_files.load(Ordering::Relaxed),
        warnings: counters.warnings.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

/// Prints a line on stderr above the progress bar (and without one, as with `--quiet`).
fn report(bar: &ProgressBar, line: String) {
    bar.suspend(|| eprintln!("{line}"));
}

/// The files to import, in name order: the files named, and the `.json`, `.ndjson` (and
/// gzipped) files of the directories named.
fn collect(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && format_of(p).is_some())
                .collect();
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            anyhow::bail!("{} is neither a file nor a directory", path.display());
        }
    }
    Ok(files)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
}

fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".ndjson") {
        Some(Format::Ndjson)
    } else if name.ends_with(".json") {
        Some(Format::Json)
    } else {
        None
    }
}

fn open(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    let file = std::fs::File::open(path)?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

async fn import_file(
    store: &Store,
    search: &Engine,
    validator: &Validator,
    path: &Path,
    counters: &Counters,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let reject = |at: String, error: &FhirError| {
        counters.rejected.fetch_add(1, Ordering::Relaxed);
        report(
            bar,
            format!("rejected {}{at}: {}", path.display(), error.diagnostics),
        );
    };
    match format_of(path) {
        Some(Format::Ndjson) => {
            let mut lines = Vec::new();
            for (number, line) in BufReader::new(open(path)?).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match parse_json(line.as_bytes()).and_then(|v| check_value(v, None)) {
                    Ok(resource) => lines.push((format!(":{}", number + 1), resource)),
                    Err(error) => reject(format!(":{}", number + 1), &error),
                }
            }
            store_each(store, validator, lines, counters, &reject).await;
        }
        _ => {
            let mut text = Vec::new();
            open(path)?.read_to_end(&mut text)?;
            let value = parse_json(&text)?;
            let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
            if is_bundle && bundle::kind_of(&value).is_ok() {
                let options = Options {
                    max_entries: usize::MAX,
                    returns: Return::Minimal,
                    subscription_endpoints: None,
                    base: None,
                    deletes: Deletes::default(),
                    max_read_bytes: 0,
                    max_patch_growth: usize::MAX,
                };
                let processed = bundle::process(
                    store,
                    search,
                    &Access::Open,
                    validator,
                    value,
                    &options,
                    &NoReads,
                )
                .await?;
                for (index, entry) in processed.entries.iter().enumerate() {
                    counters
                        .warnings
                        .fetch_add(entry.warnings.len() as u64, Ordering::Relaxed);
                    match &entry.error {
                        Some(error) => reject(format!(" entry {index}"), error),
                        None if processed.kind == Kind::Transaction || entry.status < 300 => {
                            counters.stored.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {}
                    }
                }
            } else if is_bundle {
                let mut resources = Vec::new();
                for (index, mut entry) in take_entries(value).into_iter().enumerate() {
                    let at = format!(" entry {index}");
                    match entry.get_mut("resource").map(Value::take) {
                        Some(resource) => match check_value(resource, None) {
                            Ok(resource) => resources.push((at, resource)),
                            Err(error) => reject(at, &error),
                        },
                        None => reject(at, &FhirError::not_found("the entry has no resource")),
                    }
                }
                store_each(store, validator, resources, counters, &reject).await;
            } else {
                let resource = check_value(value, None)?;
                store_each(
                    store,
                    validator,
                    vec![(String::new(), resource)],
                    counters,
                    &reject,
                )
                .await;
            }
        }
    }
    Ok(())
}

/// The GET and HEAD entries of imported Bundles: not run. An import stores resources; what a
/// read would answer goes nowhere, so each such entry is reported as refused.
struct NoReads;

impl Reads for NoReads {
    fn read(&self, read: &bundle::Read, _: bool) -> Result<EntryResult, FhirError> {
        Err(FhirError::not_supported(format!(
            "fhirlake import stores resources: it does not run GET or HEAD entries ({})",
            read.path
        )))
    }
}

fn take_entries(mut bundle: Value) -> Vec<Value> {
    match bundle.get_mut("entry").map(Value::take) {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    }
}

/// Stores resources one commit request each, [`WINDOW`] in flight, so the writer groups them.
async fn store_each(
    store: &Store,
    validator: &Validator,
    resources: Vec<(String, Intake)>,
    counters: &Counters,
    reject: &(dyn Fn(String, &FhirError) + Sync),
) {
    let mut in_flight = std::collections::VecDeque::with_capacity(WINDOW);
    let settle = |at: String, result: Result<Vec<Applied>, CommitError>| match result {
        Ok(_) => {
            counters.stored.fetch_add(1, Ordering::Relaxed);
        }
        Err(refused) => reject(at, &refused.error),
    };
    for (at, Intake { resource, dropped }) in resources {
        match validator.check_write(&resource, &dropped) {
            Ok(warnings) => {
                counters
                    .warnings
                    .fetch_add(warnings.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                reject(at, &error);
                continue;
            }
        }
        let write = match id_of(&resource).map(String::from) {
            Some(id) => Write {
                resource_type: resource_type(&resource),
                id,
                action: Action::Update(resource),
                if_match: None,
            },
            None => Write {
                resource_type: resource_type(&resource),
                id: uuid::Uuid::new_v4().to_string(),
                action: Action::Create(resource),
                if_match: None,
            },
        };
        in_flight.push_back((at, store.submit(vec![write])));
        if in_flight.len() == WINDOW {
            let (at, pending) = in_flight.pop_front().expect("a full window");
            settle(at, pending.await);
        }
    }
    for (at, pending) in in_flight {
        settle(at, pending.await);
    }
}

fn resource_type(resource: &Value) -> String {
    resource["resourceType"]
        .as_str()
        .expect("a checked resource has a type")
        .to_string()
}
