//! Reading LOINC's table (`Loinc.csv` of the LOINC release) for `fhirlake terminology
//! load-loinc`, with the `csv` crate (the file's quoted fields hold commas, quotes and line
//! breaks).
//!
//! Columns are found by their header names: `LOINC_NUM` (the code) and `LONG_COMMON_NAME`
//! (the display) are needed; `SHORTNAME`, `DisplayName` and `CONSUMER_NAME` become
//! designations, and the six axes (`COMPONENT`, `PROPERTY`, `TIME_ASPCT`, `SYSTEM`,
//! `SCALE_TYP`, `METHOD_TYP`), `CLASS`, `CLASSTYPE` and `STATUS` become properties of those
//! names (value set filters such as `SCALE_TYP = Doc` use them). A `DEPRECATED` code is kept
//! with `inactive` = true. The version is the highest `VersionLastChanged`. LOINC's
//! multiaxial hierarchy is not read: is-a filters over LOINC stay undecided.

use super::concept::{Concept, Designation, Property, PropertyValue};
use super::release::{ReleaseContent, ReleaseKind};
use anyhow::{Context, bail};
use std::path::Path;

const DESIGNATIONS: [&str; 3] = ["SHORTNAME", "DisplayName", "CONSUMER_NAME"];
const PROPERTIES: [&str; 9] = [
    "COMPONENT",
    "PROPERTY",
    "TIME_ASPCT",
    "SYSTEM",
    "SCALE_TYP",
    "METHOD_TYP",
    "CLASS",
    "CLASSTYPE",
    "STATUS",
];

/// Reads the LOINC table at `path`.
pub fn read_table(path: &Path) -> anyhow::Result<ReleaseContent> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    let header = reader.headers()?.clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(code_at), Some(name_at)) = (column("LOINC_NUM"), column("LONG_COMMON_NAME")) else {
        bail!(
            "{} has no LOINC_NUM and LONG_COMMON_NAME columns: is it LOINC's Loinc.csv?",
            path.display()
        );
    };
    let designations: Vec<usize> = DESIGNATIONS.iter().filter_map(|n| column(n)).collect();
    let properties: Vec<(&str, usize)> = PROPERTIES
        .iter()
        .filter_map(|n| Some((*n, column(n)?)))
        .collect();
    let version_at = column("VersionLastChanged");
    let mut version: Option<(Vec<u32>, String)> = None;
    let mut concepts = Vec::new();
    for (number, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{} record {}", path.display(), number + 1))?;
        let field = |at: usize| record.get(at).unwrap_or_default().trim();
        let code = field(code_at);
        if code.is_empty() {
            continue;
        }
        let display = Some(field(name_at))
            .filter(|d| !d.is_empty())
            .map(String::from);
        let mut concept = Concept::new(code, display);
        for &at in &designations {
            let value = field(at);
            if !value.is_empty() && concept.names().all(|name| name != value) {
                concept.designations.push(Designation {
                    language: Some("en".into()),
                    use_code: None,
                    value: value.into(),
                });
            }
        }
        for &(name, at) in &properties {
            let value = field(at);
            if !value.is_empty() {
                concept.properties.push(Property {
                    code: name.into(),
                    value: PropertyValue::String(value.into()),
                });
            }
        }
        if concept
            .property("STATUS")
            .is_some_and(|s| s.as_text() == "DEPRECATED")
        {
            concept.properties.push(Property {
                code: "inactive".into(),
                value: PropertyValue::Boolean(true),
            });
        }
        if let Some(at) = version_at {
            let text = field(at);
            let key: Vec<u32> = text
                .split('.')
                .filter_map(|part| part.parse().ok())
                .collect();
            if !key.is_empty() && version.as_ref().is_none_or(|(best, _)| key > *best) {
                version = Some((key, text.to_string()));
            }
        }
        concepts.push(concept);
    }
    if concepts.is_empty() {
        bail!("{} has no codes", path.display());
    }
    Ok(ReleaseContent {
        kind: ReleaseKind::Loinc,
        version: version.map(|(_, text)| text),
        hierarchy: false,
        concepts,
        source: path.display().to_string(),
        notes: Vec::new(),
    })
}
