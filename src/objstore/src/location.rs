//! Store URLs: `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` and
//! `file:///folder`.

use crate::Error;
use object_store::path::Path;
use std::fmt;

/// Which kind of store a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `s3://`: Amazon S3 or an S3-compatible server (`AWS_ENDPOINT_URL`).
    S3,
    /// `gs://`: Google Cloud Storage.
    Gcs,
    /// `az://`: Azure Blob Storage (the account from `AZURE_STORAGE_ACCOUNT_NAME`).
    Azure,
    /// `file://`: a folder of the local file system (tests, single machines).
    File,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gcs => "gs",
            Scheme::Azure => "az",
            Scheme::File => "file",
        }
    }
}

/// A parsed store URL: a bucket (container; empty for `file://`) and a prefix in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub scheme: Scheme,
    pub bucket: String,
    /// Segments separated by `/`, without a leading or trailing one (`""`: the whole bucket).
    /// For `file://`, the folder's absolute path without its leading `/`.
    pub prefix: String,
}

impl Location {
    /// Parses `url`. Refused: another scheme, credentials, a port, a query or a fragment in
    /// the URL (credentials come from the environment), a bucket name with characters no
    /// store allows, and a prefix with empty, `.` or `..` segments.
    pub fn parse(url: &str) -> Result<Location, Error> {
        let refuse = |why: &str| Error::Url {
            url: url.chars().take(200).collect(),
            why: why.to_string(),
        };
        let parsed = url::Url::parse(url).map_err(|e| refuse(&e.to_string()))?;
        let scheme = match parsed.scheme() {
            "s3" => Scheme::S3,
            "gs" => Scheme::Gcs,
            "az" => Scheme::Azure,
            "file" => Scheme::File,
            _ => return Err(refuse("the scheme must be s3://, gs://, az:// or file://")),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refuse(
                "credentials do not go in the URL: they come from the environment",
            ));
        }
        if parsed.port().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(refuse(
                "a store URL has no port, query or fragment (an endpoint comes from the \
                 environment, AWS_ENDPOINT_URL)",
            ));
        }
        let bucket = parsed.host_str().unwrap_or("").to_string();
        match scheme {
            Scheme::File if !bucket.is_empty() => {
                return Err(refuse("a file:// URL names a local folder: file:///path"));
            }
            Scheme::File => {}
            _ if bucket.is_empty() => return Err(refuse("the URL names no bucket")),
            _ => {
                let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
                if bucket.len() > 222 || !bucket.chars().all(allowed) {
                    return Err(refuse(
                        "a bucket name has letters, digits, '.', '-' and '_' only",
                    ));
                }
            }
        }
        let path = percent_encoding::percent_decode_str(parsed.path())
            .decode_utf8()
            .map_err(|_| refuse("the path is not UTF-8"))?;
        let prefix = path.trim_start_matches('/').trim_end_matches('/');
        if !prefix.is_empty() {
            crate::check_key(prefix).map_err(|_| {
                refuse("the path has an empty, '.' or '..' segment, or a control character")
            })?;
        } else if scheme == Scheme::File {
            return Err(refuse("a file:// URL names a folder, not the root"));
        }
        Ok(Location {
            scheme,
            bucket,
            prefix: prefix.to_string(),
        })
    }

    /// The URL of the bucket alone (`s3://bucket`), as `object_store`'s builders take it.
    pub fn bucket_url(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.bucket)
    }

    /// The URL of the object at `path` (a full path in the bucket).
    pub fn url_of_path(&self, path: &Path) -> String {
        format!("{}/{}", self.bucket_url(), path.as_ref())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bucket_url())?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}
