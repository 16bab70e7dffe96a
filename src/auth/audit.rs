//! The audit trail: one structured log line per request, on the tracing target `audit`, saying
//! who (the token's `sub` and client), what (the FHIR interaction, its resource type and id),
//! when (an instant, beside the log line's own timestamp) and how it ended (the HTTP status and
//! the AuditEvent outcome code). Its fields: `request_id`, `who` (`token`, `open`, or
//! `anonymous` for a request refused before it had an access), `subject`, `client`, `patient`,
//! `interaction`, `resource_type`, `id`, `status`, `outcome` (AuditEvent's 0, 4 or 8) and `at`.
//! `--audit off` turns it off.
//!
//! It is a log rather than AuditEvent resources in the store: storing one would turn every read
//! into a durable write, a change-log entry and an index update, and reading the trail through
//! the API would itself be audited. A log pipeline (`--log-format json`, filtered on
//! `target = "audit"`) is where such a trail is kept and queried.

use super::Access;

/// One request, as the trail records it.
pub struct Record<'a> {
    pub request_id: &'a str,
    pub access: Option<&'a Access>,
    /// The FHIR interaction (`read`, `search-type`...).
    pub interaction: &'a str,
    pub resource_type: Option<&'a str>,
    pub id: Option<&'a str>,
    pub status: u16,
}

/// The AuditEvent outcome of an HTTP status: 0 success, 4 minor failure (the client's), 8
/// serious failure (the server's).
pub fn outcome(status: u16) -> u8 {
    match status {
        0..400 => 0,
        400..500 => 4,
        _ => 8,
    }
}

/// Writes the audit line of a request.
pub fn record(record: &Record) {
    let principal = match record.access {
        Some(Access::Token(principal)) => Some(principal.as_ref()),
        _ => None,
    };
    let who = match record.access {
        None => "anonymous",
        Some(Access::Open) => "open",
        Some(Access::Token(_)) => "token",
    };
    tracing::info!(
        target: "audit",
        request_id = record.request_id,
        who,
        subject = principal.and_then(|p| p.subject.as_deref()),
        client = principal.and_then(|p| p.client.as_deref()),
        patient = principal.and_then(|p| p.patient.as_deref()),
        interaction = record.interaction,
        resource_type = record.resource_type,
        id = record.id,
        status = record.status,
        outcome = outcome(record.status),
        at = %crate::fhir::datetime::format_instant(crate::fhir::datetime::now()),
        "audit"
    );
}

/// Writes the audit line of an erasure, one per resource: who erased (the token's `sub` and
/// client; `open` without authorization), what (`resource_type`, `id`, the `versions` erased
/// and whether the resource is `gone`), by which `operation` and, for a job, its `job` id.
/// Never the content. It is written with `--audit off` too: erasure is rare and must leave
/// a trace.
pub fn erasure(
    access: &Access,
    operation: &str,
    job: Option<&str>,
    erased: &crate::store::erase::Erased,
) {
    let principal = match access {
        Access::Token(principal) => Some(principal.as_ref()),
        Access::Open => None,
    };
    let who = if principal.is_some() { "token" } else { "open" };
    let versions = erased
        .vids
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    tracing::info!(
        target: "audit",
        event = "erasure",
        who,
        subject = principal.and_then(|p| p.subject.as_deref()),
        client = principal.and_then(|p| p.client.as_deref()),
        operation,
        job,
        resource_type = erased.resource_type.as_str(),
        id = erased.id.as_str(),
        versions = versions.as_str(),
        gone = erased.gone,
        at = %crate::fhir::datetime::format_instant(crate::fhir::datetime::now()),
        "erased"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(super::outcome(200), 0);
        assert_eq!(super::outcome(304), 0);
        assert_eq!(super::outcome(401), 4);
        assert_eq!(super::outcome(403), 4);
        assert_eq!(super::outcome(503), 8);
    }
}
