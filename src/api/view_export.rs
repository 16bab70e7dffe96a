//! `$viewdefinition-export` of SQL on FHIR v2, the kick-off: `POST [base]/$viewdefinition-export`,
//! `[base]/ViewDefinition/$viewdefinition-export` (with one or more `view` parameters, each a
//! `viewReference` or an inline `viewResource`, and an optional output `name`) and
//! `[base]/ViewDefinition/[id]/$viewdefinition-export` (the stored view), with
//! `Prefer: respond-async`. Other parameters: `_format` (`parquet`, the default, `csv`,
//! `ndjson`, `json`), `clientTrackingId`, `patient` (repeated), `group` (one), `_since`;
//! `source` is 400 `not-supported` (fhirlake exports its own store).
//!
//! Every view is checked here (400, located), the client must read each view's type (403), and
//! the export runs as a job (`jobs::views::view_export`) on the machinery of bulk `$export`:
//! 202 with the status URL in `Content-Location`, polled (`GET`, 202 while it runs), cancelled
//! (`DELETE`), and once complete answered 200 with the guide's result Parameters (output
//! names and file URLs) at the status URL itself, rather than through a 303 to another URL;
//! the files are downloaded with the token, as bulk export's (`api::jobs`).

use super::export::preferences;
use super::http::{base_url, read_body};
use super::views::{referenced_id, stored_definition};
use super::{ApiResult, AppState};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::fhir::parameters::{invalid, named};
use crate::fhir::resource::check_id;
use crate::fhir::{FhirError, IssueCode};
use crate::jobs::export::request::{check_population, instant};
use crate::jobs::export::{Level, Snapshot};
use crate::jobs::views::view_export::{NamedView, ViewExport};
use crate::jobs::{Kind, Owner};
use crate::views::View;
use crate::views::output::Format;
use actix_web::{HttpRequest, web};
use serde_json::Value;

type State = web::Data<AppState>;

/// The most views one export may have.
pub const MAX_VIEWS: usize = 64;

/// `POST [base]/$viewdefinition-export` and `[base]/ViewDefinition/$viewdefinition-export`
pub async fn kick_off_type(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
) -> ApiResult {
    kick_off(req, state, access, payload, None).await
}

/// `POST [base]/ViewDefinition/[id]/$viewdefinition-export`
pub async fn kick_off_instance(
    req: HttpRequest,
    state: State,
    access: Access,
    path: web::Path<String>,
    payload: web::Payload,
) -> ApiResult {
    let id = path.into_inner();
    check_id(&id)?;
    kick_off(req, state, access, payload, Some(id)).await
}

/// What a kick-off asks for.
#[derive(Default)]
struct Asked {
    /// Each view: its output name, if given, and its definition.
    views: Vec<(Option<String>, Value)>,
    format: Option<String>,
    tracking: Option<String>,
    patients: Vec<String>,
    group: Option<String>,
    since: Option<i64>,
}

impl Asked {
    fn read(&mut self, state: &AppState, access: &Access, body: &Value) -> Result<(), FhirError> {
        for (at, name, parameter) in named(body, "$viewdefinition-export")? {
            if name == "view" {
                self.view(state, access, parameter, &at)?;
                continue;
            }
            let value = crate::fhir::parameters::value_text(parameter)
                .ok_or_else(|| invalid(name, "needs a value").at(&at))?;
            let once = |taken: bool| match taken {
                true => Err(invalid(name, "given more than once").at(&at)),
                false => Ok(()),
            };
            match name {
                "_format" => {
                    once(self.format.is_some())?;
                    self.format = Some(value);
                }
                "clientTrackingId" => {
                    once(self.tracking.is_some())?;
                    self.tracking = Some(value);
                }
                "patient" => {
                    let id = value.strip_prefix("Patient/").unwrap_or(&value);
                    check_id(id).map_err(|e| e.at(&at))?;
                    self.patients.push(id.to_string());
                }
                "group" => {
                    if self.group.is_some() {
                        return Err(FhirError::bad_request(
                            IssueCode::NotSupported,
                            "group: fhirlake exports one Group's members at a time",
                        )
                        .at(&at));
                    }
                    let id = value.strip_prefix("Group/").unwrap_or(&value);
                    check_id(id).map_err(|e| e.at(&at))?;
                    self.group = Some(id.to_string());
                }
                "_since" => {
                    once(self.since.is_some())?;
                    self.since = Some(instant(&value).map_err(|why| invalid(name, why).at(&at))?);
                }
                "source" => {
                    return Err(FhirError::bad_request(
                        IssueCode::NotSupported,
                        "source: fhirlake exports the views of its own store only",
                    )
                    .at(&at));
                }
                other => {
                    return Err(FhirError::bad_request(
                        IssueCode::NotSupported,
                        format!("{other}: not a parameter of $viewdefinition-export"),
                    )
                    .at(&at));
                }
            }
        }
        Ok(())
    }

    /// One `view` parameter: its parts `name`, `viewReference` or `viewResource`.
    fn view(
        &mut self,
        state: &AppState,
        access: &Access,
        parameter: &Value,
        at: &str,
    ) -> Result<(), FhirError> {
        let (mut name, mut reference, mut resource) = (None, None, None);
        for (n, part) in parameter["part"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{at}.part[{n}]");
            match part["name"].as_str() {
                Some("name") => name = crate::fhir::parameters::value_text(part),
                Some("viewReference") => reference = crate::fhir::parameters::value_text(part),
                Some("viewResource") => resource = part.get("resource").cloned(),
                _ => {
                    return Err(invalid(
                        &at,
                        "a view's parts are name, viewReference, viewResource",
                    ));
                }
            }
        }
        let definition = match (reference, resource) {
            (Some(reference), None) => {
                stored_definition(state, access, &referenced_id(state, &reference)?)?
            }
            (None, Some(resource)) => resource,
            _ => {
                return Err(invalid(
                    at,
                    "a view needs a viewReference or a viewResource",
                ));
            }
        };
        self.views.push((name, definition));
        Ok(())
    }
}

async fn kick_off(
    req: HttpRequest,
    state: State,
    access: Access,
    payload: web::Payload,
    instance: Option<String>,
) -> ApiResult {
    if !preferences(&req).iter().any(|p| p == "respond-async") {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            "$viewdefinition-export runs asynchronously: send Prefer: respond-async",
        )
        .into());
    }
    let mut asked = Asked::default();
    let body = read_body(&req, payload, &state).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let parameters: Value = crate::fhir::resource::parse_json(&body)?;
        asked.read(&state, &access, &parameters)?;
    }
    if let Some(id) = &instance {
        if !asked.views.is_empty() {
            return Err(
                invalid("view", "an instance's export exports the stored view only").into(),
            );
        }
        asked
            .views
            .push((None, stored_definition(&state, &access, id)?));
    }
    if asked.views.is_empty() {
        return Err(invalid("view", "$viewdefinition-export needs at least one view").into());
    }
    if asked.views.len() > MAX_VIEWS {
        return Err(invalid("view", format!("at most {MAX_VIEWS} views at a time")).into());
    }
    let format = asked.format.as_deref().unwrap_or("parquet");
    let format = Format::parse(format).ok_or_else(|| {
        FhirError::bad_request(
            IssueCode::NotSupported,
            format!("_format={format}: the formats are parquet, csv, ndjson and json"),
        )
    })?;
    let mut views = Vec::new();
    for (n, (name, definition)) in asked.views.into_iter().enumerate() {
        let view = View::parse(&definition).map_err(FhirError::from)?;
        access.require(Permission::Read, Some(&view.resource))?;
        let name = name
            .or_else(|| definition["name"].as_str().map(String::from))
            .unwrap_or_else(|| format!("view_{n}"));
        let sound = name.len() <= 100
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !sound {
            return Err(invalid(
                "view.name",
                format!("'{name}' is not a name of letters, digits and _ starting with a letter"),
            )
            .into());
        }
        if views.iter().any(|v: &NamedView| v.name == name) {
            return Err(invalid("view.name", format!("two views are named '{name}'")).into());
        }
        views.push(NamedView { name, definition });
    }
    let level = match &asked.group {
        Some(id) => Level::Group { id: id.clone() },
        None if !asked.patients.is_empty() => Level::Patient,
        None => Level::System,
    };
    let mut select = crate::jobs::views::everything(
        Vec::new(),
        access.view(Permission::Read),
        Snapshot { seq: 0, time: 0 },
    );
    select.level = level;
    select.since = asked.since;
    select.patients = asked.patients;
    select.url = format!(
        "{}{}",
        base_url(&req, &state),
        req.path().trim_start_matches("/fhir")
    );
    check_population(&state.store, &state.search, &access, &select)?;
    // The writer's position now: every view of the export reads the store as it is here.
    let position = state.store.keep_books(Vec::new()).await?;
    select.snapshot = Snapshot {
        seq: position.seq,
        time: position.time,
    };
    let request = ViewExport {
        views,
        format: format.extension().to_string(),
        client_tracking_id: asked.tracking,
        select,
    };
    let request = serde_json::to_value(&request).expect("a request serializes");
    let submitted = state
        .jobs
        .submit(
            Kind::ViewExport,
            Owner::of(&access),
            request,
            Some(position.seq),
        )
        .await;
    let id = match submitted {
        Ok(id) => id,
        Err(error) if error.status == 429 => {
            let wait = state.jobs.settings().poll_interval;
            return Ok(super::jobs::too_many(&error, wait));
        }
        Err(error) => return Err(error.into()),
    };
    Ok(super::jobs::accepted(
        &base_url(&req, &state),
        &id,
        "view export",
    ))
}
