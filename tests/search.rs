//! FHIR search over HTTP on real Synthea data. Every expectation is computed by a plain scan
//! of the loaded resources (read back through history, not through the index).

mod common;

use common::fhir::{Fhir, assert_outcome, id_of, instant, link, patient, type_and_id, version_of};
use common::search::{all, codings, ids, loaded, ordered, search};
use common::synthea;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[test]
fn search_matches_a_plain_scan_for_every_parameter_type() {
    let fhir = loaded(3);
    let observations = all(&fhir, "Observation");
    let patients = all(&fhir, "Patient");
    assert!(observations.len() > 500, "{}", observations.len());

    // token: system|code, code alone, and on a code element
    let heart_rate = ("http://loinc.org".to_string(), "8867-4".to_string());
    let expected = ids(&observations, |o| codings(&o["code"]).contains(&heart_rate));
    assert!(!expected.is_empty());
    assert_eq!(
        search(&fhir, "Observation?code=http://loinc.org|8867-4&_count=7"),
        expected
    );
    assert_eq!(search(&fhir, "Observation?code=8867-4"), expected);
    assert!(search(&fhir, "Observation?code=http://snomed.info/sct|8867-4").is_empty());
    for gender in ["male", "female"] {
        let expected = ids(&patients, |p| p["gender"] == gender);
        assert_eq!(search(&fhir, &format!("Patient?gender={gender}")), expected);
    }
    // OR across commas, AND across repeats, :not
    let vitals = ids(&observations, |o| {
        codings(&o["code"])
            .iter()
            .any(|(_, c)| c == "8867-4" || c == "9279-1")
    });
    assert_eq!(search(&fhir, "Observation?code=8867-4,9279-1"), vitals);
    let not_heart_rate = ids(&observations, |o| {
        !codings(&o["code"]).contains(&heart_rate)
    });
    assert_eq!(
        search(&fhir, "Observation?code:not=http://loinc.org|8867-4"),
        not_heart_rate
    );

    // string: case- and accent-insensitive prefix, :exact, :contains
    let family = patients[0]["name"][0]["family"]
        .as_str()
        .unwrap()
        .to_string();
    let start = family[..3].to_lowercase();
    let expected = ids(&patients, |p| {
        p["name"].as_array().unwrap().iter().any(|n| {
            let parts = n["given"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&n["family"]));
            parts
                .filter_map(Value::as_str)
                .any(|s| s.to_lowercase().starts_with(&start))
        })
    });
    assert_eq!(search(&fhir, &format!("Patient?name={start}")), expected);
    assert!(
        search(
            &fhir,
            &format!("Patient?family:exact={}", family.to_lowercase())
        )
        .is_empty()
            || family == family.to_lowercase()
    );
    assert!(
        search(&fhir, &format!("Patient?family:exact={family}")).contains(&id_of(&patients[0]))
    );
    let middle = &family[1..family.len() - 1];
    assert!(
        search(&fhir, &format!("Patient?family:contains={middle}")).contains(&id_of(&patients[0]))
    );

    // reference: Type/id, id alone, a param of one target type
    let subject = id_of(&patients[1]);
    let expected = ids(&observations, |o| {
        o["subject"]["reference"] == format!("Patient/{subject}")
    });
    assert!(!expected.is_empty());
    assert_eq!(
        search(&fhir, &format!("Observation?subject=Patient/{subject}")),
        expected
    );
    assert_eq!(
        search(&fhir, &format!("Observation?patient={subject}")),
        expected
    );
    assert_eq!(
        search(&fhir, &format!("Observation?subject:Patient={subject}")),
        expected
    );

    // date with prefixes (Synthea writes effectiveDateTime to the second, with an offset)
    let effective = |o: &Value| {
        OffsetDateTime::parse(o["effectiveDateTime"].as_str().unwrap(), &Rfc3339).unwrap()
    };
    let day = time::macros::datetime!(2015-06-01 00:00 UTC);
    let next_day = day + time::Duration::days(1);
    let expected = ids(&observations, |o| effective(o) >= day);
    assert_eq!(search(&fhir, "Observation?date=ge2015-06-01"), expected);
    let expected = ids(&observations, |o| effective(o) < day);
    assert_eq!(search(&fhir, "Observation?date=lt2015-06-01"), expected);
    let expected = ids(&observations, |o| {
        effective(o) >= day && effective(o) < next_day
    });
    assert_eq!(search(&fhir, "Observation?date=2015-06-01"), expected);
    let expected = ids(&observations, |o| effective(o).year() == 2015);
    assert_eq!(
        search(&fhir, "Observation?date=ge2015&date=lt2016"),
        expected
    );

    // quantity with a prefix, with and without units
    let value = |o: &Value| o["valueQuantity"]["value"].as_f64();
    let expected = ids(&observations, |o| value(o).is_some_and(|v| v > 100.0));
    assert_eq!(search(&fhir, "Observation?value-quantity=gt100"), expected);
    // A UCUM unit finds every commensurable unit: masses per volume, here in mg/dL.
    let in_mg_per_dl = |o: &Value| {
        let factor = match o["valueQuantity"]["code"].as_str()? {
            "mg/dL" => 1.0,
            "g/dL" => 1e3,
            "g/L" => 1e2,
            "mg/L" | "ug/mL" => 1e-1,
            "ug/dL" => 1e-3,
            "ug/L" | "ng/mL" => 1e-4,
            "pg/mL" => 1e-7,
            _ => return None,
        };
        Some(value(o)? * factor)
    };
    // (A threshold between the data's two-decimal values, clear of rounding in conversions.)
    let expected = ids(&observations, |o| {
        in_mg_per_dl(o).is_some_and(|v| v > 100.0005)
    });
    assert!(
        observations
            .iter()
            .any(|o| o["valueQuantity"]["code"] == "g/dL" && in_mg_per_dl(o).unwrap() > 100.0),
        "the data has g/dL values"
    );
    assert_eq!(
        search(
            &fhir,
            "Observation?value-quantity=gt100.0005|http://unitsofmeasure.org|mg/dL"
        ),
        expected
    );
    assert_eq!(
        search(
            &fhir,
            "Observation?value-quantity=gt1.000005|http://unitsofmeasure.org|g/L"
        ),
        expected
    );
    // Without a system, the code must match as written.
    let expected = ids(&observations, |o| {
        value(o).is_some_and(|v| v > 100.0) && o["valueQuantity"]["code"] == "mg/dL"
    });
    assert_eq!(
        search(&fhir, "Observation?value-quantity=gt100||mg/dL"),
        expected
    );

    // :missing and _id
    let without_value = ids(&observations, |o| {
        o.get("valueQuantity").is_none()
            && o.get("valueCodeableConcept").is_none()
            && o.get("valueString").is_none()
    });
    assert_eq!(
        search(
            &fhir,
            "Observation?value-quantity:missing=true&value-concept:missing=true&value-string:missing=true"
        ),
        without_value
    );
    let one = id_of(&observations[0]);
    assert_eq!(
        search(&fhir, &format!("Observation?_id={one}")),
        BTreeSet::from([one])
    );
}

#[test]
fn totals_paging_post_search_and_unknown_parameters() {
    let fhir = loaded(1);
    let encounters = all(&fhir, "Encounter");
    let count = fhir
        .get("Encounter?_summary=count")
        .expect(200, "count")
        .resource();
    assert_eq!(count["total"], encounters.len());
    assert!(count.get("entry").is_none());
    let none = fhir
        .get("Encounter?_total=none&_count=5")
        .expect(200, "no total")
        .resource();
    assert!(none.get("total").is_none());
    assert_eq!(none["entry"].as_array().unwrap().len(), 5);
    // Pages stay stable while resources are added between them.
    let first = fhir
        .get("Encounter?_count=10")
        .expect(200, "page 1")
        .resource();
    fhir.create(&json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}));
    let mut seen = BTreeSet::new();
    let mut bundle = first;
    loop {
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            assert!(seen.insert(id_of(&entry["resource"])));
        }
        match link(&bundle, "next") {
            Some(next) => bundle = fhir.new_client().get_absolute(&next),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        encounters.len(),
        "the snapshot of page 1 holds for every page"
    );

    // POST _search with a form body
    let by_post = fhir
        .new_client()
        .post_form("Encounter/_search", &[("_summary", "count")])
        .json();
    assert_eq!(by_post["total"], encounters.len() + 1);

    // An unknown parameter: ignored and reported (lenient), 400 under handling=strict.
    let lenient = fhir
        .get("Encounter?unknown=1&_count=1")
        .expect(200, "lenient")
        .resource();
    let outcome = lenient["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("an outcome entry");
    assert!(
        outcome["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("unknown")
    );
    assert!(!link(&lenient, "self").unwrap().contains("unknown"));
    assert_outcome(
        &fhir.get_with("Encounter?unknown=1", &[("Prefer", "handling=strict")]),
        400,
        &["not-supported"],
    );
    assert_outcome(&fhir.get("Encounter?_count=x"), 400, &["invalid"]);
}

#[test]
fn searches_read_their_own_writes_and_drive_conditional_interactions() {
    let fhir = Fhir::start();
    // Read your writes: a search right after a create finds it.
    for n in 0..20 {
        let mut body = patient(&format!("Writer{n}"));
        body["identifier"] =
            json!([{"system": "http://example.org/mrn", "value": format!("w{n}")}]);
        let created = fhir.create(&body);
        let found = search(
            &fhir,
            &format!("Patient?identifier=http://example.org/mrn|w{n}"),
        );
        assert_eq!(found, BTreeSet::from([id_of(&created)]));
    }
    // Conditional create: a match is returned instead of a new resource.
    let mut body = patient("Writer0");
    body["identifier"] = json!([{"system": "http://example.org/mrn", "value": "w0"}]);
    let existing = fhir
        .post_with(
            "Patient",
            &body,
            &[("If-None-Exist", "identifier=http://example.org/mrn|w0")],
        )
        .expect(200, "conditional create with a match")
        .resource();
    assert_eq!(version_of(&existing), "1");
    body["identifier"][0]["value"] = json!("new");
    fhir.post_with(
        "Patient",
        &body,
        &[("If-None-Exist", "identifier=http://example.org/mrn|new")],
    )
    .expect(201, "conditional create without a match");
    assert_outcome(
        &fhir.post_with(
            "Patient",
            &patient("x"),
            &[("If-None-Exist", "family=Writer")],
        ),
        412,
        &["conflict"],
    );
    // Conditional update and delete follow their one match.
    let mut update = patient("Updated");
    update["identifier"] = json!([{"system": "http://example.org/mrn", "value": "w1"}]);
    let updated = fhir
        .put("Patient?identifier=http://example.org/mrn|w1", &update)
        .expect(200, "conditional update")
        .resource();
    assert_eq!(version_of(&updated), "2");
    fhir.delete("Patient?identifier=http://example.org/mrn|w1")
        .expect(204, "conditional delete");
    fhir.get(&format!("Patient/{}", id_of(&updated)))
        .expect(410, "deleted");
    assert!(search(&fhir, "Patient?identifier=http://example.org/mrn|w1").is_empty());
}

/// The effective instant of a Synthea Observation.
fn effective(observation: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(observation["effectiveDateTime"].as_str().unwrap(), &Rfc3339).unwrap()
}

#[test]
fn sorts_by_any_parameter_both_ways_on_several_keys_across_pages() {
    let fhir = loaded(3);
    let observations = all(&fhir, "Observation");

    // One key, descending, over pages: the dates never rise, and every match comes once.
    let heart_rates: Vec<&Value> = observations
        .iter()
        .filter(|o| codings(&o["code"]).iter().any(|(_, c)| c == "8867-4"))
        .collect();
    let sorted = ordered(&fhir, "Observation?code=8867-4&_sort=-date&_count=7");
    assert_eq!(sorted.len(), heart_rates.len());
    let dates: Vec<OffsetDateTime> = sorted.iter().map(effective).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "descending dates");
    let ascending: Vec<OffsetDateTime> = ordered(&fhir, "Observation?code=8867-4&_sort=date")
        .iter()
        .map(effective)
        .collect();
    let mut expected: Vec<OffsetDateTime> = heart_rates.iter().map(|o| effective(o)).collect();
    expected.sort();
    assert_eq!(ascending, expected);

    // Resources without a value come last in both directions.
    let conditions = all(&fhir, "Condition");
    for query in [
        "Condition?_sort=-abatement-date",
        "Condition?_sort=abatement-date",
    ] {
        let sorted = ordered(&fhir, query);
        assert_eq!(sorted.len(), conditions.len());
        let first_missing = sorted
            .iter()
            .position(|c| c.get("abatementDateTime").is_none())
            .unwrap_or(sorted.len());
        assert!(
            sorted[first_missing..]
                .iter()
                .all(|c| c.get("abatementDateTime").is_none()),
            "{query}: missing values last"
        );
        let present: Vec<OffsetDateTime> = sorted[..first_missing]
            .iter()
            .map(|c| instant(c["abatementDateTime"].as_str().unwrap()))
            .collect();
        let descending = query.contains("_sort=-");
        assert!(
            present.windows(2).all(|w| if descending {
                w[0] >= w[1]
            } else {
                w[0] <= w[1]
            }),
            "{query}: in order"
        );
    }

    // Several keys: status ascending, then onset descending within a status.
    let sorted = ordered(
        &fhir,
        "Condition?_sort=clinical-status,-onset-date&_count=50",
    );
    let key = |c: &Value| {
        (
            c["clinicalStatus"]["coding"][0]["code"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            std::cmp::Reverse(instant(c["onsetDateTime"].as_str().unwrap())),
        )
    };
    assert_eq!(sorted.len(), conditions.len());
    assert!(sorted.windows(2).all(|w| key(&w[0]) <= key(&w[1])));
    // The self link states the sort it applied.
    let bundle = fhir
        .get("Condition?_sort=-onset-date&_count=1")
        .expect(200, "self link")
        .resource();
    assert!(link(&bundle, "self").unwrap().contains("_sort=-onset-date"));

    // Strings sort case-insensitively by their lowest value (Synthea's married women have a
    // maiden name too).
    let names: Vec<String> = ordered(&fhir, "Patient?_sort=family")
        .iter()
        .map(|p| {
            p["name"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|n| n["family"].as_str())
                .map(str::to_lowercase)
                .min()
                .unwrap()
        })
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");

    // A sort by an unknown parameter: reported, or 400 under handling=strict.
    assert_outcome(
        &fhir.get_with("Condition?_sort=nonsense", &[("Prefer", "handling=strict")]),
        400,
        &["not-supported"],
    );
    assert_outcome(
        &fhir.get_with(
            "Observation?_sort=code-value-quantity",
            &[("Prefer", "handling=strict")],
        ),
        400,
        &["not-supported"],
    );
}

/// The values of a blood pressure Observation's components with `code`.
fn component_values(observation: &Value, code: &str) -> Vec<f64> {
    observation["component"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| codings(&c["code"]).iter().any(|(_, k)| k == code))
        .filter_map(|c| c["valueQuantity"]["value"].as_f64())
        .collect()
}

#[test]
fn composites_and_several_values_match_within_one_value() {
    let fhir = loaded(2);
    let observations = all(&fhir, "Observation");
    const SYSTOLIC: &str = "8480-6";
    const DIASTOLIC: &str = "8462-4";
    let pressures: Vec<&Value> = observations
        .iter()
        .filter(|o| !component_values(o, SYSTOLIC).is_empty())
        .collect();
    assert!(pressures.len() > 5, "{}", pressures.len());

    // A composite pairs a code with the value of the same component.
    let expected = ids(&observations, |o| {
        component_values(o, SYSTOLIC).iter().any(|v| *v > 120.0)
    });
    assert!(!expected.is_empty());
    assert_eq!(
        search(
            &fhir,
            "Observation?component-code-value-quantity=http://loinc.org|8480-6$gt120"
        ),
        expected
    );
    let expected = ids(&observations, |o| {
        component_values(o, DIASTOLIC).iter().any(|v| *v > 120.0)
    });
    assert_eq!(
        search(
            &fhir,
            "Observation?component-code-value-quantity=8462-4$gt120"
        ),
        expected
    );
    // code-value-quantity on the Observation's own code and value.
    let expected = ids(&observations, |o| {
        codings(&o["code"]).iter().any(|(_, c)| c == "8867-4")
            && o["valueQuantity"]["value"]
                .as_f64()
                .is_some_and(|v| v <= 70.0)
    });
    assert_eq!(
        search(
            &fhir,
            "Observation?code-value-quantity=http://loinc.org|8867-4$le70"
        ),
        expected
    );

    // Two values of one parameter: a range must hold for one of them, not across both.
    let mut expected = BTreeSet::new();
    for o in &pressures {
        let all_values: Vec<f64> = [SYSTOLIC, DIASTOLIC]
            .iter()
            .flat_map(|c| component_values(o, c))
            .collect();
        if all_values.iter().any(|v| (79.5..80.5).contains(v)) {
            expected.insert(id_of(o));
        }
    }
    let found = search(&fhir, "Observation?component-value-quantity=80");
    assert_eq!(found, expected);
    assert!(
        found.len() < pressures.len(),
        "not every pressure has an 80"
    );

    // Dates: a Timing with two events matches each event's day, not the years between them.
    let timed = fhir.create(&json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": "timed"}]},
        "effectiveTiming": {"event": ["2010-01-01", "2020-01-01"]}
    }));
    let timed = BTreeSet::from([id_of(&timed)]);
    assert_eq!(
        search(&fhir, "Observation?code=timed&date=2010-01-01"),
        timed
    );
    assert_eq!(search(&fhir, "Observation?code=timed&date=2020"), timed);
    assert!(search(&fhir, "Observation?code=timed&date=2015").is_empty());
    assert!(search(&fhir, "Observation?code=timed&date=ap2015-01-01").is_empty());

    // Numbers: two predictions of 0.2 and 0.9, at the precision they are searched with.
    let risk = fhir.create(&json!({
        "resourceType": "RiskAssessment", "status": "final",
        "subject": {"reference": format!("Patient/{}", id_of(&all(&fhir, "Patient")[0]))},
        "prediction": [{"probabilityDecimal": 0.2}, {"probabilityDecimal": 0.9}]
    }));
    let risk = BTreeSet::from([id_of(&risk)]);
    for (query, matches) in [
        ("probability=0.9", true),
        ("probability=0.90", true),
        ("probability=0.2", true),
        ("probability=0.5", false),
        ("probability=ap0.5", false),
        ("probability=gt0.5", true),
        ("probability=lt0.1", false),
        ("probability=ne0.2", true),
    ] {
        let found = search(&fhir, &format!("RiskAssessment?{query}"));
        assert_eq!(found == risk, matches, "{query}: {found:?}");
    }
}

#[test]
fn dates_match_at_every_precision_and_time_zone_and_tokens_without_a_system() {
    let fhir = Fhir::start();
    let mut by_name = std::collections::BTreeMap::new();
    for (name, effective) in [
        ("year", "2020"),
        ("month", "2020-03"),
        ("day", "2020-03-15"),
        ("east", "2020-03-15T23:30:00+05:00"), // 18:30 UTC on the 15th
        ("west", "2020-03-15T23:30:00-05:00"), // 04:30 UTC on the 16th
    ] {
        let created = fhir.create(&json!({
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"code": name}]},
            "effectiveDateTime": effective
        }));
        by_name.insert(id_of(&created), name);
    }
    let names = |query: &str| -> BTreeSet<&str> {
        search(&fhir, &format!("Observation?{query}"))
            .iter()
            .map(|id| by_name[id.as_str()])
            .collect()
    };
    let set = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<&str>>();
    // eq: the resource's period lies within the searched one (in UTC without a zone).
    assert_eq!(
        names("date=2020"),
        set(&["year", "month", "day", "east", "west"])
    );
    assert_eq!(
        names("date=2020-03"),
        set(&["month", "day", "east", "west"])
    );
    assert_eq!(names("date=2020-03-15"), set(&["day", "east"]));
    assert_eq!(names("date=2020-03-16"), set(&["west"]));
    // A zone in the search value is honoured, to the second.
    assert_eq!(names("date=2020-03-15T23:30:00%2B05:00"), set(&["east"]));
    assert_eq!(names("date=2020-03-15T18:30:00Z"), set(&["east"]));
    assert_eq!(names("date=2020-03-16T04:30:00Z"), set(&["west"]));
    // Prefixes against periods: overlap above or below, starts after, ends before.
    assert_eq!(names("date=ge2020-03-16"), set(&["year", "month", "west"]));
    assert_eq!(names("date=gt2020-03-15"), set(&["year", "month", "west"]));
    assert_eq!(
        names("date=lt2020-03-15T18:30:00Z"),
        set(&["year", "month", "day"])
    );
    assert_eq!(
        names("date=le2020-03-15"),
        set(&["year", "month", "day", "east"])
    );
    assert_eq!(names("date=sa2020-03-15"), set(&["west"]));
    assert_eq!(names("date=eb2020-03-16"), set(&["day", "east"]));
    assert_eq!(names("date=ne2020-03-15"), set(&["year", "month", "west"]));

    // Tokens without a system: `code` matches any system, `|code` only none.
    let with_system = fhir.create(&json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://example.org/codes", "code": "day"}]}
    }));
    let plain: BTreeSet<String> = by_name
        .iter()
        .filter(|(_, n)| **n == "day")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(search(&fhir, "Observation?code=|day"), plain);
    let mut both = plain.clone();
    both.insert(id_of(&with_system));
    assert_eq!(search(&fhir, "Observation?code=day"), both);
    assert_eq!(
        search(&fhir, "Observation?code=http://example.org/codes|day"),
        BTreeSet::from([id_of(&with_system)])
    );
}

#[test]
fn common_parameters_search_the_meta_of_every_type() {
    let fhir = Fhir::start();
    let tagged = fhir.create(&json!({
        "resourceType": "Patient",
        "meta": {
            "tag": [{"system": "http://example.org/tags", "code": "vip"}],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
            "source": "http://example.org/ehr#import-7"
        },
        "name": [{"family": "Tagged"}]
    }));
    let plain = fhir.create(&patient("Plain"));
    let observation = fhir.create(&json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "meta": {"tag": [{"system": "http://example.org/tags", "code": "vip"}]}
    }));
    let only = |resource: &Value| BTreeSet::from([id_of(resource)]);
    assert_eq!(
        search(&fhir, "Patient?_tag=http://example.org/tags|vip"),
        only(&tagged)
    );
    assert_eq!(search(&fhir, "Patient?_tag:not=vip"), only(&plain));
    assert_eq!(search(&fhir, "Patient?_security=R"), only(&tagged));
    assert_eq!(
        search(
            &fhir,
            "Patient?_profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"
        ),
        only(&tagged)
    );
    assert_eq!(
        search(&fhir, "Patient?_source=http://example.org/ehr%23import-7"),
        only(&tagged)
    );
    // Across types, at the system level.
    let both: BTreeSet<String> = [id_of(&tagged), id_of(&observation)].into();
    assert_eq!(search(&fhir, "?_tag=vip"), both);
    // _lastUpdated: everything written from a moment on.
    let since = tagged["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .replace('+', "%2B");
    assert_eq!(
        search(&fhir, &format!("Patient?_lastUpdated=ge{since}")),
        [id_of(&tagged), id_of(&plain)].into()
    );
    assert_eq!(
        search(&fhir, &format!("Patient?_lastUpdated=gt{since}")),
        only(&plain)
    );
    let newest_first: Vec<String> = ordered(&fhir, "Patient?_sort=-_lastUpdated")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(newest_first, [id_of(&plain), id_of(&tagged)]);
}

/// The great-circle distance in km between two positions in degrees.
fn kilometres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (a0, b0) = (a.0.to_radians(), b.0.to_radians());
    let h = ((b0 - a0) / 2.0).sin().powi(2)
        + a0.cos() * b0.cos() * ((b.1 - a.1).to_radians() / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().asin()
}

#[test]
fn near_finds_locations_within_a_distance() {
    let fhir = Fhir::start();
    fhir.bundle(&synthea::bundle("0-hospitalInformation"))
        .expect(200, "hospitals");
    let locations = all(&fhir, "Location");
    let position = |l: &Value| {
        Some((
            l["position"]["latitude"].as_f64()?,
            l["position"]["longitude"].as_f64()?,
        ))
    };
    let centre = position(&locations[0]).unwrap();
    for (distance, unit, km) in [
        (10.0, "km", 10.0),
        (10.0, "[mi_i]", 16.0934),
        (500.0, "m", 0.5),
    ] {
        let expected = ids(&locations, |l| {
            position(l).is_some_and(|p| kilometres(centre, p) <= km)
        });
        assert!(!expected.is_empty());
        assert_eq!(
            search(
                &fhir,
                &format!("Location?near={}|{}|{distance}|{unit}", centre.0, centre.1)
            ),
            expected,
            "{distance} {unit}"
        );
    }
    let within_10 = ids(&locations, |l| {
        position(l).is_some_and(|p| kilometres(centre, p) <= 10.0)
    });
    assert!(
        within_10.len() < locations.len(),
        "not every Location is that near"
    );
    // A malformed position is refused in either handling.
    for bad in ["91|0|1|km", "x|0", "42|-71|1|kg", "42|-71|1e400"] {
        assert_outcome(
            &fhir.get(&format!("Location?near={bad}")),
            400,
            &["invalid"],
        );
    }
    // Huge and negative distances are distances.
    for distance in ["1e300", "-5", "0"] {
        fhir.get(&format!(
            "Location?near={}|{}|{distance}",
            centre.0, centre.1
        ))
        .expect(200, distance);
    }
}

/// The parameters of the query of `url` (or of a relative search).
fn query_of(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The keys (`Type/id`) of the matches of a search across its pages, in order.
fn keys_in_order(fhir: &Fhir, query: &str) -> Vec<String> {
    ordered(fhir, query).iter().map(type_and_id).collect()
}

#[test]
fn malformed_values_of_known_parameters_are_refused_and_empty_values_ignored() {
    let fhir = loaded(3);
    let patients = all(&fhir, "Patient");
    let strict = [("Prefer", "handling=strict")];
    // A bad value of a known parameter is a 400 in either handling, never a search of
    // everything; fhirclient's `>=` is not FHIR's prefix syntax.
    for query in [
        "Patient?birthdate=garbage",
        "Patient?birthdate=%3E%3D1985-01-01",
        "Patient?birthdate=ge1985-13-01",
        "Patient?gender:missing=maybe",
        "Observation?value-quantity=lots",
        "Observation?value-quantity=5|a|b|c",
        "Observation?code=a|b|c",
        "Observation?component-code-value-quantity=8480-6",
        "Observation?_lastUpdated=yesterday",
        "Location?near=91|0",
        "Patient?_content=%22unclosed",
        "Observation?subject:Patient.birthdate=garbage",
        "Patient?_has:Observation:patient:date=garbage",
    ] {
        assert_outcome(&fhir.get(query), 400, &["invalid"]);
        assert_outcome(&fhir.get_with(query, &strict), 400, &["invalid"]);
    }
    let born = |p: &Value| p["birthDate"].as_str().unwrap().to_string();
    let expected = ids(&patients, |p| born(p).as_str() >= "1985-01-01");
    assert!(!expected.is_empty() && expected.len() < patients.len());
    assert_eq!(search(&fhir, "Patient?birthdate=ge1985-01-01"), expected);

    // An empty value is ignored; so are the empty values of an OR list, the others apply.
    let every = ids(&patients, |_| true);
    let male = ids(&patients, |p| p["gender"] == "male");
    assert!(!male.is_empty() && male.len() < every.len());
    assert_eq!(search(&fhir, "Patient?gender=male,"), male);
    assert_eq!(search(&fhir, "Patient?gender=,male"), male);
    assert_eq!(search(&fhir, "Patient?gender=male,,female"), every);
    assert_eq!(search(&fhir, "Patient?gender="), every);
    assert_eq!(search(&fhir, "Patient?gender=,"), every);
    let strict_empty = fhir
        .get_with("Patient?gender=&_count=1", &strict)
        .expect(200, "an empty value under strict handling")
        .resource();
    assert_eq!(strict_empty["total"], every.len());
    let observations = all(&fhir, "Observation");
    let encounter = observations[0]["encounter"]["reference"].as_str().unwrap();
    let of_encounter = ids(&observations, |o| o["encounter"]["reference"] == encounter);
    assert!(of_encounter.len() < observations.len());
    assert_eq!(
        search(&fhir, &format!("Observation?encounter={encounter},")),
        of_encounter
    );
    // Unknown parameters stay lenient.
    assert_eq!(search(&fhir, "Patient?unknown=1&gender=male"), male);
}

#[test]
fn pages_without_sort_neither_repeat_nor_lose_matches() {
    let fhir = loaded(3);
    let observations = all(&fhir, "Observation");
    // Every resource of a patient's transaction shares one lastUpdated: ties everywhere.
    // (The report's query was `date=lt2010` on every patient; these ones start later: the
    // day a third of their observations precede.)
    let mut dates: Vec<OffsetDateTime> = observations.iter().map(effective).collect();
    dates.sort();
    let third = dates[dates.len() / 3];
    let day = third.replace_time(time::Time::MIDNIGHT);
    let before = ids(&observations, |o| effective(o) < day);
    assert!(before.len() > 100, "{}", before.len());
    let lt = format!("lt{}", &day.format(&Rfc3339).unwrap()[..10]);
    let patient = type_and_id(&all(&fhir, "Patient")[0]);
    let queries = [
        format!("Observation?date={lt}"),
        format!("Observation?date={lt}&_sort=code"),
        format!("Observation?date={lt}&_sort=-status"),
        format!("{patient}/Observation?date={lt}"),
        format!("{patient}/*?_type=Observation,Encounter"),
        format!("{patient}/$everything?_type=Observation,Encounter"),
    ];
    // The same order, whatever the page size: one total order.
    let whole: Vec<Vec<String>> = queries
        .iter()
        .map(|q| keys_in_order(&fhir, &format!("{q}&_count=1000")))
        .collect();
    for (query, keys) in queries.iter().zip(&whole) {
        let unique: BTreeSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{query}: a match repeats");
    }
    assert_eq!(
        whole[0]
            .iter()
            .map(|k| k[12..].to_string())
            .collect::<BTreeSet<_>>(),
        before
    );
    let mut runner = TestRunner::new(Config {
        cases: 8,
        failure_persistence: None,
        ..Config::default()
    });
    let case = (0..queries.len(), prop_oneof![1usize..20, 20usize..300]);
    runner
        .run(&case, |(n, count)| {
            let paged = keys_in_order(&fhir, &format!("{}&_count={count}", queries[n]));
            prop_assert_eq!(&paged, &whole[n], "{} at _count={}", queries[n], count);
            Ok(())
        })
        .unwrap();
    // The query of the report: at every count from 272 to 285 (a few of them).
    for count in [272, 279, 285] {
        let paged = keys_in_order(&fhir, &format!("{}&_count={count}", queries[0]));
        assert_eq!(paged, whole[0], "_count={count}");
    }
}

#[test]
fn paging_is_bounded_and_deep_pages_use_cursors() {
    let fhir = Fhir::start();
    for n in 0..7 {
        fhir.create(&patient(&format!("Pager{n}")));
    }
    // Offsets past the limit are refused (they used to allocate 480 GB, or panic).
    for offset in ["10000000000", "4611686018427387904", "10001"] {
        assert_outcome(
            &fhir.get(&format!("Patient?_offset={offset}")),
            400,
            &["too-costly"],
        );
    }
    assert_outcome(
        &fhir.get("Patient?_offset=99999999999999999999999"),
        400,
        &["invalid"],
    );
    fhir.get("Patient?_offset=10000")
        .expect(200, "the largest offset");
    fhir.get("Patient?_count=10000000000")
        .expect(200, "a page size is cut, not refused");
    // A huge _count gets the largest page, and says so.
    let cut = fhir
        .get("Patient?_count=5000")
        .expect(200, "cut")
        .resource();
    assert!(link(&cut, "self").unwrap().contains("_count=1000"));
    assert!(cut.to_string().contains("pages hold at most 1000"));
    // Next links page with a cursor; an offset still works and has a previous link.
    let first = fhir
        .get("Patient?_count=3")
        .expect(200, "page 1")
        .resource();
    let next = link(&first, "next").unwrap();
    assert!(
        next.contains("_cursor=") && !next.contains("_offset"),
        "{next}"
    );
    let second = fhir.new_client().get_absolute(&next);
    assert!(link(&second, "previous").is_none());
    let at_offset = fhir
        .get("Patient?_count=3&_offset=3")
        .expect(200, "offset")
        .resource();
    let ids_of = |bundle: &Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| id_of(&e["resource"]))
            .collect()
    };
    assert_eq!(ids_of(&at_offset), ids_of(&second));
    assert!(link(&at_offset, "previous").is_some());
    // A cursor that is not one, or of another search, is a 400.
    assert_outcome(&fhir.get("Patient?_cursor=zz"), 400, &["invalid"]);
    let foreign = next
        .split("_cursor=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_outcome(
        &fhir.get(&format!("Patient?_sort=family&_cursor={foreign}")),
        400,
        &["invalid"],
    );
    // A cursor still works when its snapshot is gone: on the current index.
    assert_eq!(
        ids_of(
            &fhir
                .get(&format!("Patient?_count=3&_cursor={foreign}"))
                .expect(200, "no snapshot")
                .resource()
        ),
        ids_of(&second)
    );
}

#[test]
fn system_search_takes_a_trailing_slash_and_links_repeat_the_search() {
    let fhir = loaded(1);
    let patients = all(&fhir, "Patient");
    let conditions = all(&fhir, "Condition");
    // fhir-kit-client's systemSearch sends `GET /fhir/?_type=...`.
    let bundle = fhir
        .get("/?_type=Patient")
        .expect(200, "trailing slash")
        .resource();
    assert_eq!(bundle["total"], patients.len());
    assert_eq!(
        search(&fhir, "/?_type=Patient,Condition&_count=7"),
        ids(&patients, |_| true)
            .union(&ids(&conditions, |_| true))
            .cloned()
            .collect()
    );

    // The self link reproduces the search: following it gives the same page.
    let patient = id_of(&patients[0]);
    for query in [
        format!("Condition?patient={patient}&_summary=true&_total=none&_count=4"),
        format!("Condition?patient={patient}&_elements=code,subject&_count=4&_sort=-onset-date"),
        format!("Condition?patient={patient}&_include=Condition:patient&_count=2"),
        format!("Condition?patient={patient}&_summary=count"),
        format!("Condition?patient={patient}&_total=accurate&_count=3&_offset=2"),
        "?_type=Condition&_count=2".to_string(),
    ] {
        let bundle = fhir.get(&query).expect(200, &query).resource();
        let own = link(&bundle, "self").unwrap();
        let linked = query_of(&own);
        for pair in query_of(&query) {
            assert!(
                linked.contains(&pair),
                "{query}: self link {own} lacks {pair:?}"
            );
        }
        let again = fhir.new_client().get_absolute(&own);
        assert_eq!(again["entry"], bundle["entry"], "{query}: {own}");
        assert_eq!(again.get("total"), bundle.get("total"), "{query}");
        // The next page of a `_type` search keeps to its types.
        if let Some(next) = link(&bundle, "next") {
            assert!(
                next.contains("_type=Condition") || !query.contains("_type"),
                "{next}"
            );
            let page = fhir.new_client().get_absolute(&next);
            for entry in page["entry"].as_array().into_iter().flatten() {
                if entry["search"]["mode"] == "match" {
                    assert_eq!(entry["resource"]["resourceType"], "Condition", "{next}");
                }
            }
        }
    }
    // Ignored parameters are left out of the links, whatever their position.
    let bundle = fhir
        .get("Condition?unknown=1&_sort=nonsense&_count=2&_include=Condition:nonsense")
        .expect(200, "ignored")
        .resource();
    let own = link(&bundle, "self").unwrap();
    assert!(
        !own.contains("unknown") && !own.contains("nonsense"),
        "{own}"
    );
}

#[test]
fn lists_and_canonical_versions_select_what_they_name() {
    let fhir = loaded(1);
    let conditions = all(&fhir, "Condition");
    let chosen: Vec<String> = conditions.iter().take(3).map(type_and_id).collect();
    let list = fhir.create(&json!({
        "resourceType": "List", "status": "current", "mode": "working",
        "entry": chosen.iter().map(|r| json!({"item": {"reference": r}})).collect::<Vec<_>>()
    }));
    let list_id = id_of(&list);
    let expected: BTreeSet<String> = chosen.iter().map(|k| k[10..].to_string()).collect();
    assert_eq!(
        search(&fhir, &format!("Condition?_list={list_id}")),
        expected
    );
    assert!(search(&fhir, &format!("Patient?_list={list_id}")).is_empty());
    assert!(search(&fhir, "Condition?_list=nothing").is_empty());
    // With another parameter, and in a system search.
    let first = &conditions[0];
    let code = &codings(&first["code"])[0].1;
    let both = ids(&conditions[..3], |c| {
        codings(&c["code"]).iter().any(|(_, k)| k == code)
    });
    assert_eq!(
        search(&fhir, &format!("Condition?_list={list_id}&code={code}")),
        both
    );

    // A canonical URL with its version.
    let questionnaire = |version: &str| {
        fhir.create(&json!({
            "resourceType": "Questionnaire", "status": "active",
            "url": "http://example.org/Questionnaire/intake", "version": version
        }))
    };
    let (one, two) = (questionnaire("1.0"), questionnaire("2.0"));
    assert_eq!(
        search(
            &fhir,
            "Questionnaire?url=http://example.org/Questionnaire/intake|2.0"
        ),
        BTreeSet::from([id_of(&two)])
    );
    assert_eq!(
        search(
            &fhir,
            "Questionnaire?url=http://example.org/Questionnaire/intake"
        ),
        BTreeSet::from([id_of(&one), id_of(&two)])
    );
    assert!(
        search(
            &fhir,
            "Questionnaire?url=http://example.org/Questionnaire/intake|3"
        )
        .is_empty()
    );
    // A canonical reference with a version is found by its URL alone, and with the version.
    let response = fhir.create(&json!({
        "resourceType": "QuestionnaireResponse", "status": "completed",
        "questionnaire": "http://example.org/Questionnaire/intake|2.0"
    }));
    for value in [
        "http://example.org/Questionnaire/intake",
        "http://example.org/Questionnaire/intake|2.0",
    ] {
        assert_eq!(
            search(
                &fhir,
                &format!("QuestionnaireResponse?questionnaire={value}")
            ),
            BTreeSet::from([id_of(&response)]),
            "{value}"
        );
    }
}
