//! FHIR XML, converted to and from the JSON form the rest of fhirlake works with.
//!
//! Both directions go through fhirbolt's untyped element model, which knows the R4 schema
//! (which elements repeat, which primitives are numbers or booleans, the order XML requires)
//! without instantiating the serde code of every resource type once more for XML.
//!
//! Reading ([`xml_to_json`]): the document is first scanned here with quick-xml, which refuses
//! what fhirbolt would not see or could not survive:
//! - a DOCTYPE (so no DTD, no entity declarations: no external entities, no "billion
//!   laughs"), processing instructions and CDATA;
//! - entity references other than XML's five and character references;
//! - more than [`MAX_DEPTH`] nested elements (fhirbolt's deserializer recurses per element
//!   and would overflow the stack);
//! - anything that is not exactly one root element named after an R4 resource type.
//!
//! fhirbolt then reads it in its compatibility mode, which keeps elements unknown to R4: the
//! JSON result is checked by [`crate::check_resource`] like any JSON body, which names such
//! an element by its path.
//!
//! Narratives: fhirbolt trims the text inside a narrative's XHTML when reading and indents it
//! when writing, which changes the narrative (`Acute <b>x</b>` becomes `Acute<b>x</b>`). So
//! each narrative `div` goes around fhirbolt: reading, the scan cuts each out of the document
//! as it is written and leaves a placeholder `div` that fhirbolt reads, and the JSON gets the
//! original back; writing does the same the other way. A narrative written is always
//! well-formed XHTML rooted in a `div` of the XHTML namespace: one stored without the namespace
//! gets it, and one that is not well-formed (JSON writes do not check) is written as the
//! escaped text of a `div`, so that the XML document stays well-formed.

use fhirbolt::FhirReleases;
use fhirbolt::element::Element;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::Value;
use std::panic::{AssertUnwindSafe, catch_unwind};

type R4Element = Element<{ FhirReleases::R4 }>;

/// The deepest nesting of elements read (the official examples nest at most 12 deep; a
/// Questionnaire in a Bundle with items nested 40 deep is still far from it).
pub const MAX_DEPTH: usize = 100;

const XHTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// What stands in for the narrative number N while fhirbolt reads or writes a document:
/// `PLACEHOLDER_START` N `PLACEHOLDER_END`, which fhirbolt reads and writes unchanged.
const PLACEHOLDER_START: &str = "<div xmlns=\"http://www.w3.org/1999/xhtml\">fhirlake-div-";
const PLACEHOLDER_END: &str = "</div>";

fn placeholder(n: usize) -> String {
    format!("{PLACEHOLDER_START}{n}{PLACEHOLDER_END}")
}

/// Reads a FHIR XML document into the resource's JSON form. The result has the JSON shape of
/// what the XML says, but is not checked against R4 beyond that: pass it to
/// [`crate::check_resource`]. Errors are messages for the client.
pub fn xml_to_json(xml: &[u8]) -> Result<Value, String> {
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let text = std::str::from_utf8(xml).map_err(|e| format!("FHIR XML must be UTF-8: {e}"))?;
    let narratives = scan(text, Scan::Document)?;
    let mut document = String::with_capacity(text.len());
    let mut copied = 0;
    for (n, span) in narratives.iter().enumerate() {
        document.push_str(&text[copied..span.start]);
        document.push_str(&placeholder(n));
        copied = span.end;
    }
    document.push_str(&text[copied..]);
    let config = DeserializationConfig {
        mode: DeserializationMode::Compatibility,
    };
    let converted = catch_unwind(AssertUnwindSafe(|| {
        let element = fhirbolt::xml::from_str::<R4Element>(&document, Some(config))
            .map_err(|e| e.to_string())?;
        fhirbolt::json::to_json_value(element, None)
            .map_err(|_| "the document could not be converted to FHIR JSON".to_string())
    }));
    let mut value = match converted {
        Ok(result) => result?,
        Err(_) => return Err("the document could not be read as FHIR R4".into()),
    };
    let mut originals: Vec<Option<String>> = narratives
        .iter()
        .map(|span| Some(text[span.clone()].to_string()))
        .collect();
    map_narratives(&mut value, &mut |div| {
        let n = placeholder_number(div)?;
        originals.get_mut(n)?.take()
    });
    Ok(value)
}

/// Writes a resource in its JSON form (a stored version, a Bundle, an OperationOutcome) as a
/// FHIR XML document. An error means the JSON is not an R4 resource: a server defect.
pub fn json_to_xml(mut value: Value) -> Result<Vec<u8>, String> {
    resource_type_first(&mut value);
    let mut narratives = Vec::new();
    map_narratives(&mut value, &mut |div| {
        narratives.push(writable_narrative(div));
        Some(placeholder(narratives.len() - 1))
    });
    let written = catch_unwind(AssertUnwindSafe(|| {
        let element =
            fhirbolt::json::from_json_value::<R4Element>(value, None).map_err(|e| e.to_string())?;
        fhirbolt::xml::to_string(&element, None).map_err(|e| e.to_string())
    }));
    let written = match written {
        Ok(result) => escape_whitespace_in_values(&result?),
        Err(_) => return Err("the resource could not be written as FHIR XML".into()),
    };
    let mut out =
        String::with_capacity(written.len() + narratives.iter().map(String::len).sum::<usize>());
    let mut rest = written.as_str();
    while let Some(at) = rest.find(PLACEHOLDER_START) {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(n) = placeholder_number(after) else {
            out.push_str(PLACEHOLDER_START);
            rest = &after[PLACEHOLDER_START.len()..];
            continue;
        };
        out.push_str(narratives.get(n).ok_or("a narrative went missing")?);
        rest = &after[placeholder(n).len()..];
    }
    out.push_str(rest);
    Ok(out.into_bytes())
}

/// fhirbolt writes tabs and line breaks into attribute values as they are, and XML parsers
/// turn each into a space (attribute-value normalization): written as character references
/// they are read back as they were. The input is fhirbolt's output, where every `"` of a value
/// is escaped and so only quotes delimit values.
fn escape_whitespace_in_values(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len());
    let (mut in_tag, mut in_value) = (false, false);
    for c in xml.chars() {
        match c {
            '<' if !in_tag => in_tag = true,
            '>' if in_tag && !in_value => in_tag = false,
            '"' if in_tag => in_value = !in_value,
            '\n' if in_value => {
                out.push_str("&#10;");
                continue;
            }
            '\r' if in_value => {
                out.push_str("&#13;");
                continue;
            }
            '\t' if in_value => {
                out.push_str("&#9;");
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// Moves `resourceType` to the front of every resource (contained ones, Bundle entries,
/// Parameters values): fhirbolt's element model learns the type of what it reads from it, and
/// a member before it is read as an element of no known type.
fn resource_type_first(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let first = object.keys().next().map(String::as_str);
            if first.is_some_and(|key| key != "resourceType")
                && let Some(resource_type) = object.shift_remove("resourceType")
            {
                object.shift_insert(0, "resourceType".into(), resource_type);
            }
            object.values_mut().for_each(resource_type_first);
        }
        Value::Array(items) => items.iter_mut().for_each(resource_type_first),
        _ => {}
    }
}

/// N when `text` starts with the placeholder of narrative N.
fn placeholder_number(text: &str) -> Option<usize> {
    let digits = text.strip_prefix(PLACEHOLDER_START)?;
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    let n = digits[..end].parse().ok()?;
    digits[end..].starts_with(PLACEHOLDER_END).then_some(n)
}

/// Replaces each narrative `div` string of `value` (at any depth: contained resources, Bundle
/// entries) by what `map` makes of it, if anything. `div` is an element of Narrative only.
fn map_narratives(value: &mut Value, map: &mut dyn FnMut(&str) -> Option<String>) {
    match value {
        Value::Object(object) => {
            for (key, member) in object.iter_mut() {
                match member {
                    Value::String(xhtml) if key == "div" => {
                        if let Some(mapped) = map(xhtml) {
                            *xhtml = mapped;
                        }
                    }
                    other => map_narratives(other, map),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| map_narratives(item, map)),
        _ => {}
    }
}

/// `xhtml` as it can be written into an XML document: see the module's documentation.
fn writable_narrative(xhtml: &str) -> String {
    let trimmed = xhtml.trim();
    let well_formed = trimmed.starts_with("<div") && scan(trimmed, Scan::Narrative).is_ok();
    let namespace = match Reader::from_str(trimmed).read_event() {
        Ok(Event::Start(start) | Event::Empty(start)) if well_formed => start
            .attributes()
            .flatten()
            .find(|attribute| attribute.key.as_ref() == b"xmlns")
            .map(|attribute| attribute.value.as_ref() == XHTML_NAMESPACE.as_bytes()),
        _ => Some(false),
    };
    match namespace {
        Some(true) => trimmed.to_string(),
        None => format!(
            "<div xmlns=\"{XHTML_NAMESPACE}\"{}",
            &trimmed["<div".len()..]
        ),
        Some(false) => {
            let mut escaped = format!("<div xmlns=\"{XHTML_NAMESPACE}\">");
            for c in xhtml.chars() {
                match c {
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '&' => escaped.push_str("&amp;"),
                    c => escaped.push(c),
                }
            }
            escaped.push_str("</div>");
            escaped
        }
    }
}

/// What [`scan`] reads: a whole document, or the XHTML of a narrative.
#[derive(Clone, Copy, PartialEq)]
enum Scan {
    Document,
    Narrative,
}

/// Checks that `text` is one well-formed element (a resource named after an R4 type, or a
/// narrative `div`) with none of the constructs the module's documentation lists. For a
/// document, returns where each narrative `div` is, in document order.
fn scan(text: &str, what: Scan) -> Result<Vec<std::ops::Range<usize>>, String> {
    let mut reader = Reader::from_str(text);
    reader.trim_text(true).check_end_names(true);
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut narratives = Vec::new();
    // The start of the narrative being read and the depth of its `div`.
    let mut narrative: Option<(usize, usize)> = None;
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML near byte {}: {e}",
                reader.buffer_position()
            )
        })?;
        let after = reader.buffer_position();
        let tag_start = || before + text[before..after].find('<').unwrap_or(0);
        match &event {
            Event::Start(start) | Event::Empty(start) => {
                if depth == 0 {
                    roots += 1;
                    if roots > 1 {
                        return Err("a document holds one root element".into());
                    }
                    check_root(start, what)?;
                }
                check_attributes(start)?;
                let empty = matches!(event, Event::Empty(_));
                if what == Scan::Document && narrative.is_none() && is_narrative(start)? {
                    match empty {
                        true => narratives.push(tag_start()..after),
                        false => narrative = Some((tag_start(), depth + 1)),
                    }
                }
                if !empty {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("elements nest deeper than {MAX_DEPTH} levels"));
                    }
                }
            }
            Event::End(_) => {
                if let Some((start, at)) = narrative
                    && at == depth
                {
                    narratives.push(start..after);
                    narrative = None;
                }
                depth -= 1;
            }
            Event::Text(_) if depth == 0 => {
                return Err("text outside the root element".into());
            }
            Event::Text(text) => {
                text.unescape()
                    .map_err(|e| format!("not well-formed XML text: {e}"))?;
            }
            Event::DocType(_) => {
                return Err(
                    "a DOCTYPE is not allowed: FHIR XML has no DTD and no entity declarations"
                        .into(),
                );
            }
            Event::PI(_) => return Err("processing instructions are not allowed".into()),
            Event::CData(_) => return Err("CDATA sections are not allowed".into()),
            Event::Comment(_) | Event::Decl(_) => {}
            Event::Eof if depth > 0 => return Err("the document ends inside an element".into()),
            Event::Eof if roots == 0 => return Err("the document holds no element".into()),
            Event::Eof => return Ok(narratives),
        }
    }
}

/// Whether an element of a document (outside any narrative) is a narrative: a `div`, which
/// must then be written `<div xmlns="http://www.w3.org/1999/xhtml">`.
fn is_narrative(start: &BytesStart) -> Result<bool, String> {
    if start.local_name().as_ref() != b"div" {
        return Ok(false);
    }
    let in_xhtml = start.name().as_ref() == b"div"
        && start.attributes().flatten().any(|attribute| {
            attribute.key.as_ref() == b"xmlns"
                && attribute.value.as_ref() == XHTML_NAMESPACE.as_bytes()
        });
    match in_xhtml {
        true => Ok(true),
        false => Err(format!(
            "a narrative is written <div xmlns=\"{XHTML_NAMESPACE}\">"
        )),
    }
}

/// The root of a document is named after an R4 resource type; the root of a narrative is a
/// `div`.
fn check_root(start: &BytesStart, what: Scan) -> Result<(), String> {
    let name = String::from_utf8_lossy(start.local_name().into_inner()).into_owned();
    match what {
        Scan::Document if crate::is_resource_type(&name) => Ok(()),
        Scan::Document => Err(format!(
            "the root element <{name}> is not a FHIR R4 resource type"
        )),
        Scan::Narrative if start.name().as_ref() == b"div" => Ok(()),
        Scan::Narrative => Err(format!("a narrative is a <div>, not <{name}>")),
    }
}

/// Every attribute is well-formed (no duplicates) and its value holds no unknown entity.
fn check_attributes(start: &BytesStart) -> Result<(), String> {
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("not well-formed XML attribute: {e}"))?;
        attribute
            .unescape_value()
            .map_err(|e| format!("not well-formed XML attribute value: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient_xml(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir">{body}</Patient>"#
        )
    }

    #[test]
    fn reads_a_patient_into_json() {
        let xml = patient_xml(
            r#"<id value="p1"/><active value="true"/>
               <name><family value="Chalmers"/><given value="Peter"/><given value="James"/></name>
               <birthDate value="1974-12-25"><extension url="http://example.org/x"><valueDecimal value="1.50"/></extension></birthDate>"#,
        );
        let value = xml_to_json(xml.as_bytes()).unwrap();
        let expected: Value = serde_json::from_str(
            r#"{"resourceType": "Patient", "id": "p1", "active": true,
                "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
                "birthDate": "1974-12-25",
                "_birthDate": {"extension": [{"url": "http://example.org/x", "valueDecimal": 1.50}]}}"#,
        )
        .unwrap();
        assert_eq!(value, expected);
        assert_eq!(
            serde_json::to_string(&value["_birthDate"]["extension"][0]["valueDecimal"]).unwrap(),
            "1.50"
        );
        assert_eq!(crate::check_resource(&value).unwrap(), expected);
    }

    #[test]
    fn round_trips_narratives_contained_resources_and_primitive_extensions() {
        let input: Value = serde_json::from_str(r##"{
            "resourceType": "Observation", "id": "o1",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>a &lt; b &amp; <b>c</b></p></div>"},
            "contained": [{"resourceType": "Patient", "id": "p", "gender": "male"}],
            "status": "final", "code": {"text": "x"},
            "subject": {"reference": "#p"},
            "valueQuantity": {"value": 1.0e2, "unit": "mg"},
            "component": [{"code": {"text": "a"}, "valueInteger": 3}],
            "note": [{"text": "é\u00a0\"quoted\" <&> line\nbreak\ttab\r\n"}],
            "_status": {"extension": [{"url": "http://example.org/s", "valueBoolean": false}]}
        }"##).unwrap();
        let xml = json_to_xml(input.clone()).unwrap();
        let text = String::from_utf8_lossy(&xml);
        assert!(text.contains("line&#10;break&#9;tab&#13;&#10;"), "{text}");
        let back = xml_to_json(&xml).unwrap();
        assert_eq!(back, input, "{}", String::from_utf8_lossy(&xml));
    }

    #[test]
    fn unknown_elements_are_kept_for_the_json_check_to_name() {
        let xml = patient_xml(r#"<name><family value="x"/><nickname value="y"/></name>"#);
        let value = xml_to_json(xml.as_bytes()).unwrap();
        let problem = crate::check_resource(&value).unwrap_err();
        assert!(
            problem.path.starts_with("Patient.name[0].nickname"),
            "{problem}"
        );
    }

    fn refused(xml: &str) -> String {
        xml_to_json(xml.as_bytes()).expect_err(xml)
    }

    #[test]
    fn refuses_doctypes_entities_and_other_constructs() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><Patient xmlns="http://hl7.org/fhir"><id value="&lol2;"/></Patient>"#;
        assert!(refused(laughs).contains("DOCTYPE"));
        let external = r#"<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&xxe;"/></Patient>"#;
        assert!(refused(external).contains("DOCTYPE"));
        // An entity that was never declared is no entity either.
        let undeclared = patient_xml(r#"<id value="&xxe;"/>"#);
        assert!(
            refused(&undeclared).contains("attribute"),
            "{}",
            refused(&undeclared)
        );
        let in_text = patient_xml(
            r#"<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml">&xxe;</div></text>"#,
        );
        refused(&in_text);
        refused(&patient_xml(r#"<?php x ?><id value="a"/>"#));
        refused(&patient_xml(r#"<id value="a"/><![CDATA[x]]>"#));
        // Predefined entities and character references are XML.
        let fine =
            patient_xml(r#"<id value="a"/><name><text value="&lt;&#233;&#xE9;&amp;"/></name>"#);
        assert_eq!(
            xml_to_json(fine.as_bytes()).unwrap()["name"][0]["text"],
            "<éé&"
        );
    }

    #[test]
    fn refuses_malformed_documents() {
        for xml in [
            "",
            "   ",
            "not xml",
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="a"/>"#,
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="a"></Patient>"#,
            r#"<Patient xmlns="http://hl7.org/fhir"></Patient><Patient xmlns="http://hl7.org/fhir"/>"#,
            r#"<Patient xmlns="http://hl7.org/fhir">text</Patient>"#,
            r#"<Patient xmlns="http://hl7.org/fhir" id="a" id="b"/>"#,
            r#"<Patientx xmlns="http://hl7.org/fhir"/>"#,
            r#"<Patient/>"#,
            r#"<Patient xmlns="http://example.org"/>"#,
            r#"<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"/>"#,
        ] {
            refused(xml);
        }
        assert!(xml_to_json(b"<Patient xmlns=\"http://hl7.org/fhir\">\xff</Patient>").is_err());
    }

    #[test]
    fn refuses_deep_nesting_before_fhirbolt_recurses() {
        let deep = |levels: usize| {
            let open = r#"<extension url="http://example.org/x">"#.repeat(levels);
            let close = "</extension>".repeat(levels);
            patient_xml(&format!("{open}<valueString value=\"v\"/>{close}"))
        };
        assert!(refused(&deep(MAX_DEPTH + 10)).contains("deeper"));
        let deepest = deep(MAX_DEPTH - 2);
        // fhirbolt reads the deepest document allowed on a thread of the default 2 MiB stack.
        let read = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || xml_to_json(deepest.as_bytes()).map(json_to_xml))
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(read.unwrap().is_ok());
        let huge = "<a>".repeat(100_000);
        refused(&format!(r#"<Patient xmlns="http://hl7.org/fhir">{huge}"#));
    }

    #[test]
    fn narratives_are_written_as_well_formed_xhtml() {
        let narrative = |div: &str| {
            let value =
                json!({"resourceType": "Patient", "text": {"status": "generated", "div": div}});
            let xml = json_to_xml(value).unwrap();
            let back = xml_to_json(&xml)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&xml)));
            back["text"]["div"].as_str().unwrap().to_string()
        };
        assert_eq!(
            narrative("<div>Acute <b>bronchitis</b></div>"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">Acute <b>bronchitis</b></div>"
        );
        assert_eq!(
            narrative("<div>a &nbsp; <b>b</div>"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">&lt;div&gt;a &amp;nbsp; &lt;b&gt;b&lt;/div&gt;</div>"
        );
        assert_eq!(
            narrative("plain text"),
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">plain text</div>"
        );
    }
}
