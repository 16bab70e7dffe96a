//! Batch and transaction Bundles, processed as the FHIR R4 RESTful API page says; used by
//! `POST /fhir` and by `fhirlake import`.
//!
//! - A transaction is one store commit: every write of it lands, or none does and the answer
//!   names the failing entry. Reads (GET entries) run after the writes and see them.
//! - A batch commits each entry on its own (all submitted at once, so they share group
//!   commits) and reports each entry's outcome.
//! - Created entries get new ids; every reference to an entry's `fullUrl` (`urn:uuid:`,
//!   `urn:oid:`, absolute or relative) in any resource of the Bundle is rewritten to the stored
//!   `Type/id` first ([`references`]).
//! - Each resource written is validated under the policy ([`Validator::check_write`]) as its
//!   entry is read: a transaction with invalid resources fails whole with every failing
//!   entry's findings in one OperationOutcome; a batch fails only those entries. Warnings are
//!   returned in the entry's `response.outcome`.
//! - Each entry is authorized on its own, as the interaction it is ([`Access`]): a refused
//!   entry fails a transaction whole, and only itself in a batch. Conditional matches
//!   (`ifNoneExist`, conditional references) see only what the client may read.
//! - A PATCH entry becomes the update it makes of the current version ([`patch`]), pinned to
//!   that version, and is then processed as an update entry.
//! - An update equal to the current version changes nothing (`200` with that version).

mod patch;
pub mod references;

use crate::auth::scope::Permission;
use crate::auth::{Access, Stored};
use crate::cdc::endpoints::Prefix;
use crate::cdc::subscriptions;
use crate::fhir::bundle::{BundleWriter, Entry, Response};
use crate::fhir::datetime::{Micros, format_instant};
use crate::fhir::resource::{check_id, check_type, check_value, id_of, parse_etag};
use crate::fhir::{FhirError, IssueCode, Return};
use crate::search::Engine;
use crate::store::Store;
use crate::store::commit::{Action, Applied, Write};
use crate::store::tables::Op;
use crate::validate::{Issue, Validator};
use references::{Rewrites, at_entry, bad_entry};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Batch,
    Transaction,
}

/// How a Bundle is processed.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most entries a Bundle may have (413 beyond).
    pub max_entries: usize,
    /// What each entry's response carries (`Prefer: return=...`).
    pub returns: Return,
    /// The prefixes a Subscription's endpoint is checked with as it is written
    /// ([`subscriptions::check_write`]); `None` checks none (the `import` command: the
    /// operator's data, and deliveries are guarded anyway).
    pub subscription_endpoints: Option<Vec<Prefix>>,
    /// The most bytes the `copy` operations of a PATCH entry's JSON Patch may add.
    pub max_patch_growth: usize,
}

/// The outcome of one entry.
#[derive(Debug)]
pub struct EntryResult {
    pub status: u16,
    pub location: Option<String>,
    pub vid: Option<u64>,
    pub last_modified: Option<Micros>,
    pub resource: Option<Vec<u8>>,
    pub error: Option<FhirError>,
    /// The validator's warnings about the entry's resource (OperationOutcome issues).
    pub warnings: Vec<Value>,
}

/// The outcome of a whole Bundle, entry by entry in the order of the request.
#[derive(Debug)]
pub struct Processed {
    pub kind: Kind,
    pub entries: Vec<EntryResult>,
}

/// What one entry asks for.
#[derive(Debug)]
enum Request {
    Create {
        resource_type: String,
        resource: Value,
        /// `ifNoneExist`: create only when nothing matches these criteria.
        if_none_exist: Option<String>,
    },
    Update {
        resource_type: String,
        id: String,
        resource: Value,
        if_match: Option<u64>,
    },
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<u64>,
    },
    /// Becomes an [`Request::Update`] once the index has caught up ([`patch::resolve`]).
    Patch(patch::PatchEntry),
    Read {
        resource_type: String,
        id: String,
        vid: Option<u64>,
        if_none_match: Option<u64>,
        if_modified_since: Option<Micros>,
    },
}

impl Request {
    /// Processing order of a transaction: DELETE, POST, PUT and PATCH, GET.
    fn order(&self) -> u8 {
        match self {
            Request::Delete { .. } => 0,
            Request::Create { .. } => 1,
            Request::Update { .. } | Request::Patch(_) => 2,
            Request::Read { .. } => 3,
        }
    }
}

/// The type of a Bundle that `POST /fhir` takes, or 400.
pub fn kind_of(bundle: &Value) -> Result<Kind, FhirError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(FhirError::bad_request(
            IssueCode::Invalid,
            "POST to the base takes a Bundle of type batch or transaction",
        ));
    }
    match bundle.get("type").and_then(Value::as_str) {
        Some("batch") => Ok(Kind::Batch),
        Some("transaction") => Ok(Kind::Transaction),
        other => Err(FhirError::bad_request(
            IssueCode::Invalid,
            format!(
                "a Bundle of type {} cannot be processed: send a batch or a transaction",
                other.unwrap_or("(none)")
            ),
        )
        .at("Bundle.type")),
    }
}

/// Processes a batch or transaction Bundle. A transaction that fails answers `Err` with the
/// failing entry named; a batch always answers `Ok`, with each entry's outcome.
pub async fn process(
    store: &Store,
    search: &Engine,
    access: &Access,
    validator: &Validator,
    mut bundle: Value,
    options: &Options,
) -> Result<Processed, FhirError> {
    let kind = kind_of(&bundle)?;
    let entries = match bundle.get_mut("entry").map(Value::take) {
        None => Vec::new(),
        Some(Value::Array(entries)) if entries.is_empty() => {
            return Err(bad_entry(
                "Bundle.entry must not be an empty array: leave it out for an empty Bundle",
            )
            .at("Bundle.entry"));
        }
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(bad_entry("Bundle.entry must be an array").at("Bundle.entry"));
        }
    };
    if entries.len() > options.max_entries {
        return Err(FhirError::new(
            413,
            IssueCode::TooLong,
            format!(
                "the Bundle has {} entries; this server takes at most {}",
                entries.len(),
                options.max_entries
            ),
        ));
    }
    check_shell(bundle, &entries)?;

    let mut warnings: Vec<Vec<Value>> = vec![Vec::new(); entries.len()];
    let mut requests: Vec<Result<(Option<String>, Request), FhirError>> = entries
        .into_iter()
        .zip(&mut warnings)
        .enumerate()
        .map(|(index, (entry, warnings))| {
            read_entry(entry, index, validator, warnings).map_err(|error| at_entry(error, index))
        })
        .collect();
    // Conditional creates and references resolve against everything committed before.
    search.catch_up(store).await;
    for (index, request) in requests.iter_mut().enumerate() {
        if let Ok((
            _,
            Request::Create {
                resource_type,
                if_none_exist: Some(criteria),
                ..
            },
        )) = request
        {
            let readable = access.view(Permission::Read);
            *request = match search.matching(resource_type, criteria, &readable) {
                Ok(ids) if ids.is_empty() => continue,
                Ok(ids) if ids.len() == 1 => Ok((
                    None,
                    Request::Read {
                        resource_type: resource_type.clone(),
                        id: ids[0].clone(),
                        vid: None,
                        if_none_match: None,
                        if_modified_since: None,
                    },
                )),
                Ok(_) => Err(at_entry(
                    FhirError::new(
                        412,
                        IssueCode::Conflict,
                        format!("ifNoneExist '{criteria}' matches more than one {resource_type}"),
                    ),
                    index,
                )),
                Err(error) => Err(at_entry(error, index)),
            };
        }
    }
    patch::resolve(
        &mut requests,
        &mut warnings,
        store,
        search,
        access,
        validator,
        options.max_patch_growth,
    );
    if kind == Kind::Transaction {
        let failures = requests.iter().filter_map(|r| r.as_ref().err().cloned());
        if let Some(error) = all_failures(failures) {
            return Err(error);
        }
    }

    // New ids for creates, and the rewrites of references to every entry's fullUrl.
    let mut ids: Vec<Option<String>> = Vec::with_capacity(requests.len());
    let mut rewrites = Rewrites::default();
    for request in &requests {
        let id = match request {
            Ok((full_url, Request::Create { resource_type, .. })) => {
                let id = uuid::Uuid::new_v4().to_string();
                if let Some(full_url) = full_url {
                    rewrites.add(full_url, resource_type, &id);
                }
                Some(id)
            }
            Ok((
                Some(full_url),
                Request::Update {
                    resource_type, id, ..
                },
            )) => {
                rewrites.add(full_url, resource_type, id);
                None
            }
            _ => None,
        };
        ids.push(id);
    }
    for (index, request) in requests.iter_mut().enumerate() {
        let rewritten = match request {
            Ok((
                _,
                Request::Create {
                    resource,
                    resource_type,
                    ..
                },
            ))
            | Ok((
                _,
                Request::Update {
                    resource,
                    resource_type,
                    ..
                },
            )) => rewrites.apply(resource, resource_type, &|reference| {
                search.resolve(reference, &access.view(Permission::Read))
            }),
            _ => Ok(()),
        };
        if let Err(error) = rewritten {
            let error = at_entry(error, index);
            if kind == Kind::Transaction {
                return Err(error);
            }
            *request = Err(error);
        }
    }

    let mut results: Vec<Option<EntryResult>> = (0..requests.len()).map(|_| None).collect();
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for (index, (request, id)) in requests.into_iter().zip(ids).enumerate() {
        match request {
            Err(error) => results[index] = Some(failed(error)),
            Ok((_, request @ Request::Read { .. })) => reads.push((index, request)),
            Ok((_, request)) => {
                let (order, mut write) = to_write(request, id);
                let checked = match access.check_write(search, store, &mut write) {
                    Ok(()) => match &options.subscription_endpoints {
                        Some(allowed) => subscriptions::check_write(allowed, &write).await,
                        None => Ok(()),
                    },
                    refused => refused,
                };
                match checked {
                    Ok(()) => writes.push((index, (order, write))),
                    Err(error) if kind == Kind::Transaction => {
                        return Err(at_entry(error, index));
                    }
                    Err(error) => results[index] = Some(failed(at_entry(error, index))),
                }
            }
        }
    }
    writes.sort_by_key(|(_, (order, _))| *order);
    let (indexes, writes): (Vec<usize>, Vec<Write>) =
        writes.into_iter().map(|(i, (_, w))| (i, w)).unzip();

    match kind {
        Kind::Transaction => {
            let applied = store.commit(writes).await.map_err(|refused| {
                let index = refused.entry.map_or(0, |entry| indexes[entry]);
                at_entry(refused.error, index)
            })?;
            for (index, applied) in indexes.into_iter().zip(applied) {
                let warnings = learned(validator, &applied, index, &mut warnings[index]);
                results[index] = Some(written(applied, options.returns, warnings));
            }
        }
        Kind::Batch => {
            let pending: Vec<_> = writes
                .into_iter()
                .map(|write| store.submit(vec![write]))
                .collect();
            for (index, pending) in indexes.into_iter().zip(pending) {
                results[index] = Some(match pending.await {
                    Ok(mut applied) => {
                        let applied = applied.remove(0);
                        let warnings = learned(validator, &applied, index, &mut warnings[index]);
                        written(applied, options.returns, warnings)
                    }
                    Err(refused) => failed(at_entry(refused.error, index)),
                });
            }
        }
    }
    for (index, request) in reads {
        results[index] = Some(match read(store, search, access, request) {
            Ok(result) => result,
            Err(error) => failed(at_entry(error, index)),
        });
    }
    Ok(Processed {
        kind,
        entries: results
            .into_iter()
            .map(|r| r.expect("every entry has a result"))
            .collect(),
    })
}

/// Checks the Bundle itself (every element but the entries' resources, which each entry checks
/// on its own so that one bad resource fails only its entry in a batch).
fn check_shell(mut bundle: Value, entries: &[Value]) -> Result<(), FhirError> {
    // Each entry without its resource: copying the resources would double the work of a
    // large Bundle.
    let shells: Vec<Value> = entries
        .iter()
        .map(|entry| match entry {
            Value::Object(members) => Value::Object(
                members
                    .iter()
                    .filter(|(name, _)| *name != "resource")
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
            ),
            other => other.clone(),
        })
        .collect();
    if let Some(object) = bundle.as_object_mut() {
        object.remove("entry");
        if !shells.is_empty() {
            object.insert("entry".into(), Value::Array(shells));
        }
    }
    check_value(bundle, Some("Bundle")).map(|_| ())
}

/// Reads one entry's `fullUrl` and `request`, and checks its resource.
fn parse_entry(mut entry: Value) -> Result<(Option<String>, Request), FhirError> {
    let full_url = entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(String::from);
    let resource = entry.get_mut("resource").map(Value::take);
    let request = entry
        .get("request")
        .ok_or_else(|| bad_entry("the entry has no request").at("Bundle.entry.request"))?;
    let text = |name: &str| request.get(name).and_then(Value::as_str);
    let method = text("method").unwrap_or_default();
    let url = text("url").unwrap_or_default();
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let segments: Vec<&str> = relative_path(path).split('/').collect();
    let version = |name: &str| -> Result<Option<u64>, FhirError> {
        text(name)
            .map(|tag| {
                parse_etag(tag).ok_or_else(|| {
                    bad_entry(format!("request.{name} '{tag}' is not a version ETag"))
                })
            })
            .transpose()
    };
    let conditional = |what: &str| {
        Err(FhirError::not_supported(format!(
            "{what} needs search, which this server does not support yet"
        )))
    };
    let resource_of = |resource: Option<Value>, resource_type: &str| {
        let resource =
            resource.ok_or_else(|| bad_entry(format!("a {method} entry needs a resource")))?;
        check_value(resource, Some(resource_type))
    };
    // ifNoneMatch and ifModifiedSince are conditions for reads; on a write they would be
    // silently ignored, so they are refused instead.
    if matches!(method, "POST" | "PUT" | "DELETE" | "PATCH")
        && let Some(name) = ["ifNoneMatch", "ifModifiedSince"]
            .into_iter()
            .find(|name| text(name).is_some())
    {
        return Err(FhirError::not_supported(format!(
            "request.{name} on a {method} entry is not supported"
        )));
    }
    let request = match (method, segments.as_slice(), query) {
        ("POST", [resource_type], None) => {
            check_type(resource_type)?;
            Request::Create {
                resource: resource_of(resource, resource_type)?,
                resource_type: resource_type.to_string(),
                if_none_exist: text("ifNoneExist").map(String::from),
            }
        }
        ("PUT", [resource_type, id], None) => {
            check_type(resource_type)?;
            check_id(id)?;
            let resource = resource_of(resource, resource_type)?;
            if id_of(&resource) != Some(id) {
                return Err(bad_entry(format!(
                    "the resource's id must be '{id}', the id in request.url"
                ))
                .at(format!("{resource_type}.id")));
            }
            Request::Update {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                resource,
                if_match: version("ifMatch")?,
            }
        }
        ("DELETE", [resource_type, id], None) => {
            check_type(resource_type)?;
            check_id(id)?;
            Request::Delete {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                if_match: version("ifMatch")?,
            }
        }
        ("PUT", [_], Some(_)) => return conditional("conditional update"),
        ("DELETE", [_], Some(_)) => return conditional("conditional delete"),
        ("GET" | "HEAD", [resource_type, id], None)
        | ("GET" | "HEAD", [resource_type, id, "_history", _], None) => {
            check_type(resource_type)?;
            check_id(id)?;
            let vid = match segments.get(3) {
                Some(vid) => Some(vid.parse().map_err(|_| {
                    FhirError::not_found(format!("{resource_type}/{id} has no version {vid}"))
                })?),
                None => None,
            };
            Request::Read {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                vid,
                if_none_match: version("ifNoneMatch")?,
                if_modified_since: text("ifModifiedSince")
                    .and_then(|t| crate::fhir::datetime::parse_period(t).ok())
                    .map(|p| p.start),
            }
        }
        ("GET" | "HEAD", _, _) => {
            return Err(FhirError::not_supported(format!(
                "GET {url} in a Bundle is not supported yet: only read and vread are"
            )));
        }
        ("PATCH", segments, query) => patch::read(resource, segments, query, version("ifMatch")?)?,
        ("POST" | "PUT" | "DELETE", _, _) => {
            return Err(bad_entry(format!(
                "{method} {url} is not a valid request.url"
            )));
        }
        _ => {
            return Err(bad_entry(format!(
                "request.method '{method}' is not one of GET, HEAD, POST, PUT, PATCH, DELETE"
            )));
        }
    };
    Ok((full_url, request))
}

/// The path of a request URL relative to the base: an absolute URL is cut to the part that
/// starts with its resource type.
fn relative_path(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    if !path.contains("://") {
        return path;
    }
    let mut offset = 0;
    for segment in path.split('/') {
        if fhirlake_model::is_resource_type(segment) {
            return &path[offset..];
        }
        offset += segment.len() + 1;
    }
    path
}

/// The store write of a create, update or delete entry, with its processing order.
fn to_write(request: Request, new_id: Option<String>) -> (u8, Write) {
    let order = request.order();
    let write = match request {
        Request::Create {
            resource_type,
            resource,
            ..
        } => Write {
            resource_type,
            id: new_id.expect("creates have a new id"),
            action: Action::Create(resource),
            if_match: None,
        },
        Request::Update {
            resource_type,
            id,
            resource,
            if_match,
        } => Write {
            resource_type,
            id,
            action: Action::Update(resource),
            if_match,
        },
        Request::Delete {
            resource_type,
            id,
            if_match,
        } => Write {
            resource_type,
            id,
            action: Action::Delete,
            if_match,
        },
        Request::Read { .. } | Request::Patch(_) => {
            unreachable!("reads are not writes; patches are updates by now")
        }
    };
    (order, write)
}

/// Reads entry `index` and validates the resource it writes, if any; the validator's warnings
/// go to `warnings`, located in the Bundle.
fn read_entry(
    entry: Value,
    index: usize,
    validator: &Validator,
    warnings: &mut Vec<Value>,
) -> Result<(Option<String>, Request), FhirError> {
    let request = parse_entry(entry)?;
    if let (_, Request::Create { resource, .. } | Request::Update { resource, .. }) = &request {
        *warnings = validator
            .check_write(resource)?
            .iter()
            .map(|issue| entry_issue(issue, index))
            .collect();
    }
    Ok(request)
}

/// The warnings of entry `index` once `applied`: the validator's, and why a
/// StructureDefinition it stored cannot be a profile ([`Validator::learn`]).
fn learned(
    validator: &Validator,
    applied: &Applied,
    index: usize,
    warnings: &mut Vec<Value>,
) -> Vec<Value> {
    let mut warnings = std::mem::take(warnings);
    if let Some(body) = applied.body.as_ref().filter(|_| !applied.unchanged) {
        let refused = validator.learn(&applied.resource_type, body);
        warnings.extend(refused.map(|issue| entry_issue(&issue, index)));
    }
    warnings
}

/// One failure for a whole transaction: the first failing entry's error, with every other
/// failing entry's issues after it. None when no entry failed.
fn all_failures(failures: impl Iterator<Item = FhirError>) -> Option<FhirError> {
    failures.reduce(|first, other| {
        let issues = other.to_outcome()["issue"].as_array().cloned();
        first.with(issues.unwrap_or_default())
    })
}

/// A validator's finding about the resource of entry `index`, as an OperationOutcome issue
/// located in the Bundle.
pub(super) fn entry_issue(issue: &Issue, index: usize) -> Value {
    let mut located = issue.to_outcome_issue();
    located["expression"] =
        serde_json::json!([references::entry_expression(index, &issue.expression)]);
    located
}

/// The result of a write: 201 created, 200 updated (or unchanged: the current version), 204
/// deleted (or there was nothing to delete).
fn written(applied: Applied, returns: Return, warnings: Vec<Value>) -> EntryResult {
    let status = match applied.op {
        Some(Op::Create) => 201,
        Some(Op::Update) => 200,
        None if applied.unchanged => 200,
        Some(Op::Delete) | None => 204,
    };
    let changed = applied.op.is_some_and(|op| op != Op::Delete) || applied.unchanged;
    let versioned = applied.op.is_some() || applied.unchanged;
    EntryResult {
        status,
        location: changed.then(|| {
            format!(
                "{}/{}/_history/{}",
                applied.resource_type, applied.id, applied.vid
            )
        }),
        vid: versioned.then_some(applied.vid),
        last_modified: versioned.then_some(applied.last_updated),
        resource: applied.body.filter(|_| returns == Return::Representation),
        error: None,
        warnings,
    }
}

fn failed(error: FhirError) -> EntryResult {
    EntryResult {
        status: error.status,
        location: None,
        vid: None,
        last_modified: None,
        resource: None,
        error: Some(error),
        warnings: Vec::new(),
    }
}

/// A read or vread entry; a resource the client may not read is answered as one that does
/// not exist.
fn read(
    store: &Store,
    search: &Engine,
    access: &Access,
    request: Request,
) -> Result<EntryResult, FhirError> {
    let Request::Read {
        resource_type,
        id,
        vid,
        if_none_match,
        if_modified_since,
    } = request
    else {
        unreachable!("only reads are read")
    };
    access.require(Permission::Read, Some(&resource_type))?;
    let name = format!("{resource_type}/{id}");
    let hidden = |vid: u64, last_updated: Micros, body: Option<&[u8]>| {
        let stored = Stored {
            resource_type: &resource_type,
            id: &id,
            vid,
            last_updated,
            body,
        };
        access
            .sees_stored(search, store, Permission::Read, stored)
            .map(|seen| !seen)
    };
    let absent = || FhirError::not_found(format!("{name} does not exist"));
    let version = match vid {
        Some(vid) => {
            let no_version = || FhirError::not_found(format!("{name} has no version {vid}"));
            let version = store
                .vread(&resource_type, &id, vid)?
                .ok_or_else(no_version)?;
            let body = (version.op != Op::Delete).then_some(version.body.as_slice());
            if hidden(vid, version.last_updated, body)? {
                return Err(no_version());
            }
            (vid, version)
        }
        None => match store.read(&resource_type, &id)? {
            None => return Err(absent()),
            Some((current, None)) => {
                if hidden(current.vid, current.last_updated, None)? {
                    return Err(absent());
                }
                return Err(FhirError::new(
                    410,
                    IssueCode::Deleted,
                    format!("{name} was deleted"),
                ));
            }
            Some((current, Some(version))) => {
                if hidden(current.vid, version.last_updated, Some(&version.body))? {
                    return Err(absent());
                }
                (current.vid, version)
            }
        },
    };
    let (vid, version) = version;
    if version.op == Op::Delete {
        return Err(FhirError::new(
            410,
            IssueCode::Deleted,
            format!("version {vid} of {name} is its deletion"),
        ));
    }
    let unchanged = if_none_match == Some(vid)
        || if_modified_since.is_some_and(|since| version.last_updated < since + 1_000_000);
    Ok(EntryResult {
        status: if unchanged { 304 } else { 200 },
        location: None,
        vid: Some(vid),
        last_modified: Some(version.last_updated),
        resource: (!unchanged).then_some(version.body),
        error: None,
        warnings: Vec::new(),
    })
}

/// The batch-response or transaction-response Bundle of a processed Bundle.
pub fn render(processed: &Processed) -> Vec<u8> {
    let kind = match processed.kind {
        Kind::Batch => "batch-response",
        Kind::Transaction => "transaction-response",
    };
    let mut bundle = BundleWriter::new(kind);
    for entry in &processed.entries {
        bundle.entry(Entry {
            resource: entry.resource.as_deref(),
            response: Some(Response {
                status: status_line(entry.status),
                location: entry.location.clone(),
                etag: entry.vid.map(|vid| format!("W/\"{vid}\"")),
                last_modified: entry.last_modified.map(format_instant),
                outcome: match &entry.error {
                    Some(error) => Some(error.to_outcome()),
                    None if entry.warnings.is_empty() => None,
                    None => Some(serde_json::json!({"resourceType": "OperationOutcome",
                        "issue": entry.warnings})),
                },
            }),
            ..Entry::default()
        });
    }
    bundle.finish()
}

/// `201 Created`: the status line an entry's `response.status` carries.
fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    format!("{status} {reason}")
}
