//! Writing Bundles around stored resources without parsing them again.
//!
//! Stored versions are JSON bytes that were checked when they were written, so a Bundle embeds
//! them verbatim: a read-heavy response never re-parses what the store returns.

use serde_json::{Map, Value, json};

/// One entry of a Bundle.
#[derive(Default)]
pub struct Entry<'a> {
    pub full_url: Option<String>,
    /// The stored JSON of the resource, embedded as it is.
    pub resource: Option<&'a [u8]>,
    /// `search.mode`: `match`, `include` or `outcome`.
    pub search_mode: Option<&'static str>,
    /// `request.method` and `request.url`.
    pub request: Option<(&'static str, String)>,
    pub response: Option<Response>,
}

/// `entry.response` of a history, batch-response or transaction-response Bundle.
pub struct Response {
    pub status: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub outcome: Option<Value>,
}

/// Builds a Bundle of one type (`history`, `searchset`, ...), entry by entry.
pub struct BundleWriter {
    header: Map<String, Value>,
    entries: Vec<u8>,
    count: usize,
}

impl BundleWriter {
    pub fn new(kind: &str) -> Self {
        let mut header = Map::new();
        header.insert("resourceType".into(), json!("Bundle"));
        header.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
        header.insert("type".into(), json!(kind));
        BundleWriter {
            header,
            entries: Vec::new(),
            count: 0,
        }
    }

    pub fn total(&mut self, total: u64) {
        self.header.insert("total".into(), json!(total));
    }

    /// Adds `link` entries (relation, url); none is written when `links` is empty.
    pub fn links(&mut self, links: &[(&str, String)]) {
        if links.is_empty() {
            return;
        }
        let links: Vec<Value> = links
            .iter()
            .map(|(relation, url)| json!({"relation": relation, "url": url}))
            .collect();
        self.header.insert("link".into(), Value::Array(links));
    }

    pub fn entry(&mut self, entry: Entry<'_>) {
        if self.count > 0 {
            self.entries.push(b',');
        }
        self.count += 1;
        let mut fields = Map::new();
        if let Some(url) = entry.full_url {
            fields.insert("fullUrl".into(), json!(url));
        }
        let mut tail = Map::new();
        if let Some(mode) = entry.search_mode {
            tail.insert("search".into(), json!({"mode": mode}));
        }
        if let Some((method, url)) = entry.request {
            tail.insert("request".into(), json!({"method": method, "url": url}));
        }
        if let Some(response) = entry.response {
            let mut r = Map::new();
            r.insert("status".into(), json!(response.status));
            for (key, value) in [
                ("location", response.location),
                ("etag", response.etag),
                ("lastModified", response.last_modified),
            ] {
                if let Some(value) = value {
                    r.insert(key.into(), json!(value));
                }
            }
            if let Some(outcome) = response.outcome {
                r.insert("outcome".into(), outcome);
            }
            tail.insert("response".into(), Value::Object(r));
        }
        // {"fullUrl":..., "resource": <stored bytes>, "search":..., "request":..., "response":...}
        let head = serde_json::to_vec(&Value::Object(fields)).expect("serializes");
        self.entries.extend_from_slice(&head[..head.len() - 1]);
        let mut separator = head.len() > 2;
        if let Some(resource) = entry.resource {
            if separator {
                self.entries.push(b',');
            }
            self.entries.extend_from_slice(b"\"resource\":");
            self.entries.extend_from_slice(resource);
            separator = true;
        }
        let rest = serde_json::to_vec(&Value::Object(tail)).expect("serializes");
        if rest.len() > 2 {
            if separator {
                self.entries.push(b',');
            }
            self.entries.extend_from_slice(&rest[1..rest.len() - 1]);
        }
        self.entries.push(b'}');
    }

    /// The Bundle's JSON. FHIR forbids an empty array, so a Bundle without entries has no
    /// `entry` element.
    pub fn finish(self) -> Vec<u8> {
        let mut out = serde_json::to_vec(&Value::Object(self.header)).expect("serializes");
        if self.count > 0 {
            out.pop();
            out.extend_from_slice(b",\"entry\":[");
            out.extend_from_slice(&self.entries);
            out.extend_from_slice(b"]}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_stored_resources_and_makes_a_valid_bundle() {
        let mut bundle = BundleWriter::new("history");
        bundle.links(&[("self", "http://x/fhir/_history".into())]);
        bundle.entry(Entry {
            full_url: Some("http://x/fhir/Patient/1".into()),
            resource: Some(br#"{"resourceType":"Patient","id":"1"}"#),
            request: Some(("PUT", "Patient/1".into())),
            response: Some(Response {
                status: "200".into(),
                location: None,
                etag: Some("W/\"2\"".into()),
                last_modified: Some("2020-01-01T00:00:00Z".into()),
                outcome: None,
            }),
            ..Entry::default()
        });
        bundle.entry(Entry {
            request: Some(("DELETE", "Patient/2".into())),
            response: Some(Response {
                status: "204".into(),
                location: None,
                etag: None,
                last_modified: None,
                outcome: None,
            }),
            ..Entry::default()
        });
        let value: Value = serde_json::from_slice(&bundle.finish()).unwrap();
        assert_eq!(value["entry"][0]["resource"]["id"], "1");
        assert_eq!(value["entry"][0]["response"]["etag"], "W/\"2\"");
        assert!(value["entry"][1].get("resource").is_none());
        assert_eq!(value["entry"][1]["request"]["method"], "DELETE");
        fhirlake_model::check_resource(&value).unwrap();
    }

    #[test]
    fn an_empty_bundle_has_no_entry_array() {
        let value: Value =
            serde_json::from_slice(&BundleWriter::new("searchset").finish()).unwrap();
        assert!(value.get("entry").is_none());
        fhirlake_model::check_resource(&value).unwrap();
    }
}
