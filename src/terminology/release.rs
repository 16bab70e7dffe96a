//! Releases a user loads (`fhirlake terminology load-snomed|load-loinc`): one redb file per
//! code system under `DATA/terminology/` (`snomed.redb`, `loinc.redb`), opened read-only by the
//! server at start and read on demand.
//!
//! A file holds (format 1):
//! - `meta` name -> text: `format` (`1`), `system` (URL), `version`, `source` (what it was
//!   loaded from), `loaded` (when, RFC 3339), `concepts` (count), `hierarchy` (`true` when the
//!   parents are the system's whole is-a hierarchy), `properties` (JSON array of the property
//!   codes the concepts carry);
//! - `concepts` code -> the [`Concept`] as JSON (display, designations, properties, parents);
//! - `children` multimap code -> the codes whose parents include it.
//!
//! Invariant: `children` holds (p, c) exactly when the concept c lists p among its parents
//! and both are concepts of the file. A file is written whole into `NAME.loading`, committed,
//! then renamed over `NAME`: a crash leaves the previous release, and a running server keeps
//! the file it opened (its next start reads the new one).
//!
//! Why files of their own rather than tables in the store's `fhirlake.redb`: a release is
//! reference data replaced whole, never versioned or in the change log; hundreds of MB of it
//! would sit in every backup of the patient data; it can be loaded while a server runs
//! (the store's file is locked by the server); and it needs no store schema migration.

use super::concept::Concept;
use super::system::{CodeSource, Content, SystemInfo};
use super::{LOINC, SNOMED, TerminologyError};
use anyhow::Context;
use redb::{
    Database, MultimapTableDefinition, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    TableDefinition,
};
use std::path::{Path, PathBuf};

/// The directory of the releases inside a data directory.
pub const DIR: &str = "terminology";

const FORMAT: &str = "1";
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const CONCEPTS: TableDefinition<&str, &[u8]> = TableDefinition::new("concepts");
const CHILDREN: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("children");

/// The code systems a release can be loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseKind {
    Snomed,
    Loinc,
}

impl ReleaseKind {
    const ALL: [ReleaseKind; 2] = [ReleaseKind::Snomed, ReleaseKind::Loinc];

    fn file(self) -> &'static str {
        match self {
            ReleaseKind::Snomed => "snomed.redb",
            ReleaseKind::Loinc => "loinc.redb",
        }
    }

    pub fn url(self) -> &'static str {
        match self {
            ReleaseKind::Snomed => SNOMED,
            ReleaseKind::Loinc => LOINC,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReleaseKind::Snomed => "SNOMED CT",
            ReleaseKind::Loinc => "LOINC",
        }
    }
}

/// A release as a loader read it, to be [`install`]ed.
pub struct ReleaseContent {
    pub kind: ReleaseKind,
    pub version: Option<String>,
    /// Whether the concepts' parents are the system's whole is-a hierarchy.
    pub hierarchy: bool,
    /// Every concept; parents name concepts of the list.
    pub concepts: Vec<Concept>,
    /// Where it was read from.
    pub source: String,
    /// What the loader left out and why, for the user.
    pub notes: Vec<String>,
}

fn storage(error: impl std::fmt::Display) -> TerminologyError {
    TerminologyError::Storage(error.to_string())
}

/// Writes `content` as the release of its code system in `data_dir`, replacing any there;
/// returns the file's path.
pub fn install(data_dir: &Path, content: &ReleaseContent) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(content.kind.file());
    let loading = path.with_extension("redb.loading");
    if loading.exists() {
        std::fs::remove_file(&loading)?;
    }
    let db =
        Database::create(&loading).with_context(|| format!("creating {}", loading.display()))?;
    let txn = db.begin_write()?;
    {
        let mut concepts = txn.open_table(CONCEPTS)?;
        let mut children = txn.open_multimap_table(CHILDREN)?;
        for concept in &content.concepts {
            concepts.insert(
                concept.code.as_str(),
                serde_json::to_vec(concept)?.as_slice(),
            )?;
            for parent in &concept.parents {
                children.insert(parent.as_str(), concept.code.as_str())?;
            }
        }
        let properties: std::collections::BTreeSet<&str> = content
            .concepts
            .iter()
            .flat_map(|c| c.properties.iter().map(|p| p.code.as_str()))
            .collect();
        let loaded = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?;
        let count = content.concepts.len().to_string();
        let properties = serde_json::to_string(&properties)?;
        let mut meta = txn.open_table(META)?;
        for (key, value) in [
            ("format", FORMAT),
            ("system", content.kind.url()),
            ("version", content.version.as_deref().unwrap_or("")),
            ("source", content.source.as_str()),
            ("loaded", loaded.as_str()),
            ("concepts", count.as_str()),
            (
                "hierarchy",
                if content.hierarchy { "true" } else { "false" },
            ),
            ("properties", properties.as_str()),
        ] {
            meta.insert(key, value)?;
        }
    }
    txn.commit()?;
    drop(db);
    std::fs::rename(&loading, &path)
        .with_context(|| format!("moving {} to {}", loading.display(), path.display()))?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(path)
}

/// The releases loaded into `data_dir`.
pub fn open_all(data_dir: &Path) -> Result<Vec<Release>, TerminologyError> {
    ReleaseKind::ALL
        .iter()
        .map(|kind| data_dir.join(DIR).join(kind.file()))
        .filter(|path| path.exists())
        .map(|path| Release::open(&path))
        .collect()
}

/// A loaded release, read from its file on demand.
pub struct Release {
    db: ReadOnlyDatabase,
    info: SystemInfo,
    len: usize,
}

impl Release {
    /// Opens the release file at `path` read-only.
    pub fn open(path: &Path) -> Result<Release, TerminologyError> {
        let failed = |error: &dyn std::fmt::Display| {
            TerminologyError::Storage(format!("the release {}: {error}", path.display()))
        };
        let db = ReadOnlyDatabase::open(path).map_err(|e| failed(&e))?;
        let meta = |key: &str| -> Result<String, TerminologyError> {
            let txn = db.begin_read().map_err(|e| failed(&e))?;
            let table = txn.open_table(META).map_err(|e| failed(&e))?;
            let value = table.get(key).map_err(|e| failed(&e))?;
            value
                .map(|v| v.value().to_string())
                .ok_or_else(|| failed(&format!("it has no {key}")))
        };
        let format = meta("format")?;
        if format != FORMAT {
            return Err(failed(&format!(
                "it is of format {format}, this fhirlake reads format {FORMAT}: load the \
                 release again"
            )));
        }
        let url = meta("system")?;
        let kind = ReleaseKind::ALL
            .into_iter()
            .find(|k| k.url() == url)
            .ok_or_else(|| failed(&format!("it is of an unknown system {url}")))?;
        let version = Some(meta("version")?).filter(|v| !v.is_empty());
        let len: usize = meta("concepts")?.parse().map_err(|e| failed(&e))?;
        let properties = serde_json::from_str(&meta("properties")?).map_err(|e| failed(&e))?;
        let info = SystemInfo {
            holding: format!(
                "the release {} loaded from {} on {}, {len} concepts",
                version.as_deref().unwrap_or("(no version)"),
                meta("source")?,
                meta("loaded")?
            ),
            url,
            name: Some(kind.name().into()),
            title: None,
            version,
            content: Content::Complete,
            hierarchy: meta("hierarchy")? == "true",
            properties,
            case_sensitive: true,
            copyright: None,
        };
        Ok(Release { db, info, len })
    }
}

impl CodeSource for Release {
    fn info(&self) -> &SystemInfo {
        &self.info
    }

    fn concept(&self, code: &str) -> Result<Option<Concept>, TerminologyError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(CONCEPTS).map_err(storage)?;
        let Some(record) = table.get(code).map_err(storage)? else {
            return Ok(None);
        };
        serde_json::from_slice(record.value())
            .map(Some)
            .map_err(storage)
    }

    fn children(&self, code: &str) -> Result<Vec<String>, TerminologyError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_multimap_table(CHILDREN).map_err(storage)?;
        let mut out = Vec::new();
        for child in table.get(code).map_err(storage)? {
            out.push(child.map_err(storage)?.value().to_string());
        }
        Ok(out)
    }

    fn concept_count(&self) -> usize {
        self.len
    }

    fn each_concept(
        &self,
        visit: &mut dyn FnMut(&Concept) -> bool,
    ) -> Result<(), TerminologyError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(CONCEPTS).map_err(storage)?;
        for item in table.iter().map_err(storage)? {
            let (_, record) = item.map_err(storage)?;
            let concept: Concept = serde_json::from_slice(record.value()).map_err(storage)?;
            if !visit(&concept) {
                break;
            }
        }
        Ok(())
    }
}
