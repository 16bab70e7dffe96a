//! `_summary` and `_elements` over HTTP on a few Synthea patients: search matches and reads are
//! cut as the R4 spec says, included resources are not, and a bad value is a 400.

mod common;

use common::fhir::{Fhir, assert_outcome, link, type_and_id};
use common::synthea;
use serde_json::{Value, json};

/// Patient's summary elements in R4 (the "Σ" flags of the Patient page), JSON names, with
/// `resourceType`.
const PATIENT_SUMMARY: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "implicitRules",
    "identifier",
    "active",
    "name",
    "telecom",
    "gender",
    "birthDate",
    "deceasedBoolean",
    "deceasedDateTime",
    "address",
    "managingOrganization",
    "link",
];

/// A server with the Synthea providers and two patients.
fn loaded() -> Fhir {
    let fhir = Fhir::start();
    let data = synthea::load(Some(2));
    fhir.bundle(&data.shared).expect(200, "providers");
    for (name, bundle) in &data.patients {
        fhir.bundle(bundle).expect(200, name);
    }
    fhir
}

/// The resources of a search page's entries in `mode` (`match`, `include`).
fn entries(bundle: &Value, mode: &str) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["search"]["mode"] == mode)
        .map(|entry| entry["resource"].clone())
        .collect()
}

/// The first page of a search, which must hold all of its matches.
fn search(fhir: &Fhir, query: &str) -> Value {
    let bundle = fhir.get(query).expect(200, query).resource();
    assert!(link(&bundle, "next").is_none(), "{query}: one page");
    bundle
}

/// The current version of `resource`, read whole.
fn read(fhir: &Fhir, resource: &Value) -> Value {
    let at = type_and_id(resource);
    fhir.get(&at).expect(200, &at).resource()
}

fn keys(resource: &Value) -> Vec<&str> {
    resource
        .as_object()
        .expect("a resource")
        .keys()
        .map(String::as_str)
        .collect()
}

/// `whole` as a subset with `keep` keeps it: those members in the same order, and the
/// SUBSETTED tag added to `meta` (the only tag, as Synthea resources have none).
fn expected(whole: &Value, keep: impl Fn(&str) -> bool) -> Value {
    let mut cut: serde_json::Map<String, Value> = whole
        .as_object()
        .expect("a resource")
        .iter()
        .filter(|(key, _)| keep(key.strip_prefix('_').unwrap_or(key)))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    assert!(whole["meta"].get("tag").is_none(), "{whole}");
    cut["meta"]["tag"] = json!([{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
        "display": "Resource encoded in summary mode",
    }]);
    Value::Object(cut)
}

#[test]
fn search_and_read_return_the_subsets_asked_for() {
    let fhir = loaded();
    let whole = entries(&search(&fhir, "Patient"), "match");
    assert_eq!(whole.len(), 2);
    let is_summary = |name: &str| PATIENT_SUMMARY.contains(&name);

    // _summary=true: the summary elements (Synthea patients have text, extension,
    // maritalStatus, communication: all left out).
    let bundle = search(&fhir, "Patient?_summary=true");
    assert!(link(&bundle, "self").unwrap().contains("_summary=true"));
    let summaries = entries(&bundle, "match");
    assert_eq!(summaries.len(), whole.len());
    for summary in &summaries {
        let full = read(&fhir, summary);
        assert!(full.get("text").is_some() && summary.get("text").is_none());
        assert!(keys(summary).iter().all(|key| is_summary(key)), "{summary}");
        let want = expected(&full, is_summary);
        assert_eq!(summary, &want);
        assert_eq!(keys(summary), keys(&want), "in the stored order");
        // The same by read and by vread.
        let at = type_and_id(summary);
        let read = fhir
            .get(&format!("{at}?_summary=true"))
            .expect(200, &at)
            .resource();
        assert_eq!(&read, summary);
        let version = full["meta"]["versionId"].as_str().unwrap();
        let vread = format!("{at}/_history/{version}?_summary=true");
        assert_eq!(&fhir.get(&vread).expect(200, &vread).resource(), summary);
    }

    // _summary=data: everything but text; _summary=text: text, id and meta (Patient has no
    // mandatory element).
    for full in &whole {
        let query = format!("Patient?_id={}", full["id"].as_str().unwrap());
        let data = entries(&search(&fhir, &format!("{query}&_summary=data")), "match");
        assert_eq!(data, [expected(full, |name| name != "text")]);
        let text = entries(&search(&fhir, &format!("{query}&_summary=text")), "match");
        assert_eq!(keys(&text[0]), ["resourceType", "id", "meta", "text"]);
    }

    // _elements: those elements, resourceType, id and meta.
    let bundle = search(&fhir, "Patient?_elements=gender,Patient.birthDate");
    assert!(
        link(&bundle, "self")
            .unwrap()
            .contains("_elements=gender%2CPatient.birthDate")
    );
    for chosen in entries(&bundle, "match") {
        assert_eq!(
            keys(&chosen),
            ["resourceType", "id", "meta", "gender", "birthDate"]
        );
        let full = read(&fhir, &chosen);
        assert_eq!(chosen["birthDate"], full["birthDate"]);
    }
    let at = type_and_id(&whole[0]);
    let read = fhir
        .get(&format!("{at}?_elements=gender"))
        .expect(200, &at)
        .resource();
    assert_eq!(keys(&read), ["resourceType", "id", "meta", "gender"]);

    // _summary=count is unchanged: the total alone.
    let count = search(&fhir, "Patient?_summary=count");
    assert_eq!(count["total"], 2);
    assert!(count.get("entry").is_none());
}

#[test]
fn elements_cut_the_matches_and_not_the_included_resources() {
    let fhir = loaded();
    let query = "Observation?_count=5&_elements=status&_include=Observation:patient";
    let bundle = fhir.get(query).expect(200, query).resource();
    let matches = entries(&bundle, "match");
    assert_eq!(matches.len(), 5);
    for observation in &matches {
        // status and code are mandatory: kept though not asked for.
        assert_eq!(
            keys(observation),
            ["resourceType", "id", "meta", "status", "code"]
        );
        let full = read(&fhir, observation);
        assert_eq!(
            observation,
            &expected(&full, |name| {
                ["resourceType", "id", "meta", "status", "code"].contains(&name)
            })
        );
    }
    // The patients come whole, though the matches no longer show their subject.
    let included = entries(&bundle, "include");
    assert!(!included.is_empty());
    for patient in &included {
        assert_eq!(patient, &read(&fhir, patient));
    }
}

#[test]
fn a_bad_summary_or_elements_is_a_400() {
    let fhir = Fhir::start();
    let created = fhir.create(&common::fhir::patient("Subset"));
    let at = type_and_id(&created);
    for query in [
        "Patient?_summary=bogus".to_string(),
        "Patient?_summary=true&_elements=gender".into(),
        "Patient?_elements=name.given".into(),
        format!("{at}?_summary=bogus"),
        format!("{at}/_history/1?_elements=Nothing.name"),
    ] {
        assert_outcome(&fhir.get(&query), 400, &["invalid"]);
    }
}

/// `GET /metadata` honours `_summary` and `_elements` (the whole statement is 1.4 MB), and has
/// an `ETag` and a `Last-Modified` that make a client's copy a 304.
#[test]
fn the_capability_statement_is_cut_and_cached_like_a_read() {
    let fhir = Fhir::start();
    let whole = fhir.get("metadata");
    whole.expect(200, "metadata");
    let statement = whole.resource();
    assert!(whole.text.len() > 1_000_000, "{}", whole.text.len());

    let summary = fhir.get("metadata?_summary=true");
    summary.expect(200, "summary");
    let cut = summary.resource();
    assert!(
        summary.text.len() < whole.text.len() / 20,
        "{}",
        summary.text.len()
    );
    assert_eq!(cut["meta"]["tag"][0]["code"], "SUBSETTED");
    assert_eq!(cut["format"], statement["format"]);
    // rest.resource keeps each type's summary elements, not its search parameters.
    let first = &cut["rest"][0]["resource"][0];
    assert_eq!(first["type"], statement["rest"][0]["resource"][0]["type"]);
    assert!(first.get("searchParam").is_none(), "{first}");

    let elements = fhir
        .get("metadata?_elements=format,software")
        .expect(200, "_elements")
        .resource();
    assert_eq!(elements["software"], statement["software"]);
    assert!(elements.get("rest").is_none());
    assert_outcome(&fhir.get("metadata?_summary=everything"), 400, &["invalid"]);

    // Cached: the same representation has the same ETag, another one another.
    let etag = whole.etag();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(fhir.get("metadata").etag(), etag);
    assert_ne!(summary.etag(), etag);
    assert_ne!(fhir.get("metadata?_format=xml").etag(), etag);
    let not_modified = fhir.get_with("metadata", &[("if-none-match", &etag)]);
    not_modified.expect(304, "If-None-Match");
    assert!(not_modified.text.is_empty());
    assert_eq!(not_modified.etag(), etag);
    fhir.get_with("metadata", &[("if-none-match", "W/\"other\"")])
        .expect(200, "another ETag");
    let modified = whole.header("last-modified").expect("Last-Modified");
    fhir.get_with("metadata", &[("if-modified-since", &modified)])
        .expect(304, "If-Modified-Since");
    fhir.get_with(
        "metadata",
        &[("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
    )
    .expect(200, "modified since 2001");
    // `date` is when the statement was made, and so its Last-Modified.
    let date = statement["date"].as_str().unwrap();
    assert_eq!(
        common::fhir::instant(date).unix_timestamp(),
        httpdate(&modified),
        "{date} {modified}"
    );
}

/// Seconds since the epoch of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate(text: &str) -> i64 {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text, format)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .assume_utc()
        .unix_timestamp()
}
