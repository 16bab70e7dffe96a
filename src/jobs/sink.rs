//! Where jobs put their files: the output sink, one interface over two places. By default
//! local files in the data directory (`DATA/jobs/{job id}/{name}`); with `--export-store`,
//! objects in object storage (`{prefix}/{job id}/{name}` in an S3, GCS or Azure bucket,
//! through the `fhirlake-objstore` crate). The jobs and the API see the same [`Sink`] either
//! way.
//!
//! Invariants: a file appears under its name only once it is complete and durable (a local
//! file is written as `{name}.part`, fsynced, renamed, and the folder fsynced; an object is
//! one PUT or a multipart upload completed at the end, and an object store acknowledges only
//! what it keeps), so a file a job record names is whole; writing a name again replaces it (a
//! job resumed after a crash rewrites the file it was in). Names are single path components
//! the jobs layer makes; a name from a client is never used to reach a file ([`Sink::open`]
//! refuses anything else). Every call blocks: from an async task, call it in
//! `spawn_blocking`.
//!
//! A crash in the middle of a large object leaves its unfinished multipart upload in the
//! bucket (invisible, and never named by a job): a bucket lifecycle rule that aborts
//! incomplete multipart uploads after a day removes them (README).

use fhirlake_objstore::{ObjectWriter, Store};
use flate2::Compression as Level;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// How files are stored.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain NDJSON (`.ndjson`).
    None,
    /// gzip-compressed NDJSON (`.ndjson.gz`), at gzip's fastest level.
    Gzip,
}

/// The folder of jobs' files in a data directory.
pub const JOBS_DIR: &str = "jobs";

/// Where jobs' files go, and how they are compressed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sink {
    place: Place,
    compression: Compression,
}

#[derive(Debug, Clone)]
enum Place {
    /// The folder of jobs in the data directory.
    Local(PathBuf),
    /// A bucket and prefix of object storage.
    Objects(Store),
}

/// A stored file opened for reading.
pub struct Stored {
    pub reader: Box<dyn Read + Send>,
    /// Its size in bytes, as stored.
    pub bytes: u64,
    /// Whether its bytes are gzip-compressed.
    pub gzip: bool,
}

impl Sink {
    /// Files under the data directory `data`.
    pub fn local(data: &Path, compression: Compression) -> Sink {
        Sink {
            place: Place::Local(data.join(JOBS_DIR)),
            compression,
        }
    }

    /// Objects in `store`.
    pub fn objects(store: Store, compression: Compression) -> Sink {
        Sink {
            place: Place::Objects(store),
            compression,
        }
    }

    /// Where it puts files, as a job records it: `data directory` or the store's URL (its
    /// bucket and prefix).
    pub fn place(&self) -> String {
        match &self.place {
            Place::Local(_) => "the data directory".to_string(),
            Place::Objects(store) => {
                let location = store.location();
                format!("{}/{}", location.bucket_url(), location.prefix)
            }
        }
    }

    /// The name of the file `stem` (`Patient-1`) of NDJSON, as this sink stores it.
    pub fn ndjson_name(&self, stem: &str) -> String {
        match self.compression {
            Compression::None => format!("{stem}.ndjson"),
            Compression::Gzip => format!("{stem}.ndjson.gz"),
        }
    }

    /// Starts writing the file `name` of job `job`; it appears once [`FileWriter::finish`]ed.
    pub fn create(&self, job: &str, name: &str) -> io::Result<FileWriter> {
        self.create_with(job, name, self.compression)
    }

    /// Starts writing the file `name` of job `job` never compressed, whatever the sink's
    /// compression: for formats that compress themselves or that readers take plain (Parquet,
    /// CSV); its bytes are written with `Write`.
    pub fn create_plain(&self, job: &str, name: &str) -> io::Result<FileWriter> {
        self.create_with(job, name, Compression::None)
    }

    fn create_with(
        &self,
        job: &str,
        name: &str,
        compression: Compression,
    ) -> io::Result<FileWriter> {
        check_component(job)?;
        check_component(name)?;
        let target = match &self.place {
            Place::Local(root) => {
                let folder = root.join(job);
                std::fs::create_dir_all(&folder)?;
                let part = folder.join(format!("{name}.part"));
                Target::File {
                    file: File::create(&part)?,
                    path: folder.join(name),
                    part,
                }
            }
            Place::Objects(store) => {
                Target::Object(Box::new(store.create(&format!("{job}/{name}"))?))
            }
        };
        let buffered = BufWriter::with_capacity(1 << 16, target);
        let encoder = match compression {
            Compression::None => Encoder::Plain(buffered),
            Compression::Gzip => Encoder::Gzip(Box::new(GzEncoder::new(buffered, Level::fast()))),
        };
        Ok(FileWriter {
            encoder,
            name: name.to_string(),
            lines: 0,
        })
    }

    /// The file `name` of job `job`, when it exists.
    pub fn open(&self, job: &str, name: &str) -> io::Result<Option<Stored>> {
        if check_component(job).is_err() || check_component(name).is_err() {
            return Ok(None);
        }
        let gzip = name.ends_with(".gz");
        match &self.place {
            Place::Local(root) => match File::open(root.join(job).join(name)) {
                Ok(file) => Ok(Some(Stored {
                    bytes: file.metadata()?.len(),
                    reader: Box::new(file),
                    gzip,
                })),
                Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(error),
            },
            Place::Objects(store) => {
                Ok(store
                    .open_object(&format!("{job}/{name}"))?
                    .map(|object| Stored {
                        bytes: object.size(),
                        reader: Box::new(object),
                        gzip,
                    }))
            }
        }
    }

    /// Checks that the files of job `job` can be reached, before the job writes any: in object
    /// storage, a listing of the job's folder, so that a missing bucket or refused credentials
    /// fail the job at once, saying what the store answered.
    pub fn check(&self, job: &str) -> io::Result<()> {
        check_component(job)?;
        match &self.place {
            Place::Local(_) => Ok(()),
            Place::Objects(store) => store.list(job).map(|_| ()).map_err(io::Error::from),
        }
    }

    /// Removes every file of job `job` (nothing when it has none).
    pub fn remove(&self, job: &str) -> io::Result<()> {
        check_component(job)?;
        match &self.place {
            Place::Local(root) => match std::fs::remove_dir_all(root.join(job)) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
            Place::Objects(store) => {
                store.delete_prefix(job)?;
                Ok(())
            }
        }
    }
}

/// A name that is one ordinary path component: not empty, no separator, not `.` or `..`.
fn check_component(name: &str) -> io::Result<()> {
    let ordinary = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 200;
    if ordinary {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{name}' is not a file name of a job"),
        ))
    }
}

/// Where a file's bytes go.
enum Target {
    /// `part`, renamed to `path` once finished.
    File {
        file: File,
        part: PathBuf,
        path: PathBuf,
    },
    /// Boxed: an upload's state is large beside a file's.
    Object(Box<ObjectWriter>),
}

impl Write for Target {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Target::File { file, .. } => file.write(bytes),
            Target::Object(object) => object.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::File { file, .. } => file.flush(),
            Target::Object(object) => object.flush(),
        }
    }
}

impl Target {
    /// Makes the file appear, durable, under its name; returns its size in bytes.
    fn finish(self) -> io::Result<u64> {
        match self {
            Target::File { file, part, path } => {
                file.sync_all()?;
                let bytes = file.metadata()?.len();
                drop(file);
                std::fs::rename(&part, &path)?;
                if let Some(folder) = path.parent() {
                    File::open(folder)?.sync_all()?;
                }
                Ok(bytes)
            }
            Target::Object(object) => Ok(object.finish()?),
        }
    }
}

/// Boxed gzip: its state is large beside a plain file's (larger still with zlib-rs, which
/// Parquet turns on in flate2).
enum Encoder {
    Plain(BufWriter<Target>),
    Gzip(Box<GzEncoder<BufWriter<Target>>>),
}

/// A file being written, line by line.
pub struct FileWriter {
    encoder: Encoder,
    name: String,
    lines: u64,
}

impl FileWriter {
    /// Appends one line: `bytes` (which hold no newline) and `\n`.
    pub fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        let out = self.out();
        out.write_all(bytes)?;
        out.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    fn out(&mut self) -> &mut dyn Write {
        match &mut self.encoder {
            Encoder::Plain(file) => file,
            Encoder::Gzip(gzip) => gzip,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many lines it has.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Completes the file: flushed and made to appear, durable, under its name. Returns its
    /// size in bytes.
    pub fn finish(self) -> io::Result<u64> {
        let buffered = match self.encoder {
            Encoder::Plain(file) => file,
            Encoder::Gzip(gzip) => gzip.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())?.finish()
    }
}

/// Bytes as they come (no lines counted): a file of another format than NDJSON.
impl Write for FileWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.out().write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(stored: Stored) -> String {
        let mut text = String::new();
        if stored.gzip {
            flate2::read::GzDecoder::new(stored.reader)
                .read_to_string(&mut text)
                .unwrap();
        } else {
            let mut reader = stored.reader;
            reader.read_to_string(&mut text).unwrap();
        }
        text
    }

    /// Both places: the data directory, and object storage (a `file://` store here; S3 in
    /// tests/object_storage.rs).
    fn sinks(dir: &Path, compression: Compression) -> [Sink; 2] {
        let url = format!("file://{}/objects", dir.display());
        std::fs::create_dir_all(dir.join("objects")).unwrap();
        [
            Sink::local(dir, compression),
            Sink::objects(Store::open(&url).unwrap(), compression),
        ]
    }

    #[test]
    fn a_file_appears_whole_and_goes_with_its_job() {
        for compression in [Compression::None, Compression::Gzip] {
            let dir = tempfile::tempdir().unwrap();
            for sink in sinks(dir.path(), compression) {
                let name = sink.ndjson_name("Patient-1");
                let mut writer = sink.create("job", &name).unwrap();
                writer.line(b"{\"a\":1}").unwrap();
                writer.line(b"{\"b\":2}").unwrap();
                assert!(
                    sink.open("job", &name).unwrap().is_none(),
                    "not before it is finished"
                );
                assert_eq!(writer.lines(), 2);
                let bytes = writer.finish().unwrap();
                let stored = sink.open("job", &name).unwrap().unwrap();
                assert_eq!(stored.bytes, bytes);
                assert_eq!(read_all(stored), "{\"a\":1}\n{\"b\":2}\n");
                // Written again: replaced.
                let mut again = sink.create("job", &name).unwrap();
                again.line(b"{}").unwrap();
                again.finish().unwrap();
                assert_eq!(read_all(sink.open("job", &name).unwrap().unwrap()), "{}\n");
                sink.remove("job").unwrap();
                assert!(sink.open("job", &name).unwrap().is_none());
                sink.remove("job").unwrap();
            }
        }
    }

    #[test]
    fn names_that_are_not_one_component_reach_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        for sink in sinks(dir.path(), Compression::None) {
            for (job, name) in [
                ("..", "secret"),
                ("job", "../../secret"),
                ("job", ".."),
                ("", "x"),
                ("a/b", "x"),
                ("job", "x\0y"),
            ] {
                assert!(sink.open(job, name).unwrap().is_none(), "{job} {name}");
                assert!(sink.create(job, name).is_err(), "{job} {name}");
            }
            assert!(sink.remove("..").is_err());
            assert!(dir.path().join("secret").exists());
        }
    }
}
