//! Where bulk inputs come from: [`open`] takes an input's URL and gives a streaming reader of
//! its bytes, whatever the scheme, gunzipped when they begin with gzip's magic bytes (never
//! judged by the name). Every import reads through it; another source (object storage) is one
//! more arm of its `match`.
//!
//! - `file://` paths must lie under the import root (`--import-root`); without one, file
//!   inputs are refused. The path is resolved (`..`, symlinks) before it is judged, and the
//!   resolved path is the one opened: a path that leads outside the root, by `..` or a
//!   symlink, is a 400 that says nothing of what lies outside. Only regular files are read.
//! - `http(s)://` URLs are fetched under the rules of rest-hook Subscription endpoints
//!   (`cdc::endpoints`): public addresses only, unless `--subscription-endpoints` lists a
//!   prefix of the URL; no redirect is followed. The body streams through a bounded channel
//!   from a thread of its own, so the reader works on any thread, in or out of a runtime.
//!
//! - `s3://`, `gs://` and `az://` URLs name one object under the import store
//!   (`--import-store`, a bucket and prefix); without one, they are refused. A URL with a `..`
//!   segment is refused rather than resolved. The object is read through the
//!   `fhirlake-objstore` crate, with the credentials of the environment, streaming.
//!
//! Memory: a reader holds a buffer, never the file.

use crate::cdc::endpoints::{Clients, Prefix};
use crate::fhir::{FhirError, IssueCode};
use reqwest::Url;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// The longest an http(s) input may take to download, whole.
const HTTP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// How many chunks of an http(s) body may wait for the reader.
const CHUNKS: usize = 16;

/// What inputs may be read.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--import-root`, resolved: `file://` inputs must be under it (none: refused).
    pub root: Option<PathBuf>,
    /// `--subscription-endpoints`: http(s) prefixes allowed whatever their address.
    pub endpoints: Vec<Prefix>,
    /// `--import-store`, ending with `/`: object URLs must begin with it (none: refused).
    pub store: Option<String>,
}

impl Sources {
    /// The sources with the import root `root` (resolved now: it must exist).
    pub fn new(root: Option<&Path>, endpoints: Vec<Prefix>) -> io::Result<Sources> {
        let root = match root {
            Some(root) => Some(std::fs::canonicalize(root).map_err(|e| {
                io::Error::new(e.kind(), format!("the import root {}: {e}", root.display()))
            })?),
            None => None,
        };
        Ok(Sources {
            root,
            endpoints,
            store: None,
        })
    }

    /// These sources with the import store `store` (`s3://bucket/prefix`), checked now.
    pub fn with_store(mut self, store: Option<&str>) -> io::Result<Sources> {
        if let Some(store) = store {
            fhirlake_objstore::Location::parse(store).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("--import-store: {e}"))
            })?;
            self.store = Some(format!("{}/", store.trim_end_matches('/')));
        }
        Ok(self)
    }
}

/// A streaming reader of an input's (decompressed) bytes.
pub type Input = Box<dyn BufRead + Send>;

/// A header sent with every request for an http(s) input (`fileRequestHeader`).
pub type Header = (String, String);

/// Checks `url` as an input without reading it: its scheme, and for a file, that it is a
/// regular file under the root. A 400 says why not.
pub fn check(sources: &Sources, url: &str) -> Result<(), FhirError> {
    let parsed = parse(url)?;
    match parsed.scheme() {
        "file" => file_path(sources, &parsed).map(|_| ()),
        "http" | "https" => crate::cdc::endpoints::route(&sources.endpoints, &parsed)
            .map(|_| ())
            .map_err(|reason| refused(url, &reason)),
        "s3" | "gs" | "az" => in_store(sources, url),
        scheme => Err(unsupported(url, scheme)),
    }
}

/// Whether the object URL `url` lies under the import store.
fn in_store(sources: &Sources, url: &str) -> Result<(), FhirError> {
    let Some(store) = &sources.store else {
        return Err(refused(
            url,
            "object storage inputs are read only under an import store, and this server has \
             none (--import-store)",
        ));
    };
    if !url.starts_with(store.as_str()) || url.split('/').any(|segment| segment == "..") {
        return Err(refused(url, "it is not under the import store"));
    }
    Ok(())
}

/// Opens the one object `url` names (under the import store).
fn object(sources: &Sources, url: &str) -> Result<Box<dyn Read + Send>, FhirError> {
    in_store(sources, url)?;
    let failed = |e: fhirlake_objstore::Error| unreadable(url, &e.to_string());
    let inputs = fhirlake_objstore::ndjson_inputs(url).map_err(failed)?;
    match inputs.as_slice() {
        [input] if input.url == url => Ok(Box::new(input.open().map_err(failed)?)),
        [] => Err(unreadable(
            url,
            "there is no such NDJSON object (.ndjson, .ndjson.gz)",
        )),
        _ => Err(FhirError::bad_request(
            IssueCode::Invalid,
            format!(
                "the input {} is a prefix of several objects: give one input per object",
                shown(url)
            ),
        )),
    }
}

/// Opens the input at `url` for reading, gunzipped when it is gzip. The one place an input is
/// read from: a new scheme is a new arm here.
pub fn open(sources: &Sources, url: &str, headers: &[Header]) -> Result<Input, FhirError> {
    let parsed = parse(url)?;
    let raw: Box<dyn Read + Send> = match parsed.scheme() {
        "file" => {
            let path = file_path(sources, &parsed)?;
            return local(&path).map_err(|e| unreadable(url, &e.to_string()));
        }
        "http" | "https" => Box::new(http(sources, url, &parsed, headers)?),
        "s3" | "gs" | "az" => object(sources, url)?,
        scheme => return Err(unsupported(url, scheme)),
    };
    decompressed(raw).map_err(|e| unreadable(url, &e.to_string()))
}

/// Opens the local file `path` for reading, gunzipped when it is gzip: the `file://` inputs
/// (once judged), and the files of `fhirlake import`, an operator's command that reads any.
pub fn local(path: &Path) -> io::Result<Input> {
    decompressed(Box::new(std::fs::File::open(path)?))
}

fn parse(url: &str) -> Result<Url, FhirError> {
    Url::parse(url).map_err(|e| {
        FhirError::bad_request(
            IssueCode::Invalid,
            format!("the input {} is not a URL: {e}", shown(url)),
        )
    })
}

/// At most 300 characters of a client's URL, for a message.
fn shown(url: &str) -> String {
    url.chars().take(300).collect()
}

fn unsupported(url: &str, scheme: &str) -> FhirError {
    FhirError::bad_request(
        IssueCode::NotSupported,
        format!(
            "the input {}: fhirlake reads file:// inputs (under --import-root), s3://, gs:// and \
             az:// ones (under --import-store) and http(s):// ones, not {}:",
            shown(url),
            shown(scheme)
        ),
    )
}

fn refused(url: &str, reason: &str) -> FhirError {
    FhirError::bad_request(
        IssueCode::Forbidden,
        format!("the input {} is refused: {reason}", shown(url)),
    )
}

fn unreadable(url: &str, reason: &str) -> FhirError {
    FhirError::bad_request(
        IssueCode::NotFound,
        format!("the input {} cannot be read: {reason}", shown(url)),
    )
}

/// The resolved path of a `file://` input, when it is a regular file under the root.
fn file_path(sources: &Sources, url: &Url) -> Result<PathBuf, FhirError> {
    let text = url.as_str();
    let Some(root) = &sources.root else {
        return Err(refused(
            text,
            "file inputs are read only under an import root, and this server has none \
             (--import-root)",
        ));
    };
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return Err(refused(text, "a file URL names no other host"));
    }
    let outside = || refused(text, "it is not under the import root");
    let path = url.to_file_path().map_err(|_| outside())?;
    // The URL parser has removed `..` already; a path not under the root even before the
    // links are followed is refused without looking at the disk.
    if !path.starts_with(root) {
        return Err(outside());
    }
    let resolved = std::fs::canonicalize(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => unreadable(text, "there is no such file under the import root"),
        _ => unreadable(text, &e.to_string()),
    })?;
    if !resolved.starts_with(root) {
        return Err(outside());
    }
    let metadata = std::fs::metadata(&resolved).map_err(|e| unreadable(text, &e.to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable(text, "it is not a regular file"));
    }
    Ok(resolved)
}

/// `raw`, gunzipped when its first two bytes are gzip's magic `1f 8b` (several gzip members
/// in a row are read as one stream, as `cat a.gz b.gz` makes).
fn decompressed(mut raw: Box<dyn Read + Send>) -> io::Result<Input> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match raw.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    let whole = Cursor::new(head[..got].to_vec()).chain(raw);
    Ok(if head[..got] == [0x1f, 0x8b] {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(whole),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, whole))
    })
}

/// Starts the download of an http(s) input: its body, once it answered 2xx.
fn http(
    sources: &Sources,
    url: &str,
    parsed: &Url,
    headers: &[Header],
) -> Result<ChannelReader, FhirError> {
    let clients = Clients::new(sources.endpoints.clone(), HTTP_TIMEOUT)
        .map_err(|e| FhirError::internal(format!("no HTTP client: {e}")))?;
    let client = clients
        .client(parsed)
        .map_err(|reason| refused(url, &reason))?
        .clone();
    let mut request = client.get(parsed.clone());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let (chunks, receiver) = mpsc::sync_channel::<io::Result<Vec<u8>>>(CHUNKS);
    let (answered, answer) = mpsc::sync_channel::<Result<(), String>>(1);
    std::thread::Builder::new()
        .name("fhirlake-import-http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = answered.send(Err(error.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut response = match request.send().await {
                    Ok(response) if response.status().is_success() => response,
                    Ok(response) => {
                        let _ = answered.send(Err(format!("it answered {}", response.status())));
                        return;
                    }
                    Err(error) => {
                        let _ = answered.send(Err(error.to_string()));
                        return;
                    }
                };
                let _ = answered.send(Ok(()));
                loop {
                    let chunk = match response.chunk().await {
                        Ok(Some(chunk)) => Ok(chunk.to_vec()),
                        Ok(None) => return,
                        Err(error) => Err(io::Error::other(error)),
                    };
                    let failed = chunk.is_err();
                    // The reader is gone (the import stopped): stop downloading.
                    if chunks.send(chunk).is_err() || failed {
                        return;
                    }
                }
            });
        })
        .map_err(|e| FhirError::internal(format!("cannot start a download: {e}")))?;
    match answer.recv() {
        Ok(Ok(())) => Ok(ChannelReader {
            receiver,
            current: Vec::new(),
            at: 0,
        }),
        Ok(Err(reason)) => Err(unreadable(url, &reason)),
        Err(_) => Err(unreadable(url, "the download stopped")),
    }
}

/// The bytes of a download, chunk after chunk.
struct ChannelReader {
    receiver: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    /// How much of `current` was read.
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.receiver.recv() {
                Ok(chunk) => (self.current, self.at) = (chunk?, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len() - self.at);
        buffer[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(mut input: Input) -> String {
        let mut text = String::new();
        input.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn files_under_the_root_are_read_plain_or_gzipped_by_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("plain.ndjson"), "{\"a\":1}\n").unwrap();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(b"{\"b\":2}\n").unwrap();
        // Named as plain NDJSON: the bytes decide.
        std::fs::write(root.join("sub/zipped.ndjson"), gzip.finish().unwrap()).unwrap();
        std::fs::write(root.join("one"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let sources = Sources::new(Some(&root), Vec::new()).unwrap();
        let root = sources.root.clone().unwrap();
        let url = |path: &str| format!("file://{}/{path}", root.display());
        assert_eq!(
            read_all(open(&sources, &url("plain.ndjson"), &[]).unwrap()),
            "{\"a\":1}\n"
        );
        assert_eq!(
            read_all(open(&sources, &url("sub/zipped.ndjson"), &[]).unwrap()),
            "{\"b\":2}\n"
        );
        assert_eq!(read_all(open(&sources, &url("one"), &[]).unwrap()), "x");
        for refused in [
            url("../secret"),
            url("sub/../../secret"),
            url("link"),
            "file:///etc/passwd".to_string(),
            format!("file://elsewhere{}/plain.ndjson", root.display()),
        ] {
            let error = open(&sources, &refused, &[]).err().unwrap();
            assert_eq!(error.status, 400, "{refused}");
            assert!(!error.diagnostics.contains("passwd:"), "{error}");
            assert!(check(&sources, &refused).is_err(), "{refused}");
        }
        for unreadable in [url("missing"), url("sub")] {
            assert_eq!(open(&sources, &unreadable, &[]).err().unwrap().status, 400);
        }
        let none = Sources::default();
        assert!(open(&none, &url("plain.ndjson"), &[]).is_err(), "no root");
        for other in ["s3://bucket/x", "ftp://example.org/x", "not a url"] {
            assert_eq!(check(&sources, other).unwrap_err().status, 400, "{other}");
        }
    }

    #[test]
    fn http_inputs_follow_the_endpoint_rules() {
        let sources = Sources::default();
        for url in [
            "http://127.0.0.1:9/a.ndjson",
            "http://169.254.169.254/latest",
            "https://10.0.0.1/x",
        ] {
            let error = open(&sources, url, &[]).err().unwrap();
            assert_eq!(error.status, 400, "{url}");
            assert!(check(&sources, url).is_err(), "{url}");
        }
        assert!(check(&sources, "https://example.org/Patient.ndjson").is_ok());
    }

    #[test]
    fn object_inputs_must_lie_under_the_import_store() {
        let sources = Sources::default()
            .with_store(Some("s3://lake/imports/"))
            .unwrap();
        assert!(check(&sources, "s3://lake/imports/Patient.ndjson").is_ok());
        assert!(check(&sources, "s3://lake/imports/2026/Observation.ndjson.gz").is_ok());
        for refused in [
            "s3://lake/imports-other/Patient.ndjson",
            "s3://lake/imports/../secrets/Patient.ndjson",
            "s3://lake/Patient.ndjson",
            "gs://lake/imports/Patient.ndjson",
        ] {
            let error = check(&sources, refused).unwrap_err();
            assert_eq!(error.status, 400, "{refused}");
            assert!(open(&sources, refused, &[]).is_err(), "{refused}");
        }
        let none = Sources::default();
        assert!(check(&none, "s3://lake/imports/Patient.ndjson").is_err());
        assert!(Sources::default().with_store(Some("ftp://x/y")).is_err());
    }

    #[test]
    fn a_short_or_empty_input_is_read_whole() {
        for bytes in [&b""[..], b"\x1f", b"a"] {
            let input = decompressed(Box::new(Cursor::new(bytes.to_vec()))).unwrap();
            assert_eq!(read_all(input).as_bytes(), bytes);
        }
    }
}
