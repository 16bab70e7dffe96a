//! The harness every integration test shares: a real `fhirlake serve` child process on a free
//! 127.0.0.1 port with its own temporary data directory, stopped when the test ends; [`fhir`],
//! the HTTP client and checks the tests drive it with; [`synthea`], the shared Synthea data;
//! [`search`], what the search tests share; [`auth`], what the authorization tests share;
//! [`bench`], what the benchmarks share; [`bulk`], what the bulk export tests share; [`s3`],
//! the S3 server of the object storage tests.
#![allow(dead_code)]

pub mod auth;
pub mod bench;
pub mod bulk;
pub mod changes;
pub mod fhir;
pub mod keys;
pub mod receiver;
pub mod s3;
pub mod search;
pub mod synthea;
pub mod xml;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server. Dropping it kills the process (SIGKILL) and removes its data directory
/// unless the directory was handed in by the test.
pub struct TestServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub data: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> TestServer {
        TestServer::start_with(&[])
    }

    /// Starts a server on a fresh temporary data directory with extra command-line arguments.
    pub fn start_with(extra: &[&str]) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let data = temp.path().join("data");
        let mut server = TestServer::start_on(&data, extra);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `data` (kept after the test) with extra command-line arguments.
    pub fn start_on(data: &Path, extra: &[&str]) -> TestServer {
        TestServer::spawn(TestServer::command(data, extra), data)
    }

    /// The command [`TestServer::start_on`] runs: `fhirlake serve` on a free port, logging
    /// warnings and worse to the test's stderr. Change it and [`TestServer::spawn`] it.
    ///
    /// Authorization is off (`FHIRLAKE_AUTH=none`, which logs one warning): the tests of
    /// everything but authorization drive the API without tokens. `tests/auth.rs` turns it on
    /// with `--auth ...` in `extra` (a flag wins over the environment).
    pub fn command(data: &Path, extra: &[&str]) -> Command {
        TestServer::command_of(Path::new(env!("CARGO_BIN_EXE_fhirlake")), data, extra)
    }

    /// [`TestServer::command`] of another `fhirlake` binary (a benchmark's baseline).
    pub fn command_of(binary: &Path, data: &Path, extra: &[&str]) -> Command {
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env("FHIRLAKE_AUTH", "none")
            .stderr(Stdio::inherit());
        command
    }

    /// Runs `command` (a [`TestServer::command`] on `data`) and waits until the server
    /// listens.
    pub fn spawn(mut command: Command, data: &Path) -> TestServer {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("start fhirlake");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let origin = loop {
            let line = lines
                .next()
                .expect("fhirlake exited before it listened")
                .expect("read stdout");
            if let Some(origin) = line.strip_prefix("listening on ") {
                break origin.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        TestServer {
            child: Some(child),
            base: format!("{origin}/fhir"),
            origin,
            data: data.to_path_buf(),
            _temp: None,
        }
    }

    /// The server's stderr, when its command piped it (once).
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    pub fn url(&self, path: &str) -> String {
        url(&self.base, path)
    }

    /// The server process's id, while it runs (for the benchmarks' memory figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is still running (it has not exited, by a crash or
    /// otherwise, since it started).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("poll fhirlake").is_none())
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().expect("wait for fhirlake")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking HTTP client with a timeout, for tests.
pub fn client() -> reqwest::blocking::Client {
    client_builder().build().expect("http client")
}

/// The settings of every test client: a timeout, and idle connections dropped well before
/// the server's keep-alive (5 s) closes them, so that no request goes out on a connection the
/// server is closing at that moment (a reset, at random).
pub fn client_builder() -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_idle_timeout(Duration::from_secs(2))
}

pub const FHIR_JSON: &str = "application/fhir+json";

/// `../shared`, beside the repository.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// `path` under `target/test-tools`, where `tests/setup.sh` installs the tests' Node and
/// Python tools (`node/node_modules`, `venv/bin/...`). Panics with the command that installs
/// them when it is missing.
pub fn test_tool(path: &str) -> PathBuf {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-tools")
        .join(path);
    assert!(
        tool.exists(),
        "{} is missing: run tests/setup.sh (it installs what the tests need)",
        tool.display()
    );
    tool
}

/// The URL of `path` under the FHIR base `base`; a bare query (`?_type=...`) is the base's own.
pub fn url(base: &str, path: &str) -> String {
    if path.starts_with('?') {
        return format!("{base}{path}");
    }
    format!("{base}/{}", path.trim_start_matches('/'))
}

/// Runs `fhirlake ARGS --data DATA` to its end (a command, not a server) and returns its
/// stdout, trimmed; panics with its stderr when it fails.
pub fn run_command(args: &[&str], data: &Path) -> String {
    run_command_of(Path::new(env!("CARGO_BIN_EXE_fhirlake")), args, data)
}

/// [`run_command`] of another `fhirlake` binary (a benchmark's baseline).
pub fn run_command_of(binary: &Path, args: &[&str], data: &Path) -> String {
    let output = Command::new(binary)
        .args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fhirlake");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
