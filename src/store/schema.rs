//! The schema version of a data directory, and upgrades between versions.
//!
//! Each schema version is documented in `migrations/` (`NNNN-name.md`). A data directory
//! written by a newer fhirlake is refused, never opened; an older one must be upgraded with
//! `fhirlake migrate` before the server opens it.

use super::tables::{
    ASSERTION_JTIS, ASSERTION_LAPSES, BACKEND_CLIENTS, CHANGES, CHECKPOINTS, CURRENT, ChangeRecord,
    ERASED, JOBS, META, Op, SCHEMA_VERSION_KEY, TYPE_CHANGES, VERSIONS,
};
use super::{DB_FILE, StoreError};
use redb::{Database, ReadableTable, WriteTransaction};
use std::path::Path;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u64 = 6;

/// An upgrade from `from` to `from + 1`, run in one write transaction.
struct Migration {
    from: u64,
    name: &'static str,
    run: fn(&WriteTransaction) -> Result<(), StoreError>,
}

/// Every upgrade, in order.
const MIGRATIONS: &[Migration] = &[
    Migration {
        from: 1,
        name: "0002-checkpoints: the durable checkpoints of change-log consumers",
        run: |txn| {
            txn.open_table(CHECKPOINTS)?;
            Ok(())
        },
    },
    Migration {
        from: 2,
        name: "0003-jobs: the records of long-running jobs (bulk export)",
        run: |txn| {
            txn.open_table(JOBS)?;
            Ok(())
        },
    },
    Migration {
        from: 3,
        name: "0004-backend-clients: SMART backend clients and their used assertions",
        run: backend_tables,
    },
    Migration {
        from: 4,
        name: "0005-erasure: erased entries in the change log",
        // No table changes and no entry of schema 4 is rewritten: the version only keeps a
        // fhirlake that cannot read an erased entry from opening the directory.
        run: |_| Ok(()),
    },
    Migration {
        from: 5,
        name: "0006-erased-index: the seqs of the erased entries of the change log",
        run: erased_index,
    },
];

/// Schema 6: lists every erased entry of the change log in `erased`, from one scan of it.
fn erased_index(txn: &WriteTransaction) -> Result<(), StoreError> {
    let changes = txn.open_table(CHANGES)?;
    let mut erased = txn.open_table(ERASED)?;
    for item in changes.iter()? {
        let (seq, record) = item?;
        let change = ChangeRecord::decode(seq.value(), record.value());
        if change.op == Op::Erased {
            erased.insert(change.seq, change.resource_type.as_str())?;
        }
    }
    Ok(())
}

/// The tables of schema 4: the registered backend clients and the client assertions used.
fn backend_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(BACKEND_CLIENTS)?;
    txn.open_table(ASSERTION_JTIS)?;
    txn.open_table(ASSERTION_LAPSES)?;
    Ok(())
}

/// Opens the database of `dir`, creating it (at [`SCHEMA_VERSION`]) when it does not exist.
/// Fails when the directory is at another schema version.
pub fn open_current(dir: &Path, cache: usize) -> Result<Database, StoreError> {
    let db = open(dir, cache)?;
    match stored_version(&db)? {
        SCHEMA_VERSION => Ok(db),
        found if found > SCHEMA_VERSION => Err(too_new(dir, found)),
        found => Err(StoreError::Schema(format!(
            "the data directory {} is at schema version {found}; this fhirlake uses version \
             {SCHEMA_VERSION}: run `fhirlake migrate --data {}` first",
            dir.display(),
            dir.display()
        ))),
    }
}

/// What [`migrate`] did.
pub struct Migrated {
    pub from: u64,
    pub to: u64,
    pub steps: Vec<&'static str>,
}

/// Upgrades the data directory `dir` to [`SCHEMA_VERSION`], one migration per write
/// transaction, so an interrupted upgrade resumes where it stopped.
pub fn migrate(dir: &Path) -> Result<Migrated, StoreError> {
    let db = open(dir, DEFAULT_CACHE)?;
    let from = stored_version(&db)?;
    if from > SCHEMA_VERSION {
        return Err(too_new(dir, from));
    }
    let mut steps = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.from >= from) {
        let txn = db.begin_write()?;
        (migration.run)(&txn)?;
        txn.open_table(META)?
            .insert(SCHEMA_VERSION_KEY, migration.from + 1)?;
        txn.commit()?;
        steps.push(migration.name);
    }
    Ok(Migrated {
        from,
        to: SCHEMA_VERSION,
        steps,
    })
}

/// Compacts the store of `dir` (redb's compaction: pages in use move into the free ones and
/// the file is cut after the last): returns its size before and after. Needs the directory
/// to itself (a running server holds it locked). What free pages held is overwritten or cut
/// away with them.
pub fn compact(dir: &Path) -> Result<(u64, u64), StoreError> {
    let file = dir.join(DB_FILE);
    let size = || {
        std::fs::metadata(&file)
            .map(|metadata| metadata.len())
            .map_err(|source| StoreError::Directory {
                path: file.clone(),
                source,
            })
    };
    let mut db = open_current(dir, DEFAULT_CACHE)?;
    let before = size()?;
    while db.compact()? {}
    drop(db);
    Ok((before, size()?))
}

fn too_new(dir: &Path, found: u64) -> StoreError {
    StoreError::Schema(format!(
        "the data directory {} is at schema version {found}, written by a newer fhirlake; this \
         fhirlake knows versions up to {SCHEMA_VERSION}: run the newer fhirlake",
        dir.display()
    ))
}

/// redb's own default cache: 1 GiB of the file's pages.
pub const DEFAULT_CACHE: usize = 1 << 30;

fn open(dir: &Path, cache: usize) -> Result<Database, StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(redb::Builder::new()
        .set_cache_size(cache)
        .create(dir.join(DB_FILE))?)
}

/// The schema version stored in the database; a new, empty database is initialised at
/// [`SCHEMA_VERSION`] with all its tables.
fn stored_version(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_write()?;
    let version = {
        let mut meta = txn.open_table(META)?;
        let stored = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value());
        match stored {
            Some(version) => version,
            None => {
                meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
                txn.open_table(VERSIONS)?;
                txn.open_table(CURRENT)?;
                txn.open_table(CHANGES)?;
                txn.open_table(TYPE_CHANGES)?;
                txn.open_table(CHECKPOINTS)?;
                txn.open_table(JOBS)?;
                backend_tables(&txn)?;
                txn.open_table(ERASED)?;
                SCHEMA_VERSION
            }
        }
    };
    txn.commit()?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::datetime::Micros;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    #[test]
    fn a_new_directory_is_created_at_the_current_version_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_current(dir.path(), DEFAULT_CACHE).unwrap());
        drop(open_current(dir.path(), DEFAULT_CACHE).unwrap());
        let migrated = migrate(dir.path()).unwrap();
        assert_eq!(
            (migrated.from, migrated.to),
            (SCHEMA_VERSION, SCHEMA_VERSION)
        );
        assert!(migrated.steps.is_empty());
    }

    #[test]
    fn a_version_1_directory_is_refused_until_migrated_then_has_every_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path(), DEFAULT_CACHE).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_VERSION_KEY, 1)
                .unwrap();
            txn.open_table(CHANGES).unwrap();
            txn.commit().unwrap();
        }
        let error = open_current(dir.path(), DEFAULT_CACHE)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("fhirlake migrate"), "{error}");
        let migrated = migrate(dir.path()).unwrap();
        assert_eq!((migrated.from, migrated.to), (1, SCHEMA_VERSION));
        assert_eq!(migrated.steps.len(), MIGRATIONS.len());
        let db = open_current(dir.path(), DEFAULT_CACHE).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(txn.open_table(CHECKPOINTS).unwrap().is_empty().unwrap());
        assert!(txn.open_table(JOBS).unwrap().is_empty().unwrap());
        assert!(txn.open_table(BACKEND_CLIENTS).unwrap().is_empty().unwrap());
        assert!(txn.open_table(ASSERTION_JTIS).unwrap().is_empty().unwrap());
        assert!(
            txn.open_table(ASSERTION_LAPSES)
                .unwrap()
                .is_empty()
                .unwrap()
        );
    }

    #[test]
    fn a_directory_of_a_newer_fhirlake_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path(), DEFAULT_CACHE).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let error = open_current(dir.path(), DEFAULT_CACHE)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("newer fhirlake"), "{error}");
        assert!(migrate(dir.path()).is_err());
    }

    #[test]
    fn a_version_5_directory_gets_its_erased_entries_listed() {
        let dir = tempfile::tempdir().unwrap();
        let change = |seq: u64, resource_type: &str, op: Op| ChangeRecord {
            seq,
            txid: seq,
            resource_type: resource_type.into(),
            id: "a".into(),
            vid: 1,
            op,
            last_updated: seq as Micros,
            erased: None,
        };
        {
            let db = open(dir.path(), DEFAULT_CACHE).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_VERSION_KEY, 5)
                .unwrap();
            {
                let mut changes = txn.open_table(CHANGES).unwrap();
                let written = change(1, "Patient", Op::Create);
                let entries = [
                    written.erasure(1),
                    change(2, "Observation", Op::Create),
                    change(3, "Patient", Op::Erased).erasure(1),
                ];
                for entry in entries {
                    changes
                        .insert(entry.seq, entry.encode().as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let migrated = migrate(dir.path()).unwrap();
        assert_eq!((migrated.from, migrated.to), (5, SCHEMA_VERSION));
        let db = open_current(dir.path(), DEFAULT_CACHE).unwrap();
        let txn = db.begin_read().unwrap();
        let erased: Vec<(u64, String)> = txn
            .open_table(ERASED)
            .unwrap()
            .iter()
            .unwrap()
            .map(|item| {
                let (seq, resource_type) = item.unwrap();
                (seq.value(), resource_type.value().to_string())
            })
            .collect();
        assert_eq!(erased, vec![(1, "Patient".into()), (3, "Patient".into())]);
    }
}
