//! PATCH (http.html#patch): a change to a resource given as
//!
//! - a JSON Patch (RFC 6902, `application/json-patch+json`, [`json`]),
//! - a FHIRPath Patch (a `Parameters` resource in FHIR JSON, fhirpatch.html, [`fhirpath`]),
//! - or a JSON Merge Patch (RFC 7396, `application/merge-patch+json`, and any other object sent
//!   as FHIR JSON: what fhirpy's `patch()` sends).
//!
//! [`Patch::apply`] makes the patched resource from the current one; it is then written as an
//! update (the same validation, versioning, change event and authorization), pinned to the
//! version it was made from. The status codes: a body that is not a patch is 400; a patch that
//! cannot be applied to this resource (a path that is not there, a failed JSON Patch `test`)
//! is 422, as http.html says of a failed `test`; so is a result that is not a valid resource;
//! a result that is another resource (a changed `resourceType` or `id`) is 400, as an update
//! whose body names another resource is.

mod elements;
mod fhirpath;
mod json;

use crate::auth::scope::Permission;
use crate::auth::{Access, Stored};
use crate::fhir::resource::{Intake, check_value, id_of, parse_json};
use crate::fhir::{FhirError, IssueCode};
use crate::search::Engine;
use crate::store::Store;
use crate::store::commit::{Action, Write};
use base64::Engine as _;
use serde_json::Value;

/// A patch, read and ready to apply.
#[derive(Debug)]
pub enum Patch {
    Json(Vec<json::Operation>),
    FhirPath(Vec<fhirpath::Operation>),
    Merge(Value),
}

/// What a PATCH body is, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json-patch+json`
    JsonPatch,
    /// `application/merge-patch+json`
    MergePatch,
    /// FHIR JSON (`application/fhir+json`, `application/json`): a `Parameters` resource is a
    /// FHIRPath Patch, any other object a merge patch.
    Fhir,
}

/// Why a patch could not be read or applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Failure {
    /// The document is not a patch of its kind: 400.
    Malformed(String),
    /// Operation `index` cannot be applied to this resource: 422.
    Unapplicable { index: usize, why: String },
    /// The patch, or what it would make, is too large: 413.
    TooLarge(String),
}

impl From<Failure> for FhirError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Malformed(why) => {
                FhirError::bad_request(IssueCode::Invalid, format!("the patch is not valid: {why}"))
            }
            Failure::Unapplicable { index, why } => FhirError::new(
                422,
                IssueCode::Processing,
                format!("patch operation {index} cannot be applied: {why}"),
            ),
            Failure::TooLarge(why) => FhirError::new(413, IssueCode::TooLong, why),
        }
    }
}

impl Format {
    /// The format of a media type (parameters such as `charset` ignored); None for one that
    /// is not a patch fhirlake reads.
    pub fn of_media_type(media_type: &str) -> Option<Format> {
        let media = media_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Some(Format::JsonPatch),
            "application/merge-patch+json" => Some(Format::MergePatch),
            "application/fhir+json" | "application/json" | "application/json+fhir" => {
                Some(Format::Fhir)
            }
            _ => None,
        }
    }
}

impl Patch {
    /// Reads a PATCH body of `format`.
    pub fn parse(format: Format, body: &[u8]) -> Result<Patch, FhirError> {
        let document = parse_json(body)?;
        Ok(match format {
            Format::JsonPatch => Patch::Json(json::parse(document)?),
            Format::MergePatch => Patch::Merge(merge_document(document)?),
            Format::Fhir
                if document.get("resourceType").and_then(Value::as_str) == Some("Parameters") =>
            {
                let parameters = check_value(document, Some("Parameters"))?.resource;
                Patch::FhirPath(fhirpath::parse(&parameters)?)
            }
            Format::Fhir => Patch::Merge(merge_document(document)?),
        })
    }

    /// The patch a Bundle entry with `request.method` PATCH carries as its resource: a Binary
    /// holding a JSON Patch (base64 `data`, `contentType` `application/json-patch+json`), or
    /// a `Parameters` FHIRPath Patch.
    pub fn of_entry(resource: Value) -> Result<Patch, FhirError> {
        let bad = |why: &str| {
            FhirError::bad_request(
                IssueCode::Invalid,
                format!("a PATCH entry's resource {why}"),
            )
        };
        match resource.get("resourceType").and_then(Value::as_str) {
            Some("Parameters") => {
                let parameters = check_value(resource, Some("Parameters"))?.resource;
                Ok(Patch::FhirPath(fhirpath::parse(&parameters)?))
            }
            Some("Binary") => {
                let binary = check_value(resource, Some("Binary"))?.resource;
                let content_type = binary["contentType"].as_str().unwrap_or("");
                let format = Format::of_media_type(content_type)
                    .filter(|format| *format != Format::Fhir)
                    .ok_or_else(|| {
                        bad(&format!(
                            "is a Binary of '{content_type}': a JSON Patch \
                             (application/json-patch+json) is expected"
                        ))
                    })?;
                let data = binary["data"].as_str().unwrap_or("");
                let body = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| bad(&format!("is a Binary whose data is not base64: {e}")))?;
                Patch::parse(format, &body)
            }
            _ => Err(bad(
                "must be a Binary holding a JSON Patch or a Parameters FHIRPath Patch",
            )),
        }
    }

    /// The resource `current` (a stored version) patched: checked as a resource of its type,
    /// still with its id, and the empty elements it leaves taken out (reported as an update's
    /// are, [`Intake`]). JSON Patch `copy` operations may add at most `limit` bytes.
    pub fn apply(&self, current: &Value, limit: usize) -> Result<Intake, FhirError> {
        let resource_type = current["resourceType"].as_str().unwrap_or_default();
        let id = id_of(current);
        let mut document = current.clone();
        match self {
            Patch::Json(operations) => json::apply(&mut document, operations, limit)?,
            Patch::FhirPath(operations) => fhirpath::apply(&mut document, operations)?,
            Patch::Merge(patch) => json::merge(&mut document, patch.clone()),
        }
        let changed = |what: &str| {
            FhirError::bad_request(
                IssueCode::Invalid,
                format!(
                    "a patch cannot change the {what} of {resource_type}/{}: the result would be \
                     another resource",
                    id.unwrap_or("")
                ),
            )
            .at(format!("{resource_type}.{what}"))
        };
        if document.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
            return Err(changed("resourceType"));
        }
        if id_of(&document) != id {
            return Err(changed("id"));
        }
        check_value(document, Some(resource_type)).map_err(|mut error| {
            error.status = 422;
            error.diagnostics = format!("the patched resource is not valid: {}", error.diagnostics);
            error
        })
    }
}

impl Patch {
    /// The update this patch makes of the current version of `resource_type/id`, pinned to
    /// that version (its `if_match`): what `PATCH` and a Bundle's PATCH entry write. 404 when
    /// the resource does not exist, 410 when it is deleted, 412 when `if_match` names another
    /// version. A token confined to part of the type must be allowed to update the current
    /// version before the patch runs on it (403): the answer to a JSON Patch `test` would
    /// otherwise tell what a resource it may not see holds. The update itself is authorized and
    /// validated as any other ([`Access::check_write`]) when it is written.
    #[allow(clippy::too_many_arguments)]
    pub fn update_of(
        &self,
        store: &Store,
        search: &Engine,
        access: &Access,
        resource_type: &str,
        id: &str,
        if_match: Option<u64>,
        limit: usize,
    ) -> Result<(Write, Vec<String>), FhirError> {
        access.require(Permission::Update, Some(resource_type))?;
        let absent = || {
            FhirError::not_found(format!(
                "{resource_type}/{id} does not exist: there is nothing to patch"
            ))
        };
        // One the client cannot read is answered as one that does not exist.
        let Some((current, version)) =
            access.current(search, store, Permission::Read, resource_type, id)?
        else {
            return Err(absent());
        };
        let stored = Stored::current(resource_type, id, &current, version.as_ref());
        let Some(body) = stored.body else {
            return Err(FhirError::new(
                410,
                IssueCode::Deleted,
                format!("{resource_type}/{id} was deleted (version {})", current.vid),
            ));
        };
        if let Some(asked) = if_match
            && asked != current.vid
        {
            return Err(FhirError::new(
                412,
                IssueCode::Conflict,
                format!(
                    "{resource_type}/{id}: If-Match asked for version {asked}, but the current \
                     version is {}",
                    current.vid
                ),
            ));
        }
        if !access.sees_stored(search, store, Permission::Update, stored)? {
            return Err(FhirError::forbidden(format!(
                "{resource_type}/{id} is outside what the token's scopes allow to update"
            )));
        }
        let Intake { resource, dropped } = self.apply(&parse_json(body)?, limit)?;
        let write = Write {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            action: Action::Update(resource),
            if_match: Some(current.vid),
        };
        Ok((write, dropped))
    }
}

/// A merge patch of a resource is an object.
fn merge_document(document: Value) -> Result<Value, Failure> {
    if document.is_object() {
        Ok(document)
    } else {
        Err(Failure::Malformed(
            "a merge patch of a resource is a JSON object".into(),
        ))
    }
}

#[cfg(test)]
mod conformance;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"},
               "active": true, "name": [{"family": "Chalmers", "given": ["Peter"]}]})
    }

    fn apply(format: Format, patch: Value) -> Result<Value, FhirError> {
        Patch::parse(format, patch.to_string().as_bytes())?
            .apply(&patient(), 1 << 20)
            .map(|intake| intake.resource)
    }

    #[test]
    fn every_format_patches_and_the_result_is_canonical() {
        let json_patch = json!([{"op": "replace", "path": "/active", "value": false},
                                {"op": "add", "path": "/birthDate", "value": "1974-12-25"}]);
        let merge = json!({"active": false, "birthDate": "1974-12-25"});
        let fhirpath = json!({"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "replace"},
                {"name": "path", "valueString": "Patient.active"},
                {"name": "value", "valueBoolean": false}]},
            {"name": "operation", "part": [
                {"name": "type", "valueCode": "add"},
                {"name": "path", "valueString": "Patient"},
                {"name": "name", "valueString": "birthDate"},
                {"name": "value", "valueDate": "1974-12-25"}]}]});
        for (format, patch) in [
            (Format::JsonPatch, json_patch),
            (Format::MergePatch, merge.clone()),
            (Format::Fhir, merge),
            (Format::Fhir, fhirpath),
        ] {
            let patched = apply(format, patch).unwrap();
            assert_eq!(patched["active"], json!(false), "{format:?}");
            assert_eq!(patched["birthDate"], json!("1974-12-25"), "{format:?}");
            let keys: Vec<&String> = patched.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                ["resourceType", "id", "meta", "active", "name", "birthDate"]
            );
        }
    }

    #[test]
    fn the_type_and_id_stay_and_the_result_must_be_valid() {
        for (patch, status) in [
            (
                json!([{"op": "replace", "path": "/id", "value": "p2"}]),
                400,
            ),
            (json!([{"op": "remove", "path": "/id"}]), 400),
            (
                json!([{"op": "replace", "path": "/resourceType", "value": "Group"}]),
                400,
            ),
            (
                json!([{"op": "add", "path": "/frobnicate", "value": 1}]),
                422,
            ),
            (
                json!([{"op": "replace", "path": "/active", "value": "yes"}]),
                422,
            ),
            (
                json!([{"op": "test", "path": "/active", "value": false}]),
                422,
            ),
            (json!([{"op": "remove", "path": "/birthDate"}]), 422),
            (json!({"op": "remove"}), 400),
        ] {
            let error = apply(Format::JsonPatch, patch.clone()).unwrap_err();
            assert_eq!(error.status, status, "{patch}: {error:?}");
        }
        let merge_null_id = apply(Format::MergePatch, json!({"id": null})).unwrap_err();
        assert_eq!(merge_null_id.status, 400);
        let not_object = Patch::parse(Format::MergePatch, b"[1]").unwrap_err();
        assert_eq!(not_object.status, 400);
    }

    #[test]
    fn bundle_entries_carry_a_binary_json_patch_or_parameters() {
        let data = base64::engine::general_purpose::STANDARD
            .encode(br#"[{"op": "replace", "path": "/active", "value": false}]"#);
        let binary = json!({"resourceType": "Binary",
                            "contentType": "application/json-patch+json", "data": data});
        let patch = Patch::of_entry(binary).unwrap();
        assert_eq!(
            patch.apply(&patient(), 1 << 20).unwrap().resource["active"],
            json!(false)
        );
        for bad in [
            json!({"resourceType": "Binary", "contentType": "text/plain", "data": data}),
            json!({"resourceType": "Binary", "contentType": "application/json-patch+json",
                   "data": "!!"}),
            json!({"resourceType": "Patient"}),
            json!({"resourceType": "Parameters", "parameter": [{"name": "x"}]}),
        ] {
            assert_eq!(
                Patch::of_entry(bad.clone()).unwrap_err().status,
                400,
                "{bad}"
            );
        }
    }
}
