//! FHIR XML for the tests, independent of the server's conversion: [`to_xml`] writes a JSON
//! resource as FHIR XML by the rules of the XML format page (no schema needed to write), and
//! [`from_xml`] reads FHIR XML (parsed by roxmltree, a strict XML parser) back into JSON, taking
//! the shape it cannot know without the schema (which elements repeat, which primitives are
//! numbers or booleans) from a JSON resource it is expected to equal.
#![allow(dead_code)]

use serde_json::{Map, Value};

pub const FHIR_XML: &str = "application/fhir+xml";
const FHIR_NAMESPACE: &str = "http://hl7.org/fhir";

/// `resource` (a JSON object with `resourceType`) as a FHIR XML document.
pub fn to_xml(resource: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    write_resource(&mut out, resource, true);
    out
}

fn write_resource(out: &mut String, resource: &Value, root: bool) {
    let kind = resource["resourceType"].as_str().expect("resourceType");
    out.push('<');
    out.push_str(kind);
    if root {
        out.push_str(&format!(" xmlns=\"{FHIR_NAMESPACE}\""));
    }
    out.push('>');
    write_members(out, resource.as_object().unwrap(), true, false);
    out.push_str(&format!("</{kind}>"));
}

/// The children of an element: every member but the ones written as attributes (`id` of an
/// element that is not a resource, `url` of an extension) and the `_name` partners, which go
/// with their primitive.
fn write_members(out: &mut String, object: &Map<String, Value>, resource: bool, extension: bool) {
    for (key, value) in object {
        let attribute = (!resource && key == "id") || (extension && key == "url");
        if key == "resourceType" || key.starts_with('_') || attribute {
            continue;
        }
        let partner = object.get(&format!("_{key}"));
        match value {
            Value::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    let partner = partner.and_then(|p| p.get(n)).filter(|p| !p.is_null());
                    write_element(out, key, item, partner);
                }
            }
            value => write_element(out, key, value, partner),
        }
    }
    // A primitive given by its extensions only: `_name` without `name`.
    for (key, partner) in object {
        if let Some(name) = key.strip_prefix('_')
            && !object.contains_key(name)
        {
            match partner {
                Value::Array(items) => {
                    for item in items.iter().filter(|i| !i.is_null()) {
                        write_element(out, name, &Value::Null, Some(item));
                    }
                }
                partner => write_element(out, name, &Value::Null, Some(partner)),
            }
        }
    }
}

fn write_element(out: &mut String, name: &str, value: &Value, partner: Option<&Value>) {
    if name == "div" {
        out.push_str(value.as_str().expect("div is a string"));
        return;
    }
    if value.get("resourceType").is_some() {
        out.push_str(&format!("<{name}>"));
        write_resource(out, value, false);
        out.push_str(&format!("</{name}>"));
        return;
    }
    out.push('<');
    out.push_str(name);
    let extension = name == "extension" || name == "modifierExtension";
    let attributes = match value {
        Value::Object(object) => Some(object),
        _ => partner.and_then(Value::as_object),
    };
    if let Some(id) = attributes.and_then(|a| a.get("id")).and_then(Value::as_str) {
        out.push_str(&format!(" id=\"{}\"", escape(id)));
    }
    if extension && let Some(url) = value.get("url").and_then(Value::as_str) {
        out.push_str(&format!(" url=\"{}\"", escape(url)));
    }
    let text = match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    if let Some(text) = text {
        out.push_str(&format!(" value=\"{}\"", escape(&text)));
    }
    out.push('>');
    match value {
        Value::Object(object) => write_members(out, object, false, extension),
        _ => {
            if let Some(partner) = partner.and_then(Value::as_object) {
                write_members(out, partner, false, false);
            }
        }
    }
    out.push_str(&format!("</{name}>"));
}

/// An attribute value: markup and the whitespace that attribute-value normalization would
/// turn into spaces, as references.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// Parses `xml` (panicking when it is not well-formed XML, or not FHIR: a root outside the
/// FHIR namespace) and reads it as JSON in the shape of `like`: an element that is an array
/// in `like` is read as an array, a primitive that is a number or boolean there is read as one
/// (its text kept exactly). What `like` does not have is read as strings and objects, so it
/// shows as a difference.
pub fn from_xml(xml: &str, like: &Value) -> Value {
    let document = roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("not well-formed XML ({e}): {}", super::fhir::truncated(xml)));
    let root = document.root_element();
    assert_eq!(root.tag_name().namespace(), Some(FHIR_NAMESPACE), "{xml}");
    read_resource(root, like, xml)
}

fn read_resource(node: roxmltree::Node, like: &Value, xml: &str) -> Value {
    let mut object = Map::new();
    object.insert(
        "resourceType".into(),
        Value::String(node.tag_name().name().to_string()),
    );
    read_children(node, like, &mut object, xml);
    Value::Object(object)
}

/// The child elements of `node` as members of `object`, grouped by name in document order.
fn read_children(node: roxmltree::Node, like: &Value, object: &mut Map<String, Value>, xml: &str) {
    let mut names: Vec<&str> = Vec::new();
    for child in node.children().filter(|c| c.is_element()) {
        let name = child.tag_name().name();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in names {
        let children: Vec<roxmltree::Node> = node
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == name)
            .collect();
        let template = like.get(name);
        let partner_template = like.get(format!("_{name}"));
        let repeats =
            template.or(partner_template).is_some_and(Value::is_array) || children.len() > 1;
        let mut values = Vec::new();
        let mut partners = Vec::new();
        for (n, child) in children.iter().enumerate() {
            let like_item = |t: Option<&Value>| -> Value {
                match t {
                    Some(Value::Array(items)) => items.get(n).cloned().unwrap_or(Value::Null),
                    Some(other) => other.clone(),
                    None => Value::Null,
                }
            };
            let (value, partner) = read_element(
                *child,
                &like_item(template),
                &like_item(partner_template),
                xml,
            );
            values.push(value);
            partners.push(partner);
        }
        let any_value = values.iter().any(|v| !v.is_null());
        let any_partner = partners.iter().any(|p| !p.is_null());
        if repeats {
            if any_value {
                object.insert(name.to_string(), Value::Array(values));
            }
            if any_partner {
                object.insert(format!("_{name}"), Value::Array(partners));
            }
        } else {
            if any_value {
                object.insert(name.to_string(), values.remove(0));
            }
            if any_partner {
                object.insert(format!("_{name}"), partners.remove(0));
            }
        }
    }
}

/// One element: its JSON value (Null for a primitive given by extensions only) and its
/// `_name` partner (Null when it has no id or extension of a primitive).
fn read_element(
    node: roxmltree::Node,
    like: &Value,
    like_partner: &Value,
    xml: &str,
) -> (Value, Value) {
    let name = node.tag_name().name();
    if name == "div" {
        assert_eq!(
            node.tag_name().namespace(),
            Some("http://www.w3.org/1999/xhtml"),
            "a narrative in the XHTML namespace"
        );
        // The XHTML as written, compared as its text and element names in order.
        return (Value::String(xml[node.range()].to_string()), Value::Null);
    }
    if let Some(resource) = node.children().find(|c| c.is_element())
        && like.get("resourceType").is_some()
    {
        return (read_resource(resource, like, xml), Value::Null);
    }
    match node.attribute("value") {
        Some(text) => {
            let value = match like {
                Value::Number(_) => Value::Number(
                    serde_json::from_str(text).unwrap_or_else(|_| panic!("{name}: {text}")),
                ),
                Value::Bool(_) => Value::Bool(text == "true"),
                _ => Value::String(text.to_string()),
            };
            let mut partner = Map::new();
            if let Some(id) = node.attribute("id") {
                partner.insert("id".into(), Value::String(id.to_string()));
            }
            read_children(node, like_partner, &mut partner, xml);
            let partner = if partner.is_empty() {
                Value::Null
            } else {
                Value::Object(partner)
            };
            (value, partner)
        }
        None if like.is_null() && !like_partner.is_null() => {
            let mut partner = Map::new();
            if let Some(id) = node.attribute("id") {
                partner.insert("id".into(), Value::String(id.to_string()));
            }
            read_children(node, like_partner, &mut partner, xml);
            (Value::Null, Value::Object(partner))
        }
        None => {
            let mut object = Map::new();
            if let Some(id) = node.attribute("id") {
                object.insert("id".into(), Value::String(id.to_string()));
            }
            if let Some(url) = node.attribute("url") {
                object.insert("url".into(), Value::String(url.to_string()));
            }
            read_children(node, like, &mut object, xml);
            (Value::Object(object), Value::Null)
        }
    }
}
