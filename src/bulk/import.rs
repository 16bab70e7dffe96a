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

use super::input;
use super::ndjson::{self, Pending, Settled, Stopped, Target};
use crate::auth::Access;
use crate::bundle::{self, Deletes, EntryResult, Kind, Options, Reads};
use crate::fhir::resource::parse_json;
use crate::fhir::{FhirError, Return};
use crate::search::Engine;
use crate::store::Store;
use crate::store::commit::{Applied, CommitError};
use crate::validate::Validator;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    let record = |at: String, settled: Settled| match settled {
        Settled::Stored { warnings, .. } => {
            counters.stored.fetch_add(1, Ordering::Relaxed);
            counters
                .warnings
                .fetch_add(warnings as u64, Ordering::Relaxed);
        }
        Settled::Rejected(error) => reject(at, &error),
    };
    let store_all = |items: &mut dyn Iterator<Item = (u64, Result<Value, FhirError>)>,
                     at: &dyn Fn(u64) -> String| {
        let mut settled = |n: u64, settled: Settled| {
            record(at(n), settled);
            Ok::<(), std::convert::Infallible>(())
        };
        let stored = tokio::task::block_in_place(|| {
            ndjson::store_all(items, &target(store, validator), &wait, &mut settled)
        });
        match stored {
            Ok(()) => {}
            Err(never) => match never {},
        }
    };
    match format_of(path) {
        Some(Format::Ndjson) => {
            let mut reader = input::local(path)?;
            let mut settled = |n: u64, settled: Settled| {
                record(format!(":{n}"), settled);
                Ok::<(), std::convert::Infallible>(())
            };
            let loaded = tokio::task::block_in_place(|| {
                ndjson::load(
                    &mut reader,
                    0,
                    &target(store, validator),
                    &wait,
                    &mut settled,
                )
            });
            match loaded {
                Ok(_) => {}
                Err(Stopped::Read { line, error }) => {
                    anyhow::bail!("it cannot be read after line {line}: {error}")
                }
                Err(Stopped::Caller(never)) => match never {},
            }
        }
        _ => {
            let mut text = Vec::new();
            input::local(path)?.read_to_end(&mut text)?;
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
                let mut entries =
                    take_entries(value)
                        .into_iter()
                        .enumerate()
                        .map(|(index, mut entry)| {
                            let resource = entry
                                .get_mut("resource")
                                .map(Value::take)
                                .ok_or_else(|| FhirError::not_found("the entry has no resource"));
                            (index as u64, resource)
                        });
                store_all(&mut entries, &|index| format!(" entry {index}"));
            } else {
                store_all(
                    &mut std::iter::once((0u64, Ok::<Value, FhirError>(value))),
                    &|_| String::new(),
                );
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

/// How `fhirlake import` stores resources: any type, a new random id for a resource without
/// one (an import from the command line is not resumed).
fn target<'a>(store: &'a Store, validator: &'a Validator) -> Target<'a> {
    Target {
        store,
        validator,
        resource_type: None,
        may_write: &|_| Ok(()),
        new_id: &|_| (uuid::Uuid::new_v4().to_string(), false),
    }
}

/// Waits for a write on the import's runtime (from a `block_in_place` section).
fn wait(pending: Pending) -> Result<Vec<Applied>, CommitError> {
    tokio::runtime::Handle::current().block_on(pending)
}
