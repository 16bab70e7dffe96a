//! Views over the store: the resources of one type that an export-like [`Request`] selects,
//! read from a store snapshot and handed one at a time to whoever makes rows of them. `$run`
//! (`api::views`), `$sql` (`api::sql`) and `$viewdefinition-export` ([`view_export`]) read
//! the store through [`resources`] alone, so that they select (`_since`, `patient`, `group`,
//! the client's view) exactly as a bulk export does, with the export's `Selector`.
//!
//! Memory: [`BATCH`] resources of the snapshot at a time, whatever the type's size.
//!
//! SQL ([`query`]): each stored ViewDefinition a query names (by its `name`) is a table whose
//! rows are made when the query scans it, as `$run` makes them for the same client, every
//! table from a snapshot at the same change-log seq, so that one query sees one state of the
//! store.

pub mod materialized;
pub mod view_export;

use super::Stop;
use super::export::select::{Line, Population, Selector};
use super::export::{Level, Request, Snapshot as Position};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::resource::VIEW_DEFINITION;
use crate::fhir::{FhirError, IssueCode};
use crate::search::Engine;
use crate::search::View as Visible;
use crate::store::Store;
use crate::store::snapshot::Snapshot;
use crate::views::View;
use fhirlake_analytics::sql::{
    Engine as SqlEngine, Query, RowSource, Rows, SourceError, SqlError, Table,
};
use materialized::Materializer;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// How long a query waits for a materialized view to hold every change committed before it,
/// before it runs the view over the store instead.
const FRESH_WAIT: Duration = Duration::from_secs(2);

/// How many resources are read from the store at a time.
pub const BATCH: usize = 256;

/// The request that selects every resource of `types` a client may read (`visible`), at
/// `position` (a system export's, without filters).
pub fn everything(types: Vec<String>, visible: Visible, position: Position) -> Request {
    Request {
        level: Level::System,
        url: String::new(),
        types,
        since: None,
        until: None,
        type_filters: vec![],
        elements: vec![],
        patients: vec![],
        view: visible,
        notes: vec![],
        snapshot: position,
    }
}

/// Hands each resource of `resource_type` that `request` selects in `snapshot` (opened at the
/// request's seq) to `each`, in id order, until `each` fails.
pub fn resources<E: From<Stop>>(
    snapshot: &Snapshot,
    engine: &Engine,
    request: &Request,
    resource_type: &str,
    mut each: impl FnMut(&Value) -> Result<(), E>,
) -> Result<(), E> {
    let population = Population::of(engine.registry, request, snapshot)?;
    let selector = Selector::new(engine, request, population, None)?;
    let changed = snapshot.changed(resource_type).map_err(Stop::from)?;
    let mut after: Option<String> = None;
    loop {
        let batch = snapshot
            .scan(resource_type, &changed, after.as_deref(), BATCH)
            .map_err(Stop::from)?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        after = Some(last.id.clone());
        let lines = selector.lines(snapshot, resource_type, &changed, &batch)?;
        for line in lines.into_iter().flatten() {
            if let Line::Resource(bytes) = line {
                let resource: Value = serde_json::from_slice(&bytes).map_err(|_| {
                    Stop::Failed(FhirError::internal("a stored resource is not JSON"))
                })?;
                each(&resource)?;
            }
        }
    }
}

/// A view as a table of SQL: the rows `$run` makes of the resources `request` selects, read
/// from a store snapshot at the request's seq when the query scans the table.
struct ViewTable {
    store: Store,
    engine: Arc<Engine>,
    request: Request,
    view: Arc<View>,
}

/// Why a table's scan stopped: the query needs no more rows, or a failure.
enum Halt {
    Enough,
    Failed(FhirError),
}

impl From<Stop> for Halt {
    fn from(stop: Stop) -> Halt {
        match stop {
            Stop::Failed(error) => Halt::Failed(error),
            Stop::Cancelled | Stop::Shutdown | Stop::Parked => Halt::Enough,
        }
    }
}

impl RowSource for ViewTable {
    fn produce(&self, emit: &mut dyn FnMut(&[Value]) -> bool) -> Result<(), SourceError> {
        let snapshot = match self.store.snapshot(self.request.snapshot.seq) {
            Ok(snapshot) => snapshot,
            Err(error) => return Err(Box::new(FhirError::from(error))),
        };
        let resource_type = self.view.resource.as_str();
        let scanned = resources(&snapshot, &self.engine, &self.request, resource_type, |r| {
            let rows = self.view.rows(r).map_err(|e| Halt::Failed(e.into()))?;
            match rows.iter().all(|row| emit(row)) {
                true => Ok(()),
                false => Err(Halt::Enough),
            }
        });
        match scanned {
            Ok(()) | Err(Halt::Enough) => Ok(()),
            Err(Halt::Failed(error)) => Err(Box::new(error)),
        }
    }
}

/// The tables `names` of a SQL query (as [`sql::Engine::tables`] gives them): for each, the
/// stored ViewDefinition of that `name` (ASCII case aside: SQL folds unquoted names to lower
/// case) that `access` may read, over the resources of its type `access` may read (a
/// `patient/` token's compartment, as `$run` gives it), all at the change-log seq `seq`.
///
/// A view that `views` keeps materialized is read from there when `access` may read every
/// resource of its type, once it holds every change up to `seq` (it may hold later ones too);
/// otherwise its rows are made from a snapshot at `seq` as the query scans it.
///
/// 403 without read access to ViewDefinition or to a view's type; 400 for a name no view (or
/// more than one) has.
pub fn tables(
    store: &Store,
    engine: &Arc<Engine>,
    views: Option<&Materializer>,
    access: &Access,
    names: &[String],
    seq: u64,
) -> Result<Vec<(String, Table)>, FhirError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    access.require(Permission::Read, Some(VIEW_DEFINITION))?;
    let mut defined: Vec<(String, Value)> = Vec::new();
    for (id, version) in store.current_of_type(VIEW_DEFINITION)? {
        let Some(version) = version else { continue };
        let Ok(definition) = serde_json::from_slice::<Value>(&version.body) else {
            continue;
        };
        let named = definition["name"].as_str().unwrap_or_default();
        if names.iter().any(|name| name.eq_ignore_ascii_case(named)) {
            defined.push((id, definition));
        }
    }
    let position = Position { seq, time: 0 };
    let mut tables = Vec::new();
    for name in names {
        let mut found = Vec::new();
        for (id, definition) in &defined {
            let named = definition["name"].as_str().unwrap_or_default();
            if named.eq_ignore_ascii_case(name)
                && access
                    .current(engine, store, Permission::Read, VIEW_DEFINITION, id)?
                    .is_some_and(|(_, version)| version.is_some())
            {
                found.push((id, definition));
            }
        }
        let (id, definition) = match found.as_slice() {
            [one] => *one,
            [] => {
                return Err(FhirError::bad_request(
                    IssueCode::NotFound,
                    format!("table '{name}': no ViewDefinition is named so"),
                )
                .at("query"));
            }
            many => {
                let ids: Vec<String> = many
                    .iter()
                    .map(|(id, _)| format!("ViewDefinition/{id}"))
                    .collect();
                return Err(FhirError::bad_request(
                    IssueCode::Invalid,
                    format!(
                        "table '{name}': several ViewDefinitions are named so ({})",
                        ids.join(", ")
                    ),
                )
                .at("query"));
            }
        };
        let view = View::parse(definition).map_err(|e| {
            FhirError::bad_request(IssueCode::Invalid, format!("ViewDefinition/{id}: {e}"))
        })?;
        access.require(Permission::Read, Some(&view.resource))?;
        let visible = access.view(Permission::Read);
        let held = views
            .filter(|_| visible.holds_all(&view.resource))
            .and_then(|views| {
                let version = materialized::version_of(definition);
                views.fresh(id, &version, seq, FRESH_WAIT)
            });
        let columns = view.columns.clone();
        let rows = match held {
            Some(batches) => Rows::Held(batches),
            None => Rows::Made(Arc::new(ViewTable {
                store: store.clone(),
                engine: engine.clone(),
                request: everything(vec![view.resource.clone()], visible, position),
                view: Arc::new(view),
            })),
        };
        let table = Table { columns, rows };
        tables.push((name.clone(), table));
    }
    Ok(tables)
}

/// What a failed query is for its client: its fault (400 `invalid`, located by line and
/// column), past its limits (400 `too-costly`), or a table's failure as the table gave it (a
/// view that fails on a resource: 400; the store: 500).
pub fn sql_error(error: SqlError) -> FhirError {
    match error {
        SqlError::Invalid(message) => {
            FhirError::bad_request(IssueCode::Invalid, message).at("query")
        }
        SqlError::TooCostly(message) => {
            FhirError::bad_request(IssueCode::TooCostly, message).at("query")
        }
        SqlError::Source(error) => match error.downcast::<FhirError>() {
            Ok(error) => *error,
            Err(other) => FhirError::internal(other.to_string()),
        },
        SqlError::Engine(message) => FhirError::internal(message),
    }
}

/// Plans `sql` over the stored views it names, as `access` may read them, at the change-log
/// seq `seq`; the query is ready to give its batches. Blocks (call it from a plain thread).
pub fn query(
    sql: &SqlEngine,
    store: &Store,
    engine: &Arc<Engine>,
    views: Option<&Materializer>,
    access: &Access,
    text: &str,
    seq: u64,
) -> Result<Query, FhirError> {
    let names = sql.tables(text).map_err(sql_error)?;
    let tables = tables(store, engine, views, access, &names, seq)?;
    sql.query(text, tables).map_err(sql_error)
}
