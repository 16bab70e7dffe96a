//! An import's kick-off: the `$import` Parameters ([`parse_import`]) and what the token may
//! write ([`Writable`]).
//!
//! `$import` takes, as HAPI and Pathling do: `inputFormat` (`application/fhir+ndjson`, also
//! `application/ndjson` and `ndjson`), `inputSource` (a URI, kept for the record), one
//! `input` per file with the parts `type` (or Pathling's `resourceType`) and `url`, `mode`
//! (`merge` only: fhirlake never deletes what an import does not name), and `storageDetail`
//! with `type` and `credentialHttpBasic` (`user:password`, sent as HTTP Basic with http(s)
//! inputs; it is kept in the job's record until the job expires). Any other parameter or
//! part is a 400.

use super::{Input, NDJSON};
use crate::auth::Access;
use crate::auth::scope::Permission;
use crate::bulk::input::{self, Sources};
use crate::fhir::{FhirError, IssueCode};
use crate::search::View;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most input files one import names.
pub const MAX_INPUTS: usize = 10_000;

/// The types a job's owner may write: create and update, unconfined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Writable {
    All,
    Types(Vec<String>),
}

impl Writable {
    /// What `access` may import; 403 when nothing (a `patient/` token, a restricted scope).
    pub fn of(access: &Access) -> Result<Writable, FhirError> {
        let unconfined = |permission: Permission| -> Option<Vec<Option<String>>> {
            match access.view(permission) {
                View::All => None,
                View::Only(parts) => Some(
                    parts
                        .into_iter()
                        .filter(|p| p.compartment.is_none() && p.params.is_empty())
                        .map(|p| p.resource_type)
                        .collect(),
                ),
            }
        };
        let (create, update) = (
            unconfined(Permission::Create),
            unconfined(Permission::Update),
        );
        let covers = |types: &Option<Vec<Option<String>>>, t: &Option<String>| match types {
            None => true,
            Some(types) => types.contains(&None) || types.contains(t),
        };
        let writable = if covers(&create, &None) && covers(&update, &None) {
            Writable::All
        } else {
            let mut types: Vec<String> = create
                .iter()
                .flatten()
                .flatten()
                .filter(|t| covers(&update, &Some((*t).clone())))
                .cloned()
                .collect();
            types.sort();
            types.dedup();
            Writable::Types(types)
        };
        if writable == Writable::Types(Vec::new()) {
            return Err(FhirError::forbidden(
                "an import creates and updates resources: it needs create and update rights \
                 on every resource of the types it imports (system/*.cu, or system/Type.cu for \
                 each type); a patient/ token or a restricted scope may not import",
            ));
        }
        Ok(writable)
    }

    /// 403 unless `resource_type` may be written.
    pub fn check(&self, resource_type: &str) -> Result<(), FhirError> {
        match self {
            Writable::Types(types) if !types.iter().any(|t| t == resource_type) => {
                Err(FhirError::forbidden(format!(
                    "the token that started the import may not create and update \
                     {resource_type} resources"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// One parameter of a `Parameters` body, as the kick-offs read it: its name, its value's text
/// (a primitive's, or a reference's `reference`), its value as given, and its parts.
pub struct Parameter<'a> {
    pub name: &'a str,
    pub text: Option<String>,
    pub value: Option<&'a Value>,
    pub parts: Vec<Parameter<'a>>,
    /// Where it is (`Parameters.parameter[2].part[0]`).
    pub at: String,
}

/// The parameters of a `Parameters` resource (already parsed and checked).
pub fn parameters(parameters: &Value) -> Vec<Parameter<'_>> {
    fn read<'a>(list: &'a Value, at: &str, member: &str) -> Vec<Parameter<'a>> {
        list[member]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(n, parameter)| {
                let at = format!("{at}.{member}[{n}]");
                let value = parameter.as_object().and_then(|members| {
                    members
                        .iter()
                        .find(|(key, _)| key.starts_with("value"))
                        .map(|(_, value)| value)
                });
                Parameter {
                    name: parameter["name"].as_str().unwrap_or_default(),
                    text: crate::fhir::parameters::value_text(parameter),
                    value,
                    parts: read(parameter, &at, "part"),
                    at,
                }
            })
            .collect()
    }
    read(parameters, "Parameters", "parameter")
}

/// A 400 about parameter `at`.
pub fn invalid(at: &str, message: impl Into<String>) -> FhirError {
    FhirError::bad_request(IssueCode::Invalid, message).at(at.to_string())
}

/// The text of a parameter that must have one.
pub fn text_of(parameter: &Parameter) -> Result<String, FhirError> {
    parameter.text.clone().ok_or_else(|| {
        invalid(
            &parameter.at,
            format!("parameter {} needs a value", parameter.name),
        )
    })
}

/// Whether `format` names NDJSON.
pub fn is_ndjson(format: &str) -> bool {
    matches!(
        format.trim().to_ascii_lowercase().as_str(),
        NDJSON | "application/ndjson" | "ndjson"
    )
}

/// What an `$import` asks: its inputs (checked against `sources`: scheme, import root,
/// endpoint rules) and the headers for http(s) inputs.
pub struct ImportAsked {
    pub inputs: Vec<Input>,
    pub headers: Vec<(String, String)>,
}

/// Reads and checks the `$import` Parameters `body`; every input's type must be `writable`.
pub fn parse_import(
    body: &Value,
    sources: &Sources,
    writable: &Writable,
) -> Result<ImportAsked, FhirError> {
    let mut inputs = Vec::new();
    let mut headers = Vec::new();
    for parameter in parameters(body) {
        match parameter.name {
            "inputFormat" => {
                let format = text_of(&parameter)?;
                if !is_ndjson(&format) {
                    return Err(FhirError::bad_request(
                        IssueCode::NotSupported,
                        format!("inputFormat {format}: fhirlake imports {NDJSON}"),
                    )
                    .at(parameter.at));
                }
            }
            "inputSource" => {
                text_of(&parameter)?;
            }
            "mode" => {
                let mode = text_of(&parameter)?;
                if mode != "merge" {
                    return Err(FhirError::bad_request(
                        IssueCode::NotSupported,
                        format!(
                            "mode {mode}: fhirlake imports by merge (an update of each \
                             resource): it does not replace whole types"
                        ),
                    )
                    .at(parameter.at));
                }
            }
            "storageDetail" => {
                for part in &parameter.parts {
                    match part.name {
                        "type" | "maxBatchResourceCount" => {
                            text_of(part)?;
                        }
                        "credentialHttpBasic" => {
                            let credential = text_of(part)?;
                            let encoded =
                                base64::engine::general_purpose::STANDARD.encode(credential);
                            headers.push(("Authorization".into(), format!("Basic {encoded}")));
                        }
                        other => return Err(unknown(&part.at, other)),
                    }
                }
            }
            "input" => inputs.push(input_of(&parameter, sources, writable)?),
            other => return Err(unknown(&parameter.at, other)),
        }
    }
    if inputs.is_empty() {
        return Err(FhirError::bad_request(
            IssueCode::Required,
            "$import needs at least one input (with its type and url)",
        ));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(FhirError::bad_request(
            IssueCode::TooCostly,
            format!("one import reads at most {MAX_INPUTS} inputs"),
        ));
    }
    Ok(ImportAsked { inputs, headers })
}

fn unknown(at: &str, name: &str) -> FhirError {
    let shown: String = name.chars().take(100).collect();
    FhirError::bad_request(
        IssueCode::NotSupported,
        format!("$import has no parameter {shown}"),
    )
    .at(at.to_string())
}

/// An `input` parameter: its type (checked: a resource type the owner may write) and url
/// (checked: an input fhirlake may read).
fn input_of(
    parameter: &Parameter,
    sources: &Sources,
    writable: &Writable,
) -> Result<Input, FhirError> {
    let (mut resource_type, mut url) = (None, None);
    for part in &parameter.parts {
        match part.name {
            "type" | "resourceType" => resource_type = Some(text_of(part)?),
            "url" => url = Some(text_of(part)?),
            other => return Err(unknown(&part.at, other)),
        }
    }
    let url = url.ok_or_else(|| invalid(&parameter.at, "an input needs a url"))?;
    input::check(sources, &url).map_err(|e| e.at(parameter.at.clone()))?;
    if let Some(resource_type) = &resource_type {
        check_type(resource_type, writable).map_err(|e| e.at(parameter.at.clone()))?;
    }
    Ok(Input {
        resource_type,
        url,
        manifest: None,
        unread: false,
    })
}

/// A known resource type that `writable` allows.
pub fn check_type(resource_type: &str, writable: &Writable) -> Result<(), FhirError> {
    if !fhirlake_model::is_resource_type(resource_type) {
        let shown: String = resource_type.chars().take(100).collect();
        return Err(FhirError::bad_request(
            IssueCode::NotSupported,
            format!("{shown} is not a resource type"),
        ));
    }
    writable.check(resource_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn import_parameters_are_read_as_hapi_and_pathling_send_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Patient.ndjson"), "").unwrap();
        let sources = Sources::new(Some(dir.path()), Vec::new()).unwrap();
        let root = sources.root.clone().unwrap();
        let file = format!("file://{}/Patient.ndjson", root.display());
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
            {"name": "inputSource", "valueUri": "https://example.org/"},
            {"name": "storageDetail", "part": [
                {"name": "type", "valueCode": "https"},
                {"name": "credentialHttpBasic", "valueString": "a:b"}]},
            {"name": "input", "part": [
                {"name": "type", "valueCode": "Patient"},
                {"name": "url", "valueUri": file}]},
            {"name": "input", "part": [
                {"name": "resourceType", "valueCode": "Observation"},
                {"name": "url", "valueUrl": "https://example.org/Observation.ndjson"}]},
        ]});
        let asked = parse_import(&body, &sources, &Writable::All).unwrap();
        assert_eq!(asked.inputs.len(), 2);
        assert_eq!(
            asked.inputs[1].resource_type.as_deref(),
            Some("Observation")
        );
        assert_eq!(
            asked.headers,
            [("Authorization".into(), "Basic YTpi".into())]
        );
        let only_patients = Writable::Types(vec!["Patient".into()]);
        assert_eq!(
            parse_import(&body, &sources, &only_patients)
                .err()
                .unwrap()
                .status,
            403
        );
        for bad in [
            json!([{"name": "inputFormat", "valueCode": "text/csv"}]),
            json!([{"name": "mode", "valueCode": "overwrite"}]),
            json!([{"name": "nonsense", "valueCode": "x"}]),
            json!([{"name": "input", "part": [{"name": "type", "valueCode": "Patient"}]}]),
            json!([{"name": "input", "part": [{"name": "type", "valueCode": "Nope"},
                {"name": "url", "valueUri": file}]}]),
            json!([{"name": "input", "part": [{"name": "url", "valueUri": "file:///etc/passwd"}]}]),
            json!([]),
        ] {
            let body = json!({"resourceType": "Parameters", "parameter": bad});
            assert_eq!(
                parse_import(&body, &sources, &Writable::All)
                    .err()
                    .unwrap()
                    .status,
                400,
                "{bad}"
            );
        }
    }
}
