//! Reading a SNOMED CT release in RF2 (its Snapshot files) for `fhirlake terminology
//! load-snomed`.
//!
//! Read from the directory given (searched recursively, so the release's root, its
//! `Snapshot/` or `Snapshot/Terminology/` will do):
//! - `sct2_Concept_Snapshot*.txt`: every concept; an inactive one is kept with the property
//!   `inactive` = true (a code that was retired is still a code, with a warning);
//! - `sct2_Description_Snapshot*.txt` (all languages' files): the active English (`en`)
//!   fully specified names and synonyms, as designations;
//! - `sct2_Relationship_Snapshot*.txt`: the active is-a relationships (`116680003`), as the
//!   concepts' parents;
//! - `der2_cRefset_LanguageSnapshot*.txt`, when there: the display is the synonym preferred
//!   in US English (else in GB English); without it, the fully specified name.
//!
//! Files are tab-separated with a header row, as RF2 specifies; a file whose header lacks a
//! needed column is refused. Ids that are not well-formed concept ids are left out (noted).

use super::concept::{Concept, Designation, Property, PropertyValue};
use super::release::{ReleaseContent, ReleaseKind};
use super::snomed::check_concept_id;
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

const IS_A: &str = "116680003";
const FSN: &str = "900000000000003001";
const SYNONYM: &str = "900000000000013009";
const US_ENGLISH: &str = "900000000000509007";
const GB_ENGLISH: &str = "900000000000508004";
const PREFERRED: &str = "900000000000548007";

/// Reads the RF2 Snapshot under `dir`.
pub fn read_snapshot(dir: &Path) -> anyhow::Result<ReleaseContent> {
    let mut files = Vec::new();
    collect_files(dir, &mut files).with_context(|| format!("reading {}", dir.display()))?;
    let named = |prefix: &str| -> Vec<&PathBuf> {
        files
            .iter()
            .filter(|path| {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                name.starts_with(prefix) && name.ends_with(".txt")
            })
            .collect()
    };
    let one = |prefix: &str| -> anyhow::Result<&PathBuf> {
        match named(prefix)[..] {
            [path] => Ok(path),
            [] => bail!(
                "no {prefix}*.txt under {}: is it an RF2 release?",
                dir.display()
            ),
            _ => bail!(
                "several {prefix}*.txt under {}: give one release",
                dir.display()
            ),
        }
    };
    let mut notes = Vec::new();

    // Concepts: id -> (active, effectiveTime), in file order.
    let mut order = Vec::new();
    let mut active = HashMap::new();
    let mut version = String::new();
    let mut malformed = 0usize;
    read_rows(
        one("sct2_Concept_Snapshot")?,
        &["id", "effectiveTime", "active"],
        |row| {
            if check_concept_id(row[0]).is_err() {
                malformed += 1;
                return;
            }
            if row[1] > version.as_str() {
                version = row[1].to_string();
            }
            if active.insert(row[0].to_string(), row[2] == "1").is_none() {
                order.push(row[0].to_string());
            }
        },
    )?;
    if malformed > 0 {
        notes.push(format!(
            "{malformed} rows with malformed concept ids left out"
        ));
    }

    // Preferred synonyms: description id -> whether US English prefers it (else GB English).
    let mut preferred: HashMap<String, bool> = HashMap::new();
    for path in named("der2_cRefset_LanguageSnapshot") {
        let columns = [
            "active",
            "refsetId",
            "referencedComponentId",
            "acceptabilityId",
        ];
        read_rows(path, &columns, |row| {
            if row[0] == "1"
                && row[3] == PREFERRED
                && (row[1] == US_ENGLISH || row[1] == GB_ENGLISH)
            {
                let us = row[1] == US_ENGLISH;
                let entry = preferred.entry(row[2].to_string()).or_insert(us);
                *entry |= us;
            }
        })?;
    }

    // Descriptions: concept id -> (description id, type, term).
    let mut descriptions: HashMap<String, Vec<(String, &'static str, String)>> = HashMap::new();
    let description_files = named("sct2_Description_Snapshot");
    if description_files.is_empty() {
        bail!("no sct2_Description_Snapshot*.txt under {}", dir.display());
    }
    for path in description_files {
        let columns = [
            "id",
            "active",
            "conceptId",
            "languageCode",
            "typeId",
            "term",
        ];
        read_rows(path, &columns, |row| {
            let kind = match row[4] {
                FSN => FSN,
                SYNONYM => SYNONYM,
                _ => return,
            };
            if row[1] == "1" && row[3] == "en" && active.contains_key(row[2]) {
                descriptions.entry(row[2].to_string()).or_default().push((
                    row[0].to_string(),
                    kind,
                    row[5].to_string(),
                ));
            }
        })?;
    }

    // Is-a: concept id -> parent ids.
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    let columns = ["active", "sourceId", "destinationId", "typeId"];
    read_rows(one("sct2_Relationship_Snapshot")?, &columns, |row| {
        if row[0] == "1"
            && row[3] == IS_A
            && active.contains_key(row[1])
            && active.contains_key(row[2])
        {
            parents
                .entry(row[1].to_string())
                .or_default()
                .push(row[2].to_string());
        }
    })?;

    let concepts = order
        .into_iter()
        .map(|id| {
            let names = descriptions.remove(&id).unwrap_or_default();
            let preference = |(description, kind, _): &&(String, &str, String)| match (
                *kind,
                preferred.get(description),
            ) {
                (SYNONYM, Some(true)) => 0,
                (SYNONYM, Some(false)) => 1,
                (FSN, _) => 2,
                _ => 3,
            };
            let display = names
                .iter()
                .min_by_key(preference)
                .map(|(_, _, term)| term.clone());
            let mut concept = Concept::new(id.clone(), display);
            concept.designations = names
                .into_iter()
                .map(|(_, kind, term)| Designation {
                    language: Some("en".into()),
                    use_code: Some(kind.into()),
                    value: term,
                })
                .collect();
            if !active[&id] {
                concept.properties.push(Property {
                    code: "inactive".into(),
                    value: PropertyValue::Boolean(true),
                });
            }
            let mut concept_parents = parents.remove(&id).unwrap_or_default();
            concept_parents.sort();
            concept_parents.dedup();
            concept.parents = concept_parents;
            concept
        })
        .collect();
    Ok(ReleaseContent {
        kind: ReleaseKind::Snomed,
        version: Some(version).filter(|v| !v.is_empty()),
        hierarchy: true,
        concepts,
        source: dir.display().to_string(),
        notes,
    })
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Calls `row` with the values of `columns` (found by the header's names) of every row of
/// the RF2 file at `path`.
fn read_rows(path: &Path, columns: &[&str], mut row: impl FnMut(&[&str])) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines
        .next()
        .transpose()?
        .with_context(|| format!("{} is empty", path.display()))?;
    let header: Vec<&str> = header.trim_end_matches('\r').split('\t').collect();
    let positions: Vec<usize> = columns
        .iter()
        .map(|column| {
            header
                .iter()
                .position(|h| h == column)
                .with_context(|| format!("{} has no column {column}", path.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let width = positions.iter().max().map_or(0, |m| m + 1);
    for (number, line) in lines.enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let fields: Vec<&str> = line.trim_end_matches('\r').split('\t').collect();
        if fields.len() < width {
            if line.trim().is_empty() {
                continue;
            }
            bail!(
                "{} line {}: {} columns, expected {}",
                path.display(),
                number + 2,
                fields.len(),
                header.len()
            );
        }
        let values: Vec<&str> = positions.iter().map(|&p| fields[p]).collect();
        row(&values);
    }
    Ok(())
}
