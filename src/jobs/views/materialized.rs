//! Materialized views: the rows of the ViewDefinitions marked for it, kept in memory as Arrow
//! data (`fhirlake_analytics::materialized`) and changed as the change log goes on, so that
//! `$sql` reads record batches instead of running the view over the store at every query.
//!
//! A ViewDefinition is marked with the extension [`MATERIALIZE`] (`valueBoolean: true`). The
//! [`Materializer`] follows the change log from its own position, a page at a time on a
//! blocking thread: for each resource of a materialized view's type changed in a page, it
//! reads the current version and replaces the resource's rows with the view's rows of it (none
//! when it is deleted or erased); an erased resource's rows are also rewritten out of the
//! segments that held them (`Materialized::forget`). A ViewDefinition that is created, changed
//! or marked is built anew from a store snapshot (a full scan of its type), and one deleted or
//! unmarked is dropped. At start every marked view is built from the head of the log. While no
//! change of a ready view's type or of a ViewDefinition was committed, it moves on without
//! reading the log (`Store::quiet_after`).
//!
//! Invariants:
//! - Every ready view holds the rows of the current versions of its type's resources as of
//!   some seq at or after [`Materializer::position`]: rows are re-read from the current
//!   versions, so applying a change twice, or after a build that already saw it, is harmless.
//! - A view whose rows fail (a path that fails on a resource, a cell that does not fit its
//!   column) is dropped until its definition changes or the server restarts: `$sql` then makes
//!   its rows by running the view (`jobs::views`), which reports the failure as `$run` does.
//! - Nothing is written to disk: the rows are derived from the store, and built again at
//!   start. So an erasure leaves no copy in a view's files, as there are none.
//!
//! Its position is a change-log consumer's checkpoint: `/metrics` shows its lag
//! (`fhirlake_consumer_lag_changes{consumer="views"}`), and retention keeps the changes it
//! has not read.

use super::{everything, resources};
use crate::fhir::FhirError;
use crate::fhir::resource::VIEW_DEFINITION;
use crate::jobs::Stop;
use crate::jobs::export::Snapshot as Position;
use crate::search::Engine;
use crate::search::View as Visible;
use crate::store::tables::Op;
use crate::store::{Store, StoreError};
use crate::views::View;
use fhirlake_analytics::RecordBatch;
use fhirlake_analytics::materialized::Materialized;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The extension that marks a ViewDefinition for materialization (`valueBoolean: true`).
pub const MATERIALIZE: &str = "https://fhirlake.dev/fhir/StructureDefinition/materialize";

/// How many changes are read from the log at a time.
const PAGE: usize = 512;

/// The views kept fresh, and how far the change log has reached them.
pub struct Materializer {
    store: Store,
    engine: Arc<Engine>,
    /// The ready views, by the id of their ViewDefinition.
    views: Mutex<HashMap<String, Arc<Mutex<Held>>>>,
    /// Every change up to it is in every ready view (None: not started).
    position: Mutex<Option<u64>>,
    moved: Condvar,
    checkpoint: watch::Sender<u64>,
}

/// One materialized view.
struct Held {
    /// The view's `name`.
    name: String,
    /// The `meta.versionId` of the definition it was built from.
    version: String,
    view: Arc<View>,
    table: Materialized,
}

impl Materializer {
    /// A materializer of the views of `store`, not started ([`Materializer::run`]).
    pub fn new(store: Store, engine: Arc<Engine>) -> Arc<Materializer> {
        Arc::new(Materializer {
            store,
            engine,
            views: Mutex::default(),
            position: Mutex::new(None),
            moved: Condvar::new(),
            checkpoint: watch::Sender::new(0),
        })
    }

    /// Its checkpoint: every change up to it is in every ready view.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.checkpoint.subscribe()
    }

    /// Builds the marked views, then follows the change log, until the store's writer stops.
    pub async fn run(self: Arc<Materializer>) {
        let mut commits = self.store.watch_commits();
        loop {
            let position = *self.position.lock().expect("position");
            if position.is_some_and(|position| self.store.committed_seq() <= position) {
                if commits.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let me = self.clone();
            let stepped = tokio::task::spawn_blocking(move || me.step(position)).await;
            match stepped {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "the materialized views could not follow the log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(_) => return,
            }
        }
    }

    /// Builds every marked view (before it has a position), or applies the next page of
    /// changes.
    fn step(&self, position: Option<u64>) -> Result<(), StoreError> {
        let Some(position) = position else {
            let head = self.store.committed_seq();
            for (id, version) in self.store.current_of_type(VIEW_DEFINITION)? {
                let definition = version.and_then(|v| serde_json::from_slice(&v.body).ok());
                self.define(&id, definition);
            }
            self.advance(head);
            return Ok(());
        };
        let mut followed = vec![VIEW_DEFINITION.to_string()];
        followed.extend(
            self.views
                .lock()
                .expect("views")
                .values()
                .map(|held| held.lock().expect("view").view.resource.clone()),
        );
        if let Some(quiet) = self.store.quiet_after(&followed, position) {
            // No change any view reads, nor of a definition.
            self.advance(quiet);
            return Ok(());
        }
        let changes = self.store.changes_after(position, PAGE)?;
        let Some(last) = changes.last().map(|change| change.seq) else {
            return Ok(());
        };
        let mut changed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut erased: BTreeSet<(&str, &str)> = BTreeSet::new();
        let mut definitions: BTreeSet<&str> = BTreeSet::new();
        for change in &changes {
            let key = (change.resource_type.as_str(), change.id.as_str());
            if key.0 == VIEW_DEFINITION {
                definitions.insert(key.1);
            } else {
                changed.entry(key.0).or_default().insert(key.1);
            }
            if change.op == Op::Erased {
                erased.insert(key);
            }
        }
        let views: Vec<(String, Arc<Mutex<Held>>)> = self
            .views
            .lock()
            .expect("views")
            .iter()
            .map(|(id, held)| (id.clone(), held.clone()))
            .collect();
        for (resource_type, ids) in changed {
            let concerned: Vec<&(String, Arc<Mutex<Held>>)> = views
                .iter()
                .filter(|(_, held)| held.lock().expect("view").view.resource == resource_type)
                .collect();
            if concerned.is_empty() {
                continue;
            }
            let keys: Vec<(String, String)> = ids
                .iter()
                .map(|id| (resource_type.to_string(), id.to_string()))
                .collect();
            let current = self.store.read_many(&keys)?;
            for (id, held) in concerned {
                let mut held = held.lock().expect("view");
                let applied = keys
                    .iter()
                    .zip(&current)
                    .try_for_each(|((_, rid), version)| {
                        if erased.contains(&(resource_type, rid.as_str())) {
                            held.table.forget(rid);
                        }
                        let resource = version
                            .as_ref()
                            .filter(|v| !v.body.is_empty())
                            .and_then(|v| serde_json::from_slice::<Value>(&v.body).ok());
                        let rows = match resource {
                            Some(resource) => {
                                held.view.rows(&resource).map_err(|e| e.to_string())?
                            }
                            None => Vec::new(),
                        };
                        held.table.replace(rid, &rows).map_err(|e| e.to_string())
                    });
                let settled = applied.and_then(|()| held.table.settle().map_err(|e| e.to_string()));
                if let Err(error) = settled {
                    drop(held);
                    self.drop_view(id, &error);
                }
            }
        }
        for id in definitions {
            let definition = self
                .store
                .read(VIEW_DEFINITION, id)?
                .and_then(|(_, version)| version)
                .and_then(|v| serde_json::from_slice(&v.body).ok());
            self.define(id, definition);
        }
        self.advance(last);
        Ok(())
    }

    /// Builds the view of ViewDefinition `id` when `definition` (its current version) is
    /// marked and valid, or drops it.
    fn define(&self, id: &str, definition: Option<Value>) {
        let marked = definition.filter(is_marked);
        let Some(definition) = marked else {
            self.views.lock().expect("views").remove(id);
            return;
        };
        let version = version_of(&definition);
        let unchanged = self
            .views
            .lock()
            .expect("views")
            .get(id)
            .is_some_and(|held| held.lock().expect("view").version == version);
        if unchanged {
            return;
        }
        self.views.lock().expect("views").remove(id);
        let view = match View::parse(&definition) {
            Ok(view) => Arc::new(view),
            Err(error) => {
                self.drop_view(id, &error.to_string());
                return;
            }
        };
        let started = Instant::now();
        match self.build(&view) {
            Ok(table) => {
                tracing::info!(
                    view = %format!("ViewDefinition/{id}"),
                    rows = table.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "materialized view built"
                );
                let held = Held {
                    name: definition["name"].as_str().unwrap_or(id).to_string(),
                    version,
                    view,
                    table,
                };
                self.views
                    .lock()
                    .expect("views")
                    .insert(id.to_string(), Arc::new(Mutex::new(held)));
            }
            Err(error) => self.drop_view(id, &error),
        }
    }

    /// The rows of `view` over every current resource of its type, from a snapshot at the
    /// head of the log, or why they could not be made.
    fn build(&self, view: &View) -> Result<Materialized, String> {
        let seq = self.store.committed_seq();
        let snapshot = self.store.snapshot(seq).map_err(|e| e.to_string())?;
        let request = everything(
            vec![view.resource.clone()],
            Visible::All,
            Position { seq, time: 0 },
        );
        let mut table = Materialized::new(&view.columns);
        let built = resources(
            &snapshot,
            &self.engine,
            &request,
            &view.resource,
            |resource| {
                let id = resource["id"].as_str().unwrap_or_default();
                let rows = view.rows(resource).map_err(FhirError::from)?;
                table
                    .replace(id, &rows)
                    .map_err(|e| Stop::Failed(FhirError::internal(e.to_string())))
            },
        );
        match built {
            Ok(()) => Ok(table),
            Err(Stop::Failed(error)) => Err(error.to_string()),
            Err(_) => Err("stopped".into()),
        }
    }

    fn drop_view(&self, id: &str, error: &str) {
        tracing::warn!(
            view = %format!("ViewDefinition/{id}"),
            %error,
            "not materialized: $sql runs the view instead"
        );
        self.views.lock().expect("views").remove(id);
    }

    fn advance(&self, seq: u64) {
        *self.position.lock().expect("position") = Some(seq);
        self.moved.notify_all();
        self.checkpoint.send_replace(seq);
    }

    /// The name and row count of each ready view.
    pub fn rows(&self) -> Vec<(String, usize)> {
        let views: Vec<Arc<Mutex<Held>>> = self
            .views
            .lock()
            .expect("views")
            .values()
            .cloned()
            .collect();
        views
            .iter()
            .map(|held| {
                let held = held.lock().expect("view");
                (held.name.clone(), held.table.len())
            })
            .collect()
    }

    /// The rows of ViewDefinition `id` at version `version`, once every change up to `seq` is
    /// in them; None when that view is not materialized at that version, or is not fresh
    /// within `wait`.
    pub fn fresh(
        &self,
        id: &str,
        version: &str,
        seq: u64,
        wait: Duration,
    ) -> Option<Vec<RecordBatch>> {
        let deadline = Instant::now() + wait;
        let mut position = self.position.lock().expect("position");
        while position.is_none_or(|position| position < seq) {
            let left = deadline.checked_duration_since(Instant::now())?;
            position = self.moved.wait_timeout(position, left).expect("position").0;
        }
        drop(position);
        let held = self.views.lock().expect("views").get(id)?.clone();
        let mut held = held.lock().expect("view");
        if held.version != version {
            return None;
        }
        held.table.batches().ok()
    }
}

/// Whether `definition` carries [`MATERIALIZE`] with `valueBoolean: true`.
pub fn is_marked(definition: &Value) -> bool {
    definition["extension"]
        .as_array()
        .is_some_and(|extensions| {
            extensions.iter().any(|extension| {
                extension["url"] == MATERIALIZE && extension["valueBoolean"] == Value::Bool(true)
            })
        })
}

/// A stored definition's `meta.versionId`.
pub fn version_of(definition: &Value) -> String {
    definition["meta"]["versionId"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
