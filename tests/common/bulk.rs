//! What the bulk export tests share (tests/export.rs, tests/object_storage.rs): a template
//! data directory of Synthea data, servers on copies of it, kick-offs, polling, downloads, and
//! the plain read of the store that exports are compared with.

use super::fhir::{FhirClient, Reply, send};
use super::{TestServer, run_command, synthea};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The patient bundles of the template (six small ones).
pub const PATIENTS: &[&str] = &[
    "8a4c9c04", "6c8f3e83", "085e81c0", "8708d3e1", "d1193889", "9a174f9e",
];

/// How often the tests poll a job (the servers' `--job-poll-interval`).
pub const POLL: Duration = Duration::from_millis(100);

/// The longest a test waits for a job, or for a file to appear or go.
pub const GIVE_UP: Duration = Duration::from_secs(300);

/// A data directory with the Synthea providers and [`PATIENTS`], made once by
/// `fhirlake import`, and copied by each test.
pub fn template() -> &'static Path {
    static TEMPLATE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &TEMPLATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temp dir");
            let data = dir.path().join("data");
            let files: Vec<PathBuf> = ["0-hospitalInformation", "0-practitionerInformation"]
                .iter()
                .chain(PATIENTS)
                .map(|prefix| synthea::path(prefix))
                .collect();
            let mut args = vec!["import".to_string(), "--quiet".to_string()];
            args.extend(files.iter().map(|p| p.display().to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_command(&args, &data);
            (dir, data)
        })
        .1
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A server on a copy of the template, polled every [`POLL`], with `extra` arguments, the
/// test pause `pause` (`K:W`) and the environment variables of [`Server::env`].
pub struct Server {
    pub server: TestServer,
    pub data: PathBuf,
    /// Set in the server's environment at each (re)start (an object store's credentials).
    pub env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(extra: &[&str], pause: Option<&str>) -> Server {
        Server::start_with_env(extra, pause, Vec::new())
    }

    /// [`Server::start`] with `env` in the server's environment.
    pub fn start_with_env(
        extra: &[&str],
        pause: Option<&str>,
        env: Vec<(String, String)>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        copy_dir(template(), &data);
        let server = spawn(&data, extra, pause, &env);
        Server {
            server,
            data,
            env,
            _dir: dir,
        }
    }

    /// Starts the server again on the same data directory.
    pub fn restart(&mut self, extra: &[&str], pause: Option<&str>) {
        self.server = spawn(&self.data, extra, pause, &self.env);
    }

    pub fn client(&self) -> FhirClient {
        FhirClient::new(&self.server)
    }

    pub fn job_dir(&self, status_url: &str) -> PathBuf {
        self.data.join("jobs").join(job_id(status_url))
    }
}

pub fn spawn(
    data: &Path,
    extra: &[&str],
    pause: Option<&str>,
    env: &[(String, String)],
) -> TestServer {
    let mut args = vec!["--job-poll-interval", "100ms"];
    args.extend(extra);
    let mut command = TestServer::command(data, &args);
    if let Some(pause) = pause {
        command.env("FHIRLAKE_TEST_EXPORT_PAUSE", pause);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    TestServer::spawn(command, data)
}

pub fn job_id(status_url: &str) -> &str {
    status_url.rsplit('/').next().unwrap()
}

/// Kicks off `path` (`$export?...`) by GET; returns the status URL.
pub fn kick_off(client: &FhirClient, path: &str) -> String {
    let reply = client.get_with(path, &[("Prefer", "respond-async")]);
    accepted(&reply, path)
}

/// Kicks off `path` by POST with `parameters` (`(name, value[x] member)`); returns the status
/// URL.
pub fn kick_off_post(client: &FhirClient, path: &str, parameters: &[(&str, Value)]) -> String {
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|(name, value)| {
            let mut parameter = json!({ "name": name });
            parameter
                .as_object_mut()
                .unwrap()
                .extend(value.as_object().unwrap().clone());
            parameter
        })
        .collect();
    let body = json!({"resourceType": "Parameters", "parameter": parameters});
    let reply = client.post_with(path, &body, &[("Prefer", "respond-async")]);
    accepted(&reply, path)
}

pub fn accepted(reply: &Reply, what: &str) -> String {
    reply.expect(202, what);
    reply
        .header("content-location")
        .unwrap_or_else(|| panic!("{what}: no Content-Location"))
}

/// Polls `status_url` until the job ends: its manifest (asserting the in-progress answers).
pub fn finish(client: &FhirClient, status_url: &str) -> Value {
    let reply = wait_for_end(client, status_url);
    reply.expect(200, "a completed export");
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(reply.header("expires").is_some(), "no Expires");
    let manifest = reply.json();
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(manifest["transactionTime"].is_string(), "{manifest}");
    assert!(manifest["error"].is_array(), "{manifest}");
    manifest
}

/// Polls `status_url` until it is no longer 202; returns that answer.
pub fn wait_for_end(client: &FhirClient, status_url: &str) -> Reply {
    let started = Instant::now();
    loop {
        let reply = send(client.http.get(status_url));
        if reply.status != 202 {
            return reply;
        }
        let progress = reply.header("x-progress").expect("X-Progress");
        assert!(progress.len() < 100, "{progress}");
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1);
        assert!(started.elapsed() < GIVE_UP, "the export did not end");
        std::thread::sleep(POLL);
    }
}

/// What an export wrote: each file's lines by type, and the deleted resources (`Type/id`).
#[derive(Default)]
pub struct Exported {
    pub resources: BTreeMap<String, Value>,
    pub types: BTreeSet<String>,
    pub deleted: BTreeSet<String>,
    pub errors: Vec<Value>,
}

/// Downloads every file of `manifest`, checking its counts, types and media type.
pub fn download(client: &FhirClient, manifest: &Value) -> Exported {
    let mut exported = Exported::default();
    for output in manifest["output"].as_array().unwrap() {
        let resource_type = output["type"].as_str().unwrap();
        let lines = fetch(client, output["url"].as_str().unwrap());
        assert_eq!(
            Some(lines.len() as u64),
            output["count"].as_u64(),
            "{output}"
        );
        exported.types.insert(resource_type.to_string());
        for line in lines {
            assert_eq!(line["resourceType"], resource_type, "one type per file");
            let key = format!("{resource_type}/{}", line["id"].as_str().unwrap());
            assert!(
                exported.resources.insert(key.clone(), line).is_none(),
                "{key} twice"
            );
        }
    }
    for file in manifest["deleted"].as_array().into_iter().flatten() {
        assert_eq!(file["type"], "Bundle");
        for bundle in fetch(client, file["url"].as_str().unwrap()) {
            assert_eq!(bundle["type"], "transaction");
            for entry in bundle["entry"].as_array().unwrap() {
                assert_eq!(entry["request"]["method"], "DELETE");
                let key = entry["request"]["url"].as_str().unwrap().to_string();
                assert!(exported.deleted.insert(key.clone()), "{key} deleted twice");
            }
        }
    }
    for file in manifest["error"].as_array().unwrap() {
        exported
            .errors
            .extend(fetch(client, file["url"].as_str().unwrap()));
    }
    exported
}

/// The lines of one file, as JSON.
pub fn fetch(client: &FhirClient, url: &str) -> Vec<Value> {
    let reply = send(
        client
            .http
            .get(url)
            .header("Accept", "application/fhir+ndjson"),
    );
    reply.expect(200, url);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/fhir+ndjson")
    );
    reply
        .text
        .lines()
        .map(|line| serde_json::from_str(line).expect("an NDJSON line"))
        .collect()
}

/// Every resource as it was at `time` (a `transactionTime`): by a plain read of the whole
/// system history, each resource's last version at or before `time`, unless a deletion.
/// Both times are written alike (microseconds, `Z`), so they compare as text.
pub fn state_at(client: &FhirClient, time: &str) -> BTreeMap<String, Value> {
    let mut last: BTreeMap<String, (u64, Option<Value>)> = BTreeMap::new();
    for entry in client.system_history() {
        let modified = entry["response"]["lastModified"].as_str().unwrap();
        if modified > time {
            continue;
        }
        let full_url = entry["fullUrl"].as_str().unwrap();
        let mut parts = full_url.rsplit('/');
        let id = parts.next().unwrap();
        let key = format!("{}/{id}", parts.next().unwrap());
        let etag = entry["response"]["etag"].as_str().unwrap();
        let version: u64 = etag
            .trim_start_matches("W/\"")
            .trim_end_matches('"')
            .parse()
            .unwrap();
        let resource = entry.get("resource").cloned();
        if last.get(&key).is_none_or(|(kept, _)| *kept < version) {
            last.insert(key, (version, resource));
        }
    }
    last.into_iter()
        .filter_map(|(key, (_, resource))| resource.map(|r| (key, r)))
        .collect()
}

/// Asserts that `exported` holds exactly `expected`, resource for resource.
pub fn assert_same(exported: &Exported, expected: &BTreeMap<String, Value>, what: &str) {
    let got: BTreeSet<&String> = exported.resources.keys().collect();
    let want: BTreeSet<&String> = expected.keys().collect();
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} exported, {} expected; missing {missing:?}, extra {extra:?}",
        got.len(),
        want.len()
    );
    for (key, resource) in expected {
        assert_eq!(&exported.resources[key], resource, "{what}: {key}");
    }
}

/// The resource types of the Patient compartment (the official CompartmentDefinition, as
/// the repository holds it).
pub fn compartment_types() -> HashSet<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fhir-profiles/compartments.json"),
    )
    .unwrap();
    let definitions: Value = serde_json::from_str(&text).unwrap();
    let mut types: HashSet<String> = definitions["Patient"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, params)| !params.as_array().unwrap().is_empty())
        .map(|(t, _)| t.clone())
        .collect();
    types.insert("Patient".into());
    types
}

/// Whether `resource` is one of `patients` or refers to one of them anywhere.
pub fn of_patients(key: &str, resource: &Value, patients: &HashSet<String>) -> bool {
    if let Some(id) = key.strip_prefix("Patient/") {
        return patients.contains(id);
    }
    crate::common::fhir::references(resource)
        .iter()
        .any(|reference| {
            reference
                .strip_prefix("Patient/")
                .is_some_and(|id| patients.contains(id))
        })
}

/// The ids of the Patients, by family name.
pub fn patients_by_name(client: &FhirClient) -> Vec<String> {
    let mut patients: Vec<(String, String)> = client
        .whole_history("Patient/_history")
        .into_iter()
        .filter_map(|entry| entry.get("resource").cloned())
        .map(|p| {
            (
                p["name"][0]["family"].as_str().unwrap().to_string(),
                p["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    patients.sort();
    patients.dedup_by(|a, b| a.1 == b.1);
    patients.into_iter().map(|(_, id)| id).collect()
}

/// The current resources of `resource_type`.
pub fn current(client: &FhirClient, resource_type: &str) -> Vec<Value> {
    let mut seen = HashSet::new();
    client
        .whole_history(&format!("{resource_type}/_history"))
        .into_iter()
        .filter(|entry| seen.insert(entry["fullUrl"].as_str().unwrap().to_string()))
        .filter_map(|entry| entry.get("resource").cloned())
        .collect()
}

/// Waits (at most [`GIVE_UP`]) until `done`.
pub fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < GIVE_UP, "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
