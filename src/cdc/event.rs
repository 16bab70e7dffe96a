//! A change event: one committed version in a CloudEvents 1.0 envelope.
//!
//! `id` is the change's seq (unique and increasing along the log, so a consumer de-duplicates
//! and resumes by it), `type` `fhir.{Type}.created|updated|deleted`, `subject`
//! `{Type}/{id}/_history/{vid}`, `time` the version's lastUpdated, `txid` (an extension
//! attribute) the seq of the first change of its transaction, shared by all its changes, and
//! `data` the resource as stored (its bytes spliced in, never re-serialized), or only a FHIR
//! Reference to the version with [`Content::IdOnly`]. A delete has no data.
//!
//! An erasure is `fhir.{Type}.erased` without data, with the extension attribute `erased`:
//! the seq of the change whose version was erased (its own `id` for the change's entry
//! rewritten in place, an earlier one for the event the erasure appended; 0 when that change
//! was trimmed). A consumer that kept the version `subject` names should remove it.
//!
//! `source` is `--base-url`, else `/fhir`: one per server, the same on every channel, so
//! `(source, id)` names one change everywhere.

use crate::fhir::datetime::format_instant;
use crate::fhir::{FhirError, IssueCode};
use crate::store::log::Logged;
use crate::store::tables::Op;

/// What an event's `data` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Content {
    /// The resource (`content=full`, the default).
    #[default]
    Full,
    /// A Reference to the version only (`content=id-only`).
    IdOnly,
}

impl Content {
    pub fn parse(value: &str) -> Result<Content, FhirError> {
        match value {
            "full" => Ok(Content::Full),
            "id-only" => Ok(Content::IdOnly),
            _ => Err(FhirError::bad_request(
                IssueCode::Invalid,
                format!("content={value}: it is full or id-only"),
            )),
        }
    }
}

/// One committed version of a resource.
pub type Event = Logged;

/// `created`, `updated` or `deleted`.
pub fn action(event: &Event) -> &'static str {
    match event.change.op {
        Op::Create => "created",
        Op::Update => "updated",
        Op::Delete => "deleted",
        Op::Erased => "erased",
    }
}

/// `fhir.{Type}.{action}`
pub fn event_type(event: &Event) -> String {
    format!("fhir.{}.{}", event.change.resource_type, action(event))
}

/// Whether an event of `op` carries the version: deletes and erasures have none.
pub fn has_data(op: Op) -> bool {
    matches!(op, Op::Create | Op::Update)
}

/// `{Type}/{id}/_history/{vid}`
pub fn subject(event: &Event) -> String {
    let change = &event.change;
    format!(
        "{}/{}/_history/{}",
        change.resource_type, change.id, change.vid
    )
}

/// The event as CloudEvents JSON (structured mode), from `source`.
pub fn to_json(event: &Event, source: &str, content: Content) -> Vec<u8> {
    let text = |value: &str| serde_json::to_string(value).expect("a string serializes");
    let change = &event.change;
    let mut out = Vec::with_capacity(256 + event.version.body.len());
    out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":\"");
    out.extend_from_slice(change.seq.to_string().as_bytes());
    out.extend_from_slice(b"\",\"source\":");
    out.extend_from_slice(text(source).as_bytes());
    out.extend_from_slice(b",\"type\":");
    out.extend_from_slice(text(&event_type(event)).as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(format_instant(change.last_updated).as_bytes());
    out.extend_from_slice(b"\",\"subject\":");
    let subject = text(&subject(event));
    out.extend_from_slice(subject.as_bytes());
    out.extend_from_slice(b",\"txid\":\"");
    out.extend_from_slice(change.txid.to_string().as_bytes());
    out.push(b'"');
    if let Some(erased) = change.erased {
        out.extend_from_slice(b",\"erased\":\"");
        out.extend_from_slice(erased.to_string().as_bytes());
        out.push(b'"');
    }
    if has_data(change.op) {
        out.extend_from_slice(b",\"datacontenttype\":\"application/fhir+json\",\"data\":");
        match content {
            Content::Full => out.extend_from_slice(&event.version.body),
            Content::IdOnly => {
                out.extend_from_slice(b"{\"reference\":");
                out.extend_from_slice(subject.as_bytes());
                out.push(b'}');
            }
        }
    }
    out.push(b'}');
    out
}

/// The CloudEvents HTTP binary-mode headers of the event (`ce-id`, ...): the envelope of a
/// rest-hook notification, whose body is the data.
pub fn http_headers(event: &Event, source: &str) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("ce-specversion", "1.0".into()),
        ("ce-id", event.change.seq.to_string()),
        ("ce-source", source.into()),
        ("ce-type", event_type(event)),
        ("ce-time", format_instant(event.change.last_updated)),
        ("ce-subject", subject(event)),
        ("ce-txid", event.change.txid.to_string()),
    ];
    if let Some(erased) = event.change.erased {
        headers.push(("ce-erased", erased.to_string()));
    }
    headers
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::tables::{ChangeRecord, Method, VersionRecord};
    use serde_json::{Value, json};

    /// An event of `op` for `Patient/{id}` at seq `seq`.
    pub fn event(seq: u64, id: &str, op: Op, body: Value) -> Event {
        Logged {
            change: ChangeRecord {
                seq,
                txid: seq,
                resource_type: "Patient".into(),
                id: id.into(),
                vid: 2,
                op,
                last_updated: 1_700_000_000_000_000,
                erased: (op == Op::Erased).then_some(3),
            },
            version: VersionRecord {
                op,
                method: Method::Put,
                last_updated: 1_700_000_000_000_000,
                body: if !has_data(op) {
                    Vec::new()
                } else {
                    serde_json::to_vec(&body).unwrap()
                },
            },
        }
    }

    #[test]
    fn events_are_cloudevents_with_the_resource_or_its_reference() {
        let patient = json!({"resourceType": "Patient", "id": "p\"1", "active": true});
        let full: Value = serde_json::from_slice(&to_json(
            &event(7, "p\"1", Op::Update, patient.clone()),
            "/fhir",
            Content::Full,
        ))
        .unwrap();
        assert_eq!(
            full,
            json!({"specversion": "1.0", "id": "7", "source": "/fhir",
                "type": "fhir.Patient.updated", "time": "2023-11-14T22:13:20.000000Z",
                "subject": "Patient/p\"1/_history/2", "txid": "7",
                "datacontenttype": "application/fhir+json", "data": patient})
        );
        let id_only: Value = serde_json::from_slice(&to_json(
            &event(7, "p1", Op::Create, patient.clone()),
            "/fhir",
            Content::IdOnly,
        ))
        .unwrap();
        assert_eq!(id_only["type"], "fhir.Patient.created");
        assert_eq!(
            id_only["data"],
            json!({"reference": "Patient/p1/_history/2"})
        );
        let deleted: Value = serde_json::from_slice(&to_json(
            &event(8, "p1", Op::Delete, Value::Null),
            "/fhir",
            Content::Full,
        ))
        .unwrap();
        assert_eq!(deleted["type"], "fhir.Patient.deleted");
        assert!(deleted.get("data").is_none() && deleted.get("datacontenttype").is_none());
        let erased: Value = serde_json::from_slice(&to_json(
            &event(9, "p1", Op::Erased, Value::Null),
            "/fhir",
            Content::Full,
        ))
        .unwrap();
        assert_eq!(
            (&erased["type"], &erased["erased"]),
            (&json!("fhir.Patient.erased"), &json!("3"))
        );
        assert!(erased.get("data").is_none());
        assert!(deleted.get("erased").is_none());
        assert_eq!(Content::parse("id-only").unwrap(), Content::IdOnly);
        assert_eq!(Content::parse("all").unwrap_err().status, 400);
    }
}
