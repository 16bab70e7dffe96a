//! `$viewdefinition-export` (SQL on FHIR v2) as a job: each view of the request written to one
//! file of the job's sink (the data directory, or `--export-store`) in the format asked for
//! (`parquet` by default; `csv`, `ndjson`, `json`), and the result the status answers once it
//! is complete ([`result`]).
//!
//! **One snapshot.** The kick-off names the writer's position (seq `S`); the job opens one store
//! snapshot at `S` and runs every view of the request on it, so all the files show the store
//! at one moment, however long the job runs and whatever is written meanwhile, as a bulk
//! export does (the job's record keeps `S`, so retention keeps the changes after it, and a
//! resumed job reads the same snapshot).
//!
//! **What is selected.** Each view's resources go through the export's selection
//! ([`super::resources`]): `_since`, `patient`, `group`, and the view of the token that started
//! the job (a `patient/` token's compartment).
//!
//! **Files.** One file a view, `{name}.{format}`, written as its rows are made (memory: one
//! batch of resources, and one Parquet row group); a file is finished (durable) before the
//! checkpoint that names it, and a resumed job writes the views not yet named again. A view
//! that fails on a resource fails the job with its 400, located.

use super::resources;
use crate::fhir::FhirError;
use crate::fhir::datetime::format_instant;
use crate::jobs::export::Request;
use crate::jobs::{Content, Context, Job, Output, Stop};
use crate::views::View;
use crate::views::output::{Encoder, Format};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::Write;

/// How many encoded bytes wait before they go to the file.
const FLUSH: usize = 1 << 20;

/// One view of an export: the name of its output and its definition, as checked at kick-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedView {
    pub name: String,
    pub definition: Value,
}

/// A `$viewdefinition-export`'s request, as kept in its job's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewExport {
    pub views: Vec<NamedView>,
    /// The format's short name (`parquet`, `csv`, `ndjson`, `json`).
    pub format: String,
    #[serde(default)]
    pub client_tracking_id: Option<String>,
    /// What is selected: the population, `_since`, the owner's view, and the snapshot (its
    /// `types` are left empty: each view reads its own).
    pub select: Request,
}

/// The request of a view export's job record.
pub fn request_of(job: &Job) -> Result<ViewExport, FhirError> {
    serde_json::from_value(job.request.clone()).map_err(|error| {
        FhirError::internal(format!("the view export's request cannot be read: {error}"))
    })
}

/// The format of a request's files.
fn format_of(request: &ViewExport) -> Result<Format, FhirError> {
    Format::parse(&request.format)
        .ok_or_else(|| FhirError::internal(format!("the format {} is unknown", request.format)))
}

/// The name of the file of the view named `name`.
fn file_name(name: &str, format: Format) -> String {
    format!("{name}.{}", format.extension())
}

/// Runs a view export: every view not yet written, in order, from one snapshot.
pub fn run(context: &Context) -> Result<(), Stop> {
    let job = context.job();
    let request = request_of(&job)?;
    let format = format_of(&request)?;
    let snapshot = context.store.snapshot(request.select.snapshot.seq)?;
    let mut done = job.done;
    for named in &request.views {
        let name = file_name(&named.name, format);
        if job.outputs.iter().any(|output| output.name == name) {
            continue; // written before a restart
        }
        context.check()?;
        let view = View::parse(&named.definition).map_err(FhirError::from)?;
        context.progress(done, format!("view {}", named.name));
        let mut file = context.sink.create_plain(&job.id, &name)?;
        let mut encoder = Encoder::new(format, &view.columns, true)?;
        let mut written = 0_u64;
        resources(
            &snapshot,
            context.search,
            &request.select,
            &view.resource,
            |resource| {
                context.check()?;
                for row in view.rows(resource).map_err(FhirError::from)? {
                    encoder.row(&row)?;
                }
                if encoder.pending() >= FLUSH {
                    file.write_all(&encoder.take())?;
                }
                written += 1;
                if written.is_multiple_of(10_000) {
                    context.progress(done + written, format!("view {}", named.name));
                }
                Ok::<(), Stop>(())
            },
        )?;
        let rows = encoder.rows() as u64;
        file.write_all(&encoder.take())?;
        file.write_all(&encoder.finish()?)?;
        let bytes = file.finish()?;
        done += written;
        context.checkpoint(|job| {
            job.outputs.push(Output {
                content: Content::Output,
                resource_type: view.resource.clone(),
                name: name.clone(),
                count: rows,
                bytes,
            });
            job.done = done;
        })?;
    }
    Ok(())
}

/// The result of a completed view export `job` served under `base` (the FHIR base URL): the
/// guide's output Parameters, with fhirlake's file URLs (which need the token).
pub fn result(job: &Job, base: &str) -> Result<Value, FhirError> {
    let request = request_of(job)?;
    let format = format_of(&request)?;
    let mut parameters = vec![json!({"name": "exportId", "valueString": job.id})];
    if let Some(tracking) = &request.client_tracking_id {
        parameters.push(json!({"name": "clientTrackingId", "valueString": tracking}));
    }
    parameters.push(json!({"name": "status", "valueCode": "completed"}));
    parameters.push(json!({"name": "_format", "valueCode": request.format}));
    if let Some(started) = job.started {
        parameters
            .push(json!({"name": "exportStartTime", "valueInstant": format_instant(started)}));
    }
    if let Some(finished) = job.finished {
        parameters.push(json!({"name": "exportEndTime", "valueInstant": format_instant(finished)}));
    }
    for named in &request.views {
        let name = file_name(&named.name, format);
        let Some(output) = job.outputs.iter().find(|output| output.name == name) else {
            continue;
        };
        parameters.push(json!({"name": "output", "part": [
            {"name": "name", "valueString": named.name},
            {"name": "location", "valueUri": crate::jobs::file_url(base, &job.id, &output.name)},
        ]}));
    }
    Ok(json!({"resourceType": "Parameters", "parameter": parameters}))
}

/// The media type of a file of a view export.
pub fn media_type(name: &str) -> &'static str {
    let extension = name.rsplit('.').next().unwrap_or_default();
    Format::parse(extension).map_or("application/octet-stream", Format::media_type)
}
