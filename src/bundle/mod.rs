//! Batch and transaction Bundles, processed as the FHIR R4 RESTful API page says; used by
//! `POST /fhir` and by `fhirlake import`.
//!
//! - A transaction is one store commit: every write of it lands, or none does and the answer
//!   names the failing entry. Its writes are applied in the order R4 gives (DELETE, POST,
//!   PUT), then its GET and HEAD entries run and see them. A GET entry that fails does not
//!   undo the writes: it reports its own status in the transaction-response.
//! - A batch commits each entry on its own (all submitted at once, so they share group
//!   commits) and reports each entry's outcome.
//! - GET and HEAD entries (reads, searches, histories, `metadata`, `$versions`) are answered
//!   by the caller's [`Reads`]: the API layer runs its endpoints' own code, so an entry
//!   answers what the endpoint would.
//! - Conditional entries (`ifNoneExist`, conditional update `PUT Type?criteria`, conditional
//!   delete `DELETE Type?criteria`, conditional references) are resolved against the state
//!   before the Bundle, within what the client may see ([`conditional`]); a conditional delete
//!   of several resources deletes them all in the entry's commit (see [`Deletes`]).
//! - Created entries get new ids; every reference to an entry's `fullUrl` (`urn:uuid:`,
//!   `urn:oid:`, absolute or relative) in any resource of the Bundle is rewritten to the stored
//!   `Type/id` first ([`references`]), also to the resource a conditional entry resolved to.
//! - A `request.url` may be absolute under this server's base ([`Options::base`]).
//! - Each resource written is validated under the policy ([`Validator::check_write`]) as its
//!   entry is read: a transaction with invalid resources fails whole with every failing
//!   entry's findings in one OperationOutcome; a batch fails only those entries. Warnings are
//!   returned in the entry's `response.outcome`.
//! - `Prefer: return=...` applies to every written entry: the resource (`representation`),
//!   nothing (`minimal`), or an OperationOutcome in `response.outcome`.
//! - Each entry is authorized on its own, as the interaction it is ([`Access`]): a refused
//!   entry fails a transaction whole, and only itself in a batch.

//! - A PATCH entry becomes the update it makes of the current version ([`patch`]), pinned to
//!   that version, and is then processed as an update entry.
//! - An update equal to the current version changes nothing (`200` with that version).
//! - A Bundle has at most `--max-bundle-entries` entries, those of the Bundles inside its
//!   entries counted (413 otherwise), checked before any entry is processed.

pub mod conditional;
mod patch;
pub mod references;

use crate::auth::scope::Permission;
use crate::auth::{Access, Decision};
use crate::cdc::endpoints::Prefix;
use crate::cdc::subscriptions;
use crate::fhir::bundle::{BundleWriter, Entry, Response};
use crate::fhir::datetime::{Micros, format_instant, parse_period};
use crate::fhir::outcome::issue;
use crate::fhir::resource::{Intake, check_id, check_type, check_value, id_of, parse_etag};
use crate::fhir::{FhirError, IssueCode, Return, Severity};
use crate::search::Engine;
use crate::store::Store;
use crate::store::commit::{Action, Applied, Write, describe};
use crate::store::tables::Op;
use crate::validate::{Issue, Validator};
pub use conditional::{ConditionalDelete, Deletes};
use references::{Rewrites, at_entry, bad_entry};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;

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
    /// What each written entry's response carries (`Prefer: return=...`).
    pub returns: Return,
    /// The prefixes a Subscription's endpoint is checked with as it is written
    /// ([`subscriptions::check_write`]); `None` checks none (the `import` command: the
    /// operator's data, and deliveries are guarded anyway).
    pub subscription_endpoints: Option<Vec<Prefix>>,
    /// This server's FHIR base URL: a `request.url` under it is taken relative to it.
    pub base: Option<String>,
    /// What a conditional delete does with several matches.
    pub deletes: Deletes,
    /// About the most bytes the GET entries of one Bundle answer together: once their
    /// answers pass it, the GET entries left are refused (422 `too-costly`) without being
    /// run, so a Bundle of many large searches cannot make one response without bound.
    pub max_read_bytes: usize,
    /// The most bytes the `copy` operations of a PATCH entry's JSON Patch may add.
    pub max_patch_growth: usize,
}

/// The outcome of one entry.
#[derive(Debug, Default)]
pub struct EntryResult {
    pub status: u16,
    pub location: Option<String>,
    pub vid: Option<u64>,
    pub last_modified: Option<Micros>,
    pub resource: Option<Vec<u8>>,
    pub error: Option<FhirError>,
    /// The validator's warnings about the entry's resource (OperationOutcome issues).
    pub warnings: Vec<Value>,
    /// What the entry did, for `Prefer: return=OperationOutcome`.
    pub information: Option<String>,
}

/// The outcome of a whole Bundle, entry by entry in the order of the request.
#[derive(Debug)]
pub struct Processed {
    pub kind: Kind,
    pub entries: Vec<EntryResult>,
}

/// A GET or HEAD entry, for [`Reads`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The path below the base (`Patient/1`, `Patient/1/_history`, `metadata`); empty for a
    /// search of every type (`?_type=...`).
    pub path: String,
    /// The query as written (`name=x&_count=2`), empty when there is none.
    pub query: String,
    /// `ifNoneMatch`: ETags, or `*`.
    pub if_none_match: Option<String>,
    /// `ifModifiedSince`.
    pub if_modified_since: Option<Micros>,
}

/// Answers the GET and HEAD entries of Bundles. The API layer answers them with its endpoints'
/// own code (reads, searches, histories, capabilities), so that an entry answers exactly what
/// the endpoint would.
pub trait Reads: Sync {
    /// The answer to `read` (a HEAD entry's resource is dropped afterwards); `caught_up`
    /// says whether the search index holds every write committed before (a search says so
    /// when it does not).
    fn read(&self, read: &Read, caught_up: bool) -> Result<EntryResult, FhirError>;
}

/// What one entry asks for.
#[derive(Debug)]
enum Request {
    Create {
        resource_type: String,
        resource: Value,
        /// The empty elements taken out of `resource` ([`crate::fhir::resource::Intake`]).
        dropped: Vec<String>,
        /// `ifNoneExist`: create only when nothing matches these criteria.
        if_none_exist: Option<String>,
    },
    Update {
        resource_type: String,
        id: String,
        resource: Value,
        dropped: Vec<String>,
        if_match: Option<u64>,
    },
    /// `PUT Type?criteria`.
    ConditionalUpdate {
        resource_type: String,
        criteria: String,
        resource: Value,
        dropped: Vec<String>,
        if_match: Option<u64>,
    },
    Delete {
        resource_type: String,
        id: String,
        if_match: Option<u64>,
    },
    /// Becomes an [`Request::Update`] once the index has caught up ([`patch::resolve`]).
    Patch(patch::PatchEntry),
    /// `DELETE Type?criteria`.
    ConditionalDelete {
        resource_type: String,
        criteria: String,
        if_match: Option<u64>,
    },
    Get {
        head: bool,
        read: Read,
    },
}

/// What an entry does once its conditions are resolved.
#[derive(Debug)]
enum Step {
    /// Store writes, in processing order `order` (DELETE 0, POST 1, PUT 2). None for a
    /// conditional delete that matched nothing.
    Writes {
        order: u8,
        writes: Vec<Write>,
    },
    /// A create whose `ifNoneExist` matched this resource: the match is the answer.
    Existing {
        resource_type: String,
        id: String,
    },
    Get {
        head: bool,
        read: Read,
    },
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

/// Processes a batch or transaction Bundle; `reads` answers its GET and HEAD entries. A
/// transaction that fails answers `Err` with the failing entry named; a batch always answers
/// `Ok`, with each entry's outcome.
#[allow(clippy::too_many_arguments)]
pub async fn process(
    store: &Store,
    search: &Engine,
    access: &Access,
    validator: &Validator,
    mut bundle: Value,
    options: &Options,
    reads: &dyn Reads,
) -> Result<Processed, FhirError> {
    let kind = kind_of(&bundle)?;
    let entries = match bundle.get_mut("entry").map(Value::take) {
        // An empty array is an empty element: as if there were none.
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(bad_entry("Bundle.entry must be an array").at("Bundle.entry"));
        }
    };
    let nested = nested_entries(&entries);
    if entries.len() + nested > options.max_entries {
        return Err(FhirError::new(
            413,
            IssueCode::TooLong,
            format!(
                "the Bundle has {} entries and the Bundles inside them {nested}; this server \
                 takes at most {} in all",
                entries.len(),
                options.max_entries
            ),
        ));
    }
    // The Bundle's own empty elements (never stored) go without a word; its resources' are
    // reported with their entries.
    fhirlake_model::drop_empty(&mut bundle);
    let entries: Vec<Value> = entries.into_iter().map(without_empty_elements).collect();
    check_shell(bundle, &entries)?;

    let mut warnings: Vec<Vec<Value>> = vec![Vec::new(); entries.len()];
    let mut requests: Vec<Result<(Option<String>, Request), FhirError>> = entries
        .into_iter()
        .zip(&mut warnings)
        .enumerate()
        .map(|(index, (entry, warnings))| {
            read_entry(entry, index, validator, options.base.as_deref(), warnings)
                .map_err(|error| at_entry(error, index))
        })
        .collect();
    // Conditional entries and references resolve against everything committed before.
    search.catch_up(store).await;
    patch::resolve(
        &mut requests,
        &mut warnings,
        store,
        search,
        access,
        validator,
        options.max_patch_growth,
    );
    let mut steps: Vec<Result<(Option<String>, Step), FhirError>> = requests
        .into_iter()
        .enumerate()
        .map(|(index, request)| {
            let (full_url, request) = request?;
            let step = resolve(search, access, request, options.deletes);
            step.map(|step| (full_url, step))
                .map_err(|error| at_entry(error, index))
        })
        .collect();
    if kind == Kind::Transaction {
        let failures = steps.iter().filter_map(|r| r.as_ref().err().cloned());
        if let Some(error) = all_failures(failures) {
            return Err(error);
        }
    }

    // The rewrites of references to every entry's fullUrl, to the resource it is stored as.
    let mut rewrites = Rewrites::default();
    for (full_url, step) in steps.iter().flatten() {
        let Some(full_url) = full_url else { continue };
        match step {
            Step::Writes { writes, .. } => {
                if let [write] = writes.as_slice()
                    && !matches!(write.action, Action::Delete)
                {
                    rewrites.add(full_url, &write.resource_type, &write.id);
                }
            }
            Step::Existing { resource_type, id } => rewrites.add(full_url, resource_type, id),
            Step::Get { .. } => {}
        }
    }
    {
        // Every occurrence of a conditional reference resolves against the same state (what
        // was committed before the Bundle): each is searched once. A Synthea patient's
        // Bundle names its few practitioners and organizations hundreds of times.
        let view = access.view(Permission::Read);
        let resolved: RefCell<HashMap<String, Result<String, FhirError>>> = RefCell::default();
        let conditional = |reference: &str| {
            if let Some(known) = resolved.borrow().get(reference) {
                return known.clone();
            }
            let found = search.resolve(reference, &view);
            resolved
                .borrow_mut()
                .insert(reference.to_string(), found.clone());
            found
        };
        for (index, step) in steps.iter_mut().enumerate() {
            let Ok((_, Step::Writes { writes, .. })) = step else {
                continue;
            };
            let rewritten = writes
                .iter_mut()
                .try_for_each(|write| match &mut write.action {
                    Action::Create(resource) | Action::Update(resource) => {
                        rewrites.apply(resource, &write.resource_type, &conditional)
                    }
                    Action::Delete => Ok(()),
                });
            if let Err(error) = rewritten {
                let error = at_entry(error, index);
                if kind == Kind::Transaction {
                    return Err(error);
                }
                *step = Err(error);
            }
        }
    }

    let mut results: Vec<Option<EntryResult>> = (0..steps.len()).map(|_| None).collect();
    // (entry, order, its writes), checked.
    let mut planned: Vec<(usize, u8, Vec<Write>)> = Vec::new();
    let mut existing = Vec::new();
    let mut gets = Vec::new();
    for (index, step) in steps.into_iter().enumerate() {
        let (order, writes) = match step {
            Err(error) => {
                results[index] = Some(failed(error));
                continue;
            }
            Ok((_, Step::Existing { resource_type, id })) => {
                existing.push((index, resource_type, id));
                continue;
            }
            Ok((_, Step::Get { head, read })) => {
                gets.push((index, head, read));
                continue;
            }
            Ok((_, Step::Writes { order, writes })) => (order, writes),
        };
        match check_writes(access, search, store, options, writes).await {
            Ok((kept, absent)) if kept.is_empty() && !absent.is_empty() => {
                results[index] = Some(written(absent, options.returns, Vec::new()));
            }
            Ok((kept, _)) => planned.push((index, order, kept)),
            Err(error) if kind == Kind::Transaction => return Err(at_entry(error, index)),
            Err(error) => results[index] = Some(failed(at_entry(error, index))),
        }
    }
    planned.sort_by_key(|(_, order, _)| *order);
    let committed = match kind {
        Kind::Transaction => commit_transaction(store, planned).await?,
        Kind::Batch => commit_batch(store, planned).await,
    };
    for (index, applied) in committed {
        results[index] = Some(match applied {
            Ok(applied) => {
                let warnings = learned(validator, &applied, index, &mut warnings[index]);
                written(applied, options.returns, warnings)
            }
            Err(error) => failed(at_entry(error, index)),
        });
    }
    for (index, resource_type, id) in existing {
        results[index] = Some(match matched(store, &resource_type, &id, options.returns) {
            Ok(result) => result,
            Err(error) => failed(at_entry(error, index)),
        });
    }
    if !gets.is_empty() {
        // After the writes, which they see.
        let caught_up = search.catch_up(store).await;
        for (index, result) in answer_gets(reads, gets, caught_up, options.max_read_bytes) {
            results[index] = Some(result);
        }
    }
    Ok(Processed {
        kind,
        entries: results
            .into_iter()
            .map(|r| r.expect("every entry has a result"))
            .collect(),
    })
}

/// Checks the writes of one entry ([`Access::check_write`], and the Subscription endpoints
/// `options` allow): those to commit, and the results of those answered as about what does not
/// exist, without the store ([`Decision::Absent`]).
async fn check_writes(
    access: &Access,
    search: &Engine,
    store: &Store,
    options: &Options,
    writes: Vec<Write>,
) -> Result<(Vec<Write>, Vec<Applied>), FhirError> {
    let (mut kept, mut absent) = (Vec::with_capacity(writes.len()), Vec::new());
    for mut write in writes {
        match access.check_write(search, store, &mut write)? {
            Decision::Commit => {
                if let Some(allowed) = &options.subscription_endpoints {
                    subscriptions::check_write(allowed, &write).await?;
                }
                kept.push(write);
            }
            Decision::Absent(applied) => absent.push(applied),
        }
    }
    Ok((kept, absent))
}

/// `entry` without the empty elements of its own (`request.ifNoneExist: ""`), its resource
/// left as it is: its empty elements are taken out and reported when it is checked.
fn without_empty_elements(mut entry: Value) -> Value {
    let resource = entry.get_mut("resource").map(Value::take);
    fhirlake_model::drop_empty(&mut entry);
    if let (Some(resource), Value::Object(members)) = (resource, &mut entry) {
        members.insert("resource".into(), resource);
    }
    entry
}

/// How many entries the Bundles inside `values` hold, at any depth: a Bundle as an entry's
/// resource, inside a Parameters, contained, or inside another of them.
fn nested_entries(values: &[Value]) -> usize {
    let mut count = 0;
    let mut pending: Vec<&Value> = values.iter().collect();
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(members) => {
                if members.get("resourceType").and_then(Value::as_str) == Some("Bundle")
                    && let Some(Value::Array(entries)) = members.get("entry")
                {
                    count += entries.len();
                }
                pending.extend(members.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    count
}

/// What the writes of each entry (`(entry, order, writes)`) applied, or why they were refused.
type Committed = Vec<(usize, Result<Vec<Applied>, FhirError>)>;

/// Commits the writes of every entry of a transaction in one commit, in the order given; a
/// refusal names the entry of the write at fault.
async fn commit_transaction(
    store: &Store,
    planned: Vec<(usize, u8, Vec<Write>)>,
) -> Result<Committed, FhirError> {
    // Each write's entry, for the answers and for a refusal.
    let mut owners = Vec::new();
    let mut writes = Vec::new();
    let mut committed: Committed = Vec::with_capacity(planned.len());
    for (index, _, mut entry_writes) in planned {
        owners.extend(std::iter::repeat_n(index, entry_writes.len()));
        writes.append(&mut entry_writes);
        committed.push((index, Ok(Vec::new())));
    }
    if writes.is_empty() {
        return Ok(committed);
    }
    let applied = store.commit(writes).await.map_err(|refused| {
        let index = refused.entry.map_or(0, |write| owners[write]);
        at_entry(refused.error, index)
    })?;
    let mut by_entry: std::collections::HashMap<usize, Vec<Applied>> = Default::default();
    for (index, applied) in owners.into_iter().zip(applied) {
        by_entry.entry(index).or_default().push(applied);
    }
    for (index, applied) in &mut committed {
        *applied = Ok(by_entry.remove(index).unwrap_or_default());
    }
    Ok(committed)
}

/// Commits the writes of each entry of a batch on its own (all submitted at once, so they
/// share group commits).
async fn commit_batch(store: &Store, planned: Vec<(usize, u8, Vec<Write>)>) -> Committed {
    let pending: Vec<_> = planned
        .into_iter()
        .map(|(index, _, writes)| (index, (!writes.is_empty()).then(|| store.submit(writes))))
        .collect();
    let mut committed = Vec::with_capacity(pending.len());
    for (index, pending) in pending {
        let applied = match pending {
            None => Ok(Vec::new()),
            Some(pending) => pending.await.map_err(|refused| refused.error),
        };
        committed.push((index, applied));
    }
    committed
}

/// The answers of the GET and HEAD entries `gets` (`(entry, head, read)`), in order. Once the
/// answers so far pass `max_bytes`, the entries left are refused without being run.
fn answer_gets(
    reads: &dyn Reads,
    gets: Vec<(usize, bool, Read)>,
    caught_up: bool,
    max_bytes: usize,
) -> Vec<(usize, EntryResult)> {
    let mut answered = 0usize;
    let mut answers = Vec::with_capacity(gets.len());
    for (index, head, read) in gets {
        if answered > max_bytes {
            let error = FhirError::new(
                422,
                IssueCode::TooCostly,
                format!(
                    "the GET entries before this one answer {answered} bytes, more than one \
                     response holds ({max_bytes}): send this one in another Bundle"
                ),
            );
            answers.push((index, failed(at_entry(error, index))));
            continue;
        }
        let result = match reads.read(&read, caught_up) {
            Ok(mut result) => {
                if head {
                    result.resource = None;
                }
                answered += result.resource.as_ref().map_or(0, Vec::len);
                result
            }
            Err(error) => failed(at_entry(error, index)),
        };
        answers.push((index, result));
    }
    answers
}

/// What `request` does once its conditions are resolved against what is committed (within
/// what the client may see).
fn resolve(
    search: &Engine,
    access: &Access,
    request: Request,
    deletes: Deletes,
) -> Result<Step, FhirError> {
    let write = |resource_type: String, id: String, action: Action, if_match| Write {
        resource_type,
        id,
        action,
        if_match,
    };
    Ok(match request {
        Request::Create {
            resource_type,
            resource,
            if_none_exist,
            ..
        } => {
            if let Some(criteria) = if_none_exist {
                let readable = access.view(Permission::Read);
                match search
                    .matching(&resource_type, &criteria, &readable)?
                    .as_slice()
                {
                    [] => {}
                    [id] => {
                        return Ok(Step::Existing {
                            id: id.clone(),
                            resource_type,
                        });
                    }
                    _ => {
                        return Err(FhirError::new(
                            412,
                            IssueCode::Conflict,
                            format!(
                                "ifNoneExist '{criteria}' matches more than one {resource_type}"
                            ),
                        ));
                    }
                }
            }
            let id = uuid::Uuid::new_v4().to_string();
            Step::Writes {
                order: 1,
                writes: vec![write(resource_type, id, Action::Create(resource), None)],
            }
        }
        Request::Update {
            resource_type,
            id,
            resource,
            if_match,
            ..
        } => Step::Writes {
            order: 2,
            writes: vec![write(resource_type, id, Action::Update(resource), if_match)],
        },
        Request::ConditionalUpdate {
            resource_type,
            criteria,
            resource,
            if_match,
            ..
        } => Step::Writes {
            order: 2,
            writes: vec![conditional::update(
                search,
                access,
                &resource_type,
                &criteria,
                resource,
                if_match,
            )?],
        },
        Request::Delete {
            resource_type,
            id,
            if_match,
        } => Step::Writes {
            order: 0,
            writes: vec![write(resource_type, id, Action::Delete, if_match)],
        },
        Request::ConditionalDelete {
            resource_type,
            criteria,
            if_match,
        } => Step::Writes {
            order: 0,
            writes: conditional::delete(
                search,
                access,
                &resource_type,
                &criteria,
                if_match,
                deletes,
            )?,
        },
        Request::Get { head, read } => Step::Get { head, read },
        Request::Patch(_) => unreachable!("patch::resolve made every patch an update"),
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

/// Reads one entry's `fullUrl` and `request`, and checks its resource; `base` is this
/// server's FHIR base, which an absolute `request.url` may start with.
fn parse_entry(
    mut entry: Value,
    base: Option<&str>,
) -> Result<(Option<String>, Request), FhirError> {
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
    let path = relative_path(path, base);
    let segments: Vec<&str> = path.split('/').collect();
    let version = |name: &str| -> Result<Option<u64>, FhirError> {
        text(name)
            .map(|tag| {
                parse_etag(tag).ok_or_else(|| {
                    bad_entry(format!("request.{name} '{tag}' is not a version ETag"))
                })
            })
            .transpose()
    };
    let resource_of = |resource: Option<Value>, resource_type: &str| {
        let resource =
            resource.ok_or_else(|| bad_entry(format!("a {method} entry needs a resource")))?;
        check_value(resource, Some(resource_type))
    };
    // Each condition belongs to some methods; elsewhere it would be silently ignored, so it
    // is refused instead.
    const CONDITIONS: [&str; 4] = ["ifNoneMatch", "ifModifiedSince", "ifNoneExist", "ifMatch"];
    let taken: &[&str] = match method {
        "GET" | "HEAD" => &CONDITIONS[..2],
        "POST" => &CONDITIONS[2..3],
        "PUT" | "DELETE" | "PATCH" => &CONDITIONS[3..],
        _ => &CONDITIONS,
    };
    if let Some(name) = CONDITIONS
        .into_iter()
        .find(|name| text(name).is_some() && !taken.contains(name))
    {
        return Err(FhirError::not_supported(format!(
            "request.{name} on a {method} entry is not supported"
        )));
    }
    let request = match (method, segments.as_slice(), query) {
        ("POST", [resource_type], None) => {
            check_type(resource_type)?;
            let Intake { resource, dropped } = resource_of(resource, resource_type)?;
            Request::Create {
                resource,
                dropped,
                resource_type: resource_type.to_string(),
                if_none_exist: text("ifNoneExist").map(String::from),
            }
        }
        ("PUT", [resource_type, id], None) => {
            check_type(resource_type)?;
            check_id(id)?;
            let Intake { resource, dropped } = resource_of(resource, resource_type)?;
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
                dropped,
                if_match: version("ifMatch")?,
            }
        }
        ("PUT", [resource_type], Some(criteria)) => {
            check_type(resource_type)?;
            let Intake { resource, dropped } = resource_of(resource, resource_type)?;
            Request::ConditionalUpdate {
                resource,
                dropped,
                resource_type: resource_type.to_string(),
                criteria: criteria.to_string(),
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
        ("DELETE", [resource_type], Some(criteria)) => {
            check_type(resource_type)?;
            Request::ConditionalDelete {
                resource_type: resource_type.to_string(),
                criteria: criteria.to_string(),
                if_match: version("ifMatch")?,
            }
        }
        ("GET" | "HEAD", _, _) => {
            let if_modified_since = text("ifModifiedSince")
                .map(|since| {
                    parse_period(since).map(|period| period.start).map_err(|e| {
                        bad_entry(format!(
                            "request.ifModifiedSince '{since}' is not an instant: {e}"
                        ))
                    })
                })
                .transpose()?;
            Request::Get {
                head: method == "HEAD",
                read: Read {
                    path: path.to_string(),
                    query: query.unwrap_or_default().to_string(),
                    if_none_match: text("ifNoneMatch").map(String::from),
                    if_modified_since,
                },
            }
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

/// The path of a request URL relative to the base: an absolute URL under `base` (this
/// server's) is cut to what follows it; another absolute URL to the part that starts with its
/// resource type.
fn relative_path<'a>(path: &'a str, base: Option<&str>) -> &'a str {
    if let Some(base) = base
        && let Some(rest) = path.strip_prefix(base.trim_end_matches('/'))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return rest.trim_start_matches('/');
    }
    let path = path.trim_start_matches('/');
    if !path.contains("://") {
        return path;
    }
    let mut offset = 0;
    for segment in path.split('/') {
        if crate::fhir::resource::is_served_type(segment) {
            return &path[offset..];
        }
        offset += segment.len() + 1;
    }
    path
}

/// Reads entry `index` and validates the resource it writes, if any; the validator's warnings
/// go to `warnings`, located in the Bundle.
fn read_entry(
    entry: Value,
    index: usize,
    validator: &Validator,
    base: Option<&str>,
    warnings: &mut Vec<Value>,
) -> Result<(Option<String>, Request), FhirError> {
    let request = parse_entry(entry, base)?;
    if let (
        _,
        Request::Create {
            resource, dropped, ..
        }
        | Request::Update {
            resource, dropped, ..
        }
        | Request::ConditionalUpdate {
            resource, dropped, ..
        },
    ) = &request
    {
        *warnings = validator
            .check_write(resource, dropped)?
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
    applied: &[Applied],
    index: usize,
    warnings: &mut Vec<Value>,
) -> Vec<Value> {
    let mut warnings = std::mem::take(warnings);
    for applied in applied {
        if let Some(body) = applied.body.as_ref().filter(|_| !applied.unchanged) {
            let refused = validator.learn(&applied.resource_type, body);
            warnings.extend(refused.map(|issue| entry_issue(&issue, index)));
        }
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

/// The answer of an entry whose writes were `applied`: a create or update (201, 200) with its
/// location, version and, as `returns` asks, its resource (an update that changed nothing:
/// 200 with the current version); a delete (204), or a conditional
/// delete of none or several resources (204 without a version).
fn written(applied: Vec<Applied>, returns: Return, warnings: Vec<Value>) -> EntryResult {
    let information = describe(&applied);
    let mut result = match <[Applied; 1]>::try_from(applied) {
        Ok([applied]) => {
            let changed = applied.op.is_some_and(|op| op != Op::Delete) || applied.unchanged;
            let versioned = applied.op.is_some() || applied.unchanged;
            EntryResult {
                status: match applied.op {
                    Some(Op::Create) => 201,
                    Some(Op::Update) => 200,
                    None if applied.unchanged => 200,
                    Some(Op::Delete | Op::Erased) | None => 204,
                },
                location: changed.then(|| {
                    format!(
                        "{}/{}/_history/{}",
                        applied.resource_type, applied.id, applied.vid
                    )
                }),
                vid: versioned.then_some(applied.vid),
                last_modified: versioned.then_some(applied.last_updated),
                resource: applied.body.filter(|_| returns == Return::Representation),
                ..EntryResult::default()
            }
        }
        Err(_) => EntryResult {
            status: 204,
            ..EntryResult::default()
        },
    };
    result.warnings = warnings;
    result.information = (returns == Return::OperationOutcome).then_some(information);
    result
}

/// The answer of a create whose `ifNoneExist` matched `resource_type/id`: 200 with where the
/// match is, its version and, as `returns` asks, the resource.
fn matched(
    store: &Store,
    resource_type: &str,
    id: &str,
    returns: Return,
) -> Result<EntryResult, FhirError> {
    let Some((current, Some(version))) = store.read(resource_type, id)? else {
        return Err(FhirError::not_found(format!(
            "{resource_type}/{id} matched ifNoneExist but is gone"
        )));
    };
    Ok(EntryResult {
        status: 200,
        location: Some(format!("{resource_type}/{id}/_history/{}", current.vid)),
        vid: Some(current.vid),
        last_modified: Some(version.last_updated),
        resource: (returns == Return::Representation).then_some(version.body),
        information: (returns == Return::OperationOutcome)
            .then(|| format!("{resource_type}/{id} matches ifNoneExist: nothing was created")),
        ..EntryResult::default()
    })
}

fn failed(error: FhirError) -> EntryResult {
    EntryResult {
        status: error.status,
        error: Some(error),
        ..EntryResult::default()
    }
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
                    None => {
                        let information = entry.information.as_deref().map(|message| {
                            issue(
                                Severity::Information,
                                IssueCode::Informational,
                                message,
                                None,
                            )
                        });
                        let issues: Vec<Value> = information
                            .into_iter()
                            .chain(entry.warnings.iter().cloned())
                            .collect();
                        (!issues.is_empty()).then(|| {
                            serde_json::json!({"resourceType": "OperationOutcome",
                                "issue": issues})
                        })
                    }
                },
            }),
            ..Entry::default()
        });
    }
    bundle.finish()
}

/// `201 Created`: the status line an entry's `response.status` carries, with the status's own
/// reason phrase (RFC 9110's, as the `http` crate lists them).
fn status_line(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Unknown Status");
    format!("{status} {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_an_entry_can_get_has_its_own_reason() {
        for (status, line) in [
            (200, "200 OK"),
            (201, "201 Created"),
            (204, "204 No Content"),
            (304, "304 Not Modified"),
            (400, "400 Bad Request"),
            (401, "401 Unauthorized"),
            (403, "403 Forbidden"),
            (404, "404 Not Found"),
            (405, "405 Method Not Allowed"),
            (409, "409 Conflict"),
            (410, "410 Gone"),
            (412, "412 Precondition Failed"),
            (413, "413 Payload Too Large"),
            (415, "415 Unsupported Media Type"),
            (422, "422 Unprocessable Entity"),
            (500, "500 Internal Server Error"),
            (501, "501 Not Implemented"),
            (503, "503 Service Unavailable"),
        ] {
            assert_eq!(status_line(status), line);
        }
        assert_eq!(status_line(599), "599 Unknown Status");
    }

    #[test]
    fn entries_of_bundles_inside_entries_count() {
        let bundle = |entries: Vec<Value>| {
            serde_json::json!({"resourceType": "Bundle", "type": "collection",
                "entry": entries.into_iter().map(|r| serde_json::json!({"resource": r}))
                    .collect::<Vec<_>>()})
        };
        let patient = serde_json::json!({"resourceType": "Patient"});
        let inner = bundle(vec![patient.clone(), patient.clone()]);
        let middle = bundle(vec![inner.clone(), patient.clone()]);
        let entries = vec![
            serde_json::json!({"resource": patient}),
            serde_json::json!({"resource": middle}),
            serde_json::json!({"resource": {"resourceType": "Parameters",
                "parameter": [{"name": "b", "resource": inner}]}}),
        ];
        assert_eq!(nested_entries(&entries), 2 + 2 + 2);
        assert_eq!(nested_entries(&entries[..1]), 0);
    }
}
