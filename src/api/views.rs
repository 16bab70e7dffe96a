//! `$run` of SQL on FHIR v2 (`ViewDefinitionRun`): `GET|POST [base]/ViewDefinition/$run` with
//! an inline `viewResource` (or a `viewReference`), and `[base]/ViewDefinition/[id]/$run` of
//! a stored one. Parameters come from the query and, for a POST, a `Parameters` body:
//! `_format` (`json`, `ndjson`, `csv`, `parquet`; else the `Accept` header),
//! `header` (CSV), `patient`, `group`, `_since`, `_limit`, and `resource` (inline resources to
//! run the view on instead of the store's).
//!
//! The rows are streamed as they are made: a blocking thread reads the store in one read
//! transaction (a `store::snapshot::Snapshot` at the writer's position when the request came,
//! as a bulk export does), judges each batch of resources by `_since`, by population
//! (`patient`, `group`) and by the client's view (a `patient/` token sees only its
//! compartment's rows) with the export's `Selector`, runs the view on each resource and sends
//! the encoded rows in chunks of about [`CHUNK`] bytes through a small bounded channel, so
//! memory holds a few chunks and one resource's rows whatever the result's size. Parquet
//! (`fhirlake_analytics::parquet_file`) goes out a row group at a time: memory then holds one
//! row group (at most 64Ki rows, about 32 MiB encoded) besides. The answer
//! starts once the first chunk is made: a view that fails on the first resources is a 400
//! OperationOutcome; one that fails later ends the stream early (the connection is closed
//! without its last chunk, so the client sees an incomplete answer, never a short one).
//!
//! Authorization: reading the view's resource type (and `ViewDefinition`, for a stored view).

use super::http::{header_str, query_pairs, read_body};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::parameters::{invalid, named};
use crate::fhir::resource::{VIEW_DEFINITION, check_id};
use crate::fhir::{FhirError, IssueCode};
use crate::jobs::Stop;
use crate::jobs::export::request::{check_population, instant};
use crate::jobs::export::{Level, Request, Snapshot};
use crate::search::Engine;
use crate::store::Store;
use crate::views::View;
use crate::views::output::{Encoder, Format};
use actix_web::http::{Method, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc;

type State = web::Data<AppState>;

/// About how many bytes of rows one chunk of the answer holds.
pub const CHUNK: usize = 64 * 1024;

/// How many chunks may wait between the thread that makes them and the connection.
const CHUNKS_IN_FLIGHT: usize = 4;

/// `GET|POST [base]/ViewDefinition/$run`
pub async fn run_type(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    run(req, state, access, payload, None).await
}

/// `GET|POST [base]/ViewDefinition/[id]/$run`
pub async fn run_instance(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let id = path.into_inner();
    check_id(&id)?;
    run(req, state, access, payload, Some(id)).await
}

/// What a `$run` asks for.
#[derive(Default)]
struct Asked {
    view_resource: Option<Value>,
    view_reference: Option<String>,
    format: Option<String>,
    header: Option<bool>,
    patient: Option<String>,
    group: Option<String>,
    since: Option<i64>,
    limit: Option<usize>,
    resources: Vec<Value>,
}

impl Asked {
    /// Takes one parameter given as text (from the query, or a primitive of the body).
    fn text(&mut self, name: &str, value: &str) -> Result<(), FhirError> {
        let once = |slot: bool| {
            if slot {
                Err(invalid(name, "given more than once"))
            } else {
                Ok(())
            }
        };
        match name {
            "_format" => {
                once(self.format.is_some())?;
                self.format = Some(value.to_string());
            }
            "header" => {
                once(self.header.is_some())?;
                self.header = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(name, "is true or false")),
                });
            }
            "patient" => {
                once(self.patient.is_some())?;
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                check_id(id).map_err(|e| e.at("patient"))?;
                self.patient = Some(id.to_string());
            }
            "group" => {
                once(self.group.is_some())?;
                let id = value.strip_prefix("Group/").unwrap_or(value);
                check_id(id).map_err(|e| e.at("group"))?;
                self.group = Some(id.to_string());
            }
            "_since" => {
                once(self.since.is_some())?;
                self.since = Some(instant(value).map_err(|why| invalid(name, why))?);
            }
            "_limit" => {
                once(self.limit.is_some())?;
                self.limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid(name, "is a whole number above 0"))?,
                );
            }
            "viewReference" => {
                once(self.view_reference.is_some())?;
                self.view_reference = Some(value.to_string());
            }
            "source" => {
                return Err(FhirError::not_supported(
                    "source: fhirlake runs views on its own store or on inline resources only",
                ));
            }
            "viewResource" | "resource" => {
                return Err(invalid(
                    name,
                    "is a resource: send it in a POST Parameters body",
                ));
            }
            // Other query parameters (`_pretty`, ...) are not the operation's.
            _ => {}
        }
        Ok(())
    }

    /// Takes the parameters of a `Parameters` body.
    fn body(&mut self, body: &[u8]) -> Result<(), FhirError> {
        let parameters: Value = crate::fhir::resource::parse_json(body)?;
        for (at, name, parameter) in named(&parameters, "$run")? {
            match name {
                "viewResource" | "resource" => {
                    let resource = parameter
                        .get("resource")
                        .filter(|r| r.is_object())
                        .ok_or_else(|| invalid(name, "needs a resource").at(&at))?;
                    if name == "resource" {
                        self.resources.push(resource.clone());
                    } else if self.view_resource.replace(resource.clone()).is_some() {
                        return Err(invalid(name, "given more than once"));
                    }
                }
                _ => {
                    let value = crate::fhir::parameters::value_text(parameter)
                        .ok_or_else(|| invalid(name, "needs a value").at(&at))?;
                    self.text(name, &value)?;
                }
            }
        }
        Ok(())
    }

    fn format(&self, req: &HttpRequest) -> Result<Format, FhirError> {
        output_format(self.format.as_deref(), req)
    }
}

/// The output format of rows: `_format` (`named`), else the `Accept` header, else JSON.
pub(super) fn output_format(named: Option<&str>, req: &HttpRequest) -> Result<Format, FhirError> {
    let named = match named {
        Some(name) => name.to_string(),
        None => match header_str(req.headers(), header::ACCEPT) {
            Some(accept) => {
                let first = accept.split(',').next().unwrap_or_default();
                let media = first.split(';').next().unwrap_or_default().trim();
                match media {
                    "" | "*/*" => return Ok(Format::Json),
                    media => media.to_string(),
                }
            }
            None => return Ok(Format::Json),
        },
    };
    Format::parse(&named).ok_or_else(|| {
        FhirError::bad_request(
            IssueCode::NotSupported,
            format!("_format={named}: the formats are json, ndjson, csv and parquet"),
        )
    })
}

async fn run(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
    instance: Option<String>,
) -> ApiResult {
    let mut asked = Asked::default();
    for (name, value) in query_pairs(&req) {
        asked.text(&name, &value)?;
    }
    if req.method() == Method::POST {
        let body = read_body(&req, payload, &state).await?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            asked.body(&body)?;
        }
    }
    let format = asked.format(&req)?;
    let view = Arc::new(view_of(&state, &access, &asked, instance)?);
    access.require(Permission::Read, Some(&view.resource))?;
    if asked.patient.is_some() && asked.group.is_some() {
        return Err(invalid("group", "give patient or group, not both").into());
    }
    let encoder = Encoder::new(format, &view.columns, asked.header.unwrap_or(true))?;
    let limit = asked.limit.unwrap_or(usize::MAX);
    let (mut out, receiver) = Out::new(encoder, limit);
    if asked.resources.is_empty() {
        let request = stored_request(&state, &access, &view, &asked).await?;
        let (store, engine) = (state.store.clone(), state.search.clone());
        let view = view.clone();
        tokio::task::spawn_blocking(move || {
            let made = rows_of_store(&store, &engine, &request, &view, &mut out);
            out.end(made);
        });
    } else {
        if asked.patient.is_some() || asked.group.is_some() || asked.since.is_some() {
            return Err(invalid(
                "resource",
                "inline resources are run as given: patient, group and _since are not taken",
            )
            .into());
        }
        let resources = std::mem::take(&mut asked.resources);
        let view = view.clone();
        tokio::task::spawn_blocking(move || {
            let made = resources
                .iter()
                .try_for_each(|resource| out.rows_of(&view, resource));
            out.end(made);
        });
    }
    respond(receiver, format).await
}

/// The streamed answer of rows that an [`Out`] sends: the first chunk decides the status (an
/// error before any row is the client's answer, an OperationOutcome), the rest follows.
pub(super) async fn respond(mut receiver: Chunks, format: Format) -> ApiResult {
    let first = match receiver.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(error)) => return Err(error.into()),
        None => return Err(FhirError::internal("the run ended without an answer").into()),
    };
    let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        let chunk = chunk
            .map(Bytes::from)
            .map_err(|error| actix_web::error::ErrorInternalServerError(error.to_string()));
        Some((chunk, receiver))
    });
    let first = futures_util::stream::once(async move { Ok(Bytes::from(first)) });
    Ok(HttpResponse::Ok()
        .content_type(format.media_type())
        .streaming(futures_util::StreamExt::chain(first, rest)))
}

/// The view to run: the stored one (`instance`, or a `viewReference`), or the inline
/// `viewResource`, parsed (400 with the fault located).
fn view_of(
    state: &AppState,
    access: &Access,
    asked: &Asked,
    instance: Option<String>,
) -> Result<View, FhirError> {
    let reference = match (&instance, &asked.view_reference, &asked.view_resource) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid(
                "viewResource",
                "an instance's $run runs the stored view: give no viewReference or viewResource",
            ));
        }
        (None, Some(_), Some(_)) => {
            return Err(invalid(
                "viewResource",
                "give viewReference or viewResource, not both",
            ));
        }
        (None, None, Some(inline)) => return Ok(View::parse(inline)?),
        (None, None, None) => {
            return Err(invalid(
                "viewResource",
                "$run needs a view: a viewResource, a viewReference, or ViewDefinition/[id]/$run",
            ));
        }
        (Some(id), None, None) => id.clone(),
        (None, Some(reference), None) => referenced_id(state, reference)?,
    };
    Ok(View::parse(&stored_definition(state, access, &reference)?)?)
}

/// The id of a `viewReference`: a reference to a ViewDefinition of this server (relative, or
/// absolute under `--base-url`). Not `Base::local`, which knows R4's types only.
pub(super) fn referenced_id(state: &AppState, reference: &str) -> Result<String, FhirError> {
    let relative = state.search.registry.base.relative_to(reference);
    match relative.strip_prefix("ViewDefinition/") {
        Some(id) if check_id(id).is_ok() => Ok(id.to_string()),
        _ => Err(invalid(
            "viewReference",
            "is a reference to a ViewDefinition of this server (ViewDefinition/[id])",
        )),
    }
}

/// The stored ViewDefinition `id`, when the client may read it (else 404, as absent).
pub(super) fn stored_definition(
    state: &AppState,
    access: &Access,
    id: &str,
) -> Result<Value, FhirError> {
    check_id(id)?;
    access.require(Permission::Read, Some(VIEW_DEFINITION))?;
    let found = access.current(
        &state.search,
        &state.store,
        Permission::Read,
        VIEW_DEFINITION,
        id,
    )?;
    let Some((_, Some(version))) = found else {
        return Err(FhirError::not_found(format!(
            "ViewDefinition/{id} does not exist"
        )));
    };
    serde_json::from_slice(&version.body)
        .map_err(|_| FhirError::internal("a stored ViewDefinition is not JSON"))
}

/// The export-like request that selects the stored resources a run reads: the view's type,
/// `_since`, the population (`patient`, `group`), the client's view, and the writer's position
/// now as the snapshot.
async fn stored_request(
    state: &AppState,
    access: &Access,
    view: &View,
    asked: &Asked,
) -> Result<Request, FhirError> {
    let level = match (&asked.patient, &asked.group) {
        (Some(_), _) => Level::Patient,
        (None, Some(id)) => Level::Group { id: id.clone() },
        (None, None) => Level::System,
    };
    let mut request = crate::jobs::views::everything(
        vec![view.resource.clone()],
        access.view(Permission::Read),
        Snapshot { seq: 0, time: 0 },
    );
    request.level = level;
    request.since = asked.since;
    request.patients = asked.patient.iter().cloned().collect();
    check_population(&state.store, &state.search, access, &request)?;
    let position = state.store.keep_books(Vec::new()).await?;
    request.snapshot = Snapshot {
        seq: position.seq,
        time: position.time,
    };
    Ok(request)
}

/// The chunks of an answer, as an [`Out`] sends them.
pub(super) type Chunks = mpsc::Receiver<Result<Vec<u8>, FhirError>>;

/// Where the rows of a run go: encoded, in chunks, to the connection.
pub(super) struct Out {
    encoder: Encoder,
    sender: mpsc::Sender<Result<Vec<u8>, FhirError>>,
    limit: usize,
}

/// Why a run stopped making rows early: the `_limit` was reached, or the client left.
#[derive(Debug)]
pub(super) enum Enough {
    Limit,
    Gone,
    Failed(FhirError),
}

impl From<FhirError> for Enough {
    fn from(error: FhirError) -> Self {
        Enough::Failed(error)
    }
}

impl From<Stop> for Enough {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Failed(error) => Enough::Failed(error),
            Stop::Cancelled | Stop::Shutdown | Stop::Parked => Enough::Gone,
        }
    }
}

impl From<crate::store::StoreError> for Enough {
    fn from(error: crate::store::StoreError) -> Self {
        Enough::Failed(error.into())
    }
}

impl Out {
    /// An output of `encoder`'s rows, at most `limit` of them, and the chunks it sends.
    pub(super) fn new(encoder: Encoder, limit: usize) -> (Out, Chunks) {
        let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let out = Out {
            encoder,
            sender,
            limit,
        };
        (out, receiver)
    }

    /// Runs the view on one resource and sends its rows.
    fn rows_of(&mut self, view: &View, resource: &Value) -> Result<(), Enough> {
        for row in view.rows(resource).map_err(FhirError::from)? {
            if self.encoder.rows() >= self.limit {
                return Err(Enough::Limit);
            }
            self.encoder.row(&row)?;
            self.send_full()?;
        }
        Ok(())
    }

    /// Sends the rows of a record batch.
    pub(super) fn batch(&mut self, batch: &fhirlake_analytics::RecordBatch) -> Result<(), Enough> {
        self.encoder.batch(batch)?;
        self.send_full()
    }

    /// Sends what is encoded once it makes a chunk.
    fn send_full(&mut self) -> Result<(), Enough> {
        if self.encoder.pending() >= CHUNK {
            let chunk = self.encoder.take();
            self.sender
                .blocking_send(Ok(chunk))
                .map_err(|_| Enough::Gone)?;
        }
        Ok(())
    }

    /// Ends the run: the last chunk, or the error.
    pub(super) fn end(self, made: Result<(), Enough>) {
        let last = match made {
            Ok(()) | Err(Enough::Limit) => self.encoder.finish(),
            Err(Enough::Gone) => return,
            Err(Enough::Failed(error)) => Err(error),
        };
        // The client may be gone: nothing to do then.
        let _ = self.sender.blocking_send(last);
    }
}

/// Runs the view on the stored resources `request` selects, from one snapshot.
fn rows_of_store(
    store: &Store,
    engine: &Engine,
    request: &Request,
    view: &View,
    out: &mut Out,
) -> Result<(), Enough> {
    let snapshot = store.snapshot(request.snapshot.seq)?;
    crate::jobs::views::resources(&snapshot, engine, request, &view.resource, |resource| {
        out.rows_of(view, resource)
    })
}
