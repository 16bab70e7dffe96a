//! The terminology operations, each by GET (query parameters) and POST (a Parameters body):
//! `CodeSystem/$lookup`, `CodeSystem/$subsumes`, `ValueSet/$validate-code` and
//! `ValueSet/$expand`, answered from [`crate::terminology`].
//!
//! Answers: a Parameters resource (an expanded ValueSet for `$expand`). Errors are
//! OperationOutcomes: 400 for missing or malformed parameters, 404 for an unknown code system,
//! value set or code, 422 when the answer cannot be decided from the content held (a code
//! missing from a subset, a hierarchy not loaded: "not-supported") or is too large
//! ("too-costly"). `version`, `displayLanguage`, `property`, `date` and the like are accepted
//! and ignored: one version of each system is held.

use super::http::{FHIR_JSON, negotiate, query_pairs, read_body};
use super::{ApiResult, AppState};
use crate::fhir::{FhirError, IssueCode};
use crate::terminology::{
    CodeCheck, Concept, ExpandRequest, Expansion, Issue, IssueKind, Membership, PropertyValue,
    SNOMED, Severity, Terminology, TerminologyError, ValueSet, Verdict,
};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::sync::Arc;

type State = web::Data<AppState>;

/// The operations by type, for the CapabilityStatement: (type, name, definition).
pub const OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "CodeSystem",
        "lookup",
        "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup",
    ),
    (
        "CodeSystem",
        "subsumes",
        "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes",
    ),
    (
        "ValueSet",
        "validate-code",
        "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code",
    ),
    (
        "ValueSet",
        "expand",
        "http://hl7.org/fhir/OperationDefinition/ValueSet-expand",
    ),
];

/// The routes, inside the `/fhir` scope (before `/{type}/{id}`, which would take `$lookup`
/// for an id).
pub fn routes(cfg: &mut web::ServiceConfig) {
    for (resource_type, name, _) in OPERATIONS {
        let (get, post) = match *name {
            "lookup" => (web::get().to(lookup), web::post().to(lookup)),
            "subsumes" => (web::get().to(subsumes), web::post().to(subsumes)),
            "validate-code" => (web::get().to(validate_code), web::post().to(validate_code)),
            _ => (web::get().to(expand), web::post().to(expand)),
        };
        cfg.service(
            super::resource(&format!("/{resource_type}/${name}"))
                .route(get)
                .route(post),
        );
    }
}

/// Runs `answer` on the terminology: on this worker when the shipped content is loaded (a
/// question takes microseconds), else on the blocking pool while it loads.
async fn answer<T: Send + 'static>(
    state: &State,
    answer: impl FnOnce(&Terminology) -> T + Send + 'static,
) -> Result<T, FhirError> {
    let terminology = Arc::clone(&state.terminology);
    if Terminology::is_loaded() {
        return Ok(answer(&terminology));
    }
    web::block(move || answer(&terminology))
        .await
        .map_err(|_| FhirError::internal("the terminology question failed"))
}

/// An operation's input parameters: the query's (GET) or a Parameters body's (POST), by
/// name; primitive values as JSON strings, complex ones (Coding, ValueSet) as given.
struct Input(Vec<(String, Value)>);

impl Input {
    async fn read(
        req: &HttpRequest,
        payload: web::Payload,
        state: &State,
    ) -> Result<Input, FhirError> {
        negotiate(req)?;
        let mut input: Vec<(String, Value)> = query_pairs(req)
            .into_iter()
            .filter(|(name, _)| name != "_format")
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        if req.method() == actix_web::http::Method::POST {
            let body = read_body(req, payload, state).await?;
            input.extend(parameters(&body)?);
        }
        Ok(Input(input))
    }

    /// The one value of `name`, if given; 400 when given twice.
    fn get(&self, name: &str) -> Result<Option<&Value>, FhirError> {
        let mut values = self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
        let first = values.next();
        if values.next().is_some() {
            return Err(bad(format!("the parameter {name} is given more than once")));
        }
        Ok(first)
    }

    fn string(&self, name: &str) -> Result<Option<&str>, FhirError> {
        match self.get(name)? {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(bad(format!(
                "the parameter {name} must be a primitive value"
            ))),
        }
    }

    fn coding(&self, name: &str) -> Result<Option<Coding>, FhirError> {
        self.get(name)?
            .map(|value| Coding::from_json(name, value))
            .transpose()
    }

    /// A non-negative integer parameter.
    fn number(&self, name: &str) -> Result<Option<usize>, FhirError> {
        self.string(name)?
            .map(|text| {
                text.trim().parse().map_err(|_| {
                    bad(format!(
                        "{name} must be a non-negative integer, not \"{text}\""
                    ))
                })
            })
            .transpose()
    }

    fn value_set(&self) -> Result<Option<ValueSet>, FhirError> {
        let Some(value) = self.get("valueSet")? else {
            return Ok(None);
        };
        if value.get("resourceType").and_then(Value::as_str) != Some("ValueSet") {
            return Err(bad("the parameter valueSet must be a ValueSet resource"));
        }
        serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| bad(format!("the valueSet is not a usable ValueSet: {e}")))
    }
}

fn bad(diagnostics: impl Into<String>) -> FhirError {
    FhirError::bad_request(IssueCode::Invalid, diagnostics)
}

/// The parameters of a Parameters body: (name, value) with each `value[x]` or `resource`.
fn parameters(body: &[u8]) -> Result<Vec<(String, Value)>, FhirError> {
    let json = crate::fhir::resource::parse_json(body)?;
    if json.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("the body must be a Parameters resource"));
    }
    let mut out = Vec::new();
    let items = match json.get("parameter") {
        None => return Ok(out),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(bad("Parameters.parameter must be an array").at("Parameters.parameter"));
        }
    };
    for (index, item) in items.iter().enumerate() {
        let at = format!("Parameters.parameter[{index}]");
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a parameter has no name").at(&at))?;
        let value = item.as_object().and_then(|fields| {
            fields
                .iter()
                .find(|(key, _)| key.starts_with("value") || *key == "resource")
                .map(|(_, value)| match value {
                    Value::Number(n) => Value::String(n.to_string()),
                    Value::Bool(b) => Value::String(b.to_string()),
                    other => other.clone(),
                })
        });
        let value =
            value.ok_or_else(|| bad(format!("the parameter {name} has no value")).at(&at))?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// A code to look at, from `system` + `code` (+ `display`) or a Coding.
#[derive(Debug, Clone)]
struct Coding {
    system: String,
    code: String,
    display: Option<String>,
}

impl Coding {
    fn from_json(name: &str, value: &Value) -> Result<Coding, FhirError> {
        let field = |key: &str| value.get(key).and_then(Value::as_str).map(String::from);
        match (field("system"), field("code")) {
            (Some(system), Some(code)) => Ok(Coding {
                system,
                code,
                display: field("display"),
            }),
            _ => Err(bad(format!("the Coding {name} needs a system and a code"))),
        }
    }

    /// From `coding_name`, or the `system_name`/`code_name` pair; None when none is given.
    fn given(
        input: &Input,
        coding_name: &str,
        code_name: &str,
        system: Option<&str>,
    ) -> Result<Option<Coding>, FhirError> {
        match (input.coding(coding_name)?, input.string(code_name)?) {
            (Some(_), Some(_)) => Err(bad(format!("give {coding_name} or {code_name}, not both"))),
            (Some(coding), None) => match system {
                Some(system) if system != coding.system => Err(bad(format!(
                    "the system of {coding_name} is not the system {system}"
                ))),
                _ => Ok(Some(coding)),
            },
            (None, Some(code)) => {
                let system = system.ok_or_else(|| bad(format!("{code_name} needs a system")))?;
                Ok(Some(Coding {
                    system: system.into(),
                    code: code.into(),
                    display: input.string("display")?.map(String::from),
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

/// The HTTP error of a terminology error.
fn error(error: TerminologyError) -> FhirError {
    match error {
        TerminologyError::UnknownSystem(_)
        | TerminologyError::UnknownValueSet(_)
        | TerminologyError::UnknownCode(_) => FhirError::not_found(error.to_string()),
        TerminologyError::Undecidable(_) => {
            FhirError::new(422, IssueCode::NotSupported, error.to_string())
        }
        TerminologyError::TooCostly(_) => {
            FhirError::new(422, IssueCode::TooCostly, error.to_string())
        }
        TerminologyError::Storage(_) => {
            tracing::error!(%error, "terminology storage");
            FhirError::internal(error.to_string())
        }
    }
}

fn respond(body: Value) -> ApiResult {
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string()))
}

/// `[{"name": ..., "value[x]": ...}]` to a Parameters resource.
fn parameters_resource(parameter: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": parameter})
}

fn param(name: &str, kind: &str, value: impl Into<Value>) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), name.into());
    out.insert(kind.into(), value.into());
    out.into()
}

fn property_param(code: &str, value: &PropertyValue) -> Value {
    let (kind, value): (&str, Value) = match value {
        PropertyValue::Code(code) => ("valueCode", code.as_str().into()),
        PropertyValue::String(text) => ("valueString", text.as_str().into()),
        PropertyValue::Boolean(flag) => ("valueBoolean", (*flag).into()),
    };
    let part = [
        param("code", "valueCode", code),
        param("value", kind, value),
    ];
    json!({"name": "property", "part": part})
}

/// `CodeSystem/$lookup`: a concept's display, designations and properties (its parents and
/// children as `parent` and `child`).
async fn lookup(req: HttpRequest, payload: web::Payload, state: State) -> ApiResult {
    let input = Input::read(&req, payload, &state).await?;
    let coding = Coding::given(&input, "coding", "code", input.string("system")?)?
        .ok_or_else(|| bad("$lookup needs a system and a code, or a coding"))?;
    let body = answer(
        &state,
        move |terminology| -> Result<Value, TerminologyError> {
            let info = terminology
                .system(&coding.system)
                .ok_or_else(|| TerminologyError::UnknownSystem(coding.system.clone()))?;
            let concept = terminology
                .lookup(&coding.system, &coding.code)?
                .ok_or_else(|| {
                    TerminologyError::UnknownCode(
                        terminology
                            .validate_code(&coding.system, &coding.code, None)
                            .map(|check| first_message(&check))
                            .unwrap_or_default(),
                    )
                })?;
            let children = terminology.children(&coding.system, &concept.code)?;
            let mut out = vec![param("name", "valueString", info.label())];
            if let Some(version) = &info.version {
                out.push(param("version", "valueString", version.as_str()));
            }
            out.extend(lookup_parameters(&coding.system, &concept, &children));
            Ok(parameters_resource(out))
        },
    )
    .await?
    .map_err(error)?;
    respond(body)
}

/// `display`, `designation`s and `property`s of a concept, as `$lookup` answers them.
fn lookup_parameters(system: &str, concept: &Concept, children: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(display) = &concept.display {
        out.push(param("display", "valueString", display.as_str()));
    }
    for designation in &concept.designations {
        let mut part = Vec::new();
        if let Some(language) = &designation.language {
            part.push(param("language", "valueCode", language.as_str()));
        }
        if let Some(code) = &designation.use_code {
            // SNOMED CT's designation uses (FSN, synonym) are its own concepts.
            let coding = if system == SNOMED {
                json!({"system": SNOMED, "code": code})
            } else {
                json!({"code": code})
            };
            part.push(param("use", "valueCoding", coding));
        }
        part.push(param("value", "valueString", designation.value.as_str()));
        out.push(json!({"name": "designation", "part": part}));
    }
    for parent in &concept.parents {
        out.push(property_param(
            "parent",
            &PropertyValue::Code(parent.clone()),
        ));
    }
    for child in children {
        out.push(property_param("child", &PropertyValue::Code(child.clone())));
    }
    for property in &concept.properties {
        out.push(property_param(&property.code, &property.value));
    }
    out
}

fn first_message(check: &CodeCheck) -> String {
    check
        .issues
        .first()
        .map(|issue| issue.message.clone())
        .unwrap_or_default()
}

/// `CodeSystem/$subsumes`: how code A relates to code B by is-a.
async fn subsumes(req: HttpRequest, payload: web::Payload, state: State) -> ApiResult {
    let input = Input::read(&req, payload, &state).await?;
    let system = input.string("system")?;
    let a = Coding::given(&input, "codingA", "codeA", system)?;
    let b = Coding::given(&input, "codingB", "codeB", system)?;
    let (Some(a), Some(b)) = (a, b) else {
        return Err(
            bad("$subsumes needs codeA and codeB with a system, or codingA and codingB").into(),
        );
    };
    if a.system != b.system {
        return Err(bad("codingA and codingB are of different systems").into());
    }
    let outcome = answer(&state, move |terminology| {
        terminology.subsumes(&a.system, &a.code, &b.code)
    })
    .await?
    .map_err(error)?;
    respond(parameters_resource(vec![param(
        "outcome",
        "valueCode",
        outcome.as_str(),
    )]))
}

/// What `$validate-code` concluded about one coding.
enum Judgement {
    /// Valid (in the value set, when one is given), with the concept's display and warnings.
    Valid {
        display: Option<String>,
        issues: Vec<Issue>,
    },
    /// Invalid, and why.
    Invalid(Vec<Issue>),
    /// Why it cannot be decided.
    Undecided(String),
    /// The code system is unknown (no value set given).
    UnknownSystem(String),
}

/// A coding checked in its code system alone.
fn judge_code(check: CodeCheck, coding: &Coding) -> Judgement {
    match check.verdict {
        Verdict::Valid => Judgement::Valid {
            display: check.concept.as_ref().and_then(|c| c.display.clone()),
            issues: check.issues,
        },
        Verdict::Invalid => Judgement::Invalid(check.issues),
        Verdict::NotInSubset => Judgement::Undecided(first_message(&check)),
        Verdict::UnknownSystem => Judgement::UnknownSystem(coding.system.clone()),
    }
}

/// `ValueSet/$validate-code`: whether a code (a coding, or any coding of a CodeableConcept)
/// is in a value set (`url` or `valueSet`), or, with neither, a code of its system.
async fn validate_code(req: HttpRequest, payload: web::Payload, state: State) -> ApiResult {
    let input = Input::read(&req, payload, &state).await?;
    let mut codings: Vec<Coding> =
        Coding::given(&input, "coding", "code", input.string("system")?)?
            .into_iter()
            .collect();
    if let Some(concept) = input.get("codeableConcept")? {
        if !codings.is_empty() {
            return Err(bad("give code, coding or codeableConcept, only one").into());
        }
        for coding in concept
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            codings.push(Coding::from_json("codeableConcept.coding", coding)?);
        }
    }
    if codings.is_empty() {
        return Err(
            bad("$validate-code needs a system and a code, a coding or a codeableConcept").into(),
        );
    }
    let url = input.string("url")?.map(String::from);
    let inline = input.value_set()?;
    if url.is_some() && inline.is_some() {
        return Err(bad("give url or valueSet, not both").into());
    }
    let judgements = answer(
        &state,
        move |terminology| -> Result<Vec<Judgement>, TerminologyError> {
            let value_set = match (&url, &inline) {
                (Some(url), _) => Some(
                    terminology
                        .value_set(url)
                        .ok_or_else(|| TerminologyError::UnknownValueSet(url.clone()))?,
                ),
                (None, inline) => inline.as_ref(),
            };
            codings
                .iter()
                .map(|coding| {
                    let display = coding.display.as_deref();
                    let Some(value_set) = value_set else {
                        let check =
                            terminology.validate_code(&coding.system, &coding.code, display)?;
                        return Ok(judge_code(check, coding));
                    };
                    let check = terminology.check_in_value_set(
                        value_set,
                        &coding.system,
                        &coding.code,
                        display,
                    )?;
                    Ok(match check.membership {
                        Membership::Member => judge_code(check.code, coding),
                        Membership::Undecided(why) => Judgement::Undecided(why),
                        Membership::NotMember => {
                            let mut why = vec![Issue {
                                severity: Severity::Error,
                                kind: IssueKind::NotInValueSet,
                                message: format!(
                                    "{} of {} is not in the value set {}",
                                    coding.code, coding.system, value_set.url
                                ),
                            }];
                            if check.code.verdict == Verdict::Invalid {
                                why.extend(check.code.issues);
                            }
                            Judgement::Invalid(why)
                        }
                    })
                })
                .collect()
        },
    )
    .await?
    .map_err(error)?;
    respond(validate_answer(judgements)?)
}

/// The answer for the judgements of a request's codings: valid if one is valid, else
/// undecided (422) if one is, else unknown system (404) if one is, else invalid. The issues
/// are in `message` (their texts) and in `issues` (an OperationOutcome, as later FHIR versions
/// answer).
fn validate_answer(judgements: Vec<Judgement>) -> Result<Value, FhirError> {
    let mut undecided = None;
    let mut unknown = None;
    let mut reasons = Vec::new();
    for judgement in judgements {
        match judgement {
            Judgement::Valid { display, issues } => {
                let mut out = vec![param("result", "valueBoolean", true)];
                out.extend(issue_parameters(&issues));
                if let Some(display) = display {
                    out.push(param("display", "valueString", display));
                }
                return Ok(parameters_resource(out));
            }
            Judgement::Undecided(why) => {
                undecided.get_or_insert(why);
            }
            Judgement::UnknownSystem(system) => {
                unknown.get_or_insert(system);
            }
            Judgement::Invalid(why) => reasons.extend(why),
        }
    }
    if let Some(why) = undecided {
        return Err(error(TerminologyError::Undecidable(why)));
    }
    if let Some(system) = unknown {
        return Err(error(TerminologyError::UnknownSystem(system)));
    }
    let mut out = vec![param("result", "valueBoolean", false)];
    out.extend(issue_parameters(&reasons));
    Ok(parameters_resource(out))
}

/// `message` (the issues' texts) and `issues` (an OperationOutcome), when there are issues.
fn issue_parameters(issues: &[Issue]) -> Vec<Value> {
    if issues.is_empty() {
        return Vec::new();
    }
    let message: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
    let outcome: Vec<Value> = issues
        .iter()
        .map(|i| {
            json!({"severity": i.severity.as_str(), "code": i.kind.fhir_code(),
                "diagnostics": i.message})
        })
        .collect();
    vec![
        param("message", "valueString", message.join("; ")),
        json!({"name": "issues",
            "resource": {"resourceType": "OperationOutcome", "issue": outcome}}),
    ]
}

/// `ValueSet/$expand`: the codes of a value set (`url` or `valueSet`), filtered by `filter`,
/// a page of at most `count` (at most `--max-count`, its default) from `offset`.
async fn expand(req: HttpRequest, payload: web::Payload, state: State) -> ApiResult {
    let input = Input::read(&req, payload, &state).await?;
    let url = input.string("url")?.map(String::from);
    let inline = input.value_set()?;
    let value_set = match (url, inline) {
        (Some(_), Some(_)) => return Err(bad("give url or valueSet, not both").into()),
        (None, None) => {
            return Err(bad("$expand needs the url of a value set, or a valueSet").into());
        }
        (Some(url), None) => Err(url),
        (None, Some(inline)) => Ok(inline),
    };
    let filter = input.string("filter")?.map(String::from);
    let offset = input.number("offset")?.unwrap_or(0);
    let max = state.config.max_count;
    let count = input.number("count")?.unwrap_or(max).min(max);
    let request = ExpandRequest {
        filter,
        offset,
        count: Some(count),
    };
    let terminology = Arc::clone(&state.terminology);
    let body = web::block(move || -> Result<Value, TerminologyError> {
        let value_set = match &value_set {
            Ok(inline) => inline,
            Err(url) => terminology
                .value_set(url)
                .ok_or_else(|| TerminologyError::UnknownValueSet(url.clone()))?,
        };
        let expansion = terminology.expand_value_set(value_set, &request)?;
        Ok(expanded(&terminology, value_set, &expansion, &request))
    })
    .await
    .map_err(|_| FhirError::internal("the expansion failed"))?
    .map_err(error)?;
    respond(body)
}

/// The ValueSet resource that answers `$expand`: the value set's identity, its copyright (or
/// the licence of the shipped SNOMED CT subset its codes come from) and the expansion page.
fn expanded(
    terminology: &Terminology,
    value_set: &ValueSet,
    expansion: &Expansion,
    request: &ExpandRequest,
) -> Value {
    let mut parameter = Vec::new();
    if let Some(filter) = &request.filter {
        parameter.push(param("filter", "valueString", filter.as_str()));
    }
    parameter.push(param("offset", "valueInteger", request.offset));
    if let Some(count) = request.count {
        parameter.push(param("count", "valueInteger", count));
    }
    let contains: Vec<Value> = expansion
        .contains
        .iter()
        .map(|entry| {
            let mut item = json!({"system": entry.system, "code": entry.code});
            if let Some(display) = &entry.display {
                item["display"] = display.as_str().into();
            }
            if entry.inactive {
                item["inactive"] = true.into();
            }
            item
        })
        .collect();
    let mut expansion_json = json!({
        "identifier": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "timestamp": crate::fhir::datetime::format_instant(crate::fhir::datetime::now()),
        "total": expansion.total,
        "offset": expansion.offset,
        "parameter": parameter,
    });
    // R4 has no empty arrays.
    if !contains.is_empty() {
        expansion_json["contains"] = contains.into();
    }
    // Codes of the shipped SNOMED CT subset come with its licence statement, when the
    // value set has none of its own.
    let copyright = value_set.copyright.clone().or_else(|| {
        expansion
            .contains
            .iter()
            .find_map(|entry| terminology.system(&entry.system)?.copyright.clone())
    });
    let mut out = Map::new();
    out.insert("resourceType".into(), "ValueSet".into());
    for (key, value) in [
        ("url", Some(value_set.url.clone()).filter(|u| !u.is_empty())),
        ("version", value_set.version.clone()),
        ("name", value_set.name.clone()),
        ("title", value_set.title.clone()),
        (
            "status",
            value_set.status.clone().or(Some("unknown".into())),
        ),
        ("copyright", copyright),
    ] {
        if let Some(value) = value {
            out.insert(key.into(), value.into());
        }
    }
    out.insert("expansion".into(), expansion_json);
    Value::Object(out)
}
