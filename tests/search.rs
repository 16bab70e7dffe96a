//! FHIR search over HTTP on real Synthea data. Every expectation is computed by a plain scan
//! of the loaded resources (read back through history, not through the index).

mod common;

use common::fhir::{Fhir, assert_outcome, id_of, instant, link, patient, version_of};
use common::search::{all, ids, loaded, ordered, search};
use common::synthea;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn codings(concept: &Value) -> Vec<(String, String)> {
    concept["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["system"].as_str().unwrap_or("").to_string(),
                c["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

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
    for bad in ["91|0|1|km", "x|0", "42|-71|1|kg"] {
        assert_outcome(
            &fhir.get_with(
                &format!("Location?near={bad}"),
                &[("Prefer", "handling=strict")],
            ),
            400,
            &["not-supported"],
        );
    }
}

/// One page's matches and includes, as `Type/id`.
fn page_modes(fhir: &Fhir, query: &str) -> (Vec<String>, Vec<String>) {
    let bundle = fhir.get(query).expect(200, query).resource();
    let (mut matches, mut includes) = (Vec::new(), Vec::new());
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        let key = common::fhir::type_and_id(&entry["resource"]);
        match entry["search"]["mode"].as_str() {
            Some("match") => matches.push(key),
            Some("include") => includes.push(key),
            _ => {}
        }
    }
    (matches, includes)
}

fn set(keys: &[String]) -> BTreeSet<String> {
    let unique: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "no resource twice: {keys:?}");
    unique
}

#[test]
fn includes_and_revincludes_follow_references_once() {
    let fhir = loaded(2);
    let observations = all(&fhir, "Observation");
    let encounters = all(&fhir, "Encounter");
    let patient = id_of(&all(&fhir, "Patient")[0]);
    let subject = format!("Patient/{patient}");
    let heart_rates: Vec<&Value> = observations
        .iter()
        .filter(|o| o["subject"]["reference"] == subject.as_str())
        .filter(|o| codings(&o["code"]).iter().any(|(_, c)| c == "8867-4"))
        .collect();
    let base = format!("Observation?patient={patient}&code=8867-4&_count=1000");

    // _include: the patient once, however many matches refer to it.
    let (matches, includes) = page_modes(&fhir, &format!("{base}&_include=Observation:patient"));
    assert_eq!(matches.len(), heart_rates.len());
    assert_eq!(includes, std::slice::from_ref(&subject));

    // The encounters of the matches, and (iterating) their service providers.
    let referenced: BTreeSet<String> = heart_rates
        .iter()
        .map(|o| o["encounter"]["reference"].as_str().unwrap().to_string())
        .collect();
    let (_, includes) = page_modes(&fhir, &format!("{base}&_include=Observation:encounter"));
    assert_eq!(set(&includes), referenced);
    let providers: BTreeSet<String> = encounters
        .iter()
        .filter(|e| referenced.contains(&common::fhir::type_and_id(e)))
        .filter_map(|e| e["serviceProvider"]["reference"].as_str().map(String::from))
        .collect();
    assert!(!providers.is_empty());
    let (_, includes) = page_modes(
        &fhir,
        &format!(
            "{base}&_include=Observation:encounter&_include:iterate=Encounter:service-provider"
        ),
    );
    assert_eq!(
        set(&includes),
        referenced.union(&providers).cloned().collect()
    );

    // _revinclude: every Observation of the patient (hundreds).
    let of_patient: BTreeSet<String> = observations
        .iter()
        .filter(|o| o["subject"]["reference"] == subject.as_str())
        .map(common::fhir::type_and_id)
        .collect();
    assert!(of_patient.len() > 100, "{}", of_patient.len());
    let (matches, includes) = page_modes(
        &fhir,
        &format!("Patient?_id={patient}&_revinclude=Observation:patient"),
    );
    assert_eq!(matches, std::slice::from_ref(&subject));
    assert_eq!(set(&includes), of_patient);

    // A cycle: the encounters refer back to the patient, which is a match, not an include.
    let of_encounters: BTreeSet<String> = encounters
        .iter()
        .filter(|e| e["subject"]["reference"] == subject.as_str())
        .map(common::fhir::type_and_id)
        .collect();
    let (_, includes) = page_modes(
        &fhir,
        &format!(
            "Patient?_id={patient}&_revinclude=Encounter:patient&_include:iterate=Encounter:patient"
        ),
    );
    assert_eq!(set(&includes), of_encounters);

    // `*`: every reference of the source.
    let encounter = encounters
        .iter()
        .find(|e| e["subject"]["reference"] == subject.as_str())
        .unwrap();
    let (_, includes) = page_modes(
        &fhir,
        &format!("Encounter?_id={}&_include=Encounter:*", id_of(encounter)),
    );
    let includes = set(&includes);
    assert!(includes.contains(&subject));
    assert!(includes.contains(encounter["serviceProvider"]["reference"].as_str().unwrap()));

    // The CapabilityStatement offers them.
    let statement = fhir.get("metadata").expect(200, "metadata").resource();
    let of_type = |name: &str, list: &str| -> Vec<String> {
        statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == name)
            .unwrap()[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(of_type("Observation", "searchInclude").contains(&"Observation:patient".into()));
    assert!(of_type("Patient", "searchRevInclude").contains(&"Observation:patient".into()));

    assert_outcome(
        &fhir.get_with(
            "Observation?_include=Observation:nonsense",
            &[("Prefer", "handling=strict")],
        ),
        400,
        &["not-supported"],
    );
}
