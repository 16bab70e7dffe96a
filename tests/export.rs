//! Bulk `$export` over HTTP against the real binary, on Synthea data (the providers and six
//! patients, imported once into a template data directory that each test copies).
//!
//! The exports are compared, resource for resource, with a plain read of the store: the whole
//! system history, each resource at its last version at or before the manifest's
//! `transactionTime` (never through the search index or the export's own code). Writers keep
//! writing while the exports run; the server's test pause (`FHIRLAKE_TEST_EXPORT_PAUSE=K:W`:
//! after K resources written, wait for W changes after the snapshot, or `never`) makes sure
//! writes land between the snapshot and the reading, and lets a test kill or stop the server
//! mid-export, by counts, never by times.

mod common;

use common::TestServer;
use common::auth::{HS256, bearer, token};
use common::bulk::*;
use common::fhir::{FhirClient, assert_outcome, send};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Writers that update, delete and create Observations and update Patients until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(server: &TestServer, count: usize) -> Writers {
        let client = FhirClient::new(server);
        let observations = current(&client, "Observation");
        let patients = current(&client, "Patient");
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let threads = (0..count)
            .map(|n| {
                let mut mine: Vec<Value> = observations
                    .iter()
                    .chain(&patients)
                    .skip(n)
                    .step_by(count)
                    .cloned()
                    .collect();
                let (stop, acked) = (stop.clone(), acked.clone());
                let client = FhirClient::new(server);
                std::thread::spawn(move || {
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) && !mine.is_empty() {
                        let at = (i * 7) % mine.len();
                        let resource = mine[at].clone();
                        let key = common::fhir::type_and_id(&resource);
                        let is_patient = resource["resourceType"] == "Patient";
                        match (i % 3, is_patient) {
                            (1, false) => {
                                client.delete(&key).expect(204, "delete");
                                mine.remove(at);
                            }
                            (2, false) => {
                                let mut copy = resource.clone();
                                copy.as_object_mut().unwrap().remove("id");
                                let created = client.create(&copy);
                                mine.push(created);
                            }
                            _ => {
                                let mut changed = resource.clone();
                                if is_patient {
                                    changed["active"] = json!(changed["active"] != json!(true));
                                } else {
                                    let next = if changed["status"] == "final" {
                                        "amended"
                                    } else {
                                        "final"
                                    };
                                    changed["status"] = json!(next);
                                }
                                let reply = client.update(&changed);
                                reply.expect(200, "update");
                                mine[at] = reply.json();
                            }
                        }
                        acked.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            threads,
        }
    }

    /// Stops the writers; returns how many writes they got acknowledged.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("a writer failed");
        }
        self.acked.load(Ordering::Relaxed)
    }
}

/// System, Patient and Group exports, started while four writers write and paused until 200
/// changes follow their snapshots, are the store at their `transactionTime`, resource for
/// resource.
#[test]
fn exports_are_the_store_at_their_transaction_time_while_writers_write() {
    let server = Server::start(&["--job-workers", "3"], Some("0:200"));
    let client = server.client();
    let patients = patients_by_name(&client);
    let members: HashSet<String> = patients[..2].iter().cloned().collect();
    let group = client.create(&json!({"resourceType": "Group", "type": "person",
    "actual": true, "member": [
        {"entity": {"reference": format!("Patient/{}", patients[0])}},
        {"entity": {"reference": format!("Patient/{}", patients[1])}},
        {"entity": {"reference": format!("Patient/{}", patients[2])}, "inactive": true},
    ]}));
    let writers = Writers::start(&server.server, 4);
    let system = kick_off(&client, "$export");
    let patient = kick_off(&client, "Patient/$export");
    let by_group = kick_off(
        &client,
        &format!("Group/{}/$export", group["id"].as_str().unwrap()),
    );
    let manifests: Vec<Value> = [&system, &patient, &by_group]
        .iter()
        .map(|url| finish(&client, url))
        .collect();
    let acked = writers.stop();
    assert!(acked >= 200, "{acked} writes");
    let all_patients: HashSet<String> = patients.iter().cloned().collect();
    let compartment = compartment_types();
    for (manifest, population) in manifests
        .iter()
        .zip([None, Some(&all_patients), Some(&members)])
    {
        let time = manifest["transactionTime"].as_str().unwrap();
        let mut expected = state_at(&client, time);
        if let Some(population) = population {
            expected.retain(|key, resource| {
                compartment.contains(key.split('/').next().unwrap())
                    && of_patients(key, resource, population)
            });
        }
        let exported = download(&client, manifest);
        assert!(
            manifest.get("deleted").is_none(),
            "no deleted without _since"
        );
        assert!(exported.errors.is_empty());
        assert!(expected.len() > 100, "{} expected", expected.len());
        assert_same(&exported, &expected, manifest["request"].as_str().unwrap());
    }
    // Written while the exports ran: the latest state is not what they hold.
    let latest = state_at(&client, "9999");
    let system_time = manifests[0]["transactionTime"].as_str().unwrap();
    assert_ne!(latest, state_at(&client, system_time));
}

/// `_since` exports what changed after it and lists what was deleted after it in `deleted`;
/// `_until` keeps what was last changed before it.
#[test]
fn since_lists_the_changes_and_the_deletions() {
    let server = Server::start(&[], None);
    let client = server.client();
    let first = finish(
        &client,
        &kick_off(&client, "$export?_type=Patient,Observation"),
    );
    let t1 = first["transactionTime"].as_str().unwrap().to_string();
    let observations = current(&client, "Observation");
    let patients = current(&client, "Patient");
    let mut patient = patients[0].clone();
    patient["active"] = json!(false);
    let patient = client.update(&patient).expect(200, "update").json();
    let gone = common::fhir::type_and_id(&observations[0]);
    client.delete(&gone).expect(204, "delete");
    let mut copy = observations[1].clone();
    copy.as_object_mut().unwrap().remove("id");
    let created = client.create(&copy);
    // Created and deleted after _since: listed as deleted too (it never was exported).
    let brief = client.create(&copy);
    let brief_key = common::fhir::type_and_id(&brief);
    client.delete(&brief_key).expect(204, "delete");
    let since = format!(
        "$export?_type=Patient,Observation&_since={}",
        t1.replace('+', "%2B")
    );
    let manifest = finish(&client, &kick_off(&client, &since));
    let exported = download(&client, &manifest);
    let keys: BTreeSet<String> = exported.resources.keys().cloned().collect();
    let expected: BTreeSet<String> = [&patient, &created]
        .iter()
        .map(|r| common::fhir::type_and_id(r))
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(
        exported.resources[&common::fhir::type_and_id(&patient)],
        patient
    );
    assert_eq!(exported.deleted, BTreeSet::from([gone.clone(), brief_key]));
    assert!(manifest["deleted"].as_array().unwrap().len() == 1);
    // `_until` the first snapshot: what was not changed since.
    let until = format!("$export?_type=Patient,Observation&_until={t1}");
    let manifest = finish(&client, &kick_off(&client, &until));
    let exported = download(&client, &manifest);
    let at_t1 = state_at(&client, &t1);
    let mut expected = state_at(&client, manifest["transactionTime"].as_str().unwrap());
    expected.retain(|key, resource| {
        (key.starts_with("Patient/") || key.starts_with("Observation/"))
            && at_t1.get(key) == Some(resource)
    });
    assert_same(&exported, &expected, "_until");
    assert!(!exported.resources.contains_key(&gone));
}

/// `_typeFilter` keeps what its queries match (several ORed, each type on its own), judging a
/// resource changed after the snapshot by its version then; `_type` and `_elements` choose
/// the types and the elements.
#[test]
fn type_filters_judge_the_snapshot_and_elements_cut() {
    let server = Server::start(&[], Some("0:2"));
    let client = server.client();
    let category = |o: &Value, code: &str| {
        o["category"].as_array().into_iter().flatten().any(|c| {
            c["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["code"] == code)
        })
    };
    let observations = current(&client, "Observation");
    let lab = observations
        .iter()
        .find(|o| category(o, "laboratory"))
        .unwrap()
        .clone();
    let vital = observations
        .iter()
        .find(|o| category(o, "vital-signs"))
        .unwrap()
        .clone();
    let status = kick_off(
        &client,
        "$export?_type=Observation,Condition,Patient\
         &_typeFilter=Observation%3Fcategory%3Dlaboratory\
         &_typeFilter=Condition%3Fclinical-status%3Dactive\
         &_typeFilter=Condition%3Fclinical-status%3Dresolved",
    );
    // After the snapshot: the laboratory one becomes vital signs and the other way round.
    let swap = |resource: &Value, to: &str| {
        let mut changed = resource.clone();
        changed["category"][0]["coding"][0]["code"] = json!(to);
        client.update(&changed).expect(200, "swap");
    };
    swap(&lab, "vital-signs");
    swap(&vital, "laboratory");
    let manifest = finish(&client, &status);
    let exported = download(&client, &manifest);
    let mut expected = state_at(&client, manifest["transactionTime"].as_str().unwrap());
    let clinical = |c: &Value| c["clinicalStatus"]["coding"][0]["code"].clone();
    expected.retain(|key, resource| match key.split('/').next().unwrap() {
        "Observation" => category(resource, "laboratory"),
        "Condition" => clinical(resource) == "active" || clinical(resource) == "resolved",
        "Patient" => true,
        _ => false,
    });
    assert!(expected.contains_key(&common::fhir::type_and_id(&lab)));
    assert!(!expected.contains_key(&common::fhir::type_and_id(&vital)));
    assert_same(&exported, &expected, "_typeFilter");

    // `_elements`: Patients cut to their names, every type to its ids; tagged SUBSETTED.
    let status = kick_off(
        &client,
        "$export?_type=Patient,Condition&_elements=Patient.name,id",
    );
    // This export pauses too, until two changes follow its snapshot: two of another type.
    for status in ["amended", "final"] {
        let mut changed = current(&client, "Observation")[0].clone();
        changed["status"] = json!(status);
        client.update(&changed).expect(200, "an update");
    }
    let manifest = finish(&client, &status);
    let exported = download(&client, &manifest);
    assert_eq!(
        exported.types,
        BTreeSet::from(["Patient".into(), "Condition".into()])
    );
    for (key, resource) in &exported.resources {
        let allowed: &[&str] = if key.starts_with("Patient/") {
            &["resourceType", "id", "meta", "name"]
        } else {
            &["resourceType", "id", "meta", "subject"]
        };
        for member in resource.as_object().unwrap().keys() {
            assert!(allowed.contains(&member.as_str()), "{key}: {member}");
        }
        assert!(
            resource["meta"]["tag"].to_string().contains("SUBSETTED"),
            "{key}"
        );
    }
}

/// A patient's token exports its own compartment only, and an export's status and files are
/// its owner's only.
#[test]
fn a_patient_token_exports_its_compartment_and_jobs_are_their_owners() {
    let server = Server::start(HS256, None);
    let system = bearer(&server.server, &token("system/*.cruds", None));
    let patients = patients_by_name(&system);
    let (mine, other) = (&patients[0], &patients[1]);
    let patient = bearer(&server.server, &token("patient/*.rs", Some(mine)));
    let status = kick_off(&patient, "$export");
    let manifest = finish(&patient, &status);
    let exported = download(&patient, &manifest);
    let mut expected = state_at(&system, manifest["transactionTime"].as_str().unwrap());
    let compartment = compartment_types();
    let own = HashSet::from([mine.clone()]);
    expected.retain(|key, resource| {
        compartment.contains(key.split('/').next().unwrap()) && of_patients(key, resource, &own)
    });
    assert!(expected.len() > 10);
    assert_same(&exported, &expected, "a patient's export");
    // Another patient's token, a system token and no token: as if there were no such job.
    let file = manifest["output"][0]["url"].as_str().unwrap();
    let another = bearer(&server.server, &token("patient/*.rs", Some(other)));
    for stranger in [&another, &system] {
        assert_outcome(&send(stranger.http.get(&status)), 404, &["not-found"]);
        assert_outcome(&send(stranger.http.get(file)), 404, &["not-found"]);
        assert_outcome(&send(stranger.http.delete(&status)), 404, &["not-found"]);
    }
    let anonymous = common::auth::client(&server.server, None);
    assert_outcome(&send(anonymous.http.get(file)), 401, &["login"]);
    // A token of the same patient that may no longer read the type: 403.
    let narrower = bearer(&server.server, &token("patient/Observation.rs", Some(mine)));
    let patient_file = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "Patient")
        .unwrap()["url"]
        .as_str()
        .unwrap();
    assert_outcome(&send(narrower.http.get(patient_file)), 403, &["forbidden"]);
    // Types its scopes do not grant: 403 at kick-off.
    let reply = narrower.get_with("$export?_type=Condition", &[("Prefer", "respond-async")]);
    assert_outcome(&reply, 403, &["forbidden"]);
}

/// A SIGKILL and a SIGTERM in the middle of an export: it resumes from its last checkpoint and
/// ends with exactly the snapshot of its kick-off, in files of the size asked for.
#[test]
fn an_export_survives_sigkill_and_sigterm_with_exactly_its_snapshot() {
    let small = ["--export-file-resources", "20"];
    let mut server = Server::start(&small, Some("50:never"));
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Observation,Condition");
    let dir = server.job_dir(&status);
    // Two files finished (40 resources); the job pauses at 50, in the third.
    wait_until("the second file", || {
        dir.join("Observation-2.ndjson").exists()
    });
    server.server.kill();
    server.restart(&small, Some("70:never"));
    let client = server.client();
    wait_until("the third file", || {
        dir.join("Observation-3.ndjson").exists()
    });
    // Written after the snapshot, while the export is under way: not in it.
    let observations = current(&client, "Observation");
    let mut changed = observations[0].clone();
    changed["status"] = json!("amended");
    client.update(&changed).expect(200, "update");
    client
        .delete(&common::fhir::type_and_id(&observations[1]))
        .expect(204, "delete");
    let exit = server.server.terminate();
    assert!(exit.success(), "SIGTERM during an export: {exit}");
    server.restart(&small, None);
    let client = server.client();
    // The status URL on the restarted server (another port).
    let status = format!("{}/_jobs/{}", server.server.base, job_id(&status));
    let manifest = finish(&client, &status);
    let exported = download(&client, &manifest);
    let mut expected = state_at(&client, manifest["transactionTime"].as_str().unwrap());
    expected.retain(|key, _| key.starts_with("Observation/") || key.starts_with("Condition/"));
    assert_same(&exported, &expected, "after SIGKILL and SIGTERM");
    // Every file full but each type's last; nothing else in the job's folder.
    let outputs = manifest["output"].as_array().unwrap();
    for (n, output) in outputs.iter().enumerate() {
        let last_of_type = outputs
            .get(n + 1)
            .is_none_or(|next| next["type"] != output["type"]);
        assert!(last_of_type || output["count"] == 20, "{output}");
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut listed: Vec<String> = outputs
        .iter()
        .map(|o| {
            o["url"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    listed.sort();
    assert_eq!(names, listed);
}

/// `DELETE` on the status URL cancels a running export and removes its files; a finished
/// one's files go too; both are 404 from then on. `/metrics` counts them.
#[test]
fn a_cancelled_export_is_gone_with_its_files() {
    let server = Server::start(&["--export-file-resources", "20"], Some("30:never"));
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Observation");
    let dir = server.job_dir(&status);
    wait_until("the first file", || {
        dir.join("Observation-1.ndjson").exists()
    });
    send(client.http.get(&status)).expect(202, "running");
    let reply = send(client.http.delete(&status));
    reply.expect(202, "cancel");
    assert_eq!(reply.resource()["resourceType"], "OperationOutcome");
    assert_outcome(&send(client.http.get(&status)), 404, &["not-found"]);
    assert_outcome(&send(client.http.delete(&status)), 404, &["not-found"]);
    wait_until("the files to go", || !dir.exists());
    let metrics = send(client.http.get(format!("{}/metrics", server.server.origin))).text;
    assert!(
        metrics.contains("fhirlake_jobs{kind=\"export\",state=\"cancelled\"} 1"),
        "{metrics}"
    );
    // A client with ten jobs under way gets 429 for another, until one is cancelled.
    let under_way: Vec<String> = (0..10)
        .map(|_| kick_off(&client, "$export?_type=Observation"))
        .collect();
    let refused = client.get_with("$export?_type=Patient", &[("Prefer", "respond-async")]);
    assert_outcome(&refused, 429, &["transient"]);
    assert!(refused.header("retry-after").is_some());
    send(client.http.delete(&under_way[9])).expect(202, "cancel");
    let status = kick_off(&client, "$export?_type=Patient");
    for status in under_way[..9].iter().chain([&status]) {
        send(client.http.delete(status)).expect(202, "cancel");
    }
}

/// A finished export is removed with its files once its retention has passed.
#[test]
fn a_finished_export_expires_with_its_files() {
    let server = Server::start(&["--job-retention", "1s"], None);
    let client = server.client();
    let status = kick_off(&client, "$export?_type=Patient");
    let manifest = finish(&client, &status);
    let file = manifest["output"][0]["url"].as_str().unwrap().to_string();
    let dir = server.job_dir(&status);
    wait_until("the export to expire", || {
        std::thread::sleep(POLL);
        send(client.http.get(&status)).status == 404
    });
    assert_outcome(&send(client.http.get(&file)), 404, &["not-found"]);
    assert!(!dir.exists());
    let metrics = send(client.http.get(format!("{}/metrics", server.server.origin))).text;
    assert!(
        metrics.contains("fhirlake_jobs{kind=\"export\",state=\"completed\"} 0"),
        "{metrics}"
    );
}

/// Files stored gzip-compressed are served compressed to a client that accepts gzip and plain
/// to one that does not; a POST kick-off takes its parameters from a Parameters body, and a
/// Group export's `patient` narrows it to those members.
#[test]
fn gzip_files_and_post_kick_offs() {
    let server = Server::start(&["--export-compression", "gzip"], None);
    let client = server.client();
    let patients = patients_by_name(&client);
    let group = client.create(&json!({"resourceType": "Group", "type": "person",
    "actual": true, "member": [
        {"entity": {"reference": format!("Patient/{}", patients[0])}},
        {"entity": {"reference": format!("Patient/{}", patients[1])}},
    ]}));
    let path = format!("Group/{}/$export", group["id"].as_str().unwrap());
    let status = kick_off_post(
        &client,
        &path,
        &[
            ("_type", json!({"valueString": "Patient"})),
            ("_type", json!({"valueString": "Encounter"})),
            (
                "patient",
                json!({"valueReference": {"reference": format!("Patient/{}", patients[1])}}),
            ),
            ("_outputFormat", json!({"valueString": "ndjson"})),
        ],
    );
    let manifest = finish(&client, &status);
    let exported = download(&client, &manifest);
    let mut expected = state_at(&client, manifest["transactionTime"].as_str().unwrap());
    let member = HashSet::from([patients[1].clone()]);
    expected.retain(|key, resource| {
        (key.starts_with("Patient/") || key.starts_with("Encounter/"))
            && of_patients(key, resource, &member)
    });
    assert_same(&exported, &expected, "a Group's member");
    let url = manifest["output"][0]["url"].as_str().unwrap();
    assert!(url.ends_with(".ndjson.gz"), "{url}");
    let compressed = client
        .http
        .get(url)
        .header("Accept-Encoding", "gzip")
        .send()
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    let bytes = compressed.bytes().unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let plain = send(client.http.get(url));
    assert!(plain.header("content-encoding").is_none());
    assert_eq!(plain.text, text);
    // A patient outside the Group: 400.
    let outsider = format!("Patient/{}", patients[2]);
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": outsider}}]});
    let reply = client.post_with(&path, &body, &[("Prefer", "respond-async")]);
    assert_outcome(&reply, 400, &["invalid"]);
}

/// What a client may send wrong is an OperationOutcome with its status, and nothing outside
/// a job's files is reachable through its URLs.
#[test]
fn hostile_kick_offs_status_urls_and_file_names_are_refused() {
    let server = Server::start(&[], None);
    let client = server.client();
    let async_ = [("Prefer", "respond-async")];
    let lenient = [("Prefer", "respond-async, handling=lenient")];
    assert_outcome(&client.get("$export"), 400, &["invalid"]);
    for (query, code) in [
        ("_since=yesterday", "invalid"),
        ("_since=2020-13-01T00:00:00Z", "invalid"),
        ("_until=2020-01-01", "invalid"),
        ("_type=Nope", "not-supported"),
        ("_type=Patient&patient=Patient/a", "invalid"),
        ("_outputFormat=text/csv", "not-supported"),
        ("_typeFilter=Observation%3Fsubject.name%3Dx", "invalid"),
        ("_typeFilter=Observation%3Fnope%3D1", "not-supported"),
        (
            "includeAssociatedData=LatestProvenanceResources",
            "not-supported",
        ),
        ("organizeOutputBy=Patient", "not-supported"),
        ("_elements=a.b.c", "invalid"),
        ("nonsense=1", "not-supported"),
    ] {
        let reply = client.get_with(&format!("$export?{query}"), &async_);
        assert_outcome(&reply, 400, &[code]);
    }
    // Lenient: what is not supported is ignored, and said in the error file.
    let status = accepted(
        &client.get_with(
            "$export?_type=Patient,Nope&organizeOutputBy=Patient",
            &lenient,
        ),
        "lenient",
    );
    let manifest = finish(&client, &status);
    let exported = download(&client, &manifest);
    assert_eq!(exported.types, BTreeSet::from(["Patient".to_string()]));
    assert_eq!(exported.errors.len(), 2, "{:?}", exported.errors);
    // A huge _typeFilter, too many of them: too costly, whatever the handling.
    let huge = format!("Observation?code={}", vec!["x"; 20_000].join(","));
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"name": "_typeFilter", "valueString": "Observation?code=1"}))
        .collect();
    for parameters in [
        vec![json!({"name": "_typeFilter", "valueString": huge})],
        many,
    ] {
        let body = json!({"resourceType": "Parameters", "parameter": parameters});
        assert_outcome(
            &client.post_with("$export", &body, &lenient),
            400,
            &["too-costly"],
        );
    }
    for body in [
        json!({"resourceType": "Patient"}).to_string(),
        "{not json".to_string(),
        json!({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}).to_string(),
    ] {
        assert_outcome(
            &client.post_with("$export", body, &async_),
            400,
            &["invalid", "structure"],
        );
    }
    assert_outcome(
        &client.get_with("Group/nothing-here/$export", &async_),
        404,
        &["not-found"],
    );
    assert_outcome(
        &client.get_with("Group/bad$id/$export", &async_),
        400,
        &["invalid", "value"],
    );
    // Status URLs and file names.
    let id = job_id(&status);
    for path in [
        "_jobs/not-a-job".to_string(),
        "_jobs/00000000-0000-0000-0000-000000000000".to_string(),
        "_jobs/..%2F..%2Ffhirlake.redb".to_string(),
        format!("_jobs/{}", "a".repeat(5000)),
        format!("_jobs/{id}/files/..%2F..%2Ffhirlake.redb"),
        format!("_jobs/{id}/files/%2e%2e"),
        format!("_jobs/{id}/files/fhirlake.redb"),
        format!("_jobs/{id}/files/Patient-1.ndjson.part"),
        format!("_jobs/{id}/files/..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
        format!("_jobs/{id}/files/{}", "b".repeat(5000)),
    ] {
        assert_outcome(&client.get(&path), 404, &["not-found"]);
    }
    let file = manifest["output"][0]["url"].as_str().unwrap();
    let reply = send(
        client
            .http
            .get(file)
            .header("Accept", "application/fhir+xml"),
    );
    assert_eq!(reply.status, 406);
    assert_outcome(&send(client.http.post(&status)), 405, &["not-supported"]);
}

/// A client that polls a job faster than half its interval gets 429 with Retry-After.
#[test]
fn polling_too_fast_is_429() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(template(), &data);
    let server = TestServer::start_on(&data, &["--job-poll-interval", "30s"]);
    let client = FhirClient::new(&server);
    let status = kick_off(&client, "$export?_type=Patient");
    let first = send(client.http.get(&status));
    assert!(matches!(first.status, 200 | 202), "{}", first.status);
    let second = send(client.http.get(&status));
    assert_outcome(&second, 429, &["transient"]);
    let retry: u64 = second.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
}
