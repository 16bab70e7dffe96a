//! The terminology compiled into the binary: `fhir-profiles/terminology/` (how each file was
//! made: `fhir-profiles/README.md`), decoded once per process into memory.
//!
//! - `hl7.json.gz`: the 1,211 code systems (concepts with their parents, hierarchies flattened
//!   into each concept's `parents`; designations and the properties lookups and value set
//!   filters use) and 3,212 value sets (their `compose`) of FHIR R4 4.0.1 and HL7 terminology
//!   7.0.1;
//! - `icd10cm.tsv.gz`: ICD-10-CM (April 2026), complete, with the `billable` flag; a code's
//!   parent is the longest shorter code (`A00` for `A00.0`);
//! - `snomed.tsv.gz`: the SNOMED CT Global Patient Set and the Synthea codes (fully specified
//!   names), CC BY 4.0: the statement heads the file and is kept with the content as
//!   [`SystemInfo::copyright`];
//! - `loinc.tsv.gz`, `rxnorm.tsv.gz`: the LOINC and RxNorm codes FHIR, HL7 terminology and
//!   Synthea use.

use super::concept::{Concept, Property, PropertyValue};
use super::system::{CodeSource as _, Content, MemorySystem, SystemInfo};
use super::valueset::ValueSet;
use super::{ICD10CM, LOINC, RXNORM, SNOMED};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::OnceLock;

const HL7: &[u8] = include_bytes!("../../fhir-profiles/terminology/hl7.json.gz");
const ICD10CM_TABLE: &[u8] = include_bytes!("../../fhir-profiles/terminology/icd10cm.tsv.gz");
const SNOMED_TABLE: &[u8] = include_bytes!("../../fhir-profiles/terminology/snomed.tsv.gz");
const LOINC_TABLE: &[u8] = include_bytes!("../../fhir-profiles/terminology/loinc.tsv.gz");
const RXNORM_TABLE: &[u8] = include_bytes!("../../fhir-profiles/terminology/rxnorm.tsv.gz");

/// The shipped code systems and value sets.
pub struct Shipped {
    /// By URL.
    pub systems: HashMap<String, MemorySystem>,
    /// By URL.
    pub value_sets: HashMap<String, ValueSet>,
}

static SHIPPED: OnceLock<Shipped> = OnceLock::new();

/// The shipped content, decoded on first use (callers meanwhile wait for it).
pub fn get() -> &'static Shipped {
    SHIPPED.get_or_init(|| {
        let start = std::time::Instant::now();
        let shipped = decode();
        tracing::info!(
            code_systems = shipped.systems.len(),
            value_sets = shipped.value_sets.len(),
            ms = start.elapsed().as_millis() as u64,
            "the shipped terminology is loaded"
        );
        shipped
    })
}

pub fn is_loaded() -> bool {
    SHIPPED.get().is_some()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("the shipped terminology files are gzipped UTF-8");
    text
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Hl7 {
    code_systems: Vec<Hl7System>,
    value_sets: Vec<ValueSet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Hl7System {
    url: String,
    version: Option<String>,
    name: Option<String>,
    title: Option<String>,
    content: String,
    case_sensitive: bool,
    concepts: Vec<Concept>,
}

fn decode() -> Shipped {
    let hl7: Hl7 = serde_json::from_str(&gunzip(HL7)).expect("hl7.json.gz is valid");
    let mut systems: HashMap<String, MemorySystem> = hl7
        .code_systems
        .into_iter()
        .map(|cs| {
            let complete = cs.content == "complete";
            let count = cs.concepts.len();
            let info = SystemInfo {
                holding: match cs.content.as_str() {
                    "complete" => format!("all {count} codes, version {}", version(&cs.version)),
                    "not-present" => "no codes: FHIR publishes this code system's name only".into(),
                    content => format!(
                        "{count} codes, a {content} of version {}",
                        version(&cs.version)
                    ),
                },
                url: cs.url,
                name: cs.name,
                title: cs.title,
                version: cs.version,
                content: if complete {
                    Content::Complete
                } else {
                    Content::Partial
                },
                hierarchy: complete,
                properties: Vec::new(),
                case_sensitive: cs.case_sensitive,
                copyright: None,
            };
            (info.url.clone(), MemorySystem::new(info, cs.concepts))
        })
        .collect();
    for system in [icd10cm(), snomed(), loinc(), rxnorm()] {
        systems.insert(system.info().url.clone(), system);
    }
    Shipped {
        systems,
        value_sets: hl7
            .value_sets
            .into_iter()
            .map(|vs| (vs.url.clone(), vs))
            .collect(),
    }
}

fn version(version: &Option<String>) -> &str {
    version.as_deref().unwrap_or("unstated")
}

/// The rows of a shipped table (after its `#` comment lines and its header) and the comment
/// lines' text.
fn table(text: &str) -> (Vec<Vec<&str>>, String) {
    let mut comments = String::new();
    let mut lines = text.lines();
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        match line.strip_prefix('#') {
            Some(comment) => {
                comments.push_str(comment.strip_prefix(' ').unwrap_or(comment));
                comments.push('\n');
            }
            None => break, // the header
        }
    }
    for line in lines {
        rows.push(line.split('\t').collect());
    }
    (rows, comments.trim_end().to_string())
}

fn info(
    url: &str,
    name: &str,
    version: Option<&str>,
    content: Content,
    holding: String,
) -> SystemInfo {
    SystemInfo {
        url: url.into(),
        name: Some(name.into()),
        title: None,
        version: version.map(Into::into),
        content,
        hierarchy: content == Content::Complete,
        properties: Vec::new(),
        case_sensitive: true,
        holding,
        copyright: None,
    }
}

/// A table of `code, display` rows, as concepts.
fn code_display_rows(rows: &[Vec<&str>]) -> Vec<Concept> {
    rows.iter()
        .map(|row| {
            let display = row.get(1).filter(|d| !d.is_empty()).map(|d| d.to_string());
            Concept::new(row[0], display)
        })
        .collect()
}

fn icd10cm() -> MemorySystem {
    let text = gunzip(ICD10CM_TABLE);
    let (rows, _) = table(&text);
    let codes: HashSet<&str> = rows.iter().map(|row| row[0]).collect();
    let concepts: Vec<Concept> = rows
        .iter()
        .map(|row| {
            let mut concept = Concept::new(row[0], Some(row[2].to_string()));
            concept.properties.push(Property {
                code: "billable".into(),
                value: PropertyValue::Boolean(row[1] == "1"),
            });
            concept
                .parents
                .extend(icd10cm_parent(row[0], &codes).map(Into::into));
            concept
        })
        .collect();
    let holding = format!("all {} codes of the April 2026 release", concepts.len());
    MemorySystem::new(
        info(
            ICD10CM,
            "ICD-10-CM",
            Some("2026-04"),
            Content::Complete,
            holding,
        ),
        concepts,
    )
}

/// The parent of an ICD-10-CM code: the longest shorter code that exists (`S72.00` for
/// `S72.001`, `A00` for `A00.0`); none for a category (`A00`).
fn icd10cm_parent<'a>(code: &'a str, codes: &HashSet<&str>) -> Option<&'a str> {
    (3..code.len())
        .rev()
        .map(|end| code[..end].trim_end_matches('.'))
        .find(|prefix| codes.contains(prefix))
}

/// The shipped SNOMED CT subset, less the ids that are not well-formed concept ids (one:
/// Synthea's `1853470`, "Encounter for problem", a cut-off `185347001`): they stay invalid.
fn snomed() -> MemorySystem {
    let text = gunzip(SNOMED_TABLE);
    let (mut rows, copyright) = table(&text);
    rows.retain(|row| super::snomed::check_concept_id(row[0]).is_ok());
    let concepts = code_display_rows(&rows);
    let holding = format!(
        "the Global Patient Set and the codes Synthea and FHIR use, {} concepts; load a \
         release with `fhirlake terminology load-snomed`",
        concepts.len()
    );
    let mut info = info(SNOMED, "SNOMED CT", None, Content::Partial, holding);
    info.copyright = Some(copyright);
    MemorySystem::new(info, concepts)
}

fn loinc() -> MemorySystem {
    let text = gunzip(LOINC_TABLE);
    let (rows, _) = table(&text);
    let concepts = code_display_rows(&rows);
    let holding = format!(
        "the {} codes FHIR, HL7 terminology and Synthea use; load Loinc.csv with `fhirlake \
         terminology load-loinc`",
        concepts.len()
    );
    MemorySystem::new(
        info(LOINC, "LOINC", None, Content::Partial, holding),
        concepts,
    )
}

fn rxnorm() -> MemorySystem {
    let text = gunzip(RXNORM_TABLE);
    let (rows, _) = table(&text);
    let concepts = code_display_rows(&rows);
    let holding = format!("the {} codes Synthea uses", concepts.len());
    MemorySystem::new(
        info(RXNORM, "RxNorm", None, Content::Partial, holding),
        concepts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_decoded() {
        let shipped = get();
        let count = |url: &str| shipped.systems[url].concept_count();
        assert_eq!(count(ICD10CM), 98_147);
        assert!(count(SNOMED) > 26_158, "{}", count(SNOMED));
        assert_eq!(count(LOINC), 6_883);
        assert_eq!(count(RXNORM), 517);
        assert!(shipped.systems.len() > 1_200);
        assert!(shipped.value_sets.len() > 3_000);
        let copyright = shipped.systems[SNOMED].info().copyright.clone().unwrap();
        assert!(
            copyright.contains("Creative Commons Attribution 4.0"),
            "{copyright}"
        );
    }

    #[test]
    fn icd10cm_codes_have_their_parents_and_billable_flag() {
        let codes: HashSet<&str> = ["A00", "A00.0", "S72", "S72.0", "S72.00", "S72.001A"]
            .into_iter()
            .collect();
        assert_eq!(icd10cm_parent("A00.0", &codes), Some("A00"));
        assert_eq!(icd10cm_parent("S72.001A", &codes), Some("S72.00"));
        assert_eq!(icd10cm_parent("A00", &codes), None);
        let icd = &get().systems[ICD10CM];
        let cholera = icd.get("A00.0").unwrap();
        assert_eq!(cholera.parents, ["A00"]);
        assert_eq!(
            cholera.property("billable"),
            Some(&PropertyValue::Boolean(true))
        );
        assert_eq!(
            icd.get("A00").unwrap().property("billable"),
            Some(&PropertyValue::Boolean(false))
        );
    }

    #[test]
    fn a_malformed_snomed_id_of_the_synthea_codes_is_left_out() {
        let text = gunzip(SNOMED_TABLE);
        let (rows, _) = table(&text);
        let malformed: Vec<&str> = rows
            .iter()
            .map(|row| row[0])
            .filter(|code| super::super::snomed::check_concept_id(code).is_err())
            .collect();
        assert_eq!(malformed, ["1853470"]);
        assert!(get().systems[SNOMED].get("1853470").is_none());
    }

    #[test]
    fn every_shipped_snomed_code_is_a_well_formed_concept_id() {
        let mut bad = Vec::new();
        get().systems[SNOMED]
            .each_concept(&mut |concept| {
                if let Err(why) = super::super::snomed::check_concept_id(&concept.code) {
                    bad.push(format!("{}: {why}", concept.code));
                }
                true
            })
            .unwrap();
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn hl7_hierarchies_come_from_nesting_and_properties() {
        let systems = &get().systems;
        // Nested concepts (v3-ActCode's _ActAccountCode > ACCTRECEIVABLE).
        let act = &systems["http://terminology.hl7.org/CodeSystem/v3-ActCode"];
        assert_eq!(
            act.get("ACCTRECEIVABLE").unwrap().parents,
            ["_ActAccountCode"]
        );
        // The `subsumedBy` property (v3-NullFlavor: NI > OTH > PINF).
        let null = &systems["http://terminology.hl7.org/CodeSystem/v3-NullFlavor"];
        assert_eq!(null.get("PINF").unwrap().parents, ["OTH"]);
        assert!(null.info().hierarchy);
    }
}
