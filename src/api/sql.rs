//! `GET|POST [base]/$sql`: a read-only SQL query over the stored ViewDefinitions, each a
//! table named by its `name` (`SELECT gender, count(*) FROM patient_demographics GROUP BY
//! gender`), answered in the formats of `$run` (`_format` `json`, `ndjson`, `csv` with
//! `header`, `parquet`; else the `Accept` header). Parameters come from the query and, for a
//! POST, a `Parameters` body: `query` (the SQL, once), `_format`, `header`.
//!
//! fhirlake's own operation rather than the guide's `$sqlquery-run`, which takes its SQL in
//! a `Library` (SQLQuery profile) whose `relatedArtifact`s bind the tables and whose
//! parameters are bound to placeholders: those are not built.
//!
//! The query is planned and run by the analytics crate (`fhirlake_analytics::sql`, Apache
//! DataFusion) on threads of its own, within `--sql-memory` and `--sql-timeout`; the tables'
//! rows are made by the views as the query scans them (`jobs::views`), all from one snapshot
//! of the store, except those of a materialized view (`jobs::views::materialized`), read as
//! the Arrow data kept for it once it holds every change committed before the query; the
//! result is streamed in chunks as `$run`'s rows are.
//!
//! Authorization: reading `ViewDefinition` and the type of every view the query names (403);
//! each table holds the rows of the resources the client may read, so a `patient/` token
//! queries its own compartment's rows only. Every fault of the query (syntax, an unknown table
//! or column, a statement other than a query) is a 400 OperationOutcome located at `query`
//! with the line and column DataFusion reports; past a limit, 400 `too-costly`.

use super::http::{query_pairs, read_body};
use super::views::{Enough, Out, output_format, respond};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::fhir::FhirError;
use crate::fhir::parameters::{invalid, named};
use crate::views::output::Encoder;
use actix_web::http::Method;
use actix_web::{HttpRequest, web};
use serde_json::Value;

type State = web::Data<AppState>;

/// What a `$sql` asks for.
#[derive(Default)]
struct Asked {
    query: Option<String>,
    format: Option<String>,
    header: Option<bool>,
}

impl Asked {
    fn take(&mut self, name: &str, value: String) -> Result<(), FhirError> {
        let slot = match name {
            "query" => &mut self.query,
            "_format" => &mut self.format,
            "header" => {
                if self.header.is_some() {
                    return Err(invalid(name, "given more than once"));
                }
                self.header = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid(name, "is true or false")),
                });
                return Ok(());
            }
            // Other query parameters (`_pretty`, ...) are not the operation's.
            _ => return Ok(()),
        };
        if slot.replace(value).is_some() {
            return Err(invalid(name, "given more than once"));
        }
        Ok(())
    }
}

/// `GET|POST [base]/$sql`
pub async fn sql(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    let mut asked = Asked::default();
    for (name, value) in query_pairs(&req) {
        asked.take(&name, value)?;
    }
    if req.method() == Method::POST {
        let body = read_body(&req, payload, &state).await?;
        if !body.iter().all(u8::is_ascii_whitespace) {
            let parameters: Value = crate::fhir::resource::parse_json(&body)?;
            for (at, name, parameter) in named(&parameters, "$sql")? {
                let value = crate::fhir::parameters::value_text(parameter)
                    .ok_or_else(|| invalid(name, "needs a value").at(&at))?;
                asked.take(name, value)?;
            }
        }
    }
    let format = output_format(asked.format.as_deref(), &req)?;
    let text = asked
        .query
        .filter(|text| !text.trim().is_empty())
        .ok_or_else(|| invalid("query", "$sql needs a query (SQL text)"))?;
    let seq = state.store.committed_seq();
    let planning = state.clone();
    let mut query = tokio::task::spawn_blocking(move || {
        let state = planning;
        crate::jobs::views::query(
            &state.sql,
            &state.store,
            &state.search,
            Some(&state.views),
            &access,
            &text,
            seq,
        )
    })
    .await
    .map_err(|_| FhirError::internal("the query's planning ended without an answer"))??;
    let encoder = Encoder::of_schema(format, query.schema().clone(), asked.header.unwrap_or(true))?;
    let (mut out, chunks) = Out::new(encoder, usize::MAX);
    tokio::task::spawn_blocking(move || {
        let made = std::iter::from_fn(|| query.next_batch()).try_for_each(|batch| {
            let batch = batch.map_err(|e| Enough::Failed(crate::jobs::views::sql_error(e)))?;
            out.batch(&batch)
        });
        out.end(made);
    });
    respond(chunks, format).await
}
