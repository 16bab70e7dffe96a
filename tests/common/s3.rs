//! A real S3-compatible server for the tests: `s3s-fs` (crates.io, built into
//! `target/test-tools/bin` by tests/setup.sh), started on a free 127.0.0.1 port with a
//! temporary directory and credentials of its own, killed when dropped. s3s-fs keeps a bucket
//! as a folder of its directory and an object as a file at its key, so a test reads what the
//! store holds straight from the disk, independently of the S3 client under test.

use super::changes::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "fhirlake-test";
pub const SECRET_KEY: &str = "fhirlake-test-secret";

pub struct S3Server {
    child: Child,
    pub port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    /// Starts s3s-fs and waits until it listens.
    pub fn start() -> S3Server {
        let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-tools/bin/s3s-fs");
        let root = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} cannot be started ({e}): run tests/setup.sh, which builds it",
                    binary.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server { child, port, root }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name` (a folder of the server's directory).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.path().join(name)).expect("a bucket");
    }

    /// Puts `bytes` as the object `key` of `bucket`, straight into the server's directory.
    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = self.root.path().join(bucket).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).expect("the object's folder");
        std::fs::write(path, bytes).expect("an object");
    }

    /// The environment of a client of this server: its endpoint, over plain HTTP, with
    /// `secret` as the secret key (the right one is [`SECRET_KEY`]).
    pub fn env(&self, secret: &str) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_ENDPOINT_URL", &self.endpoint()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The objects under `prefix` of `bucket` (keys relative to it) with their bytes, read
    /// from the server's directory, in key order.
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let folder = self.root.path().join(bucket).join(prefix);
        let mut found = Vec::new();
        collect(&folder, &folder, &mut found);
        found.sort();
        found
    }
}

fn collect(base: &Path, folder: &Path, found: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries {
        let path: PathBuf = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect(base, &path, found);
        } else {
            let key = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            found.push((key, std::fs::read(&path).expect("an object")));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
