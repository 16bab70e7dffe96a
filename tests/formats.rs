//! FHIR XML and raw Binary content over HTTP: negotiation (`_format`, `Accept`,
//! `Content-Type`), XML writes taking the JSON path, XML answers (errors included), hostile XML,
//! and Binary resources read and written in their own content type.
//!
//! The XML the tests send is written by `common::xml` and the XML they get is parsed by
//! roxmltree, so neither side depends on the server's own conversion.

mod common;

use common::TestServer;
use common::fhir::{
    Fhir, FhirClient, Reply, assert_outcome, map_references, send, truncated, type_and_id,
    without_server_meta,
};
use common::synthea;
use common::xml::{FHIR_XML, from_xml, to_xml};
use serde_json::{Value, json};
use std::collections::HashMap;

const XML_ANSWER: &str = "application/fhir+xml; charset=utf-8";

/// Sends `xml` with `method` to `path` as `application/fhir+xml`, with `headers`.
fn send_xml(
    fhir: &FhirClient,
    method: reqwest::Method,
    path: &str,
    xml: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = fhir
        .http
        .request(method, fhir.url(path))
        .header("content-type", FHIR_XML)
        .body(xml.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request)
}

/// The root element of an XML answer, which must be FHIR XML: its name and the document.
fn xml_answer(reply: &Reply, what: &str) -> String {
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some(XML_ANSWER),
        "{what}: {}",
        truncated(&reply.text)
    );
    let document = roxmltree::Document::parse(&reply.text)
        .unwrap_or_else(|e| panic!("{what}: not XML ({e}): {}", truncated(&reply.text)));
    let root = document.root_element();
    assert_eq!(root.tag_name().namespace(), Some("http://hl7.org/fhir"));
    root.tag_name().name().to_string()
}

/// The `value` of the first element named `name` in an XML answer.
fn xml_value(text: &str, name: &str) -> Option<String> {
    let document = roxmltree::Document::parse(text).ok()?;
    document
        .descendants()
        .find(|node| node.tag_name().name() == name)?
        .attribute("value")
        .map(str::to_string)
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": "xml-1"}],
        "active": true,
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25",
        "multipleBirthInteger": 2,
        "text": {"status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Peter <b>Chalmers</b>, born\n 1974</div>"}
    })
}

/// Every resource of a Synthea patient (1,971 of 18 types), written as one XML transaction,
/// reads back in JSON equal to the JSON original (its references resolved as the transaction
/// does), and in XML as a document that reads back into that same JSON. Searches and history
/// answer in XML with the same entries as in JSON.
#[test]
fn a_synthea_patient_written_in_xml_reads_back_the_same_in_json_and_in_xml() {
    let fhir = Fhir::start();
    let providers = synthea::referenced_providers();
    fhir.bundle(&providers.transaction)
        .expect(200, "the providers, in JSON");
    let mut bundle = synthea::bundle("057aa36e");
    synthea::resolve(&mut bundle, &providers.targets);
    // PUT with Synthea's ids, so that each can be compared with what was sent.
    let mut targets = HashMap::new();
    for entry in bundle["entry"].as_array_mut().unwrap() {
        let at = type_and_id(&entry["resource"]);
        targets.insert(entry["fullUrl"].as_str().unwrap().to_string(), at.clone());
        entry["request"] = json!({"method": "PUT", "url": at});
    }
    let sent: Vec<Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let mut resource = entry["resource"].clone();
            map_references(&mut resource, &mut |r| targets.get(r).cloned());
            resource
        })
        .collect();
    assert!(sent.len() > 1900);

    let reply = send_xml(
        &fhir,
        reqwest::Method::POST,
        "",
        &to_xml(&bundle),
        &[("accept", FHIR_XML)],
    );
    reply.expect(200, "the patient's transaction in XML");
    assert_eq!(xml_answer(&reply, "transaction-response"), "Bundle");
    let document = roxmltree::Document::parse(&reply.text).unwrap();
    let statuses: Vec<&str> = document
        .descendants()
        .filter(|node| node.tag_name().name() == "status")
        .filter(|node| {
            node.parent()
                .is_some_and(|p| p.tag_name().name() == "response")
        })
        .filter_map(|node| node.attribute("value"))
        .collect();
    assert_eq!(statuses.len(), sent.len());
    assert!(
        statuses.iter().all(|s| s.starts_with("201")),
        "{statuses:?}"
    );
    assert_eq!(
        xml_value(&reply.text, "type").as_deref(),
        Some("transaction-response")
    );

    for expected in &sent {
        let path = type_and_id(expected);
        let read = fhir.get(&path).expect(200, &path).resource();
        assert_eq!(without_server_meta(&read), *expected, "{path} in JSON");
        let reply = fhir.get_with(&path, &[("accept", FHIR_XML)]);
        reply.expect(200, &path);
        assert_eq!(xml_answer(&reply, &path), expected["resourceType"]);
        assert_eq!(from_xml(&reply.text, &read), read, "{path} in XML");
    }

    let patient = type_and_id(&sent[0]);
    assert!(patient.starts_with("Patient/"));
    for path in [
        format!("Observation?subject={patient}&_count=40"),
        format!("{patient}/_history"),
        format!("{patient}/$everything?_count=30"),
    ] {
        let json = fhir.get(&path).expect(200, &path).resource();
        let reply = fhir.get_with(&path, &[("accept", FHIR_XML)]);
        reply.expect(200, &path);
        assert_eq!(xml_answer(&reply, &path), "Bundle");
        let xml = from_xml(&reply.text, &json);
        assert!(!json["entry"].as_array().unwrap().is_empty(), "{path}");
        assert_eq!(xml["entry"], json["entry"], "{path}");
        assert_eq!(xml["type"], json["type"], "{path}");
    }
}

/// `_format` and `Accept` choose the format by preference; what accepts neither is 406.
#[test]
fn the_answer_is_in_the_format_asked_for() {
    let fhir = Fhir::start();
    let created = fhir.create(&patient());
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let xml_requests: [(&str, &[(&str, &str)]); 9] = [
        ("?_format=xml", &[]),
        ("?_format=application/fhir%2Bxml", &[]),
        ("?_format=text/xml", &[]),
        ("?_format=xml", &[("accept", "application/fhir+json")]),
        ("", &[("accept", "application/fhir+xml")]),
        ("", &[("accept", "application/xml")]),
        ("", &[("accept", "text/xml;q=0.9, text/html;q=0.8")]),
        (
            "",
            &[(
                "accept",
                "application/fhir+xml, application/fhir+json;q=0.9",
            )],
        ),
        (
            "",
            &[(
                "accept",
                "application/fhir+json;q=0.5, application/fhir+xml",
            )],
        ),
    ];
    for (query, headers) in xml_requests {
        let what = format!("{query} {headers:?}");
        let reply = fhir.get_with(&format!("{path}{query}"), headers);
        reply.expect(200, &what);
        assert_eq!(xml_answer(&reply, &what), "Patient");
        assert_eq!(from_xml(&reply.text, &created), created, "{what}");
    }
    let json_requests: [(&str, &[(&str, &str)]); 7] = [
        ("", &[]),
        ("", &[("accept", "*/*")]),
        ("", &[("accept", "application/json")]),
        (
            "",
            &[(
                "accept",
                "application/fhir+xml;q=0.5, application/fhir+json",
            )],
        ),
        ("?_format=json", &[("accept", "application/fhir+xml")]),
        ("", &[("accept", "text/html, */*;q=0.1")]),
        ("?_format=application/fhir%2Bjson", &[]),
    ];
    for (query, headers) in json_requests {
        let what = format!("{query} {headers:?}");
        let reply = fhir.get_with(&format!("{path}{query}"), headers);
        assert_eq!(reply.expect(200, &what).resource(), created, "{what}");
    }
    for (query, accept) in [
        ("?_format=turtle", None),
        ("", Some("text/html")),
        ("", Some("application/fhir+json;q=0, application/pdf")),
    ] {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        assert_outcome(
            &fhir.get_with(&format!("{path}{query}"), &headers),
            406,
            &["not-supported"],
        );
    }
    // Errors come in the format asked for.
    let reply = fhir.get_with("Patient/nothing-here", &[("accept", FHIR_XML)]);
    reply.expect(404, "an XML 404");
    assert_eq!(xml_answer(&reply, "404"), "OperationOutcome");
    assert_eq!(xml_value(&reply.text, "code").as_deref(), Some("not-found"));
    let reply = fhir.get("Patient?_format=xml&birthdate=1974&_count=x");
    assert_eq!(xml_answer(&reply, "400"), "OperationOutcome");
    // The CapabilityStatement says so, in either format.
    let statement = fhir.get("metadata").expect(200, "metadata").resource();
    assert_eq!(
        statement["format"],
        json!([
            "json",
            "xml",
            "application/fhir+json",
            "application/fhir+xml"
        ])
    );
    let reply = fhir.get("metadata?_format=xml");
    reply.expect(200, "metadata in XML");
    assert_eq!(xml_answer(&reply, "metadata"), "CapabilityStatement");
    // $changes is JSON (CloudEvents) only: 406, said in XML.
    let reply = fhir.get_with("$changes", &[("accept", FHIR_XML)]);
    reply.expect(406, "$changes in XML");
    assert_eq!(xml_answer(&reply, "$changes"), "OperationOutcome");
}

/// A write in XML takes the JSON path: the same checks, validation, answers and stored
/// versions as the same write in JSON.
#[test]
fn writes_in_xml_are_writes_in_json() {
    let fhir = Fhir::start();
    let body = patient();
    let reply = send_xml(&fhir, reqwest::Method::POST, "Patient", &to_xml(&body), &[]);
    reply.expect(201, "create in XML");
    let created = reply.resource();
    let id = created["id"].as_str().unwrap().to_string();
    let mut expected = body.clone();
    expected["id"] = json!(id);
    assert_eq!(without_server_meta(&created), expected);
    assert!(
        reply
            .header("location")
            .unwrap()
            .ends_with(&format!("Patient/{id}/_history/1"))
    );

    // Update, answered in XML.
    let mut changed = expected.clone();
    changed["gender"] = json!("other");
    let reply = send_xml(
        &fhir,
        reqwest::Method::PUT,
        &format!("Patient/{id}"),
        &to_xml(&changed),
        &[("accept", FHIR_XML), ("if-match", "W/\"1\"")],
    );
    reply.expect(200, "update in XML");
    assert_eq!(xml_answer(&reply, "update"), "Patient");
    assert_eq!(xml_value(&reply.text, "versionId").as_deref(), Some("2"));
    let read = fhir.get(&format!("Patient/{id}")).resource();
    assert_eq!(without_server_meta(&read), changed);

    // Conditional update (of new content: an equal one makes no version) and conditional
    // create.
    changed["active"] = json!(false);
    let reply = send_xml(
        &fhir,
        reqwest::Method::PUT,
        "Patient?identifier=http://example.org/mrn|xml-1",
        &to_xml(&changed),
        &[],
    );
    reply.expect(200, "conditional update in XML");
    assert_eq!(reply.resource()["meta"]["versionId"], "3");
    let reply = send_xml(
        &fhir,
        reqwest::Method::POST,
        "Patient",
        &to_xml(&body),
        &[("if-none-exist", "identifier=http://example.org/mrn|xml-1")],
    );
    reply.expect(200, "conditional create in XML finds the match");
    assert_eq!(reply.resource()["id"], json!(id));

    // $validate in XML, answered in XML.
    let reply = send_xml(
        &fhir,
        reqwest::Method::POST,
        "Patient/$validate",
        &to_xml(&body),
        &[("accept", FHIR_XML)],
    );
    reply.expect(200, "$validate in XML");
    assert_eq!(xml_answer(&reply, "$validate"), "OperationOutcome");

    // The same refusals as JSON: a wrong element at its path, a bad code under the policy.
    let mut unknown = body.clone();
    unknown["name"][0]["nickname"] = json!("Pete");
    for (what, resource, status) in [
        ("an unknown element", unknown, 400),
        (
            "a gender outside its required value set",
            {
                let mut bad = body.clone();
                bad["gender"] = json!("robot");
                bad
            },
            422,
        ),
    ] {
        let in_json = fhir.post("Patient", &resource);
        let in_xml = send_xml(
            &fhir,
            reqwest::Method::POST,
            "Patient",
            &to_xml(&resource),
            &[],
        );
        assert_eq!(in_json.status, status, "{what} in JSON: {}", in_json.text);
        assert_eq!(in_xml.status, status, "{what} in XML: {}", in_xml.text);
        let (a, b) = (in_json.json(), in_xml.json());
        // An unknown XML element with a value is named down to its `value` attribute.
        let json_path = a["issue"][0]["expression"][0].as_str().unwrap();
        let xml_path = b["issue"][0]["expression"][0].as_str().unwrap();
        assert!(
            xml_path.starts_with(json_path),
            "{what}: {xml_path}, {json_path}"
        );
        assert_eq!(a["issue"][0]["code"], b["issue"][0]["code"], "{what}");
    }
    // Nothing but the three versions of the one Patient.
    let history = fhir.get("Patient/_history").resource();
    assert_eq!(history["entry"].as_array().unwrap().len(), 3);
}

/// Malformed XML is a 400 OperationOutcome; so is XML with a DOCTYPE (no external entities,
/// no entity expansion), and so is nesting too deep to read. Nothing is stored.
#[test]
fn malformed_and_hostile_xml_is_refused() {
    let fhir = Fhir::start();
    let deep = format!(
        "<Patient xmlns=\"http://hl7.org/fhir\">{}<valueString value=\"x\"/>{}</Patient>",
        "<extension url=\"http://example.org/x\">".repeat(2000),
        "</extension>".repeat(2000)
    );
    let lol = (1..10)
        .map(|n| {
            format!(
                "<!ENTITY lol{n} \"{}\">",
                format!("&lol{};", n - 1).repeat(10)
            )
        })
        .collect::<String>();
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE Patient [<!ENTITY lol0 \"lol\">{lol}]>\
         <Patient xmlns=\"http://hl7.org/fhir\"><name><family value=\"&lol9;\"/></name></Patient>"
    );
    let passwd = "<?xml version=\"1.0\"?><!DOCTYPE Patient [<!ENTITY xxe SYSTEM \
        \"file:///etc/passwd\">]><Patient xmlns=\"http://hl7.org/fhir\"><name><family \
        value=\"&xxe;\"/></name></Patient>";
    let external_dtd = "<?xml version=\"1.0\"?><!DOCTYPE Patient SYSTEM \"http://127.0.0.1:1/x.dtd\">\
        <Patient xmlns=\"http://hl7.org/fhir\"/>";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not XML", b"{\"resourceType\": \"Patient\"}".to_vec()),
        (
            "cut short",
            b"<Patient xmlns=\"http://hl7.org/fhir\"><name>".to_vec(),
        ),
        (
            "mismatched tags",
            b"<Patient xmlns=\"http://hl7.org/fhir\"><name></family></Patient>".to_vec(),
        ),
        (
            "no FHIR namespace",
            b"<Patient><active value=\"true\"/></Patient>".to_vec(),
        ),
        (
            "an unknown root",
            b"<Patientx xmlns=\"http://hl7.org/fhir\"/>".to_vec(),
        ),
        (
            "an undeclared entity",
            b"<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"&x;\"/></Patient>".to_vec(),
        ),
        (
            "not UTF-8",
            b"<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"\xff\"/></Patient>".to_vec(),
        ),
        ("2,000 nested extensions", deep.into_bytes()),
        ("a DOCTYPE: billion laughs", laughs.into_bytes()),
        ("a DOCTYPE: an external entity", passwd.as_bytes().to_vec()),
        (
            "a DOCTYPE: an external DTD",
            external_dtd.as_bytes().to_vec(),
        ),
    ];
    for (what, xml) in cases {
        let reply = send(
            fhir.http
                .post(fhir.url("Patient"))
                .header("content-type", FHIR_XML)
                .body(xml),
        );
        let outcome = assert_outcome(&reply, 400, &["structure"]);
        let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        if what.starts_with("a DOCTYPE") {
            assert!(diagnostics.contains("DOCTYPE"), "{what}: {diagnostics}");
        }
    }
    // The same refusals inside a Bundle, answered in XML as the client asked.
    let reply = send_xml(
        &fhir,
        reqwest::Method::POST,
        "",
        "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"batch\"/><entry>",
        &[("accept", FHIR_XML)],
    );
    reply.expect(400, "a cut Bundle");
    assert_eq!(xml_answer(&reply, "a cut Bundle"), "OperationOutcome");
    let history = fhir.get("_history").resource();
    assert!(history.get("entry").is_none(), "stored: {history}");
    fhir.get("metadata").expect(200, "still serving");
}

/// A batch in XML, answered in XML, with each entry's outcome.
#[test]
fn bundles_in_and_out_in_xml() {
    let fhir = Fhir::start();
    let batch = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
            {"resource": {"resourceType": "Patient", "gender": "robot"},
             "request": {"method": "POST", "url": "Patient"}}
        ]
    });
    let reply = send_xml(
        &fhir,
        reqwest::Method::POST,
        "",
        &to_xml(&batch),
        &[("accept", FHIR_XML)],
    );
    reply.expect(200, "batch");
    assert_eq!(xml_answer(&reply, "batch"), "Bundle");
    let json = send(
        fhir.http
            .post(fhir.url(""))
            .header("content-type", FHIR_XML)
            .body(to_xml(&batch)),
    )
    .expect(200, "the same batch, answered in JSON")
    .resource();
    let from_xml_answer = from_xml(&reply.text, &json);
    let statuses = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        statuses(&from_xml_answer),
        ["201 Created", "404 Not Found", "422 Unprocessable Entity"]
    );
    assert_eq!(statuses(&json), statuses(&from_xml_answer));
}

// ---- Binary ------------------------------------------------------------------------------

/// Bytes that are no text: every byte value.
fn pdf_bytes() -> Vec<u8> {
    let mut bytes = b"%PDF-1.4\n".to_vec();
    bytes.extend(0..=255u8);
    bytes
}

fn raw_get(fhir: &FhirClient, path: &str, accept: Option<&str>) -> reqwest::blocking::Response {
    let mut request = fhir.http.get(fhir.url(path));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().expect("request")
}

/// `POST /fhir/Binary` and `PUT /fhir/Binary/id` with any content type store the bytes as a
/// Binary; a read whose `Accept` does not ask for FHIR first gets them back raw, with their
/// content type and security context; `_format` or a FHIR `Accept` gets the resource.
#[test]
fn binary_content_goes_in_and_out_raw() {
    let fhir = Fhir::start();
    let content = pdf_bytes();
    let reply = send(
        fhir.http
            .post(fhir.url("Binary"))
            .header("content-type", "application/pdf")
            .header("x-security-context", "Patient/p1")
            .body(content.clone()),
    );
    reply.expect(201, "raw create");
    let created = reply.resource();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["contentType"], "application/pdf");
    assert_eq!(created["securityContext"]["reference"], "Patient/p1");
    let path = format!("Binary/{id}");

    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for accept in [None, Some("application/pdf"), Some("*/*"), Some(browser)] {
        let response = raw_get(&fhir, &path, accept);
        assert_eq!(response.status(), 200, "{accept:?}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/pdf", "{accept:?}");
        assert_eq!(headers["x-security-context"], "Patient/p1");
        assert_eq!(headers["etag"], "W/\"1\"");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("sandbox")
        );
        assert_eq!(response.bytes().unwrap().to_vec(), content, "{accept:?}");
    }
    // Conditional raw read.
    let reply = fhir.get_with(&path, &[("accept", "*/*"), ("if-none-match", "W/\"1\"")]);
    reply.expect(304, "raw read, not modified");
    // FHIR when asked for first.
    let as_json = fhir
        .get_with(&path, &[("accept", "application/fhir+json")])
        .resource();
    assert_eq!(as_json, created);
    assert_eq!(
        fhir.get(&format!("{path}?_format=json")).resource(),
        created
    );
    let reply = fhir.get_with(&path, &[("accept", FHIR_XML)]);
    assert_eq!(xml_answer(&reply, "Binary in XML"), "Binary");
    assert_eq!(from_xml(&reply.text, &created), created);

    // PUT raw: a new version; the old one stays readable raw.
    let text = "plain text, not FHIR".as_bytes();
    let reply = send(
        fhir.http
            .put(fhir.url(&path))
            .header("content-type", "text/plain;  charset=utf-8")
            .body(text),
    );
    reply.expect(200, "raw update");
    assert_eq!(reply.resource()["contentType"], "text/plain; charset=utf-8");
    let response = raw_get(&fhir, &path, Some("*/*"));
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert!(response.headers().get("x-security-context").is_none());
    assert_eq!(response.bytes().unwrap().as_ref(), text);
    let response = raw_get(
        &fhir,
        &format!("{path}/_history/1"),
        Some("application/pdf"),
    );
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().to_vec(), content);
    // Update-as-create with the client's id, and an empty body.
    let reply = send(
        fhir.http
            .put(fhir.url("Binary/empty-one"))
            .header("content-type", "application/octet-stream")
            .body(Vec::new()),
    );
    reply.expect(201, "empty raw update-as-create");
    let response = raw_get(&fhir, "Binary/empty-one", None);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert!(response.bytes().unwrap().is_empty());

    // Search and history stay FHIR, and see every version.
    let history = fhir
        .get_with(&format!("{path}/_history"), &[("accept", "*/*")])
        .resource();
    assert_eq!(history["entry"].as_array().unwrap().len(), 2);
    let search = fhir.get_with("Binary", &[("accept", "*/*")]).resource();
    assert_eq!(search["entry"].as_array().unwrap().len(), 2);
    // A raw body is for Binary only; a missing Binary is a 404 OperationOutcome.
    let reply = send(
        fhir.http
            .post(fhir.url("Patient"))
            .header("content-type", "application/pdf")
            .body(content.clone()),
    );
    assert_outcome(&reply, 415, &["not-supported"]);
    assert_outcome(
        &fhir.get_with("Binary/none", &[("accept", "application/pdf")]),
        404,
        &["not-found"],
    );
}

/// The body limit holds for raw content as for any body.
#[test]
fn raw_binary_content_is_held_to_the_body_limit() {
    let server = TestServer::start_with(&["--max-body", "4096"]);
    let fhir = FhirClient::new(&server);
    let post = |size: usize| {
        send(
            fhir.http
                .post(fhir.url("Binary"))
                .header("content-type", "image/png")
                .body(vec![7u8; size]),
        )
    };
    post(4096).expect(201, "at the limit");
    assert_outcome(&post(4097), 413, &["too-long"]);
}
