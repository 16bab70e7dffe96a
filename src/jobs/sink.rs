//! Where jobs put their files: the output sink. Local files in the data directory
//! (`DATA/jobs/{job id}/{name}`) are the one kind today; object storage is another variant of
//! [`Sink`] with the same operations.
//!
//! Invariants: a file appears under its name only once it is complete and durable (it is
//! written as `{name}.part`, fsynced, renamed, and the folder fsynced), so a file a job record
//! names is whole; writing a name again replaces it (a job resumed after a crash rewrites the
//! file it was in). Names are single path components the jobs layer makes; a name from a
//! client is never used to reach a file ([`Sink::open`] refuses anything else).

use flate2::Compression as Level;
use flate2::write::GzEncoder;
use std::fs::File;
use std::io::{self, BufWriter, Write};
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

/// Where jobs' files go.
#[derive(Debug, Clone)]
pub enum Sink {
    Local(LocalFiles),
}

/// Files under a folder of the data directory, one folder per job.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    root: PathBuf,
    compression: Compression,
}

impl LocalFiles {
    pub fn new(data: &Path, compression: Compression) -> LocalFiles {
        LocalFiles {
            root: data.join(JOBS_DIR),
            compression,
        }
    }
}

/// A stored file opened for reading.
pub struct Stored {
    pub file: File,
    /// Whether its bytes are gzip-compressed.
    pub gzip: bool,
}

impl Sink {
    /// The name of the file `stem` (`Patient-1`) of NDJSON, as this sink stores it.
    pub fn ndjson_name(&self, stem: &str) -> String {
        match self {
            Sink::Local(local) => match local.compression {
                Compression::None => format!("{stem}.ndjson"),
                Compression::Gzip => format!("{stem}.ndjson.gz"),
            },
        }
    }

    /// Starts writing the file `name` of job `job`; it appears once [`FileWriter::finish`]ed.
    pub fn create(&self, job: &str, name: &str) -> io::Result<FileWriter> {
        let Sink::Local(local) = self;
        check_component(job)?;
        check_component(name)?;
        let folder = local.root.join(job);
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(name);
        let part = folder.join(format!("{name}.part"));
        let file = BufWriter::with_capacity(1 << 16, File::create(&part)?);
        let encoder = match local.compression {
            Compression::None => Encoder::Plain(file),
            Compression::Gzip => Encoder::Gzip(GzEncoder::new(file, Level::fast())),
        };
        Ok(FileWriter {
            encoder,
            name: name.to_string(),
            part,
            path,
            lines: 0,
        })
    }

    /// The file `name` of job `job`, when it exists.
    pub fn open(&self, job: &str, name: &str) -> io::Result<Option<Stored>> {
        let Sink::Local(local) = self;
        if check_component(job).is_err() || check_component(name).is_err() {
            return Ok(None);
        }
        match File::open(local.root.join(job).join(name)) {
            Ok(file) => Ok(Some(Stored {
                file,
                gzip: name.ends_with(".gz"),
            })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Removes every file of job `job` (nothing when it has none).
    pub fn remove(&self, job: &str) -> io::Result<()> {
        let Sink::Local(local) = self;
        check_component(job)?;
        match std::fs::remove_dir_all(local.root.join(job)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
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

enum Encoder {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

/// A file being written, line by line.
pub struct FileWriter {
    encoder: Encoder,
    name: String,
    part: PathBuf,
    path: PathBuf,
    lines: u64,
}

impl FileWriter {
    /// Appends one line: `bytes` (which hold no newline) and `\n`.
    pub fn line(&mut self, bytes: &[u8]) -> io::Result<()> {
        let out: &mut dyn Write = match &mut self.encoder {
            Encoder::Plain(file) => file,
            Encoder::Gzip(gzip) => gzip,
        };
        out.write_all(bytes)?;
        out.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many lines it has.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Completes the file: flushed, fsynced, renamed to its name, the folder fsynced. Returns
    /// its size in bytes.
    pub fn finish(self) -> io::Result<u64> {
        let buffered = match self.encoder {
            Encoder::Plain(file) => file,
            Encoder::Gzip(gzip) => gzip.finish()?,
        };
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let bytes = file.metadata()?.len();
        drop(file);
        std::fs::rename(&self.part, &self.path)?;
        if let Some(folder) = self.path.parent() {
            File::open(folder)?.sync_all()?;
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_all(stored: Stored) -> String {
        let mut text = String::new();
        if stored.gzip {
            flate2::read::GzDecoder::new(stored.file)
                .read_to_string(&mut text)
                .unwrap();
        } else {
            let mut file = stored.file;
            file.read_to_string(&mut text).unwrap();
        }
        text
    }

    #[test]
    fn a_file_appears_whole_and_goes_with_its_job() {
        for compression in [Compression::None, Compression::Gzip] {
            let dir = tempfile::tempdir().unwrap();
            let sink = Sink::Local(LocalFiles::new(dir.path(), compression));
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
            assert_eq!(stored.file.metadata().unwrap().len(), bytes);
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

    #[test]
    fn names_that_are_not_one_component_reach_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "x").unwrap();
        let sink = Sink::Local(LocalFiles::new(dir.path(), Compression::None));
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
