//! The terminology as its callers see it: the shipped content and its value sets. Loaded
//! releases are tested in `tests/terminology.rs`, through the commands that load them.

use super::*;

const GENDER: &str = "http://hl7.org/fhir/ValueSet/administrative-gender";
const CLINICAL_FINDINGS: &str = "http://hl7.org/fhir/ValueSet/clinical-findings";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ENCOUNTER_CODES: &str = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode";

fn shipped() -> Terminology {
    Terminology::shipped_only()
}

fn kinds(check: &CodeCheck) -> Vec<IssueKind> {
    check.issues.iter().map(|i| i.kind).collect()
}

#[test]
fn icd10cm_is_complete_so_a_missing_code_is_invalid() {
    let t = shipped();
    let valid = t.validate_code(ICD10CM, "E11.9", None).unwrap();
    assert_eq!(valid.verdict, Verdict::Valid);
    assert_eq!(
        valid.concept.unwrap().display.as_deref(),
        Some("Type 2 diabetes mellitus without complications")
    );
    let invalid = t.validate_code(ICD10CM, "E11.99", None).unwrap();
    assert_eq!(invalid.verdict, Verdict::Invalid);
    assert_eq!(kinds(&invalid), [IssueKind::InvalidCode]);
    assert_eq!(invalid.issues[0].severity, Severity::Error);
}

#[test]
fn snomed_is_partial_so_a_missing_code_is_only_not_in_the_subset() {
    let t = shipped();
    // Asthma: in the Global Patient Set.
    assert_eq!(
        t.validate_code(SNOMED, "195967001", None).unwrap().verdict,
        Verdict::Valid
    );
    // A well-formed id that is not shipped (Bronze diabetes).
    let missing = t.validate_code(SNOMED, "399144008", None).unwrap();
    assert_eq!(missing.verdict, Verdict::NotInSubset);
    assert_eq!(missing.issues[0].severity, Severity::Warning);
    assert!(
        missing.issues[0].message.contains("may be valid"),
        "{:?}",
        missing.issues
    );
    // A wrong check digit is certainly invalid, release or not.
    let broken = t.validate_code(SNOMED, "195967002", None).unwrap();
    assert_eq!(broken.verdict, Verdict::Invalid);
    assert!(
        broken.issues[0].message.contains("Verhoeff"),
        "{:?}",
        broken.issues
    );
}

#[test]
fn an_unknown_system_is_said_to_be_unknown() {
    let check = shipped()
        .validate_code("http://example.org/nothing", "x", None)
        .unwrap();
    assert_eq!(check.verdict, Verdict::UnknownSystem);
    assert_eq!(kinds(&check), [IssueKind::UnknownSystem]);
    assert!(matches!(
        shipped().lookup("http://example.org/nothing", "x"),
        Err(TerminologyError::UnknownSystem(_))
    ));
}

#[test]
fn a_display_that_is_no_name_of_the_code_is_a_warning() {
    let t = shipped();
    let good = t
        .validate_code(
            ICD10CM,
            "E11.9",
            Some("type 2 DIABETES mellitus  without complications"),
        )
        .unwrap();
    assert!(good.issues.is_empty(), "{:?}", good.issues);
    let wrong = t.validate_code(ICD10CM, "E11.9", Some("Diabetes")).unwrap();
    assert_eq!(wrong.verdict, Verdict::Valid);
    assert_eq!(kinds(&wrong), [IssueKind::Display]);
    assert!(
        wrong.issues[0]
            .message
            .contains("Type 2 diabetes mellitus without complications"),
        "{}",
        wrong.issues[0].message
    );
    // Designations count: v3-ActCode's AMB has a Dutch one... any designation matches.
    let gender = t
        .validate_code(
            "http://hl7.org/fhir/administrative-gender",
            "female",
            Some("FEMALE"),
        )
        .unwrap();
    assert!(gender.issues.is_empty());
    // The shipped SNOMED CT subset has fully specified names: the name without its semantic
    // tag is accepted.
    let asthma = t
        .validate_code(SNOMED, "195967001", Some("Asthma"))
        .unwrap();
    assert!(asthma.issues.is_empty(), "{:?}", asthma.issues);
}

#[test]
fn a_retired_code_is_valid_with_a_warning() {
    let check = shipped()
        .validate_code(
            "http://terminology.hl7.org/CodeSystem/hl7-work-group",
            "ti",
            None,
        )
        .unwrap();
    assert_eq!(check.verdict, Verdict::Valid);
    assert_eq!(kinds(&check), [IssueKind::Inactive]);
}

#[test]
fn lookup_gives_parents_children_and_properties() {
    let t = shipped();
    let concept = t.lookup(ICD10CM, "E11.9").unwrap().unwrap();
    assert_eq!(concept.parents, ["E11"]);
    assert_eq!(
        concept.property("billable"),
        Some(&PropertyValue::Boolean(true))
    );
    assert!(
        t.children(ICD10CM, "E11")
            .unwrap()
            .contains(&"E11.9".to_string())
    );
    assert_eq!(t.lookup(ICD10CM, "E11.99").unwrap(), None);
}

#[test]
fn subsumption_in_hierarchical_code_systems() {
    let t = shipped();
    assert_eq!(
        t.subsumes(ICD10CM, "E11", "E11.9").unwrap(),
        Subsumption::Subsumes
    );
    assert_eq!(
        t.subsumes(ICD10CM, "E11.9", "E11").unwrap(),
        Subsumption::SubsumedBy
    );
    assert_eq!(
        t.subsumes(ICD10CM, "E11", "E11").unwrap(),
        Subsumption::Equivalent
    );
    assert_eq!(
        t.subsumes(ICD10CM, "E11", "A00").unwrap(),
        Subsumption::NotSubsumed
    );
    assert_eq!(
        t.subsumes(ACT_CODE, "_ActEncounterCode", "AMB").unwrap(),
        Subsumption::Subsumes
    );
    assert!(matches!(
        t.subsumes(ICD10CM, "E11", "E11.99"),
        Err(TerminologyError::UnknownCode(_))
    ));
    // The shipped SNOMED CT subset has no hierarchy.
    assert!(matches!(
        t.subsumes(SNOMED, "404684003", "195967001"),
        Err(TerminologyError::Undecidable(_))
    ));
}

#[test]
fn value_set_membership() {
    let t = shipped();
    let member = |url: &str, system: &str, code: &str| {
        t.validate_in_value_set(url, system, code, None)
            .unwrap()
            .membership
    };
    let gender = "http://hl7.org/fhir/administrative-gender";
    assert_eq!(member(GENDER, gender, "female"), Membership::Member);
    assert_eq!(member(GENDER, gender, "woman"), Membership::NotMember);
    assert_eq!(
        member(GENDER, "http://other.org", "female"),
        Membership::NotMember
    );
    // is-a over a complete hierarchy, minus the excluded abstract root.
    assert_eq!(member(ENCOUNTER_CODES, ACT_CODE, "AMB"), Membership::Member);
    assert_eq!(
        member(ENCOUNTER_CODES, ACT_CODE, "_ActEncounterCode"),
        Membership::NotMember
    );
    assert_eq!(
        member(ENCOUNTER_CODES, ACT_CODE, "_ActAccountCode"),
        Membership::NotMember
    );
    // is-a over SNOMED CT without its hierarchy: only the root itself is decided.
    assert_eq!(
        member(CLINICAL_FINDINGS, SNOMED, "404684003"),
        Membership::Member
    );
    assert!(matches!(
        member(CLINICAL_FINDINGS, SNOMED, "195967001"),
        Membership::Undecided(_)
    ));
    // ... but a malformed id is certainly out.
    assert_eq!(
        member(CLINICAL_FINDINGS, SNOMED, "195967002"),
        Membership::NotMember
    );
    // All of LOINC, of which a subset is held: a held code is in, another undecided.
    let observation_codes = "http://hl7.org/fhir/ValueSet/observation-codes";
    assert_eq!(
        member(observation_codes, LOINC, "8302-2"),
        Membership::Member
    );
    let unknown = member(observation_codes, LOINC, "1-8");
    assert!(matches!(unknown, Membership::Undecided(_)), "{unknown:?}");
    assert!(matches!(
        t.validate_in_value_set("http://example.org/vs", gender, "female", None),
        Err(TerminologyError::UnknownValueSet(_))
    ));
}

#[test]
fn value_set_check_reports_the_code_check_too() {
    let check = shipped()
        .validate_in_value_set(
            GENDER,
            "http://hl7.org/fhir/administrative-gender",
            "male",
            Some("Man"),
        )
        .unwrap();
    assert_eq!(check.membership, Membership::Member);
    assert_eq!(kinds(&check.code), [IssueKind::Display]);
}

#[test]
fn expansions_page_and_filter() {
    let t = shipped();
    let all = t.expand(GENDER, &ExpandRequest::default()).unwrap();
    assert_eq!(all.total, 4);
    let codes: Vec<&str> = all.contains.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(codes, ["male", "female", "other", "unknown"]);
    assert_eq!(all.contains[1].display.as_deref(), Some("Female"));
    let page = t
        .expand(
            GENDER,
            &ExpandRequest {
                filter: None,
                offset: 1,
                count: Some(2),
            },
        )
        .unwrap();
    assert_eq!((page.total, page.offset, page.contains.len()), (4, 1, 2));
    assert_eq!(page.contains[0].code, "female");
    let filtered = t
        .expand(
            GENDER,
            &ExpandRequest {
                filter: Some("fem".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(filtered.total, 1);
    assert_eq!(filtered.contains[0].code, "female");
}

#[test]
fn expansions_follow_hierarchies_exclusions_and_included_value_sets() {
    let t = shipped();
    let encounters = t
        .expand(ENCOUNTER_CODES, &ExpandRequest::default())
        .unwrap();
    let codes: Vec<&str> = encounters
        .contains
        .iter()
        .map(|e| e.code.as_str())
        .collect();
    assert!(
        codes.contains(&"AMB") && codes.contains(&"IMP"),
        "{codes:?}"
    );
    assert!(!codes.contains(&"_ActEncounterCode"), "excluded");
    // Every expanded code is a member, and the expansion agrees with membership.
    for entry in &encounters.contains {
        assert_eq!(
            t.validate_in_value_set(ENCOUNTER_CODES, &entry.system, &entry.code, None)
                .unwrap()
                .membership,
            Membership::Member,
            "{}",
            entry.code
        );
    }
    // A value set made of other value sets.
    let detail = t
        .expand(
            "http://terminology.hl7.org/ValueSet/v3-AcknowledgementDetailCode",
            &ExpandRequest::default(),
        )
        .unwrap();
    assert!(detail.total > 5, "{}", detail.total);
}

#[test]
fn expansions_over_partial_or_huge_systems_are_refused() {
    let t = shipped();
    assert!(matches!(
        t.expand(CLINICAL_FINDINGS, &ExpandRequest::default()),
        Err(TerminologyError::Undecidable(_))
    ));
    assert!(matches!(
        t.expand(
            "http://hl7.org/fhir/ValueSet/observation-codes",
            &ExpandRequest::default()
        ),
        Err(TerminologyError::Undecidable(_))
    ));
    let all_icd = ValueSet {
        url: "http://example.org/all-icd".into(),
        version: None,
        name: None,
        title: None,
        status: None,
        copyright: None,
        compose: serde_json::from_value(serde_json::json!({"include": [{"system": ICD10CM}]}))
            .unwrap(),
    };
    let expansion = t
        .expand_value_set(
            &all_icd,
            &ExpandRequest {
                filter: Some("cholera".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(expansion.total, 4, "A00, A00.0, A00.1, A00.9");
}

#[test]
fn an_expansion_that_would_look_at_too_many_codes_is_refused() {
    // All of ICD-10-CM (98,147 codes), 25 times over: few codes to keep, much work.
    let parts: Vec<_> = (0..25)
        .map(|_| serde_json::json!({"system": ICD10CM}))
        .collect();
    let value_set: ValueSet = serde_json::from_value(serde_json::json!({
        "url": "http://example.org/repeated",
        "compose": {"include": parts},
    }))
    .unwrap();
    let error = shipped()
        .expand_value_set(&value_set, &ExpandRequest::default())
        .unwrap_err();
    assert!(matches!(error, TerminologyError::TooCostly(_)), "{error}");
}

#[test]
fn every_shipped_value_set_is_answered_without_a_crash() {
    let t = shipped();
    let (mut expanded, mut refused) = (0, 0);
    for value_set in shipped::get().value_sets.values() {
        match t.expand_value_set(
            value_set,
            &ExpandRequest {
                count: Some(1),
                ..Default::default()
            },
        ) {
            Ok(_) => expanded += 1,
            Err(TerminologyError::Undecidable(_) | TerminologyError::TooCostly(_)) => refused += 1,
            Err(error) => panic!("{}: {error}", value_set.url),
        }
    }
    assert!(expanded > 2_500, "{expanded} expanded, {refused} refused");
}
