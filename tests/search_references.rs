//! Searches that follow references, over HTTP on real Synthea data: `_include` and
//! `_revinclude`, chained parameters, `_has`, compartments and `$everything`. Every
//! expectation is computed by a plain scan of the loaded resources (read back through
//! history, not through the index).

mod common;

use common::fhir::{Fhir, assert_outcome, id_of, instant, link, patient, references, type_and_id};
use common::search::{all, codings, loaded, ordered, page_modes, set};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

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
        .filter(|e| referenced.contains(&type_and_id(e)))
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
        .map(type_and_id)
        .collect();
    assert!(of_patient.len() > 100, "{}", of_patient.len());
    let (matches, includes) = page_modes(
        &fhir,
        &format!("Patient?_id={patient}&_revinclude=Observation:patient"),
    );
    assert_eq!(matches, std::slice::from_ref(&subject));
    assert_eq!(set(&includes), of_patient);

    // Thousands: every Observation of every patient.
    let (matches, includes) = page_modes(&fhir, "Patient?_revinclude=Observation:patient");
    assert_eq!(matches.len(), 2);
    let every: BTreeSet<String> = observations.iter().map(type_and_id).collect();
    assert!(every.len() > 2000, "{}", every.len());
    assert_eq!(set(&includes), every);

    // A cycle: the encounters refer back to the patient, which is a match, not an include.
    let of_encounters: BTreeSet<String> = encounters
        .iter()
        .filter(|e| e["subject"]["reference"] == subject.as_str())
        .map(type_and_id)
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

/// Every current resource on the server, by `Type/id`, from the system history.
fn current(fhir: &Fhir) -> BTreeMap<String, Value> {
    let mut resources = BTreeMap::new();
    // Newest first: the first version seen of a resource is its current one.
    for entry in fhir.system_history() {
        let key = entry["fullUrl"].as_str().map(|url| {
            let mut parts = url.rsplit('/');
            let id = parts.next().unwrap();
            format!("{}/{id}", parts.next().unwrap())
        });
        if let (Some(key), Some(resource)) = (key, entry.get("resource")) {
            resources.entry(key).or_insert_with(|| resource.clone());
        }
    }
    resources
}

/// Lower case, as FHIR string search compares (Synthea's names have no accents).
fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// The texts the `name` parameter of a Patient, Practitioner or Organization searches: every
/// part of a HumanName, or an Organization's name and aliases.
fn names(resource: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        if let Some(text) = v.as_str() {
            out.push(fold(text));
        }
    };
    match &resource["name"] {
        Value::String(_) => push(&resource["name"]),
        Value::Array(names) => {
            for name in names {
                push(&name["family"]);
                push(&name["text"]);
                for part in ["given", "prefix", "suffix"] {
                    name[part]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .for_each(&mut push);
                }
            }
        }
        _ => {}
    }
    resource["alias"]
        .as_array()
        .into_iter()
        .flatten()
        .for_each(&mut push);
    out
}

/// Whether `name=value` (a string search: starts with, folded) matches `resource`.
fn name_matches(resource: &Value, value: &str) -> bool {
    names(resource).iter().any(|n| n.starts_with(&fold(value)))
}

/// The `Type/id`s of `resources` that `keep` accepts.
fn keys_where(
    resources: &BTreeMap<String, Value>,
    resource_type: &str,
    keep: impl Fn(&Value) -> bool,
) -> BTreeSet<String> {
    resources
        .iter()
        .filter(|(key, r)| key.starts_with(&format!("{resource_type}/")) && keep(r))
        .map(|(key, _)| key.clone())
        .collect()
}

/// A search reads its own writes to every type it reads, not only to the type it searches: a
/// reverse chain and a `_revinclude` read Observations in a search of Patients, a chain reads
/// Patients in a search of Observations. Each search comes right after the write it must see,
/// a write of that other type.
#[test]
fn searches_that_read_other_types_see_the_writes_just_made_to_them() {
    let fhir = Fhir::start();
    let mut patient = fhir.create(&patient("Reader"));
    let key = type_and_id(&patient);
    assert_eq!(
        found(&fhir, &format!("Patient?_id={}", id_of(&patient))),
        BTreeSet::from([key.clone()])
    );
    let observation = || {
        type_and_id(&fhir.create(&json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": key},
        })))
    };
    let mut observations = BTreeSet::new();
    for n in 0..10 {
        let made = observation();
        let (_, id) = made.split_once('/').unwrap();
        assert_eq!(
            found(&fhir, &format!("Patient?_has:Observation:subject:_id={id}")),
            BTreeSet::from([key.clone()]),
            "the reverse chain to {made}"
        );
        observations.insert(made);

        let made = observation();
        let query = format!("{key}&_revinclude=Observation:subject").replacen('/', "?_id=", 1);
        let (matches, includes) = page_modes(&fhir, &query);
        assert_eq!(matches, vec![key.clone()]);
        assert!(
            includes.contains(&made),
            "{made} in the _revinclude: {includes:?}"
        );
        observations.insert(made);

        let family = format!("Renamed{n}");
        patient["name"][0]["family"] = json!(family);
        patient = fhir.update(&patient).expect(200, "rename").resource();
        assert_eq!(
            found(
                &fhir,
                &format!("Observation?subject:Patient.family={family}")
            ),
            observations,
            "the chain to the patient named {family}"
        );
    }
}

/// What `reference` names, when it is on the server.
fn resolve<'r>(resources: &'r BTreeMap<String, Value>, reference: &Value) -> Option<&'r Value> {
    resources.get(reference["reference"].as_str()?)
}

/// The keys (`Type/id`) a search matches across its pages, each once.
fn found(fhir: &Fhir, query: &str) -> BTreeSet<String> {
    let keys: Vec<String> = ordered(fhir, query).iter().map(type_and_id).collect();
    set(&keys)
}

/// The family name of a Patient or Practitioner (its first name's).
fn family_of(resource: &Value) -> String {
    resource["name"][0]["family"].as_str().unwrap().to_string()
}

/// The Patients on the server in the order of their family names (content, not their
/// server-assigned ids, which are random).
fn patients_by_family(resources: &BTreeMap<String, Value>) -> Vec<&Value> {
    let mut patients: Vec<&Value> = keys_where(resources, "Patient", |_| true)
        .iter()
        .map(|key| &resources[key])
        .collect();
    patients.sort_by_key(|p| (family_of(p), p["birthDate"].as_str().map(String::from)));
    patients
}

#[test]
fn chains_follow_references_of_any_depth_and_type() {
    let fhir = loaded(3);
    let resources = current(&fhir);
    let patients = patients_by_family(&resources);
    let patient = patients[0];
    let family = family_of(patient);

    // One link, with and without the type modifier, and an OR of two names.
    let subject_named = |value: &str| {
        keys_where(&resources, "Observation", |o| {
            resolve(&resources, &o["subject"])
                .is_some_and(|p| value.split(',').any(|v| name_matches(p, v)))
        })
    };
    let expected = subject_named(&family);
    assert!(!expected.is_empty());
    assert_eq!(
        found(
            &fhir,
            &format!("Observation?subject:Patient.name={family}&_count=1000")
        ),
        expected
    );
    assert_eq!(
        found(
            &fhir,
            &format!("Observation?subject.name={family}&_count=1000")
        ),
        expected
    );
    let other = patients
        .iter()
        .map(|p| family_of(p))
        .find(|name| !name_matches(patient, name) && !subject_named(name).is_empty())
        .expect("a patient of another family");
    let both = subject_named(&format!("{family},{other}"));
    assert!(both.len() > expected.len());
    assert_eq!(
        found(
            &fhir,
            &format!("Observation?subject.name={family},{other}&_count=1000")
        ),
        both
    );

    // Two and three links, through references of several possible types (an Encounter's
    // participant may be a Practitioner, a PractitionerRole or a RelatedPerson): the
    // observations, and the reports of observations, of encounters with a practitioner of
    // this name.
    // The practitioner: of those who saw this patient, the first by name who has reports of
    // observations made in their encounters (chosen by content: a practitioner's encounter
    // need not have any observation).
    let subject = format!("Patient/{}", id_of(patient));
    let encounters_of_patient = keys_where(&resources, "Encounter", |e| {
        e["subject"]["reference"] == subject.as_str()
    });
    let mut seen_by: Vec<String> = encounters_of_patient
        .iter()
        .flat_map(|e| {
            resources[e]["participant"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| resolve(&resources, &p["individual"]).map(family_of))
        .collect();
    seen_by.sort();
    seen_by.dedup();
    let attended_by = |name: &str, encounter: &Value| {
        resolve(&resources, encounter).is_some_and(|e| {
            e["participant"].as_array().into_iter().flatten().any(|p| {
                resolve(&resources, &p["individual"]).is_some_and(|i| name_matches(i, name))
            })
        })
    };
    let reports_of =
        |name: &str| {
            keys_where(&resources, "DiagnosticReport", |d| {
                d["result"].as_array().into_iter().flatten().any(|r| {
                    resolve(&resources, r).is_some_and(|o| attended_by(name, &o["encounter"]))
                })
            })
        };
    let gp_name = seen_by
        .into_iter()
        .find(|name| !reports_of(name).is_empty())
        .expect("a practitioner with reports");
    let attended = |encounter: &Value| attended_by(&gp_name, encounter);
    let observations = keys_where(&resources, "Observation", |o| attended(&o["encounter"]));
    assert!(!observations.is_empty());
    for chain in [
        "encounter.participant",
        "encounter:Encounter.participant:Practitioner",
    ] {
        assert_eq!(
            found(
                &fhir,
                &format!("Observation?{chain}.name={gp_name}&_count=1000")
            ),
            observations
        );
    }
    let reports = reports_of(&gp_name);
    assert!(!reports.is_empty());
    assert_eq!(
        found(
            &fhir,
            &format!("DiagnosticReport?result.encounter.participant.name={gp_name}&_count=1000")
        ),
        reports
    );

    // A reference of several target types (Practitioner, PractitionerRole, RelatedPerson),
    // chained with another parameter on the same search.
    let expected = keys_where(&resources, "Encounter", |e| {
        e["participant"].as_array().into_iter().flatten().any(|p| {
            resolve(&resources, &p["individual"]).is_some_and(|i| name_matches(i, &gp_name))
        }) && e["subject"]["reference"] == format!("Patient/{}", id_of(patient)).as_str()
    });
    assert!(!expected.is_empty());
    assert_eq!(
        found(
            &fhir,
            &format!(
                "Encounter?participant.name={gp_name}&patient={}&_count=1000",
                id_of(patient)
            )
        ),
        expected
    );

    // Through a Condition's subject, which may be a Patient or a Group (the specification's
    // example SearchParameter that made it an Organization is no definition), and two links
    // from a Procedure's reason.
    let of_family = |condition: &Value| {
        resolve(&resources, &condition["subject"]).is_some_and(|p| {
            p["name"].as_array().into_iter().flatten().any(|n| {
                n["family"]
                    .as_str()
                    .is_some_and(|f| fold(f).starts_with(&fold(&family)))
            })
        })
    };
    let conditions = keys_where(&resources, "Condition", of_family);
    assert!(!conditions.is_empty());
    assert_eq!(
        found(
            &fhir,
            &format!("Condition?subject.family={family}&_count=1000")
        ),
        conditions
    );
    // (The family with the most such procedures: Synthea gives reasons to some only.)
    let procedures_of = |family: &str| {
        keys_where(&resources, "Procedure", |p| {
            p["reasonReference"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| {
                    resolve(&resources, r).is_some_and(|c| {
                        resolve(&resources, &c["subject"]).is_some_and(|p| name_matches(p, family))
                    })
                })
        })
    };
    let reasoned = patients
        .iter()
        .map(|p| family_of(p))
        .max_by_key(|f| (procedures_of(f).len(), std::cmp::Reverse(f.clone())))
        .unwrap();
    let procedures = procedures_of(&reasoned);
    assert!(!procedures.is_empty());
    assert_eq!(
        found(
            &fhir,
            &format!(
                "Procedure?reason-reference:Condition.subject:Patient.family={reasoned}&_count=1000"
            )
        ),
        procedures
    );

    // A chain that matches nothing, and chains that cannot be: refused under strict handling,
    // reported otherwise.
    assert!(found(&fhir, "Observation?subject.name=Nobodyatall").is_empty());
    let strict = [("Prefer", "handling=strict")];
    for query in [
        "Observation?code.name=x",
        "Observation?subject.nonsense=x",
        "Observation?subject:Organization.name=x",
    ] {
        assert_outcome(&fhir.get_with(query, &strict), 400, &["not-supported"]);
    }
}

#[test]
fn reverse_chains_find_what_is_referred_to_nested() {
    let fhir = loaded(3);
    let resources = current(&fhir);
    let patients = keys_where(&resources, "Patient", |_| true);
    // A condition code that some of the patients have and some do not (the first in code
    // order).
    let conditions = keys_where(&resources, "Condition", |_| true);
    let with_code = |code: &str| -> BTreeSet<String> {
        conditions
            .iter()
            .map(|k| &resources[k])
            .filter(|c| codings(&c["code"]).iter().any(|(_, c)| c == code))
            .map(|c| c["subject"]["reference"].as_str().unwrap().to_string())
            .collect()
    };
    let codes: BTreeSet<String> = conditions
        .iter()
        .flat_map(|k| codings(&resources[k]["code"]))
        .map(|(_, code)| code)
        .collect();
    let code = codes
        .into_iter()
        .find(|code| {
            let having = with_code(code);
            !having.is_empty() && having.len() < patients.len()
        })
        .expect("a condition some patients have");
    let expected = with_code(&code);
    assert_eq!(
        found(
            &fhir,
            &format!("Patient?_has:Condition:patient:code={code}")
        ),
        expected
    );

    // Nested: patients with an encounter that has an observation of heart rate.
    let encounters_with = |code: &str| -> BTreeSet<String> {
        keys_where(&resources, "Observation", |o| {
            codings(&o["code"]).iter().any(|(_, c)| c == code)
        })
        .iter()
        .filter_map(|k| {
            resources[k]["encounter"]["reference"]
                .as_str()
                .map(String::from)
        })
        .collect()
    };
    let encounters = encounters_with("8867-4");
    assert_eq!(
        found(
            &fhir,
            "Encounter?_has:Observation:encounter:code=8867-4&_count=1000"
        ),
        encounters
    );
    let expected: BTreeSet<String> = encounters
        .iter()
        .map(|e| {
            resources[e]["subject"]["reference"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        found(
            &fhir,
            "Patient?_has:Encounter:patient:_has:Observation:encounter:code=8867-4"
        ),
        expected
    );

    // `_has` whose inner parameter is a chain, and `_has` with another parameter.
    let first = patients_by_family(&resources)[0];
    let family = family_of(first);
    let gender = first["gender"].as_str().unwrap();
    let expected = keys_where(&resources, "Patient", |p| {
        name_matches(p, &family) && p["gender"] == gender
    });
    assert_eq!(
        found(
            &fhir,
            &format!("Patient?_has:Encounter:patient:subject.name={family}&gender={gender}")
        ),
        expected
    );

    let strict = [("Prefer", "handling=strict")];
    for query in [
        "Patient?_has:Observation:code:code=x",
        "Organization?_has:Observation:patient:code=x",
        "Patient?_has:Observation=x",
        "Patient?_has:Nothing:patient:code=x",
    ] {
        assert_outcome(&fhir.get_with(query, &strict), 400, &["not-supported"]);
    }
}

/// The compartment definitions the server ships (data, not the code under test).
fn compartment_params() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fhir-profiles/compartments.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The members of the compartment of `focal` (`Patient/1`): the focal resource and every
/// resource of a member type that refers to it. Synthea's resources refer to a patient only
/// through membership parameters (`subject`, `patient`, `beneficiary`, ...), so any reference
/// is a membership here.
fn members(resources: &BTreeMap<String, Value>, focal: &str) -> BTreeSet<String> {
    let compartment = focal.split('/').next().unwrap();
    let definitions = compartment_params();
    let member_types = &definitions[compartment];
    resources
        .iter()
        .filter(|(key, resource)| {
            key.as_str() == focal
                || (member_types.contains_key(resource["resourceType"].as_str().unwrap())
                    && references(resource).iter().any(|r| r == focal))
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// A server with two patients loaded, what it holds, the patient with the larger record
/// (`Patient/id`) and the members of its compartment.
fn first_patient() -> (Fhir, BTreeMap<String, Value>, String, BTreeSet<String>) {
    let fhir = loaded(2);
    let resources = current(&fhir);
    let (patient, members) = keys_where(&resources, "Patient", |_| true)
        .into_iter()
        .map(|patient| {
            let members = members(&resources, &patient);
            (patient, members)
        })
        .max_by_key(|(patient, members)| (members.len(), family_of(&resources[patient])))
        .unwrap();
    (fhir, resources, patient, members)
}

/// Of the members of a compartment, the Encounter whose own compartment is the largest (ties:
/// the earliest), with a participant.
fn busiest_encounter(resources: &BTreeMap<String, Value>, members: &BTreeSet<String>) -> String {
    members
        .iter()
        .filter(|k| k.starts_with("Encounter/"))
        .filter(|k| resources[*k]["participant"][0]["individual"]["reference"].is_string())
        .max_by_key(|k| {
            let start = resources[*k]["period"]["start"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (self::members(resources, k).len(), std::cmp::Reverse(start))
        })
        .expect("an encounter with a participant")
        .clone()
}

#[test]
fn compartments_hold_what_their_definitions_say() {
    let (fhir, resources, patient, everything) = first_patient();
    let id = patient.split('/').nth(1).unwrap();
    assert!(everything.len() > 500, "{}", everything.len());

    // One type, with a parameter, and all types (in pages).
    let of_type = |t: &str| -> BTreeSet<String> {
        everything
            .iter()
            .filter(|k| k.starts_with(&format!("{t}/")))
            .cloned()
            .collect()
    };
    assert_eq!(
        found(&fhir, &format!("Patient/{id}/Observation?_count=1000")),
        of_type("Observation")
    );
    let heart_rates: BTreeSet<String> = of_type("Observation")
        .into_iter()
        .filter(|k| {
            codings(&resources[k]["code"])
                .iter()
                .any(|(_, c)| c == "8867-4")
        })
        .collect();
    assert!(!heart_rates.is_empty());
    assert_eq!(
        found(
            &fhir,
            &format!("Patient/{id}/Observation?code=8867-4&_count=1000")
        ),
        heart_rates
    );
    let all_types: BTreeSet<String> = ordered(&fhir, &format!("Patient/{id}/*?_count=200"))
        .iter()
        .map(type_and_id)
        .collect();
    assert_eq!(all_types, everything);

    // An Encounter's compartment, and a Practitioner's.
    let encounter = busiest_encounter(&resources, &everything);
    let (_, encounter_id) = encounter.split_once('/').unwrap();
    let in_encounter: BTreeSet<String> =
        ordered(&fhir, &format!("Encounter/{encounter_id}/*?_count=200"))
            .iter()
            .map(type_and_id)
            .collect();
    assert_eq!(in_encounter, members(&resources, &encounter));
    assert!(in_encounter.len() > 1);
    let practitioner = resources[&encounter]["participant"][0]["individual"]["reference"]
        .as_str()
        .unwrap()
        .to_string();
    let practitioner_id = practitioner.split('/').nth(1).unwrap();
    let expected = keys_where(&resources, "Encounter", |e| {
        e["participant"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["individual"]["reference"] == practitioner.as_str())
    });
    assert_eq!(
        found(
            &fhir,
            &format!("Practitioner/{practitioner_id}/Encounter?_count=1000")
        ),
        expected
    );

    // A type that is never a member, and something that is not a compartment.
    assert_outcome(
        &fhir.get(&format!("Patient/{id}/Organization")),
        400,
        &["not-supported"],
    );
    assert_outcome(&fhir.get("Observation/1/Patient"), 404, &["not-found"]);
}

#[test]
fn everything_of_a_patient_and_an_encounter_is_complete_on_every_page() {
    let (fhir, resources, patient, members) = first_patient();
    let id = patient.split('/').nth(1).unwrap();

    // Page by page: the matches are the compartment, each once; every resource a page's
    // matches refer to is on that page.
    let mut matched = Vec::new();
    let mut url = Some(format!("Patient/{id}/$everything?_count=150"));
    let mut pages = 0;
    while let Some(next) = url {
        let bundle = if pages == 0 {
            fhir.get(&next).expect(200, &next).resource()
        } else {
            fhir.new_client().get_absolute(&next)
        };
        pages += 1;
        let (mut on_page, mut page_matches) = (BTreeSet::new(), Vec::new());
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            let key = type_and_id(&entry["resource"]);
            assert!(on_page.insert(key.clone()), "{key} twice on a page");
            if entry["search"]["mode"] == "match" {
                page_matches.push(key);
            } else {
                assert_eq!(entry["search"]["mode"], "include");
                assert!(!members.contains(&key) || resources.contains_key(&key));
            }
        }
        for key in &page_matches {
            for reference in references(&resources[key]) {
                if resources.contains_key(&reference) {
                    assert!(on_page.contains(&reference), "{key} -> {reference} missing");
                }
            }
        }
        matched.extend(page_matches);
        url = link(&bundle, "next");
    }
    assert!(pages > 2, "{pages} pages");
    assert_eq!(set(&matched), members);

    // `_type` keeps those types only; `_since` what changed since an instant.
    let (matches, includes) = page_modes(
        &fhir,
        &format!("Patient/{id}/$everything?_type=Patient,Condition&_count=1000"),
    );
    let expected: BTreeSet<String> = members
        .iter()
        .filter(|k| k.starts_with("Patient/") || k.starts_with("Condition/"))
        .cloned()
        .collect();
    assert_eq!(set(&matches), expected);
    assert!(
        includes
            .iter()
            .all(|k| k.starts_with("Patient/") || k.starts_with("Condition/"))
    );

    // A resource of the compartment written again is all that changed since its new
    // lastUpdated (the loaded bundles each share one instant): the earliest condition.
    let condition = members
        .iter()
        .filter(|k| k.starts_with("Condition/"))
        .min_by_key(|k| resources[*k]["onsetDateTime"].as_str().map(instant))
        .unwrap();
    let mut changed = resources[condition].clone();
    changed["note"] = serde_json::json!([{"text": "seen again"}]);
    let updated = fhir.update(&changed).expect(200, condition).resource();
    let since = updated["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .replace('+', "%2B");
    let (matches, _) = page_modes(&fhir, &format!("Patient/{id}/$everything?_since={since}"));
    assert_eq!(&matches, std::slice::from_ref(condition));

    // An Encounter's everything: the encounter, what is in its compartment, and what they
    // refer to (the patient among them).
    let encounter = busiest_encounter(&resources, &members);
    let (matches, includes) = page_modes(&fhir, &format!("{encounter}/$everything?_count=1000"));
    let matches = set(&matches);
    assert!(matches.contains(&encounter));
    assert!(includes.contains(&patient));

    // Only Patient and Encounter have it, and only for what exists.
    assert_outcome(&fhir.get("Observation/x/$everything"), 404, &["not-found"]);
    assert_outcome(&fhir.get("Patient/nobody/$everything"), 404, &["not-found"]);
}

/// The instants `[start, end)` of a FHIR dateTime at second precision, or of a Period (an
/// open end runs on).
fn span_of(value: &Value) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let second = time::Duration::seconds(1);
    if let Some(text) = value.as_str() {
        let at = instant(text);
        return Some((at, at + second));
    }
    let start = value["start"].as_str().map(instant)?;
    let end = value["end"].as_str().map_or(
        OffsetDateTime::now_utc() + time::Duration::days(36_500),
        |e| instant(e) + second,
    );
    Some((start, end))
}

#[test]
fn everything_of_a_patient_keeps_the_care_of_a_period() {
    let (fhir, resources, patient, members) = first_patient();
    let id = patient.split('/').nth(1).unwrap();
    // The year with the most encounters (the earliest of those).
    let mut years = BTreeMap::new();
    for key in members.iter().filter(|k| k.starts_with("Encounter/")) {
        if let Some((start, _)) = span_of(&resources[key]["period"]) {
            *years.entry(start.year()).or_insert(0) += 1;
        }
    }
    let (year, _) = years
        .into_iter()
        .max_by_key(|(year, count)| (*count, std::cmp::Reverse(*year)))
        .unwrap();
    let window = (
        time::Date::from_calendar_date(year, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc(),
        time::Date::from_calendar_date(year + 1, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc(),
    );
    let overlaps = |value: &Value| {
        span_of(value).is_some_and(|(start, end)| start < window.1 && end > window.0)
    };
    // The dates of care of these types: Observation.effective, Encounter.period,
    // Condition.onset and .abatement; a Patient has none and is kept.
    let in_period = |key: &String| {
        let resource = &resources[key];
        match key.split('/').next().unwrap() {
            "Observation" => resource
                .get("effectiveDateTime")
                .or(resource.get("effectivePeriod"))
                .is_none_or(overlaps),
            "Encounter" => resource.get("period").is_none_or(overlaps),
            "Condition" => {
                let dates: Vec<&Value> = ["onsetDateTime", "abatementDateTime"]
                    .iter()
                    .filter_map(|name| resource.get(*name))
                    .collect();
                dates.is_empty() || dates.into_iter().any(overlaps)
            }
            _ => true,
        }
    };
    let types = ["Patient", "Observation", "Encounter", "Condition"];
    let of_types: BTreeSet<String> = members
        .iter()
        .filter(|k| types.iter().any(|t| k.starts_with(&format!("{t}/"))))
        .cloned()
        .collect();
    let expected: BTreeSet<String> = of_types.iter().filter(|k| in_period(k)).cloned().collect();
    assert!(
        expected.len() > 5 && expected.len() < of_types.len(),
        "{} of {}",
        expected.len(),
        of_types.len()
    );
    let query = format!(
        "Patient/{id}/$everything?_type={}&start={year}-01-01&end={year}-12-31&_count=100",
        types.join(",")
    );
    let matched: Vec<String> = ordered(&fhir, &query).iter().map(type_and_id).collect();
    assert_eq!(set(&matched), expected);
    // Open on one side: from the start on, and up to the end.
    let after: BTreeSet<String> = ordered(
        &fhir,
        &format!(
            "Patient/{id}/$everything?_type=Encounter&start={}-01-01&_count=500",
            year + 1
        ),
    )
    .iter()
    .map(type_and_id)
    .collect();
    let expected_after: BTreeSet<String> = of_types
        .iter()
        .filter(|k| k.starts_with("Encounter/"))
        .filter(|k| span_of(&resources[*k]["period"]).is_some_and(|(_, end)| end > window.1))
        .cloned()
        .collect();
    assert!(!expected_after.is_empty());
    assert_eq!(after, expected_after);
    // A malformed date is a 400; an Encounter's $everything has no start or end in R4.
    assert_outcome(
        &fhir.get(&format!("Patient/{id}/$everything?start=soon")),
        400,
        &["invalid"],
    );
    let encounter = busiest_encounter(&resources, &members);
    assert_outcome(
        &fhir.get_with(
            &format!("{encounter}/$everything?start=2000-01-01"),
            &[("Prefer", "handling=strict")],
        ),
        400,
        &["not-supported"],
    );
}
