//! The API explorer in a real browser: headless Debian chromium, driven by
//! `tests/explorer/explorer.cjs` (playwright-core), loads `/docs`, lists the Patient endpoints,
//! and runs GET /fhir/metadata and GET /fhir/Patient/{id} through "Try it out" + "Execute".
//!
//! `FHIRLAKE_UPDATE_SCREENSHOT=1 cargo test --test explorer` also saves the page to
//! `openapi/explorer.png`, the screenshot the README shows, with the text it shows (the
//! document's description and the read operation's) in an `iTXt` chunk of the PNG:
//! [`the_screenshot_shows_the_current_document`] fails when that text is no longer the
//! document's, so the screenshot cannot go stale silently.

mod common;

use common::fhir::FhirClient;
use common::{TestServer, test_tool};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;

const SCREENSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/explorer.png");
const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
const UPDATE: &str = "FHIRLAKE_UPDATE_SCREENSHOT=1 cargo test --test explorer";

/// The keyword of the PNG text chunk that holds what the screenshot shows.
const SOURCE_KEYWORD: &str = "fhirlake-source";

#[test]
fn the_explorer_lists_the_patient_endpoints_and_runs_calls() {
    let node_modules = test_tool("node/node_modules");
    let server = TestServer::start();
    let patient = FhirClient::new(&server).create(&json!({
        "resourceType": "Patient",
        "name": [{"family": "Chalmers", "given": ["Peter"]}],
        "gender": "male",
        "birthDate": "1974-12-25"
    }));
    let id = patient["id"].as_str().unwrap();

    let mut driver = Command::new("node");
    driver
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/explorer/explorer.cjs"
        ))
        .args([&server.origin, id])
        .env("NODE_PATH", &node_modules);
    let update = updating();
    if update {
        driver.arg(SCREENSHOT);
    }
    let output = driver.output().expect("run node (is Node.js installed?)");
    assert!(
        output.status.success(),
        "the browser driver failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if update {
        let png = std::fs::read(SCREENSHOT).expect("the new screenshot");
        let document = std::fs::read_to_string(DOCUMENT).expect("openapi/openapi.json");
        let source = screenshot_source(&serde_json::from_str(&document).unwrap());
        std::fs::write(SCREENSHOT, with_text(&png, SOURCE_KEYWORD, &source)).unwrap();
    }
    let seen: Value = serde_json::from_slice(&output.stdout).expect("the driver's JSON");

    assert_eq!(seen["url"], format!("{}/docs/", server.origin));
    assert!(
        seen["title"]
            .as_str()
            .unwrap()
            .starts_with("fhirlake FHIR R4 API"),
        "{seen}"
    );
    assert_eq!(seen["authorize"], 1, "the Authorize button");
    let requests = seen["requests"].as_array().unwrap();
    for url in requests {
        assert!(
            url.as_str().unwrap().starts_with(&server.origin),
            "the page fetched {url} from elsewhere"
        );
    }

    let listed: BTreeSet<&str> = seen["patientOperations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|operation| operation.as_str().unwrap())
        .collect();
    let expected = BTreeSet::from([
        "POST /fhir/Patient",
        "GET /fhir/Patient/{id}",
        "PUT /fhir/Patient/{id}",
        "PATCH /fhir/Patient/{id}",
        "DELETE /fhir/Patient/{id}",
        "GET /fhir/Patient/{id}/_history/{vid}",
        "GET /fhir/Patient/{id}/_history",
        "GET /fhir/Patient/_history",
        "GET /fhir/Patient",
        "GET /fhir/Patient/{id}/{type}",
        "GET /fhir/Patient/{id}/$everything",
        "GET /fhir/Patient/$export",
        "POST /fhir/Patient/$export",
        "POST /fhir/Patient/$validate",
        "GET /fhir/Patient/{id}/$validate",
        "POST /fhir/Patient/{id}/$validate",
        "POST /fhir/Patient/$bulk-delete",
        "POST /fhir/Patient/{id}/$erase",
        "POST /fhir/Patient/{id}/$purge",
        "POST /fhir/Patient/{id}/_history/{vid}/$erase",
    ]);
    assert_eq!(listed, expected);

    assert_eq!(seen["metadata"]["status"], 200, "{}", seen["metadata"]);
    assert!(
        seen["metadata"]["body"]
            .as_str()
            .unwrap()
            .contains("\"CapabilityStatement\"")
    );
    assert_eq!(seen["read"]["status"], 200, "{}", seen["read"]);
    let read: Value = serde_json::from_str(seen["read"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(read, patient);
    // GET /fhir/Patient through the page: a searchset holding the Patient created above.
    assert_eq!(seen["search"]["status"], 200, "{}", seen["search"]);
    let searchset: Value = serde_json::from_str(seen["search"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(searchset["type"], "searchset");
    assert_eq!(searchset["entry"][0]["resource"], patient);
}

/// The screenshot shows the current document: the text it was taken of (kept in the PNG) is
/// the committed document's (which `tests/openapi.rs` holds equal to this build's). Not
/// checked while the screenshot is being taken anew (`FHIRLAKE_UPDATE_SCREENSHOT=1`).
#[test]
fn the_screenshot_shows_the_current_document() {
    if updating() {
        return;
    }
    let png = std::fs::read(SCREENSHOT).expect("openapi/explorer.png");
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(DOCUMENT).unwrap()).unwrap();
    let shown = text_of(&png, SOURCE_KEYWORD);
    assert_eq!(
        shown.as_deref(),
        Some(screenshot_source(&document).as_str()),
        "openapi/explorer.png shows another text than the current document's: regenerate it \
         with `{UPDATE}`"
    );
}

/// Whether this run takes the screenshot anew.
fn updating() -> bool {
    std::env::var_os("FHIRLAKE_UPDATE_SCREENSHOT").is_some_and(|v| v == "1")
}

/// What the screenshot shows of the document: its description, and the summary, description
/// and parameters of `GET /fhir/Patient/{id}`.
fn screenshot_source(document: &Value) -> String {
    let read = &document["paths"]["/fhir/Patient/{id}"]["get"];
    let parameters: Vec<Value> = read["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|parameter| {
            let parameter = match parameter["$ref"].as_str() {
                Some(reference) => {
                    let name = reference.rsplit('/').next().unwrap();
                    &document["components"]["parameters"][name]
                }
                None => parameter,
            };
            json!([parameter["name"], parameter["description"]])
        })
        .collect();
    json!({
        "description": document["info"]["description"],
        "read": {"summary": read["summary"], "description": read["description"],
            "parameters": parameters},
    })
    .to_string()
}

/// The chunks of a PNG: (type, data), after its signature.
fn chunks(png: &[u8]) -> Vec<([u8; 4], &[u8])> {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let mut chunks = Vec::new();
    let mut at = 8;
    while at + 12 <= png.len() {
        let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = png[at + 4..at + 8].try_into().unwrap();
        chunks.push((kind, &png[at + 8..at + 8 + length]));
        at += 12 + length;
    }
    chunks
}

/// The UTF-8 text of the `iTXt` chunk named `keyword`, uncompressed.
fn text_of(png: &[u8], keyword: &str) -> Option<String> {
    chunks(png).into_iter().find_map(|(kind, data)| {
        let rest = data
            .strip_prefix(keyword.as_bytes())?
            .strip_prefix(b"\0\0\0")?;
        // Empty language tag and translated keyword: two NULs more.
        let text = rest.strip_prefix(b"\0\0")?;
        (&kind == b"iTXt").then(|| String::from_utf8(text.to_vec()).expect("UTF-8"))
    })
}

/// `png` with an uncompressed `iTXt` chunk `keyword` holding `text`, before its end (any
/// chunk of that keyword replaced).
fn with_text(png: &[u8], keyword: &str, text: &str) -> Vec<u8> {
    let mut data = keyword.as_bytes().to_vec();
    data.extend(b"\0\0\0\0\0");
    data.extend(text.as_bytes());
    let mut out = png[..8].to_vec();
    for (kind, chunk) in chunks(png) {
        if &kind == b"iTXt" && chunk.starts_with(keyword.as_bytes()) {
            continue;
        }
        if &kind == b"IEND" {
            push_chunk(&mut out, b"iTXt", &data);
        }
        push_chunk(&mut out, &kind, chunk);
    }
    out
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend(kind);
    out.extend(data);
    out.extend(crc.sum().to_be_bytes());
}
