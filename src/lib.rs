//! fhirlake: a FHIR R4 server and unified health data store in one binary.
//!
//! The layers, top to bottom (each uses only the ones below it; see ARCHITECTURE.md):
//! - [`server`], [`cli`], [`config`], [`logging`]: the binary's commands, settings, wiring
//!   and log output;
//! - [`api`]: HTTP to calls on the layers below, and their results to FHIR responses;
//! - [`jobs`]: long operations run by a pool of workers, resumed after a restart (bulk
//!   `$export`);
//! - [`bulk`]: `fhirlake import`;
//! - [`bundle`]: batch and transaction Bundles (for the API and `import`);
//! - [`patch`]: PATCH documents (JSON Patch, FHIRPath Patch, merge patch) applied to a
//!   resource's JSON, on the FHIRPath engine and the validator's R4 definitions;
//! - [`cdc`]: the change stream (CloudEvents from the change log), Subscriptions, the sink;
//! - [`auth`]: bearer tokens, SMART scopes, what a request may see and do, the audit trail,
//!   the backend clients of the token endpoint and their client assertions;
//! - [`validate`]: the write policy: structure, cardinality, primitive formats, profiles and
//!   codes;
//! - [`search`]: the tantivy index of the current versions and FHIR search on it;
//! - [`store`]: redb tables, the commit path (group commit) and the change log;
//! - [`terminology`]: code systems and value sets (beside store and fhir, using neither);
//! - [`fhirpath`]: the FHIRPath engine (search extraction, invariants, FHIRPath Patch);
//! - [`fhir`]: FHIR rules that need no storage: resources, ids, instants, bundles,
//!   OperationOutcome; it sits on `fhirlake-model`, the typed R4 model;
//! - [`panics`]: how a caught panic is described and logged (for every layer that catches one).

pub mod api;
pub mod auth;
pub mod bulk;
pub mod bundle;
pub mod cdc;
pub mod cli;
pub mod config;
pub mod fhir;
pub mod fhirpath;
pub mod jobs;
pub mod logging;
pub mod panics;
pub mod patch;
pub mod search;
pub mod server;
pub mod store;
pub mod terminology;
pub mod validate;
pub mod views;
