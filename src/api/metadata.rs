//! `GET /fhir/metadata`: the CapabilityStatement, which states exactly what this server does;
//! `GET /fhir/$versions`: the FHIR versions it speaks.
//!
//! What it states does not change while the process runs, so its `date` (and `Last-Modified`)
//! is when the process first described itself, and its `ETag` is a digest of the answer
//! (format and `_summary`/`_elements` included): `If-None-Match` and `If-Modified-Since` get
//! a 304 without the 1.4 MB body.

use super::get::{Answer, Get};
use super::http::{Format, negotiate};
use super::{ApiResult, AppState};
use crate::bundle::ConditionalDelete;
use crate::fhir::FhirError;
use crate::fhir::datetime::{Micros, format_http_date};
use crate::fhir::resource::VIEW_DEFINITION;
use crate::fhir::summary::{self, Subset};
use crate::search::registry::{ParamType, Registry};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

/// When this process first described itself, to the second (an HTTP date's precision).
static DESCRIBED: LazyLock<Micros> =
    LazyLock::new(|| crate::fhir::datetime::now() / 1_000_000 * 1_000_000);

/// SQL on FHIR v2: the ViewDefinition's structure and its `$run` operation.
const VIEW_PROFILE: &str = "https://sql-on-fhir.org/ig/StructureDefinition/ViewDefinition";
const VIEW_RUN: &str = "https://sql-on-fhir.org/ig/OperationDefinition/ViewDefinitionRun";
const VIEW_EXPORT: &str = "https://sql-on-fhir.org/ig/OperationDefinition/ViewDefinitionExport";
/// fhirlake's own `$sql` (SQL over the stored views).
const SQL: &str = "https://fhirlake.dev/fhir/OperationDefinition/sql";

/// The interactions every resource type supports.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "create",
    "history-instance",
    "history-type",
    "search-type",
];

/// The definition of the `$versions` operation.
const VERSIONS: &str = "http://hl7.org/fhir/OperationDefinition/CapabilityStatement-versions";

/// The Bulk Data Access IG's CapabilityStatement, and where its OperationDefinitions are
/// (`export`, `patient-export`, `group-export`).
const BULK_DATA: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";
const BULK_OPERATIONS: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition";

/// `$import` has no OperationDefinition in the Bulk Data IG: fhirlake names its own (the
/// Parameters HAPI and Pathling take).
const IMPORT: &str = "https://fhirlake.dev/fhir/OperationDefinition/import";

/// The CapabilityStatement, whole or cut by `_summary` or `_elements`, with its `ETag` and
/// `Last-Modified`, or 304 when the client's copy is current.
pub async fn capability_statement(req: HttpRequest, state: web::Data<AppState>) -> ApiResult {
    let format = negotiate(&req)?;
    let get = Get::of(&req, &state);
    let body = capabilities(&state, &get)?.body;
    let described = *DESCRIBED;
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    (&body, format == Format::Xml).hash(&mut digest);
    let etag = format!("W/\"{:016x}\"", digest.finish());
    let not_modified = match &get.if_none_match {
        Some(tags) => tags
            .split(',')
            .any(|tag| tag.trim() == "*" || tag.trim() == etag),
        None => get
            .if_modified_since
            .is_some_and(|since| described <= since),
    };
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::LAST_MODIFIED, format_http_date(described)));
    if not_modified {
        return Ok(response.finish());
    }
    Ok(response.content_type(super::http::FHIR_JSON).body(body))
}

/// The answer to `GET metadata` (cut by `_summary` or `_elements`), over HTTP or as a Bundle
/// entry.
pub(super) fn capabilities(state: &AppState, get: &Get) -> Result<Answer, FhirError> {
    let subset = Subset::parse(&get.params)?;
    let security = super::auth::security(&state.config, &get.base);
    let statement = statement(
        &get.base,
        state.search.registry,
        security,
        state.config.conditional_delete,
        *DESCRIBED,
    );
    let mut body = statement.to_string().into_bytes();
    if let Some(subset) = &subset {
        body = summary::subset(&body, subset)?;
    }
    Ok(Answer::ok(body))
}

/// `GET /fhir/$versions`: like `metadata`, it needs no token.
pub async fn versions_operation(req: HttpRequest) -> ApiResult {
    negotiate(&req)?;
    Ok(versions().respond())
}

/// The answer to `$versions`: R4 (`4.0`) is the one version, and the default.
pub(super) fn versions() -> Answer {
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "version", "valueCode": "4.0"},
        {"name": "default", "valueCode": "4.0"},
    ]});
    Answer::ok(parameters.to_string().into_bytes())
}

/// The CapabilityStatement of this build, served at `base`, with its `rest.security` and
/// what its conditional deletes do with several matches, as of `date`.
pub fn statement(
    base: &str,
    registry: &Registry,
    security: Value,
    conditional_delete: ConditionalDelete,
    date: Micros,
) -> Value {
    let interactions: Vec<Value> = TYPE_INTERACTIONS
        .iter()
        .map(|code| json!({"code": code}))
        .collect();
    let resources: Vec<Value> = fhirlake_model::RESOURCE_TYPES
        .iter()
        .chain([&VIEW_DEFINITION])
        .map(|name| {
            // Definitions without an expression are not searchable (but `_text` and
            // `_content`), nor special parameters other than `near`.
            let params: Vec<Value> = registry
                .searchable(name)
                .map(|p| {
                    json!({"name": p.code, "definition": p.url, "type": p.kind.as_str(),
                        "documentation": p.description})
                })
                .collect();
            let references = |t: &str| -> Vec<String> {
                registry
                    .searchable(t)
                    .filter(|p| p.kind == ParamType::Reference)
                    .map(|p| format!("{t}:{}", p.code))
                    .collect()
            };
            let mut includes = references(name);
            includes.push(format!("{name}:*"));
            let revincludes: Vec<String> = fhirlake_model::RESOURCE_TYPES
                .iter()
                .flat_map(|source| {
                    registry
                        .searchable(source)
                        .filter(|p| p.kind == ParamType::Reference)
                        .filter(|p| p.targets.iter().any(|t| t == name))
                        .map(move |p| format!("{source}:{}", p.code))
                })
                .collect();
            let mut resource = json!({
                "type": name,
                "interaction": interactions,
                "searchParam": params,
                "searchInclude": includes,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                // If-Modified-Since and If-None-Match both.
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": conditional_delete.code(),
            });
            let mut operations: Vec<Value> = super::terminology::OPERATIONS
                .iter()
                .filter(|(resource_type, _, _)| resource_type == name)
                .map(|(_, operation, definition)| json!({"name": operation, "definition": definition}))
                .collect();
            if super::search::EVERYTHING.contains(name) {
                operations.push(json!({"name": "everything",
                    "definition": format!("http://hl7.org/fhir/OperationDefinition/{name}-everything")}));
            }
            operations.push(json!({"name": "validate",
                "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}));
            operations.extend(super::erase::capabilities(name));
            if matches!(*name, "Patient" | "Group") {
                let definition = format!("{BULK_OPERATIONS}/{}-export", name.to_lowercase());
                operations.push(json!({"name": "export", "definition": definition}));
            }
            if *name == VIEW_DEFINITION {
                operations.push(json!({"name": "run", "definition": VIEW_RUN}));
                operations.push(json!({"name": "viewdefinition-export", "definition": VIEW_EXPORT}));
                resource["profile"] = json!(VIEW_PROFILE);
                resource["documentation"] = json!(
                    "Not an R4 type: the ViewDefinition of SQL on FHIR v2, the one type beside \
                     R4's that fhirlake stores, checked against the guide's structure. `$run` \
                     makes its rows (json, ndjson, csv, parquet); `$viewdefinition-export` \
                     writes them to files as a job (parquet, csv, ndjson, json; patient, \
                     group, _since; not source); `$sql` queries the stored views as tables \
                     named by their `name`."
                );
            }
            resource["operation"] = json!(operations);
            // R4 has no empty arrays: a type nothing refers to has no revincludes.
            if !revincludes.is_empty() {
                resource["searchRevInclude"] = json!(revincludes);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": crate::fhir::datetime::format_instant(date),
        "publisher": "fhirlake",
        "kind": "instance",
        "instantiates": [BULK_DATA],
        "software": {"name": "fhirlake", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "fhirlake FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json", "xml", "application/fhir+json", "application/fhir+xml"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json",
            "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": security,
            "documentation": "Search covers the number, date, string, token, reference, \
                quantity (UCUM units converted), uri and composite parameters listed per \
                type and near, with :missing, :not, :text, :of-type, :exact, :contains, \
                :below, :above and the type modifier, _text and _content (words, \
                \"phrases\", AND, OR and parentheses; case and accents ignored), _sort on \
                several keys, _include and _revinclude with :iterate, chained parameters of \
                any depth, _has (nested), compartment searches (Patient/123/Observation, \
                Patient/123/*), $everything of a Patient (with start and end) or an \
                Encounter, _list, url=...|version, _summary and _elements; a malformed value \
                of a known parameter is a 400, and the sizes and depths of a search are \
                bounded (too-costly). Subscriptions: rest-hook channels (criteria matched on each \
                version, retried with backoff, delivered at least once in order, headers from \
                channel.header, payload empty or application/fhir+json; endpoints must reach \
                public addresses unless the server allows them, redirects are not followed). \
                The change stream: \
                GET [base]/$changes (by offset), [base]/$changes/stream (Server-Sent Events) \
                and [base]/$changes/websocket, CloudEvents 1.0. PATCH takes a JSON Patch \
                (application/json-patch+json), a FHIRPath Patch (Parameters) or a JSON Merge \
                Patch (application/merge-patch+json), also conditional and in Bundles (a Binary \
                or Parameters). An update equal to the current version makes no new version. \
                Validation: every written \
                resource is checked against the R4 definitions, the profiles known here and \
                the terminology, under the server's policy (422 with every finding, or stored \
                with warnings); $validate reports the same findings. Batches and \
                transactions take every interaction's entries, GET and HEAD ones (searches, \
                reads, histories, metadata) answered as their endpoints answer; conditional \
                deletes delete every match (up to a limit) or refuse several, as \
                conditionalDelete says. Formats: FHIR JSON and FHIR XML (_format, Accept, \
                Content-Type); a Binary is read and written in its own content type unless \
                FHIR is asked for first. _filter is not supported yet: it is reported \
                (handling=lenient) or answered with 400. Bulk Data $export (system, Patient, \
                Group; GET and POST; Prefer: respond-async): NDJSON files of exactly the \
                versions committed at transactionTime, split at --export-file-resources \
                resources per file, with _outputFormat, _since (and deleted), _until, _type, \
                _typeFilter (no chains or _has), _elements and patient; not \
                includeAssociatedData or organizeOutputBy. The status URL answers 202 with \
                X-Progress, the manifest, or the failure, 429 when polled too often; DELETE \
                cancels; files need the same token and are gzip-compressed for \
                Accept-Encoding: gzip. Bulk import: $import (HAPI's and Pathling's \
                Parameters) and $bulk-submit with $bulk-submit-status (Bulk Data IG): NDJSON \
                files, gzipped or not, from file:// under --import-root or http(s) URLs, \
                through the normal write path as update-as-create, resumed after a crash \
                without duplicates; the status counts resources by type and lists the rejected \
                lines by file and line.",
            "resource": resources,
            "compartment": crate::search::compartment::types()
                .map(|c| format!("http://hl7.org/fhir/CompartmentDefinition/{}", lower_first(c)))
                .collect::<Vec<_>>(),
            "interaction": [
                {"code": "transaction"},
                {"code": "batch"},
                {"code": "history-system"},
                {"code": "search-system"},
            ],
            "operation": [
                {"name": "versions", "definition": VERSIONS},
                {"name": "export", "definition": format!("{BULK_OPERATIONS}/export")},
                {"name": "import", "definition": IMPORT},
                {"name": "bulk-submit", "definition": format!("{BULK_OPERATIONS}/bulk-submit")},
                {"name": "bulk-submit-status",
                    "definition": format!("{BULK_OPERATIONS}/bulk-submit-status")},
                {"name": "viewdefinition-export", "definition": VIEW_EXPORT},
                {"name": "sql", "definition": SQL},
            ],
        }],
    })
}

/// `relatedPerson` of `RelatedPerson`: how the compartment definitions are named.
fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    /// The settings of `fhirlake serve ARGS`.
    fn serve(args: &[&str]) -> crate::config::ServeConfig {
        let args = ["fhirlake", "serve"].iter().chain(args);
        match Cli::try_parse_from(args).unwrap().command {
            Command::Serve(config) => *config,
            _ => unreachable!("a serve command"),
        }
    }

    #[test]
    fn the_capability_statement_is_valid_r4() {
        for (args, code) in [
            (&["--auth", "none"][..], None),
            (
                &["--auth-token-url", "https://as.example/token"][..],
                Some("SMART-on-FHIR"),
            ),
        ] {
            let config = serve(args);
            let statement = super::statement(
                "http://localhost/fhir",
                crate::search::registry::Registry::r4_shared(),
                crate::api::auth::security(&config, "http://localhost/fhir"),
                config.conditional_delete,
                0,
            );
            fhirlake_model::check_resource(&statement).unwrap();
            assert_eq!(
                statement["rest"][0]["resource"].as_array().unwrap().len(),
                146 + 1,
                "the R4 types and ViewDefinition"
            );
            let patient = &statement["rest"][0]["resource"][0];
            assert_eq!(patient["conditionalRead"], "full-support");
            // Bulk Data: $export at the system level, on Patient and on Group.
            let export = |operations: &serde_json::Value| {
                operations
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["name"] == "export")
                    .map(|o| o["definition"].as_str().unwrap().to_string())
            };
            let bulk = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition";
            let resources = statement["rest"][0]["resource"].as_array().unwrap();
            let of = |name: &str| resources.iter().find(|r| r["type"] == name).unwrap();
            assert_eq!(
                export(&statement["rest"][0]["operation"]),
                Some(format!("{bulk}/export"))
            );
            assert_eq!(
                export(&of("Patient")["operation"]),
                Some(format!("{bulk}/patient-export"))
            );
            assert_eq!(
                export(&of("Group")["operation"]),
                Some(format!("{bulk}/group-export"))
            );
            assert_eq!(export(&of("Observation")["operation"]), None);
            assert_eq!(statement["patchFormat"][0], "application/json-patch+json");
            let security = &statement["rest"][0]["security"];
            assert_eq!(
                security["service"][0]["coding"][0]["code"].as_str(),
                code,
                "{security}"
            );
        }
    }
}
