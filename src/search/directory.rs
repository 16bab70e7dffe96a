//! Where the index lives: in memory for its newest commits, on disk as of its last checkpoint.
//!
//! A search waits until the index holds every write committed before it (read your writes),
//! and tantivy makes each index commit a new segment of about ten files plus two atomically
//! replaced ones (`meta.json`, `.managed.json`). Created, renamed and fsynced on this
//! project's disks, those files cost most of a commit's time (about 15 ms of 18, against 3 ms
//! with the same files in memory). Yet the index is derived state: the change log is durable
//! and the index resumes from the checkpoint in its `meta.json` payload.
//!
//! So [`Staged`] keeps what tantivy writes in memory and [`Staged::checkpoint`] writes it to
//! disk in the background, about once a second and when the index is closed:
//!
//! - A file tantivy writes is kept in memory once written (a file that grows past [`SPILL`]
//!   bytes, a large merge's, goes to disk as it is written, unsynced until the checkpoint).
//!   Reads see memory first, then the disk.
//! - `meta.json` and `.managed.json` are replaced in memory.
//! - A file deleted that is on disk (or being written there by a checkpoint) stays there
//!   until the checkpoint after: the `meta.json` on disk may still refer to it.
//! - A checkpoint writes and fsyncs every file held in memory or written unsynced, then
//!   `.managed.json` and `meta.json` (a temporary file fsynced and renamed), then the
//!   directory, and only then removes the files deleted since the last one.
//!
//! The invariant: the `meta.json` on disk refers only to files that are on disk and synced,
//! so after any crash the index on disk is a whole one, of an earlier commit; its payload
//! says from which change the indexer resumes. A crash costs re-indexing the changes since
//! the last checkpoint, never a rebuild.
//!
//! A checkpoint that fails (a full disk) is logged and retried each second; until one
//! succeeds, what is held in memory grows with the index's commits, and the index on disk stays
//! the last whole one.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes,
    TerminatingWrite, WatchCallback, WatchHandle, WritePtr,
};

/// A file growing past this many bytes is written to disk as it grows rather than held.
pub const SPILL: usize = 16 * 1024 * 1024;

/// How often the background thread writes a checkpoint, when there is anything to write.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The index's directory: see the module documentation.
#[derive(Clone, Debug)]
pub struct Staged {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    mmap: MmapDirectory,
    state: Mutex<State>,
    /// Held while a checkpoint is written: one at a time.
    checkpointing: Mutex<()>,
}

/// What differs from the disk's last checkpoint.
#[derive(Debug, Default)]
struct State {
    /// Files written since the last checkpoint, held in memory.
    held: HashMap<PathBuf, OwnedBytes>,
    /// Files written to disk since the last checkpoint (spilled), not yet synced.
    unsynced: HashSet<PathBuf>,
    /// Atomically replaced files (`meta.json`, `.managed.json`): their newest content.
    atomic: HashMap<PathBuf, Vec<u8>>,
    /// Files on disk that tantivy deleted: removed at the next checkpoint.
    deleted: HashSet<PathBuf>,
}

impl State {
    fn is_empty(&self) -> bool {
        self.held.is_empty()
            && self.unsynced.is_empty()
            && self.atomic.is_empty()
            && self.deleted.is_empty()
    }
}

impl Staged {
    /// Opens the directory `root`: the index as of its last checkpoint.
    pub fn open(root: &Path) -> tantivy::Result<Staged> {
        Ok(Staged {
            shared: Arc::new(Shared {
                root: root.to_path_buf(),
                mmap: MmapDirectory::open(root)?,
                state: Mutex::new(State::default()),
                checkpointing: Mutex::new(()),
            }),
        })
    }

    /// Starts the thread that writes a checkpoint every [`CHECKPOINT_EVERY`]; it ends when the
    /// last clone of the directory is dropped.
    pub fn checkpoint_in_background(&self) {
        let weak = Arc::downgrade(&self.shared);
        std::thread::Builder::new()
            .name("fhirlake-index-sync".into())
            .spawn(move || checkpoints(weak))
            .expect("spawn the index checkpoint thread");
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// Writes everything held to disk and makes it durable (see the module documentation);
    /// the index on disk is then the newest one.
    pub fn checkpoint(&self) -> io::Result<()> {
        self.shared.checkpoint()
    }
}

/// The background thread: a checkpoint every [`CHECKPOINT_EVERY`] while the directory lives.
fn checkpoints(shared: Weak<Shared>) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(error) = shared.checkpoint() {
            tracing::error!(%error, "writing the search index to disk failed; retrying");
        }
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the state was held left it whole: each change is one map operation.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn checkpoint(&self) -> io::Result<()> {
        let _one = self
            .checkpointing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (held, unsynced, atomic, deleted) = {
            let state = self.state();
            if state.is_empty() {
                return Ok(());
            }
            (
                state.held.clone(),
                state.unsynced.clone(),
                state.atomic.clone(),
                state.deleted.clone(),
            )
        };
        for (path, bytes) in &held {
            let mut file = File::create(self.root.join(path))?;
            file.write_all(bytes.as_slice())?;
            file.sync_all()?;
        }
        for path in &unsynced {
            match File::open(self.root.join(path)) {
                Ok(file) => file.sync_all()?,
                // Deleted since: nothing refers to it.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        // The list of managed files before the meta that relies on it.
        let mut replaced: Vec<(&PathBuf, &Vec<u8>)> = atomic.iter().collect();
        replaced.sort_by_key(|(path, _)| path.as_os_str() == "meta.json");
        for (path, data) in replaced {
            let mut temporary = tempfile::Builder::new().tempfile_in(&self.root)?;
            temporary.write_all(data)?;
            temporary.as_file().sync_all()?;
            temporary
                .persist(self.root.join(path))
                .map_err(|error| error.error)?;
        }
        File::open(&self.root)?.sync_all()?;
        let mut orphans = Vec::new();
        {
            let mut state = self.state();
            for (path, bytes) in held {
                match state.held.get(&path) {
                    Some(now) if now.as_slice().as_ptr() == bytes.as_slice().as_ptr() => {
                        state.held.remove(&path);
                    }
                    // Deleted while it was written: the meta just written may refer to it,
                    // the next one does not.
                    None => {
                        state.deleted.insert(path);
                    }
                    Some(_) => {}
                }
            }
            for path in unsynced {
                state.unsynced.remove(&path);
            }
            for (path, data) in atomic {
                if state.atomic.get(&path) == Some(&data) {
                    state.atomic.remove(&path);
                }
            }
            for path in deleted {
                state.deleted.remove(&path);
                orphans.push(path);
            }
        }
        for path in orphans {
            match std::fs::remove_file(self.root.join(&path)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A file being written: in memory until it grows past [`SPILL`], then on disk.
struct Writer {
    shared: Arc<Shared>,
    path: PathBuf,
    buffer: Vec<u8>,
    spilled: Option<File>,
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(file) = &mut self.spilled {
            return file.write(buf);
        }
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() > SPILL {
            let mut file = create_new(&self.shared.root, &self.path)?;
            file.write_all(&self.buffer)?;
            self.buffer = Vec::new();
            self.spilled = Some(file);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.spilled {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl TerminatingWrite for Writer {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        let mut state = self.shared.state();
        match &mut self.spilled {
            Some(file) => {
                file.flush()?;
                state.unsynced.insert(self.path.clone());
            }
            None => {
                let bytes = OwnedBytes::new(std::mem::take(&mut self.buffer));
                state.held.insert(self.path.clone(), bytes);
            }
        }
        Ok(())
    }
}

fn create_new(root: &Path, path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(root.join(path))
}

impl Directory for Staged {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        {
            let state = self.state();
            if let Some(bytes) = state.held.get(path) {
                return Ok(Arc::new(bytes.clone()));
            }
            if state.deleted.contains(path) {
                return Err(OpenReadError::FileDoesNotExist(path.to_path_buf()));
            }
        }
        self.shared.mmap.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        let mut state = self.state();
        if state.held.remove(path).is_some() {
            return Ok(());
        }
        // On disk (synced or not): a checkpoint being written may refer to it.
        if state.unsynced.remove(path) {
            state.deleted.insert(path.to_path_buf());
            return Ok(());
        }
        if state.deleted.contains(path) || !self.shared.root.join(path).exists() {
            return Err(DeleteError::FileDoesNotExist(path.to_path_buf()));
        }
        state.deleted.insert(path.to_path_buf());
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        {
            let state = self.state();
            if state.held.contains_key(path)
                || state.unsynced.contains(path)
                || state.atomic.contains_key(path)
            {
                return Ok(true);
            }
            if state.deleted.contains(path) {
                return Ok(false);
            }
        }
        self.shared.mmap.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let exists = self
            .exists(path)
            .map_err(|error| OpenWriteError::wrap_io_error(io::Error::other(error), path.into()))?;
        if exists {
            return Err(OpenWriteError::FileAlreadyExists(path.to_path_buf()));
        }
        Ok(BufWriter::new(Box::new(Writer {
            shared: self.shared.clone(),
            path: path.to_path_buf(),
            buffer: Vec::new(),
            spilled: None,
        })))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        if let Some(data) = self.state().atomic.get(path) {
            return Ok(data.clone());
        }
        self.shared.mmap.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.state()
            .atomic
            .insert(path.to_path_buf(), data.to_vec());
        Ok(())
    }

    /// Nothing: durability is the checkpoint's.
    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.shared.mmap.acquire_lock(lock)
    }

    fn watch(&self, callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.shared.mmap.watch(callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(directory: &Staged, path: &str, content: &[u8]) {
        let mut writer = directory.open_write(Path::new(path)).unwrap();
        writer.write_all(content).unwrap();
        writer.into_inner().ok().unwrap().terminate().unwrap();
    }

    fn read(directory: &Staged, path: &str) -> Vec<u8> {
        let file = directory.open_read(Path::new(path)).unwrap();
        file.read_bytes().unwrap().as_slice().to_vec()
    }

    #[test]
    fn the_disk_holds_only_what_a_checkpoint_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let directory = Staged::open(dir.path()).unwrap();
        write(&directory, "a.idx", b"postings");
        directory
            .atomic_write(Path::new("meta.json"), b"meta 1")
            .unwrap();
        assert_eq!(read(&directory, "a.idx"), b"postings");
        assert!(!dir.path().join("a.idx").exists(), "held in memory");
        assert!(!dir.path().join("meta.json").exists());

        directory.checkpoint().unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a.idx")).unwrap(),
            b"postings"
        );
        assert_eq!(
            std::fs::read(dir.path().join("meta.json")).unwrap(),
            b"meta 1"
        );
        assert_eq!(read(&directory, "a.idx"), b"postings", "now read from disk");

        // A deleted file stays on disk, where the meta refers to it, until the next one.
        directory.delete(Path::new("a.idx")).unwrap();
        assert!(!directory.exists(Path::new("a.idx")).unwrap());
        assert!(directory.open_read(Path::new("a.idx")).is_err());
        assert!(dir.path().join("a.idx").exists());
        directory
            .atomic_write(Path::new("meta.json"), b"meta 2")
            .unwrap();
        assert_eq!(
            directory.atomic_read(Path::new("meta.json")).unwrap(),
            b"meta 2"
        );
        assert_eq!(
            std::fs::read(dir.path().join("meta.json")).unwrap(),
            b"meta 1"
        );
        directory.checkpoint().unwrap();
        assert!(!dir.path().join("a.idx").exists());
        assert_eq!(
            std::fs::read(dir.path().join("meta.json")).unwrap(),
            b"meta 2"
        );
    }

    #[test]
    fn a_file_deleted_before_any_checkpoint_never_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let directory = Staged::open(dir.path()).unwrap();
        write(&directory, "b.idx", b"x");
        assert!(matches!(
            directory.open_write(Path::new("b.idx")),
            Err(OpenWriteError::FileAlreadyExists(_))
        ));
        directory.delete(Path::new("b.idx")).unwrap();
        assert!(matches!(
            directory.delete(Path::new("b.idx")),
            Err(DeleteError::FileDoesNotExist(_))
        ));
        directory.checkpoint().unwrap();
        assert!(!dir.path().join("b.idx").exists());
    }

    #[test]
    fn a_large_file_goes_to_disk_as_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let directory = Staged::open(dir.path()).unwrap();
        let large = vec![7u8; SPILL + 10];
        write(&directory, "c.store", &large);
        assert!(dir.path().join("c.store").exists());
        assert_eq!(read(&directory, "c.store"), large);
        directory.checkpoint().unwrap();
        assert_eq!(read(&directory, "c.store"), large);
        write(&directory, "d.store", &large);
        directory.delete(Path::new("d.store")).unwrap();
        assert!(!directory.exists(Path::new("d.store")).unwrap());
        directory.checkpoint().unwrap();
        assert!(!dir.path().join("d.store").exists());
    }

    #[test]
    fn a_tantivy_index_reopens_as_of_its_last_checkpoint() {
        use tantivy::schema::{STRING, Schema};
        let dir = tempfile::tempdir().unwrap();
        let mut builder = Schema::builder();
        let field = builder.add_text_field("key", STRING);
        let schema = builder.build();
        let count = |index: &tantivy::Index| index.reader().unwrap().searcher().num_docs();
        {
            let staged = Staged::open(dir.path()).unwrap();
            let index = tantivy::Index::open_or_create(staged.clone(), schema).unwrap();
            let mut writer: tantivy::IndexWriter =
                index.writer_with_num_threads(1, 15_000_000).unwrap();
            writer.add_document(tantivy::doc!(field => "one")).unwrap();
            writer.commit().unwrap();
            staged.checkpoint().unwrap();
            writer.add_document(tantivy::doc!(field => "two")).unwrap();
            writer.commit().unwrap();
            assert_eq!(count(&index), 2);
            // Dropped without a checkpoint: as a crash leaves it.
        }
        let reopened = tantivy::Index::open_in_dir(dir.path()).unwrap();
        assert_eq!(count(&reopened), 1, "the index of the last checkpoint");
        assert!(reopened.validate_checksum().unwrap().is_empty());
    }
}
