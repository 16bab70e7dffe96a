//! FHIR R4 Subscriptions with a rest-hook channel, against a receiver of the test's own on
//! 127.0.0.1 that fails its first calls: every matching change must arrive, in order, after
//! retries, across a SIGKILL of the server; the Subscription's status goes to `error` (with the
//! reason) while the receiver fails and back to `active` after. The receiver's endpoint is on
//! loopback, so the servers allow it with `--subscription-endpoints`; without that, endpoints
//! on refused addresses are refused when written and fail when delivered.

mod common;

use common::TestServer;
use common::changes::{pull_all, seq};
use common::fhir::{FhirClient, assert_outcome};
use common::receiver::Receiver;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

fn observation(code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]}})
}

/// Waits until `check` holds, at most 30 s.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

const RETRY: &[&str] = &[
    "--subscription-retry",
    "50ms",
    "--subscription-retry-max",
    "200ms",
];

/// The server's arguments: quick retries, and `endpoints` allowed whatever their address.
fn allowing(endpoints: &str) -> Vec<&str> {
    [RETRY, &["--subscription-endpoints", endpoints]].concat()
}

#[test]
fn a_rest_hook_gets_every_matching_change_after_retries_and_restarts() {
    let receiver = Receiver::start(4);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start_on(&data, &allowing(&receiver.url));
    let fhir = FhirClient::at(&server.base);
    let subscription = fhir.create(&json!({
        "resourceType": "Subscription", "status": "requested", "reason": "test",
        "criteria": "Observation?code=http://loinc.org|1234-5",
        "channel": {"type": "rest-hook", "endpoint": receiver.url,
            "payload": "application/fhir+json", "header": ["X-Secret: s3cret"]}
    }));
    let path = format!("Subscription/{}", subscription["id"].as_str().unwrap());
    wait_for("the Subscription to be active", || {
        fhir.get(&path).json()["status"] == "active"
    });
    let mut written = Vec::new();
    for n in 0..6 {
        written.push(fhir.create(&observation(if n % 2 == 0 { "1234-5" } else { "0000-0" })));
    }
    // The receiver fails its first four calls: the Subscription is set to error, with why.
    wait_for("the Subscription to be in error", || {
        let current = fhir.get(&path).json();
        current["status"] == "error" && current["error"].as_str().is_some_and(|e| e.contains("500"))
    });
    wait_for("the first notifications", || !receiver.ids().is_empty());
    wait_for("the Subscription to be active again", || {
        fhir.get(&path).json()["status"] == "active"
    });

    // A crash, then more changes: delivery resumes from the stored position.
    server.kill();
    let server = TestServer::start_on(&data, &allowing(&receiver.url));
    let fhir = FhirClient::at(&server.base);
    let matching = fhir.create(&observation("1234-5"));
    fhir.delete(&format!("Observation/{}", matching["id"].as_str().unwrap()))
        .expect(204, "delete");
    let expected: Vec<u64> = pull_all(
        &fhir,
        "&criteria=Observation%3Fcode%3Dhttp://loinc.org%7C1234-5",
    )
    .iter()
    .map(seq)
    .collect();
    assert_eq!(
        expected.len(),
        5,
        "three creates, one more create and its delete"
    );
    wait_for("every notification", || {
        let mut ids = receiver.ids();
        ids.dedup();
        ids.len() >= expected.len()
    });
    let mut ids = receiver.ids();
    // At least once: a notification may come again after the crash, never out of order.
    ids.dedup();
    assert_eq!(ids, expected, "the notifications, in order");
    assert!(receiver.calls.load(Ordering::SeqCst) >= 4 + expected.len());
    let accepted = receiver.accepted.lock().unwrap().clone();
    for notification in &accepted {
        assert_eq!(notification.headers["x-secret"], "s3cret");
        assert_eq!(notification.headers["ce-specversion"], "1.0");
        let subject = &notification.headers["ce-subject"];
        if notification.headers["ce-type"] == "fhir.Observation.deleted" {
            assert!(notification.body.is_empty());
        } else {
            let resource: Value = serde_json::from_slice(&notification.body).unwrap();
            assert!(subject.starts_with(&format!(
                "Observation/{}/",
                resource["id"].as_str().unwrap()
            )));
        }
    }
}

#[test]
fn subscriptions_that_cannot_be_delivered_are_set_to_error_and_off_ones_stop() {
    let receiver = Receiver::start(0);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_on(&dir.path().join("data"), &allowing(&receiver.url));
    let fhir = FhirClient::at(&server.base);
    let bad = fhir.create(&json!({
        "resourceType": "Subscription", "status": "requested", "reason": "test",
        "criteria": "Observation?nope=1",
        "channel": {"type": "rest-hook", "endpoint": receiver.url}
    }));
    let path = format!("Subscription/{}", bad["id"].as_str().unwrap());
    wait_for("the bad Subscription to be in error", || {
        let current = fhir.get(&path).json();
        current["status"] == "error"
            && current["error"]
                .as_str()
                .is_some_and(|e| e.contains("nope"))
    });
    let good = fhir.create(&json!({
        "resourceType": "Subscription", "status": "active", "reason": "test",
        "criteria": "Patient",
        "channel": {"type": "rest-hook", "endpoint": receiver.url}
    }));
    fhir.create(&json!({"resourceType": "Patient"}));
    wait_for("a notification", || receiver.ids().len() == 1);
    assert!(
        receiver.accepted.lock().unwrap()[0].body.is_empty(),
        "no payload asked for"
    );
    let mut off = good.clone();
    off["status"] = json!("off");
    fhir.update(&off).expect(200, "turn it off");
    thread::sleep(Duration::from_millis(300));
    fhir.create(&json!({"resourceType": "Patient"}));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        receiver.ids().len(),
        1,
        "an off Subscription notifies nobody"
    );
    assert_outcome(&fhir.get("Subscription/nope"), 404, &["not-found"]);
    // The slowest Subscription's lag is a metric; nothing is pending.
    let lag = "fhirlake_consumer_lag_changes{consumer=\"subscriptions\"} 0";
    wait_for("no Subscription lag", || {
        let metrics = fhir
            .http
            .get(format!("{}/metrics", server.origin))
            .send()
            .unwrap();
        metrics.text().unwrap().contains(lag)
    });
}

fn rest_hook(endpoint: &str) -> Value {
    json!({"resourceType": "Subscription", "status": "active", "reason": "test",
        "criteria": "Patient", "channel": {"type": "rest-hook", "endpoint": endpoint}})
}

#[test]
fn endpoints_on_refused_addresses_are_refused_when_written_and_delivered_unless_allowed() {
    let receiver = Receiver::start(0);
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let by_name = format!("http://localhost:{port}/hook");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // Allowed: the receiver, by address and by name.
    let allowed = format!("{},{by_name}", receiver.url);
    let mut server = TestServer::start_on(&data, &allowing(&allowed));
    let fhir = FhirClient::at(&server.base);
    let by_address = fhir.create(&rest_hook(&receiver.url));
    let by_name = fhir.create(&rest_hook(&by_name));
    // Listed is exact: another port of the same host is not.
    let other_port = fhir.post("Subscription", &rest_hook("http://127.0.0.1:1/hook"));
    assert_outcome(&other_port, 422, &["business-rule"]);
    server.kill();

    // Not allowed: every loopback, link-local or metadata endpoint is refused as written,
    // alone or in a transaction.
    let server = TestServer::start_on(&data, RETRY);
    let fhir = FhirClient::at(&server.base);
    for endpoint in [
        receiver.url.as_str(),
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:80/",
        "http://localhost:1/",
    ] {
        let outcome = assert_outcome(
            &fhir.post("Subscription", &rest_hook(endpoint)),
            422,
            &["business-rule"],
        );
        assert_eq!(
            outcome["issue"][0]["expression"][0], "Subscription.channel.endpoint",
            "{endpoint}"
        );
    }
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": rest_hook("http://127.0.0.1:1/"),
            "request": {"method": "POST", "url": "Subscription"}}]});
    assert_outcome(&fhir.bundle(&transaction), 422, &["business-rule"]);

    // The ones written while allowed are not delivered any more: each is set to error with
    // why, and the receiver hears nothing.
    fhir.create(&json!({"resourceType": "Patient"}));
    for (subscription, why) in [
        (&by_address, "127.0.0.1 is a loopback address"),
        (&by_name, "resolves to no public address"),
    ] {
        let path = format!("Subscription/{}", subscription["id"].as_str().unwrap());
        wait_for(why, || {
            let current = fhir.get(&path).json();
            current["status"] == "error"
                && current["error"].as_str().is_some_and(|e| e.contains(why))
        });
    }
    assert_eq!(receiver.calls.load(Ordering::SeqCst), 0);
    // One whose endpoint is refused can still be turned off.
    let mut off = fhir
        .get(&format!(
            "Subscription/{}",
            by_address["id"].as_str().unwrap()
        ))
        .json();
    off["status"] = json!("off");
    fhir.update(&off).expect(200, "turn it off");
}
