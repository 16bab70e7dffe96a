//! Crash safety: a 2xx answer is only sent after the write is durably committed.
//!
//! Writer threads stream creates, updates and deletes of real Synthea resources while the server
//! is killed with SIGKILL (or stopped with SIGTERM). Every write that got a 2xx answer must be
//! readable after a restart on the same data directory with exactly the content and version it
//! was acknowledged with, and the system history must list every version of every resource
//! exactly once, without holes.

mod common;

use common::fhir::{FhirClient, etag_version, instant};
use common::synthea;
use common::{FHIR_JSON, TestServer};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const WRITERS: usize = 4;
/// The server is stopped once this many writes of a round are acknowledged: mid-stream, with
/// writes in flight, however slow the machine (a count, not a time)...
const STOP_AFTER_ACKS: usize = 300;
/// ...or, should it never get there, after this long (the round then fails on too few acks).
const GIVE_UP: Duration = Duration::from_secs(120);

/// `(resource type, id)`
type Key = (String, String);

/// Every acknowledged version of every resource: the body the server answered with, `None` for a
/// delete.
type Acked = BTreeMap<Key, BTreeMap<u64, Option<Value>>>;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut run = Run::new();
    let mut server = run.start();
    for cycle in 1..=3 {
        let outcome = run.writers(&mut server, |s| s.kill());
        eprintln!("cycle {cycle}: {outcome}");
        server = run.start();
        verify(&server, &run.acked, &format!("after SIGKILL {cycle}"));
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_cleanly() {
    let mut run = Run::new();
    let mut server = run.start();
    let mut status = None;
    let outcome = run.writers(&mut server, |s| {
        let _watchdog = watchdog("fhirlake after SIGTERM");
        status = Some(s.terminate());
    });
    eprintln!("SIGTERM: {outcome}");
    let status = status.expect("terminated");
    assert!(
        status.success(),
        "fhirlake must exit with success on SIGTERM, got {status}"
    );

    let server = run.start();
    verify(&server, &run.acked, "after SIGTERM");
}

/// One data directory with the writers streaming into it and what they got acknowledged, kept
/// across server restarts.
struct Run {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pool: Vec<Value>,
    writers: Vec<Writer>,
    acked: Acked,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        Run {
            data: dir.path().join("data"),
            _dir: dir,
            pool: resource_pool(),
            writers: (0..WRITERS).map(Writer::new).collect(),
            acked: Acked::new(),
        }
    }

    /// A server on the run's data directory.
    fn start(&self) -> TestServer {
        TestServer::start_on(&self.data, &[])
    }

    /// [`run_writers`] with the run's writers.
    fn writers(
        &mut self,
        server: &mut TestServer,
        stop_server: impl FnOnce(&mut TestServer),
    ) -> String {
        run_writers(
            server,
            &self.pool,
            &mut self.writers,
            &mut self.acked,
            stop_server,
        )
    }
}

/// The resources writers create: one real Synthea patient record, ids removed.
fn resource_pool() -> Vec<Value> {
    let mut resources = synthea::resources("057aa36e");
    for resource in &mut resources {
        resource
            .as_object_mut()
            .expect("resource object")
            .remove("id");
    }
    resources
}

/// What a resource a writer created looks like to that writer.
struct Owned {
    key: Key,
    /// The last acknowledged body, without the server-assigned meta, ready to be PUT again.
    body: Value,
    /// Whether the last delete the writer sent may have been applied.
    deleted: bool,
}

/// One writer thread's state, kept across kill/restart cycles so later cycles also update and
/// delete resources created before a crash.
struct Writer {
    n: usize,
    rng: u64,
    creates: usize,
    owned: Vec<Owned>,
}

/// What one writer saw during one cycle.
#[derive(Default)]
struct Report {
    /// `(key, vid, body)`: every write that got a 2xx answer; `body` is `None` for deletes.
    acks: Vec<(Key, u64, Option<Value>)>,
    /// Requests without a complete answer (the server went away).
    unanswered: usize,
    /// Answers the server should never have given.
    unexpected: Vec<String>,
}

impl Writer {
    fn new(n: usize) -> Writer {
        Writer {
            n,
            rng: 0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            creates: 0,
            owned: Vec::new(),
        }
    }

    fn random(&mut self, below: usize) -> usize {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
    }

    /// Streams writes until `stop` is set.
    fn run(
        &mut self,
        base: &str,
        pool: &[Value],
        stop: &AtomicBool,
        acks_so_far: &AtomicUsize,
    ) -> Report {
        let fhir = FhirClient::at(base);
        let mut report = Report::default();
        while !stop.load(Ordering::SeqCst) {
            let roll = self.random(100);
            let before = report.acks.len();
            if self.owned.is_empty() || roll < 45 {
                self.create(&fhir, pool, &mut report);
            } else {
                let i = self.random(self.owned.len());
                if roll < 93 || self.owned[i].deleted {
                    self.update(&fhir, i, &mut report);
                } else {
                    self.delete(&fhir, i, &mut report);
                }
            }
            acks_so_far.fetch_add(report.acks.len() - before, Ordering::SeqCst);
        }
        report
    }

    fn create(&mut self, fhir: &FhirClient, pool: &[Value], report: &mut Report) {
        let resource = &pool[(self.n + WRITERS * self.creates) % pool.len()];
        self.creates += 1;
        let ty = resource["resourceType"].as_str().expect("resourceType");
        let request = fhir
            .http
            .post(fhir.url(ty))
            .header("Content-Type", FHIR_JSON)
            .json(resource);
        let Some((etag, body)) = exchange(request, &[201], &format!("POST {ty}"), report) else {
            return;
        };
        let Some((key, vid)) = identity(&body, &etag, "POST", report) else {
            return;
        };
        self.owned.push(Owned {
            key: key.clone(),
            body: without_meta(&body),
            deleted: false,
        });
        report.acks.push((key, vid, Some(body)));
    }

    fn update(&mut self, fhir: &FhirClient, i: usize, report: &mut Report) {
        let writes = self.creates + report.acks.len();
        let owned = &mut self.owned[i];
        let (ty, id) = owned.key.clone();
        let mut body = owned.body.clone();
        body["text"] = json!({
            "status": "generated",
            "div": format!(
                "<div xmlns=\"http://www.w3.org/1999/xhtml\">crash test writer {} write {writes}</div>",
                self.n
            ),
        });
        let request = fhir
            .http
            .put(fhir.url(&format!("{ty}/{id}")))
            .header("Content-Type", FHIR_JSON)
            .json(&body);
        let what = format!("PUT {ty}/{id}");
        let Some((etag, body)) = exchange(request, &[200, 201], &what, report) else {
            return;
        };
        let Some((key, vid)) = identity(&body, &etag, "PUT", report) else {
            return;
        };
        if key != owned.key {
            report
                .unexpected
                .push(format!("PUT {ty}/{id} answered with {key:?}"));
            return;
        }
        owned.body = without_meta(&body);
        owned.deleted = false;
        report.acks.push((key, vid, Some(body)));
    }

    fn delete(&mut self, fhir: &FhirClient, i: usize, report: &mut Report) {
        let owned = &mut self.owned[i];
        let (ty, id) = owned.key.clone();
        // Whether or not it gets an answer, the delete may have been applied.
        owned.deleted = true;
        let request = fhir.http.delete(fhir.url(&format!("{ty}/{id}")));
        let what = format!("DELETE {ty}/{id}");
        let Some((etag, _)) = exchange(request, &[204], &what, report) else {
            return;
        };
        match etag.as_deref().map(etag_version) {
            Some(Some(vid)) => report.acks.push((owned.key.clone(), vid, None)),
            // Deleting an already deleted resource creates no version (and may carry no ETag):
            // that can only happen when an earlier delete of it was applied without an answer.
            None => {}
            Some(None) => report.unexpected.push(format!("{what}: ETag {etag:?}")),
        }
    }
}

/// Sends a request (`what`) and reads the whole answer: `(ETag, body)` when its status is one of
/// `expected`; `None` when the answer did not arrive completely (the write is then not
/// acknowledged) or has another status (recorded as unexpected).
fn exchange(
    request: reqwest::blocking::RequestBuilder,
    expected: &[u16],
    what: &str,
    report: &mut Report,
) -> Option<(Option<String>, Value)> {
    let answer = request.send().and_then(|response| {
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("ETag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        response.bytes().map(|bytes| (status, etag, bytes))
    });
    match answer {
        Ok((status, etag, bytes)) => {
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            };
            if !expected.contains(&status) {
                report
                    .unexpected
                    .push(format!("{what}: {status} {}", show(&body)));
                return None;
            }
            Some((etag, body))
        }
        Err(_) => {
            report.unanswered += 1;
            // The server is going away: don't spin on refused connections.
            thread::sleep(Duration::from_millis(5));
            None
        }
    }
}

/// The key and version of a resource the server answered with, checked against its ETag.
fn identity(
    body: &Value,
    etag: &Option<String>,
    method: &str,
    report: &mut Report,
) -> Option<(Key, u64)> {
    let ty = body["resourceType"].as_str();
    let id = body["id"].as_str();
    let vid = body["meta"]["versionId"]
        .as_str()
        .and_then(|v| v.parse::<u64>().ok());
    match (ty, id, vid) {
        (Some(ty), Some(id), Some(vid)) if etag.as_deref().and_then(etag_version) == Some(vid) => {
            Some(((ty.to_string(), id.to_string()), vid))
        }
        _ => {
            report.unexpected.push(format!(
                "{method} answered ETag {etag:?} with {}",
                show(body)
            ));
            None
        }
    }
}

fn without_meta(body: &Value) -> Value {
    let mut body = body.clone();
    body.as_object_mut()
        .expect("resource object")
        .remove("meta");
    body
}

fn show(body: &Value) -> String {
    let text = body.to_string();
    text.chars().take(300).collect()
}

/// Streams writes from all writers against `server` until `stop_server` (called after
/// [`STOP_AFTER_ACKS`] acknowledged writes, while the writers are mid-stream) has taken
/// the server down, then records every acknowledged write in `acked`. Returns a summary.
fn run_writers(
    server: &mut TestServer,
    pool: &[Value],
    writers: &mut [Writer],
    acked: &mut Acked,
    stop_server: impl FnOnce(&mut TestServer),
) -> String {
    let stop = AtomicBool::new(false);
    let acks_so_far = AtomicUsize::new(0);
    let base = server.base.clone();
    let (base, stop_ref, acks_ref) = (&base, &stop, &acks_so_far);
    let reports: Vec<Report> = thread::scope(|scope| {
        let handles: Vec<_> = writers
            .iter_mut()
            .map(|writer| scope.spawn(move || writer.run(base, pool, stop_ref, acks_ref)))
            .collect();
        let started = Instant::now();
        while started.elapsed() < GIVE_UP && acks_ref.load(Ordering::SeqCst) < STOP_AFTER_ACKS {
            thread::sleep(Duration::from_millis(5));
        }
        stop_server(server);
        stop_ref.store(true, Ordering::SeqCst);
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });

    let unexpected: Vec<&String> = reports.iter().flat_map(|r| &r.unexpected).collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    let unanswered: usize = reports.iter().map(|r| r.unanswered).sum();
    let mut counts = [0usize; 3]; // creates, updates, deletes
    for (key, vid, body) in reports.into_iter().flat_map(|r| r.acks) {
        counts[match (&body, vid) {
            (None, _) => 2,
            (Some(_), 1) => 0,
            _ => 1,
        }] += 1;
        let versions = acked.entry(key.clone()).or_default();
        if let Some(earlier) = versions.get(&vid) {
            assert_eq!(
                earlier, &body,
                "{key:?} version {vid} was acknowledged twice with different content"
            );
        }
        versions.insert(vid, body);
    }
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "the writers got too few writes acknowledged to test anything: {counts:?}"
    );
    format!(
        "acknowledged {} creates, {} updates, {} deletes; {unanswered} requests unanswered",
        counts[0], counts[1], counts[2]
    )
}

/// One entry of the system history.
struct Entry {
    key: Key,
    vid: u64,
    method: String,
    status: String,
    last_modified: OffsetDateTime,
    resource: Option<Value>,
}

/// `GET /fhir/_history`, every page.
fn system_history(fhir: &FhirClient) -> Vec<Entry> {
    fhir.system_history()
        .iter()
        .map(|entry| {
            let full_url = entry["fullUrl"].as_str().expect("entry.fullUrl");
            let mut parts = full_url.rsplitn(3, '/');
            let (Some(id), Some(ty)) = (parts.next(), parts.next()) else {
                panic!("fullUrl {full_url}");
            };
            let etag = entry["response"]["etag"].as_str().expect("response.etag");
            let last_modified = entry["response"]["lastModified"]
                .as_str()
                .expect("response.lastModified");
            Entry {
                key: (ty.to_string(), id.to_string()),
                vid: etag_version(etag).unwrap_or_else(|| panic!("etag {etag}")),
                method: entry["request"]["method"].as_str().unwrap_or("").into(),
                status: entry["response"]["status"].as_str().unwrap_or("").into(),
                last_modified: instant(last_modified),
                resource: entry.get("resource").cloned(),
            }
        })
        .collect()
}

/// Checks, on a restarted server, that every acknowledged write survived and that the system
/// history is complete.
fn verify(server: &TestServer, acked: &Acked, when: &str) {
    let fhir = FhirClient::new(server);

    // Every acknowledged version reads back exactly as acknowledged.
    for ((ty, id), versions) in acked {
        for (vid, body) in versions {
            let path = format!("{ty}/{id}/_history/{vid}");
            let (url, reply) = (fhir.url(&path), fhir.get(&path));
            match body {
                Some(body) => {
                    assert_eq!(
                        reply.status, 200,
                        "{when}: acknowledged write lost: GET {url}"
                    );
                    let stored = reply.json();
                    assert_eq!(&stored, body, "{when}: GET {url} differs from the answer");
                }
                None => assert_eq!(
                    reply.status, 410,
                    "{when}: acknowledged delete lost: GET {url}"
                ),
            }
        }
    }

    // The system history: newest first, every version of every resource exactly once.
    let history = system_history(&fhir);
    for pair in history.windows(2) {
        assert!(
            pair[0].last_modified >= pair[1].last_modified,
            "{when}: system history not newest first: {:?} v{} ({}) before {:?} v{} ({})",
            pair[0].key,
            pair[0].vid,
            pair[0].last_modified,
            pair[1].key,
            pair[1].vid,
            pair[1].last_modified,
        );
    }
    let mut by_resource: HashMap<&Key, Vec<&Entry>> = HashMap::new();
    for entry in &history {
        by_resource.entry(&entry.key).or_default().push(entry);
    }
    for (key, entries) in &by_resource {
        let mut vids: Vec<u64> = entries.iter().map(|e| e.vid).collect();
        let in_order = vids.clone();
        vids.sort_unstable();
        let expected: Vec<u64> = (1..=vids.len() as u64).collect();
        assert_eq!(
            vids, expected,
            "{when}: the system history of {key:?} has holes or duplicates"
        );
        vids.reverse();
        assert_eq!(
            in_order, vids,
            "{when}: the system history of {key:?} is not newest first"
        );
        let versions: BTreeMap<u64, &Entry> = entries.iter().map(|e| (e.vid, *e)).collect();
        for entry in entries {
            let deleted_before = entry.vid > 1 && versions[&(entry.vid - 1)].resource.is_none();
            let expected = match (&entry.resource, entry.vid) {
                (None, _) => ("DELETE", "204"),
                (Some(_), 1) => ("POST", "201"),
                (Some(_), _) if deleted_before => ("PUT", "201"),
                (Some(_), _) => ("PUT", "200"),
            };
            assert_eq!(
                (entry.method.as_str(), entry.status.as_str()),
                expected,
                "{when}: system history entry of {key:?} v{}",
                entry.vid
            );
            if let Some(resource) = &entry.resource {
                assert_eq!(
                    resource["meta"]["versionId"].as_str(),
                    Some(entry.vid.to_string().as_str()),
                    "{when}: system history entry of {key:?} v{}",
                    entry.vid
                );
            }
        }
    }

    for (key, versions) in acked {
        let (ty, id) = key;
        let entries = by_resource
            .get(key)
            .unwrap_or_else(|| panic!("{when}: {key:?} missing from the system history"));
        let current = entries[0];
        let latest_acked = *versions.keys().next_back().expect("a version");
        assert!(
            latest_acked <= current.vid,
            "{when}: {key:?} is at v{} but v{latest_acked} was acknowledged",
            current.vid
        );
        for (vid, body) in versions {
            let entry = entries.iter().find(|e| e.vid == *vid).expect("checked");
            assert_eq!(
                &entry.resource, body,
                "{when}: system history entry of {key:?} v{vid} differs from the answer"
            );
        }
        // A read answers with the newest version in the history.
        let path = format!("{ty}/{id}");
        let (url, reply) = (fhir.url(&path), fhir.get(&path));
        match &current.resource {
            None => assert_eq!(reply.status, 410, "{when}: GET {url}"),
            Some(resource) => {
                assert_eq!(reply.status, 200, "{when}: GET {url}");
                let body = reply.json();
                assert_eq!(
                    &body, resource,
                    "{when}: GET {url} is not the newest version"
                );
            }
        }
    }
    // The search index holds exactly the live resources: what it lost at the crash (its
    // newest commits live in memory) is indexed again from the change log.
    let mut live: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for ((ty, id), entries) in &by_resource {
        if entries[0].resource.is_some() {
            live.entry(ty.as_str()).or_default().insert(id.as_str());
        }
    }
    for (ty, ids) in &live {
        let mut found = BTreeSet::new();
        let mut url = fhir.url(&format!("{ty}?_elements=id&_count=1000"));
        loop {
            let page = fhir.get_absolute(&url);
            for entry in page["entry"].as_array().into_iter().flatten() {
                found.insert(entry["resource"]["id"].as_str().expect("id").to_string());
            }
            match page["link"]
                .as_array()
                .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
            {
                Some(next) => url = next["url"].as_str().expect("next url").to_string(),
                None => break,
            }
        }
        let found: BTreeSet<&str> = found.iter().map(String::as_str).collect();
        assert_eq!(
            &found, ids,
            "{when}: a search of {ty} finds other resources than are live"
        );
    }
    eprintln!(
        "{when}: {} acknowledged resources verified, system history of {} versions of {} resources complete",
        acked.len(),
        history.len(),
        by_resource.len()
    );
}

/// Ends the whole test process (and kills the servers it started) if it is not dropped within
/// 60 seconds, so a server that ignores SIGTERM fails the test instead of hanging it.
fn watchdog(what: &'static str) -> mpsc::Sender<()> {
    let (done, wait) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(Duration::from_secs(60)) {
            eprintln!("{what} did not exit within 60 s");
            for pid in child_pids() {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::process::exit(1);
        }
    });
    done
}

/// The ids of this process's children, from `/proc/self/task/*/children`.
fn child_pids() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(Path::new("/proc/self/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}
