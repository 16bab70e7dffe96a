//! fhirlake's object storage: S3 (and S3-compatible servers), Google Cloud Storage and Azure
//! Blob Storage through the `object_store` crate, behind a small blocking API for plain OS
//! threads (fhirlake's jobs run on threads of their own, not on the async runtime).
//!
//! A [`Store`] is a bucket and a prefix in it, named by a URL ([`Location`]: `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`); every key the API takes or gives is relative
//! to that prefix. Credentials, region and endpoint come from the environment, as the clouds'
//! own tools read them (`object_store`'s `from_env` builders): `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` (or
//! `AWS_ENDPOINT`) and `AWS_ALLOW_HTTP=true` for a local S3-compatible server;
//! `GOOGLE_SERVICE_ACCOUNT`, ...; `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, ....
//!
//! Invariants:
//! - **Whole objects.** An object written with [`Store::create`] appears under its key only
//!   once [`ObjectWriter::finish`] returns, whole (one PUT for a small object, a multipart
//!   upload completed at the end for a large one); writing a key again replaces it at once. A
//!   writer dropped unfinished leaves nothing under the key (its multipart upload is aborted).
//! - **Bounded memory.** A writer holds at most [`PART_SIZE`] times
//!   ([`UPLOADS_IN_FLIGHT`] + 1) bytes, whatever the object's size; a reader holds one chunk of
//!   the response at a time.
//! - **Keys stay under the prefix.** A key is one or more `/`-separated segments, none empty,
//!   `.` or `..`; anything else is refused ([`Error::Key`]), so no key reaches outside the
//!   store's prefix.
//! - **Blocking.** Every call blocks its thread until the store answered, on a small runtime
//!   of the crate's own ([`runtime`]). Never call it from inside an async task (tokio refuses
//!   to block there): use `spawn_blocking`.

mod location;

pub use location::{Location, Scheme};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The size of each part of a multipart upload (S3 wants at least 5 MiB for every part but the
/// last). An object smaller than this is written with one PUT.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// How many parts of one object are uploaded at once.
pub const UPLOADS_IN_FLIGHT: usize = 2;

/// The longest a signed URL may be valid (SigV4's limit, seven days).
pub const MAX_SIGNED_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store's URL is not one this build can use.
    #[error("'{url}' is not an object store URL fhirlake can use: {why}")]
    Url { url: String, why: String },
    /// A key is not a path under the store's prefix.
    #[error("'{0}' is not an object key (segments separated by '/', none empty, '.' or '..')")]
    Key(String),
    /// The store could not be set up from its URL and the environment.
    #[error("the object store {url} cannot be used: {source}")]
    Setup {
        url: String,
        source: Box<object_store::Error>,
    },
    /// The store answered an operation with an error (or could not be reached).
    #[error("{operation} {key} in the object store {url} failed: {source}")]
    Store {
        operation: &'static str,
        url: String,
        key: String,
        source: Box<object_store::Error>,
    },
}

impl Error {
    /// Whether the object asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Store { source, .. } if matches!(**source, object_store::Error::NotFound { .. })
        )
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        let kind = match &error {
            Error::Url { .. } | Error::Key(_) => io::ErrorKind::InvalidInput,
            _ if error.is_not_found() => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The runtime the crate's calls run on: two worker threads, started at the first use,
/// shared by every [`Store`] (the HTTP connections of the stores live on it).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fhirlake-objstore")
            .enable_all()
            .build()
            .expect("the object store's runtime starts")
    })
}

fn block_on<F: Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// A bucket (container) and a prefix in it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    location: Location,
    prefix: Path,
}

/// An object under a store's prefix, as a listing finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its key, relative to the store's prefix.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Store {
    /// The store `url` names, with credentials and endpoint from the environment. Nothing is
    /// sent to the store yet: a wrong bucket or bad credentials show at the first operation.
    pub fn open(url: &str) -> Result<Store> {
        let location = Location::parse(url)?;
        let setup = |source| Error::Setup {
            url: location.to_string(),
            source: Box::new(source),
        };
        let bucket_url = location.bucket_url();
        let (inner, signer): (Arc<dyn ObjectStore>, Option<Arc<dyn Signer>>) = match location.scheme
        {
            Scheme::S3 => {
                let s3 = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(bucket_url)
                    .build()
                    .map_err(setup)?;
                let s3 = Arc::new(s3);
                (s3.clone(), Some(s3))
            }
            Scheme::Gcs => {
                let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(bucket_url)
                    .build()
                    .map_err(setup)?;
                let gcs = Arc::new(gcs);
                (gcs.clone(), Some(gcs))
            }
            Scheme::Azure => {
                let azure = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(bucket_url)
                    .build()
                    .map_err(setup)?;
                let azure = Arc::new(azure);
                (azure.clone(), Some(azure))
            }
            Scheme::File => {
                let local = object_store::local::LocalFileSystem::new();
                (Arc::new(local), None)
            }
        };
        let prefix = Path::parse(&location.prefix).map_err(|e| Error::Url {
            url: url.to_string(),
            why: e.to_string(),
        })?;
        Ok(Store {
            inner,
            signer,
            location,
            prefix,
        })
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The full path of `key` under the prefix (the key checked).
    fn path(&self, key: &str) -> Result<Path> {
        check_key(key)?;
        Ok(key
            .split('/')
            .fold(self.prefix.clone(), |path, segment| path.join(segment)))
    }

    /// `key` relative to the prefix, of an object a listing found.
    fn key_of(&self, path: &Path) -> String {
        match path.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|part| part.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    fn failed(
        &self,
        operation: &'static str,
        key: &str,
    ) -> impl FnOnce(object_store::Error) -> Error {
        let (url, key) = (self.location.to_string(), key.to_string());
        move |source| Error::Store {
            operation,
            url,
            key,
            source: Box::new(source),
        }
    }

    /// Starts writing the object `key`: it appears once the writer is
    /// [finished](ObjectWriter::finish).
    pub fn create(&self, key: &str) -> Result<ObjectWriter> {
        Ok(ObjectWriter {
            path: self.path(key)?,
            store: self.clone(),
            key: key.to_string(),
            buffer: Vec::new(),
            upload: None,
            bytes: 0,
        })
    }

    /// Writes the object `key` whole from `bytes`.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let mut writer = self.create(key)?;
        writer
            .write_all(bytes)
            .map_err(|e| self.io_failed("PUT", key, e))?;
        writer.finish().map(|_| ())
    }

    fn io_failed(&self, operation: &'static str, key: &str, error: io::Error) -> Error {
        match error.downcast::<Error>() {
            Ok(error) => error,
            Err(error) => self.failed(operation, key)(object_store::Error::Generic {
                store: "fhirlake",
                source: Box::new(error),
            }),
        }
    }

    /// The object `key` as a stream of its bytes; `None` when there is none.
    pub fn open_object(&self, key: &str) -> Result<Option<ObjectReader>> {
        let path = self.path(key)?;
        match block_on(self.inner.get(&path)) {
            Ok(found) => Ok(Some(ObjectReader {
                size: found.meta.size,
                stream: found.into_stream(),
                chunk: Bytes::new(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.failed("GET", key)(error)),
        }
    }

    /// The objects whose keys start with the segments of `prefix` (`""`: all of the store's),
    /// recursively, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Object>> {
        let path = match prefix.trim_end_matches('/') {
            "" => self.prefix.clone(),
            prefix => self.path(prefix)?,
        };
        let mut stream = self.inner.list(Some(&path));
        let mut objects = Vec::new();
        block_on(async {
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(self.failed("LIST", prefix))?;
                objects.push(Object {
                    key: self.key_of(&meta.location),
                    size: meta.size,
                });
            }
            Ok::<_, Error>(())
        })?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Deletes the object `key` (nothing when there is none).
    pub fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match block_on(self.inner.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.failed("DELETE", key)(error)),
        }
    }

    /// Deletes every object under `prefix` (a non-empty key prefix, segment by segment):
    /// how many there were.
    pub fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        let objects = self.list(prefix)?;
        let paths: Vec<Path> = objects
            .iter()
            .map(|object| self.path(&object.key))
            .collect::<Result<_>>()?;
        let count = paths.len();
        let locations =
            futures_util::stream::iter(paths.into_iter().map(Ok::<_, object_store::Error>)).boxed();
        block_on(async {
            let mut deleted = self.inner.delete_stream(locations);
            while let Some(result) = deleted.next().await {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(self.failed("DELETE", prefix)(error)),
                }
            }
            Ok(())
        })?;
        Ok(count)
    }

    /// A URL that GETs the object `key` without credentials for `lifetime` (at most
    /// [`MAX_SIGNED_URL_LIFETIME`]): a presigned (SigV4, V4 signed or SAS) URL. A client must
    /// send no `Authorization` header with it (S3 refuses two authentications). `None` for a
    /// `file://` store, which has no URLs.
    pub fn signed_url(&self, key: &str, lifetime: Duration) -> Result<Option<String>> {
        let path = self.path(key)?;
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let lifetime = lifetime.min(MAX_SIGNED_URL_LIFETIME);
        let url = block_on(signer.signed_url(http::Method::GET, &path, lifetime))
            .map_err(self.failed("signing a GET of", key))?;
        Ok(Some(url.to_string()))
    }
}

/// A key: `/`-separated segments, none empty, `.`, `..`, or holding a control character or a
/// backslash, at most 1024 bytes (S3's limit).
fn check_key(key: &str) -> Result<()> {
    let fine = !key.is_empty()
        && key.len() <= 1024
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && !segment.chars().any(|c| c.is_control() || c == '\\')
        });
    if fine {
        Ok(())
    } else {
        Err(Error::Key(key.chars().take(100).collect()))
    }
}

/// An object being written. Implements [`Write`]; [`finish`](Self::finish) makes it appear.
pub struct ObjectWriter {
    store: Store,
    key: String,
    path: Path,
    /// Bytes not yet handed to an upload: less than [`PART_SIZE`].
    buffer: Vec<u8>,
    /// The multipart upload, once the object is larger than one part.
    upload: Option<WriteMultipart>,
    bytes: u64,
}

impl ObjectWriter {
    /// Hands the buffer to the multipart upload (started now if it was not), waiting while
    /// [`UPLOADS_IN_FLIGHT`] parts are on their way.
    fn send_part(&mut self) -> Result<()> {
        let store = &self.store;
        let mut upload = match self.upload.take() {
            Some(upload) => upload,
            None => {
                let started = block_on(store.inner.put_multipart(&self.path))
                    .map_err(store.failed("starting the upload of", &self.key))?;
                WriteMultipart::new_with_chunk_size(started, PART_SIZE)
            }
        };
        let part = Bytes::from(std::mem::take(&mut self.buffer));
        {
            // The upload spawns its part on the crate's runtime.
            let _entered = runtime().enter();
            upload.put(part);
        }
        let waited = block_on(upload.wait_for_capacity(UPLOADS_IN_FLIGHT));
        // Kept even after a failure: dropped unfinished, it is aborted.
        self.upload = Some(upload);
        waited.map_err(store.failed("uploading a part of", &self.key))
    }

    /// How many bytes were written.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Completes the object: it is under its key, whole, when this returns. Returns its size.
    pub fn finish(mut self) -> Result<u64> {
        let store = self.store.clone();
        match self.upload.take() {
            None => {
                let payload = PutPayload::from(std::mem::take(&mut self.buffer));
                block_on(store.inner.put(&self.path, payload))
                    .map_err(store.failed("PUT", &self.key))?;
            }
            Some(mut upload) => {
                let rest = Bytes::from(std::mem::take(&mut self.buffer));
                if !rest.is_empty() {
                    let _entered = runtime().enter();
                    upload.put(rest);
                }
                block_on(upload.finish())
                    .map_err(store.failed("completing the upload of", &self.key))?;
            }
        }
        Ok(self.bytes)
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = PART_SIZE - self.buffer.len();
        let taken = bytes.len().min(room);
        self.buffer.extend_from_slice(&bytes[..taken]);
        self.bytes += taken as u64;
        if self.buffer.len() == PART_SIZE {
            self.send_part()?;
        }
        Ok(taken)
    }

    /// Nothing: parts go as they fill, the rest with [`ObjectWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter {
    /// Unfinished: the multipart upload is aborted (its parts removed), in the background.
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            runtime().spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// An object being read, chunk by chunk as the store sends it. Implements [`Read`].
pub struct ObjectReader {
    size: u64,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
}

impl ObjectReader {
    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(error)) => return Err(io::Error::other(error)),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// An NDJSON input found under an object storage URL (for bulk import).
#[derive(Clone, Debug)]
pub struct Input {
    store: Store,
    path: Path,
    /// Its URL (`s3://bucket/prefix/key`), to name it in reports.
    pub url: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is gzip-compressed (its name ends `.gz`): the reader gives its bytes as
    /// stored, the caller decompresses.
    pub gzip: bool,
}

impl Input {
    /// Opens it as a stream of its bytes.
    pub fn open(&self) -> Result<ObjectReader> {
        match block_on(self.store.inner.get(&self.path)) {
            Ok(found) => Ok(ObjectReader {
                size: found.meta.size,
                stream: found.into_stream(),
                chunk: Bytes::new(),
            }),
            Err(error) => Err(self.store.failed("GET", self.path.as_ref())(error)),
        }
    }
}

/// Whether `name` is the name of an NDJSON file (`.ndjson`, or `.ndjson.gz` gzip-compressed).
pub fn is_ndjson(name: &str) -> bool {
    name.ends_with(".ndjson") || name.ends_with(".ndjson.gz")
}

/// The NDJSON inputs `url` names, for bulk import: every object under its prefix whose name
/// [is NDJSON](is_ndjson) (other objects are not inputs), in key order; or, when the URL
/// names one such object, that one. None is not an error: the caller says what it expects.
pub fn ndjson_inputs(url: &str) -> Result<Vec<Input>> {
    let store = Store::open(url)?;
    let input = |path: Path, size: u64| Input {
        url: store.location.url_of_path(&path),
        gzip: path.as_ref().ends_with(".gz"),
        store: store.clone(),
        path,
        size,
    };
    let mut inputs = Vec::new();
    for object in store.list("")? {
        if is_ndjson(&object.key) {
            inputs.push(input(store.path(&object.key)?, object.size));
        }
    }
    if inputs.is_empty() && is_ndjson(&store.location.prefix) {
        // The URL may name one object.
        match block_on(store.inner.head(&store.prefix)) {
            Ok(meta) => inputs.push(input(meta.location, meta.size)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(store.failed("HEAD", "")(error)),
        }
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests;
