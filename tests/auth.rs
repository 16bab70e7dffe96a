//! Authorization over HTTP: real servers with `--auth hs256|rs256|es256`, real tokens (minted
//! by `fhirlake token`, or signed here for the bad ones), against every interaction.

mod common;

use common::TestServer;
use common::auth::{
    AUDIENCE, HS256, ISSUER, SECRET, bearer, client, keys, mint, observation, set, token,
    token_command,
};
use common::fhir::{Fhir, FhirClient, Reply, assert_outcome, id_of, send};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A JWT signed here with HS256 and `secret`, with the expected issuer and audience and an
/// hour to live, changed by `claims`.
fn signed(secret: &str, claims: Value) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut all = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 3600,
        "scope": "system/*.cruds"});
    for (name, value) in claims.as_object().unwrap() {
        all[name] = value.clone();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &all,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// base64url without padding, for the hand-made `alg: none` token.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A server with `HS256` auth and the data every test reads: patients `pa` and `pb`,
/// practitioner `dr`, and Observations
/// - `oa-lab` (pa, laboratory), `oa-vital` (pa, vital-signs),
/// - `oa-shared` (pa, laboratory, performed by Patient/pb: in both compartments),
/// - `ob-lab` (pb, laboratory, performed by Practitioner/dr).
fn seeded() -> TestServer {
    let server = TestServer::start_with(HS256);
    let admin = bearer(&server, &token("system/*.cruds", None));
    for resource in [
        json!({"resourceType": "Patient", "id": "pa", "name": [{"family": "Alpha"}]}),
        json!({"resourceType": "Patient", "id": "pb", "name": [{"family": "Beta"}]}),
        json!({"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doc"}]}),
        observation("oa-lab", "pa", "laboratory", None),
        observation("oa-vital", "pa", "vital-signs", None),
        observation("oa-shared", "pa", "laboratory", Some("Patient/pb")),
        observation("ob-lab", "pb", "laboratory", Some("Practitioner/dr")),
    ] {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        admin.put(&path, &resource).expect(201, &path);
    }
    server
}

/// Each interaction of the API once: (name, method, path, body).
fn interactions() -> Vec<(&'static str, Method, &'static str, Option<Value>)> {
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/oa-lab"}}]});
    vec![
        ("read", Method::GET, "Observation/oa-lab", None),
        ("vread", Method::GET, "Observation/oa-lab/_history/1", None),
        (
            "history-instance",
            Method::GET,
            "Observation/oa-lab/_history",
            None,
        ),
        ("history-type", Method::GET, "Observation/_history", None),
        ("history-system", Method::GET, "_history", None),
        (
            "search-type",
            Method::GET,
            "Observation?category=laboratory",
            None,
        ),
        ("search-post", Method::POST, "Observation/_search", None),
        ("search-system", Method::GET, "?_type=Observation", None),
        (
            "search-compartment",
            Method::GET,
            "Patient/pa/Observation",
            None,
        ),
        ("everything", Method::GET, "Patient/pa/$everything", None),
        (
            "create",
            Method::POST,
            "Observation",
            Some(observation("", "pa", "laboratory", None)),
        ),
        (
            "update",
            Method::PUT,
            "Observation/oa-vital",
            Some(observation("oa-vital", "pa", "vital-signs", None)),
        ),
        ("delete", Method::DELETE, "Observation/nothing-here", None),
        (
            "conditional-update",
            Method::PUT,
            "Observation?code=1234-5&subject=Patient/none",
            Some(observation("", "pa", "laboratory", None)),
        ),
        (
            "conditional-delete",
            Method::DELETE,
            "Observation?subject=Patient/none",
            None,
        ),
        ("batch", Method::POST, "", Some(batch)),
        ("unknown-path", Method::GET, "Nothing/at/all/here", None),
    ]
}

fn call(client: &FhirClient, method: &Method, path: &str, body: &Option<Value>) -> Reply {
    match (method, body) {
        (&Method::POST, None) => client.post_form(path, &[("category", "laboratory")]),
        (method, Some(body)) => client.submit(method.clone(), path, body, &[]),
        (method, None) => send(client.http.request(method.clone(), client.url(path))),
    }
}

#[test]
fn without_a_valid_token_every_interaction_is_401() {
    let server = seeded();
    let now = jsonwebtoken::get_current_timestamp();
    let payload = base64url(
        json!({"exp": now + 3600, "scope": "system/*.cruds"})
            .to_string()
            .as_bytes(),
    );
    let unsigned = format!("{}.{payload}.", base64url(br#"{"alg":"none","typ":"JWT"}"#));
    let cases: Vec<(&str, Option<String>, Option<&str>)> = vec![
        ("no token", None, None),
        (
            "not bearer",
            Some("Basic dXNlcjpwYXNzd29yZA==".into()),
            Some("invalid_request"),
        ),
        (
            "garbage",
            Some("Bearer abc.def".into()),
            Some("invalid_token"),
        ),
        (
            "alg none",
            Some(format!("Bearer {unsigned}")),
            Some("invalid_token"),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                signed(SECRET, json!({"exp": now - 3600}))
            )),
            Some("invalid_token"),
        ),
        (
            "not yet",
            Some(format!(
                "Bearer {}",
                signed(SECRET, json!({"nbf": now + 3600}))
            )),
            Some("invalid_token"),
        ),
        (
            "wrong signature",
            Some(format!(
                "Bearer {}",
                signed("another-secret-of-at-least-32-bytes", json!({}))
            )),
            Some("invalid_token"),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                signed(SECRET, json!({"aud": "https://elsewhere"}))
            )),
            Some("invalid_token"),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                signed(SECRET, json!({"iss": "https://elsewhere"}))
            )),
            Some("invalid_token"),
        ),
    ];
    for (what, authorization, error) in &cases {
        let client = client(&server, authorization.as_deref());
        for (name, method, path, body) in interactions() {
            let reply = call(&client, &method, path, &body);
            let context = format!("{what}: {name}");
            let outcome = assert_outcome(&reply, 401, &["login"]);
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer realm=\"fhirlake\""),
                "{context}: {challenge}"
            );
            assert_eq!(
                challenge.contains(&format!("error=\"{}\"", error.unwrap_or("-"))),
                error.is_some(),
                "{context}: {challenge}"
            );
            // Never the token, nor any part of it.
            if let Some(token) = authorization.as_deref().and_then(|a| a.split(' ').nth(1)) {
                for part in token.split('.').filter(|p| p.len() > 8) {
                    assert!(!reply.text.contains(part), "{context}: {}", reply.text);
                    assert!(!challenge.contains(part), "{context}: {challenge}");
                }
            }
            assert!(outcome["issue"][0]["diagnostics"].is_string(), "{context}");
        }
    }
    // Expired says so.
    let expired = bearer(&server, &signed(SECRET, json!({"exp": now - 3600})));
    let reply = expired.get("Observation/oa-lab");
    assert!(
        reply
            .header("www-authenticate")
            .unwrap()
            .contains("expired")
    );

    // The open endpoints stay open.
    let anonymous = client(&server, None);
    let statement = anonymous.get("metadata").expect(200, "metadata").resource();
    let security = &statement["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    anonymous.get("$versions").expect(200, "$versions");
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/.well-known/smart-configuration",
    ] {
        let reply = send(anonymous.http.get(format!("{}{path}", server.origin)));
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    let smart = send(
        anonymous
            .http
            .get(format!("{}/.well-known/smart-configuration", server.origin)),
    )
    .json();
    assert!(
        smart["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("permission-v2"))
    );
    assert_eq!(smart["issuer"], ISSUER);
    // SMART App Launch looks under the FHIR base, without a token: the same document.
    let under_base = send(anonymous.http.get(format!(
        "{}/fhir/.well-known/smart-configuration",
        server.origin
    )));
    assert_eq!(under_base.expect(200, "under the base").json(), smart);
    // A client that asks for XML is refused in XML.
    let reply = send(
        anonymous
            .http
            .get(anonymous.url("Patient"))
            .header("accept", "application/fhir+xml"),
    );
    assert_eq!(reply.status, 401);
    assert!(reply.header("www-authenticate").is_some());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/fhir+xml; charset=utf-8")
    );
    assert!(reply.text.contains("<OperationOutcome"), "{}", reply.text);
}

/// Raw Binary content is read and written under the same rules as any read and write.
#[test]
fn raw_binary_content_is_authorized_like_any_read_and_write() {
    let server = seeded();
    let post = |client: &FhirClient| {
        send(
            client
                .http
                .post(client.url("Binary"))
                .header("content-type", "application/pdf")
                .body(b"%PDF-1.4 secret".to_vec()),
        )
    };
    let reader = bearer(&server, &token("system/Binary.r", None));
    assert_outcome(&post(&reader), 403, &["forbidden"]);
    assert_outcome(&post(&client(&server, None)), 401, &["login"]);
    let writer = bearer(&server, &token("system/Binary.c", None));
    let created = post(&writer).expect(201, "create with Binary.c").resource();
    let path = format!("Binary/{}", id_of(&created));
    let raw = |client: &FhirClient| {
        send(
            client
                .http
                .get(client.url(&path))
                .header("accept", "application/pdf"),
        )
    };
    let read = raw(&reader);
    assert_eq!(
        read.expect(200, "raw read with Binary.r").text,
        "%PDF-1.4 secret"
    );
    assert_outcome(&raw(&writer), 403, &["forbidden"]);
    assert_outcome(&raw(&client(&server, None)), 401, &["login"]);
    // A patient's token does not see a Binary outside its compartment: as if absent.
    let patient = bearer(&server, &token("patient/*.rs", Some("pa")));
    assert_outcome(&raw(&patient), 404, &["not-found"]);
    let put = send(
        reader
            .http
            .put(reader.url(&path))
            .header("content-type", "text/plain")
            .body("changed"),
    );
    assert_outcome(&put, 403, &["forbidden"]);
    assert_eq!(raw(&reader).text, "%PDF-1.4 secret");
}

#[test]
fn each_scope_allows_its_interactions_only() {
    let server = seeded();
    // read, vread, history, search, system search, read Patient, create, update(-as-create),
    // delete, batch read entry
    type Row = (&'static str, [u16; 10]);
    let rows: [Row; 12] = [
        (
            "system/*.cruds",
            [200, 200, 200, 200, 200, 200, 201, 201, 204, 200],
        ),
        (
            "user/Observation.rs",
            [200, 200, 200, 200, 200, 403, 403, 403, 403, 200],
        ),
        (
            "user/Observation.r",
            [200, 200, 200, 403, 403, 403, 403, 403, 403, 200],
        ),
        (
            "user/Observation.s",
            [403, 403, 403, 200, 200, 403, 403, 403, 403, 403],
        ),
        (
            "user/Observation.c",
            [403, 403, 403, 403, 403, 403, 201, 403, 403, 403],
        ),
        (
            "user/Observation.u",
            [403, 403, 403, 403, 403, 403, 403, 201, 403, 403],
        ),
        (
            "user/Observation.d",
            [403, 403, 403, 403, 403, 403, 403, 403, 204, 403],
        ),
        (
            "user/*.read",
            [200, 200, 200, 200, 200, 200, 403, 403, 403, 200],
        ),
        (
            "user/*.write",
            [403, 403, 403, 403, 403, 403, 201, 201, 204, 403],
        ),
        (
            "system/*.*",
            [200, 200, 200, 200, 200, 200, 201, 201, 204, 200],
        ),
        (
            "system/Patient.cruds",
            [403, 403, 403, 403, 403, 200, 403, 403, 403, 403],
        ),
        (
            "openid fhirUser launch/patient",
            [403, 403, 403, 403, 403, 403, 403, 403, 403, 403],
        ),
    ];
    for (n, (scope, expected)) in rows.iter().enumerate() {
        let client = bearer(&server, &token(scope, None));
        let fresh = format!("Observation/new-{n}");
        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Observation/oa-lab"}}]});
        let replies = [
            client.get("Observation/oa-lab"),
            client.get("Observation/oa-lab/_history/1"),
            client.get("Observation/oa-lab/_history"),
            client.get("Observation?category=laboratory"),
            client.get("?_type=Observation"),
            client.get("Patient/pa"),
            client.post("Observation", &observation("", "pa", "laboratory", None)),
            client.put(
                &fresh,
                &observation(&format!("new-{n}"), "pa", "laboratory", None),
            ),
            client.delete(&format!("Observation/gone-{n}")),
            client.bundle(&batch),
        ];
        let statuses: Vec<u16> = replies
            .iter()
            .enumerate()
            .map(|(i, reply)| {
                // A batch answers 200 and reports each entry in its response.
                if i == 9 && reply.status == 200 {
                    let status = reply.json()["entry"][0]["response"]["status"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    status[..3].parse().unwrap()
                } else {
                    reply.status
                }
            })
            .collect();
        assert_eq!(statuses, expected, "{scope}");
        for reply in replies.iter().filter(|r| r.status == 403) {
            assert_outcome(reply, 403, &["forbidden"]);
        }
    }
}

#[test]
fn patient_scopes_confine_everything_to_the_compartment() {
    let server = seeded();
    let pa = bearer(
        &server,
        &token("patient/*.rs user/Practitioner.rs", Some("pa")),
    );

    // Reads: the other patient's data reads as absent.
    pa.get("Patient/pa").expect(200, "own record");
    pa.get("Observation/oa-lab").expect(200, "own observation");
    pa.get("Observation/oa-shared")
        .expect(200, "shared observation");
    for path in [
        "Patient/pb",
        "Observation/ob-lab",
        "Observation/ob-lab/_history/1",
        "Observation/ob-lab/_history",
    ] {
        assert_outcome(&pa.get(path), 404, &["not-found"]);
    }

    // Searches find the compartment only, also when asked for more.
    let search = |path: &str| pa.get(path).expect(200, path).resource();
    assert_eq!(
        keys(&search("Observation")),
        set(&[
            "Observation/oa-lab",
            "Observation/oa-vital",
            "Observation/oa-shared"
        ])
    );
    assert_eq!(search("Observation").get("total"), Some(&json!(3)));
    assert_eq!(keys(&search("Observation?subject=Patient/pb")), set(&[]));
    assert_eq!(keys(&search("Patient")), set(&["Patient/pa"]));
    assert_eq!(
        keys(&search("?_type=Patient,Observation&_id=pb,ob-lab")),
        set(&[])
    );
    // The other patient's compartment: only what is in both.
    assert_eq!(
        keys(&search("Patient/pb/Observation")),
        set(&["Observation/oa-shared"])
    );
    assert_eq!(
        keys(&search("Patient/pb/*")),
        set(&["Observation/oa-shared"])
    );
    // _include would reach Patient/pb (oa-shared's performer): it is left out.
    let included =
        search("Observation?_include=Observation:performer&_include=Observation:subject");
    assert_eq!(
        keys(&included),
        set(&[
            "Observation/oa-lab",
            "Observation/oa-vital",
            "Observation/oa-shared",
            "Patient/pa"
        ])
    );
    // _revinclude from Practitioner/dr would reach ob-lab.
    let revincluded = search("Practitioner?_revinclude=Observation:performer");
    assert_eq!(keys(&revincluded), set(&["Practitioner/dr"]));
    // _has and chains run within the compartment: dr performed only pb's observation.
    assert_eq!(
        keys(&search(
            "Practitioner?_has:Observation:performer:category=laboratory"
        )),
        set(&[])
    );
    assert_eq!(
        keys(&search("Observation?subject:Patient.name=Beta")),
        set(&[])
    );
    assert_eq!(
        keys(&search("Observation?subject:Patient.name=Alpha")).len(),
        3
    );

    // $everything: of the other patient nothing; of its own, nothing of the other.
    assert_outcome(&pa.get("Patient/pb/$everything"), 404, &["not-found"]);
    let everything = search("Patient/pa/$everything");
    let found = keys(&everything);
    assert!(found.contains("Observation/oa-shared"), "{found:?}");
    assert!(
        !found.contains("Patient/pb") && !found.contains("Observation/ob-lab"),
        "{found:?}"
    );

    // History: only the compartment's versions.
    let history = search("_history");
    assert_eq!(
        keys(&history),
        set(&[
            "Patient/pa",
            "Practitioner/dr",
            "Observation/oa-lab",
            "Observation/oa-vital",
            "Observation/oa-shared"
        ])
    );
    assert_eq!(keys(&search("Observation/_history")).len(), 3);
    // Their total would count the versions the token may not see: it is left out.
    assert!(history.get("total").is_none(), "{history}");
    let admin = bearer(&server, &token("system/*.rs", None));
    let all = admin.get("_history").expect(200, "history").resource();
    assert_eq!(all["total"], 7);

    // Writes are not granted at all (rs).
    assert_outcome(
        &pa.put(
            "Observation/oa-lab",
            &observation("oa-lab", "pa", "laboratory", None),
        ),
        403,
        &["forbidden"],
    );

    // patient/ scopes without a patient claim grant nothing.
    let nobody = bearer(&server, &signed(SECRET, json!({"scope": "patient/*.rs"})));
    let refused = assert_outcome(&nobody.get("Observation/oa-lab"), 403, &["forbidden"]);
    assert!(
        refused["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("patient claim")
    );
}

#[test]
fn scope_queries_restrict_reads_and_searches() {
    let server = seeded();
    let lab = bearer(
        &server,
        &token("patient/Observation.rs?category=laboratory", Some("pa")),
    );
    lab.get("Observation/oa-lab")
        .expect(200, "a laboratory result");
    assert_outcome(&lab.get("Observation/oa-vital"), 404, &["not-found"]);
    assert_outcome(&lab.get("Patient/pa"), 403, &["forbidden"]);
    let found = lab.get("Observation").expect(200, "search").resource();
    assert_eq!(
        keys(&found),
        set(&["Observation/oa-lab", "Observation/oa-shared"])
    );
    let found = lab
        .get("Observation?category=vital-signs")
        .expect(200, "search")
        .resource();
    assert_eq!(keys(&found), set(&[]));

    // Two scopes add up.
    let both = bearer(
        &server,
        &token(
            "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs",
            Some("pa"),
        ),
    );
    let found = both.get("Observation").expect(200, "search").resource();
    assert_eq!(keys(&found).len(), 3);

    // A user scope with a restriction that is no search parameter refuses rather than widens.
    let broken = bearer(&server, &token("user/Observation.rs?nonsense=1", None));
    assert_outcome(&broken.get("Observation"), 403, &["forbidden"]);
}

#[test]
fn patient_writes_stay_in_the_compartment() {
    let server = seeded();
    let pa = bearer(&server, &token("patient/Observation.cruds", Some("pa")));
    let created = pa.post("Observation", &observation("", "pa", "laboratory", None));
    created.expect(201, "own observation");
    assert_outcome(
        &pa.post("Observation", &observation("", "pb", "laboratory", None)),
        403,
        &["forbidden"],
    );
    // Taking over the other patient's observation: it is written as one that does not
    // exist (see tests/isolation.rs), which a confined token cannot create with its own id.
    assert_outcome(
        &pa.put(
            "Observation/ob-lab",
            &observation("ob-lab", "pa", "laboratory", None),
        ),
        405,
        &["not-supported"],
    );
    // Giving one away: refused.
    assert_outcome(
        &pa.put(
            "Observation/oa-lab",
            &observation("oa-lab", "pb", "laboratory", None),
        ),
        403,
        &["forbidden"],
    );
    pa.put(
        "Observation/oa-lab",
        &observation("oa-lab", "pa", "laboratory", Some("Practitioner/dr")),
    )
    .expect(200, "own update");
    // Deleting the other's deletes nothing, as deleting what does not exist.
    let deleted = pa.delete("Observation/ob-lab");
    deleted.expect(204, "the other's");
    assert_eq!(deleted.header("etag"), None);
    pa.delete("Observation/oa-vital").expect(204, "own delete");
    // A deleted observation of its own reads as gone; the other's still reads as absent.
    assert_outcome(&pa.get("Observation/oa-vital"), 410, &["deleted"]);
    // Conditional writes pick only among its own.
    pa.delete("Observation?subject=Patient/pb")
        .expect(204, "matches nothing of its own");
    let admin = bearer(&server, &token("system/*.cruds", None));
    let other = admin.get("Observation/ob-lab");
    other.expect(200, "still there");
    assert_eq!(other.etag(), "W/\"1\"");
    admin
        .get("Observation/oa-lab")
        .expect(200, "updated")
        .resource();
}

/// A Subscription delivers everything its criteria match: only a token that may read all of
/// it may create or change one.
#[test]
fn a_subscription_needs_read_on_everything_it_matches() {
    let server = seeded();
    let subscription = |criteria: &str| {
        json!({"resourceType": "Subscription", "status": "off", "reason": "test",
            "criteria": criteria,
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}})
    };
    let writer = bearer(&server, &token("user/Subscription.cruds", None));
    assert_outcome(
        &writer.post(
            "Subscription",
            &subscription("Observation?category=laboratory"),
        ),
        403,
        &["forbidden"],
    );
    let confined = bearer(
        &server,
        &token("user/Subscription.cruds patient/Observation.rs", Some("pa")),
    );
    assert_outcome(
        &confined.post("Subscription", &subscription("Observation")),
        403,
        &["forbidden"],
    );
    let reader = bearer(
        &server,
        &token("user/Subscription.cruds user/Observation.rs", None),
    );
    let created = reader
        .post(
            "Subscription",
            &subscription("Observation?category=laboratory"),
        )
        .expect(201, "a reader's subscription")
        .resource();
    // Changing it to criteria the token cannot read is refused too.
    let mut changed = created.clone();
    changed["criteria"] = json!("Patient");
    assert_outcome(
        &reader.put(&format!("Subscription/{}", id_of(&created)), &changed),
        403,
        &["forbidden"],
    );
}

#[test]
fn bundles_are_authorized_entry_by_entry() {
    let server = seeded();
    let pa = bearer(&server, &token("patient/Observation.crs", Some("pa")));
    let entry = |method: &str, url: &str, resource: Option<Value>| {
        let mut entry = json!({"request": {"method": method, "url": url}});
        if let Some(resource) = resource {
            entry["resource"] = resource;
        }
        entry
    };
    let mine = observation("", "pa", "laboratory", None);
    let theirs = observation("", "pb", "laboratory", None);
    let entries = vec![
        entry("GET", "Observation/oa-lab", None),
        entry("GET", "Observation/ob-lab", None),
        entry("POST", "Observation", Some(mine.clone())),
        entry("POST", "Observation", Some(theirs.clone())),
        entry("DELETE", "Observation/oa-vital", None),
        entry("GET", "Patient/pa", None),
    ];
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": entries});
    let reply = pa.bundle(&batch).expect(200, "batch").resource();
    let statuses: Vec<&str> = reply["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["response"]["status"].as_str().unwrap()[..3])
        .collect();
    assert_eq!(statuses, ["200", "404", "201", "403", "403", "403"]);
    assert_eq!(reply["entry"][3]["response"]["status"], "403 Forbidden");
    let outcome = &reply["entry"][3]["response"]["outcome"];
    assert_eq!(outcome["issue"][0]["code"], "forbidden");

    // A transaction with one forbidden entry is refused whole: nothing of it is written.
    let marker = json!([{"system": "urn:test", "value": "tx-marker"}]);
    let mut allowed = mine.clone();
    allowed["identifier"] = marker;
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Observation", Some(allowed)),
        entry("POST", "Observation", Some(theirs)),
    ]});
    let refused = pa.bundle(&transaction);
    assert_outcome(&refused, 403, &["forbidden"]);
    let found = pa
        .get("Observation?identifier=urn:test|tx-marker")
        .expect(200, "search")
        .resource();
    assert_eq!(keys(&found), set(&[]));
    // The same transaction without it goes through.
    let mut allowed = mine;
    allowed["identifier"] = json!([{"system": "urn:test", "value": "tx-ok"}]);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Observation", Some(allowed)),
    ]});
    pa.bundle(&transaction).expect(200, "transaction");
}

/// GET entries run within the token's view like the endpoints they stand for, and the
/// criteria of conditional entries match only what the token may change.
#[test]
fn bundle_searches_and_conditional_entries_stay_in_the_view() {
    let server = seeded();
    let pa = bearer(
        &server,
        &token("patient/Observation.cruds patient/Patient.rs", Some("pa")),
    );
    let entry = |method: &str, url: &str| json!({"request": {"method": method, "url": url}});
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        entry("GET", "Observation?category=laboratory"),
        entry("GET", "Observation/_history"),
        entry("GET", "Patient/pb"),
        entry("GET", "Practitioner/dr"),
    ]});
    let reply = pa.bundle(&batch).expect(200, "batch").resource();
    let entries = reply["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| &e["response"]["status"].as_str().unwrap()[..3])
        .collect();
    assert_eq!(statuses, ["200", "200", "404", "403"]);
    let found = &entries[0]["resource"];
    assert_eq!(
        keys(found),
        set(&["Observation/oa-lab", "Observation/oa-shared"])
    );
    assert_eq!(found["total"], 2);
    let history = &entries[1]["resource"];
    assert_eq!(keys(history).len(), 3);
    assert!(history.get("total").is_none(), "{history}");
    // A conditional delete matching a result the token may read but not change (oa-shared is
    // pb's too) is refused whole.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        entry("DELETE", "Observation?category=laboratory"),
    ]});
    let reply = pa.bundle(&batch).expect(200, "batch").resource();
    assert_eq!(reply["entry"][0]["response"]["status"], "403 Forbidden");
    let admin = bearer(&server, &token("system/*.cruds", None));
    admin.get("Observation/oa-lab").expect(200, "refused whole");
    // One that matches its own results takes them, never the other patient's.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        entry("DELETE", "Observation?_id=oa-lab,ob-lab"),
    ]});
    let reply = pa.bundle(&batch).expect(200, "batch").resource();
    assert_eq!(reply["entry"][0]["response"]["status"], "204 No Content");
    admin.get("Observation/ob-lab").expect(200, "not pa's");
    admin
        .get("Observation/oa-shared")
        .expect(200, "not pa's alone");
    assert_eq!(admin.get("Observation/oa-lab").status, 410);
    admin
        .get("Observation/oa-vital")
        .expect(200, "not laboratory");
    // A token that may not delete gets 403 for a conditional delete, matches or not.
    let reader = bearer(&server, &token("patient/Observation.rs", Some("pa")));
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        entry("DELETE", "Observation?category=vital-signs"),
        entry("DELETE", "Observation?category=nothing"),
    ]});
    let reply = reader.bundle(&batch).expect(200, "batch").resource();
    for entry in reply["entry"].as_array().unwrap() {
        assert_eq!(entry["response"]["status"], "403 Forbidden", "{entry}");
    }
    admin.get("Observation/oa-vital").expect(200, "not deleted");
}

/// Starts a server with `args`, checks that a token signed with `key` (and `kid`) reads, and
/// that the public key used as an HS256 secret (the algorithm confusion attack) does not.
fn check_public_key_server(
    args: &[&str],
    algorithm: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
    public: &[u8],
) {
    let temp = tempfile::tempdir().unwrap();
    let server = TestServer::start_on(&temp.path().join("data"), args);
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": "svc", "exp": now + 600, "scope": "system/*.cruds"});
    let mut header = Header::new(algorithm);
    header.kid = kid.map(String::from);
    let good = jsonwebtoken::encode(&header, &claims, key).unwrap();
    let client = bearer(&server, &good);
    client
        .put("Patient/k", &json!({"resourceType": "Patient", "id": "k"}))
        .expect(201, "with the key");
    client.get("Patient/k").expect(200, "read back");
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(public),
    )
    .unwrap();
    assert_outcome(
        &bearer(&server, &confused).get("Patient/k"),
        401,
        &["login"],
    );
    let statement = client.get("metadata").resource();
    let description = statement["rest"][0]["security"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.contains(&format!("{algorithm:?}")),
        "{description}"
    );
}

#[test]
fn rs256_with_a_pem_key_and_es256_with_a_jwks() {
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path();
    common::keys::make_keys(dir);

    let rsa_private =
        EncodingKey::from_rsa_pem(&std::fs::read(dir.join("rsa.pem")).unwrap()).unwrap();
    let rsa_public = std::fs::read(dir.join("rsa.pub.pem")).unwrap();
    let pem = dir.join("rsa.pub.pem");
    check_public_key_server(
        &["--auth", "rs256", "--auth-key", pem.to_str().unwrap()],
        Algorithm::RS256,
        &rsa_private,
        None,
        &rsa_public,
    );

    let ec_private = EncodingKey::from_ec_pem(&std::fs::read(dir.join("ec.pem")).unwrap()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&ec_private, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("ec-1".into());
    let jwks = serde_json::to_string(&json!({"keys": [jwk]})).unwrap();
    std::fs::write(dir.join("jwks.json"), &jwks).unwrap();
    let path = dir.join("jwks.json");
    check_public_key_server(
        &["--auth", "es256", "--auth-jwks", path.to_str().unwrap()],
        Algorithm::ES256,
        &ec_private,
        Some("ec-1"),
        jwks.as_bytes(),
    );
}

#[test]
fn fhirlake_token_refuses_what_it_cannot_mean() {
    for args in [
        &["--scope", "patient/*.rs"][..],
        &["--scope", "patient/Observation.xyz", "--patient", "p"][..],
        &["--scope", "system/*.rs", "--expires", "soon"][..],
    ] {
        let output = token_command(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .args(["token", "--auth", "rs256", "--scope", "system/*.rs"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("HS256"));
}

/// The README's first command on a fresh machine: `serve` with no settings makes a secret in
/// its data directory, and `fhirlake token --data DIR` mints tokens it takes.
#[test]
fn a_fresh_server_makes_its_secret_and_takes_the_tokens_minted_for_it() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut command = TestServer::command(&data, &[]);
    command.env_remove("FHIRLAKE_AUTH");
    let server = TestServer::spawn(command, &data);
    let secret = data.join("auth-secret");
    assert!(secret.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the secret is the owner's only");
    }
    client(&server, None).get("Patient").expect(401, "no token");
    let output = Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .args(["token", "--scope", "system/*.rs", "--data"])
        .arg(&data)
        .env_remove("FHIRLAKE_AUTH")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    bearer(&server, &token)
        .get("Patient")
        .expect(200, "with a minted token");
}

#[test]
fn auth_none_says_so() {
    let fhir = Fhir::start();
    let statement = fhir.get("metadata").expect(200, "metadata").resource();
    let security = &statement["rest"][0]["security"];
    assert!(security["description"].as_str().unwrap().contains("OFF"));
    assert!(security.get("service").is_none());
    let smart = send(fhir.http.get(format!(
        "{}/.well-known/smart-configuration",
        fhir.server.origin
    )));
    assert_outcome(&smart, 404, &["not-found"]);
    assert_outcome(
        &fhir.get(".well-known/smart-configuration"),
        404,
        &["not-found"],
    );
    fhir.get("Patient").expect(200, "no token needed");
}

#[test]
fn every_request_leaves_an_audit_line() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut command = TestServer::command(&data, &[HS256, &["--log-format", "json"]].concat());
    command.env("RUST_LOG", "audit=info").stderr(Stdio::piped());
    let mut server = TestServer::spawn(command, &data);
    let stderr = server.take_stderr().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map(|l| l.unwrap())
            .collect::<Vec<String>>()
    });
    let token = mint(&[
        "--scope",
        "user/Patient.r",
        "--subject",
        "alice",
        "--client-id",
        "chart-app",
    ]);
    let alice = bearer(&server, &token);
    alice.get("Patient/nobody").expect(404, "read");
    assert_eq!(alice.get("Observation").status, 403);
    assert_eq!(client(&server, None).get("Patient/x").status, 401);
    assert!(server.terminate().success());
    let lines = reader.join().unwrap();
    let audits: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["target"] == "audit")
        .collect();
    let find = |status: u64| {
        audits
            .iter()
            .find(|e| e["status"] == status)
            .unwrap_or_else(|| panic!("no audit line with {status}: {lines:#?}"))
    };
    let read = find(404);
    assert_eq!(read["subject"], "alice");
    assert_eq!(read["client"], "chart-app");
    assert_eq!(read["interaction"], "read");
    assert_eq!(read["resource_type"], "Patient");
    assert_eq!(read["id"], "nobody");
    assert_eq!(read["outcome"], 4);
    assert!(read["at"].is_string());
    assert_eq!(find(403)["interaction"], "search-type");
    assert_eq!(find(401)["who"], "anonymous");
    // The token appears nowhere in the log.
    let signature = token.rsplit('.').next().unwrap();
    assert!(lines.iter().all(|l| !l.contains(signature)));
}

/// PATCH is an update: it needs `u`, and a token confined to part of a type may patch only
/// what it may update, into something it may still update; a patch of what it may not see is
/// refused before it runs, so a JSON Patch `test` cannot tell what that resource holds.
#[test]
fn patches_are_authorized_as_updates() {
    let server = seeded();
    let json_patch = |client: &FhirClient, path: &str, body: Value| {
        send(
            client
                .http
                .patch(client.url(path))
                .header("content-type", "application/json-patch+json")
                .body(body.to_string()),
        )
    };
    let set_status = json!([{"op": "replace", "path": "/status", "value": "amended"}]);
    let reader = bearer(&server, &token("system/Observation.rs", None));
    assert_outcome(
        &json_patch(&reader, "Observation/oa-lab", set_status.clone()),
        403,
        &["forbidden"],
    );
    let pa = bearer(&server, &token("patient/Observation.cruds", Some("pa")));
    json_patch(&pa, "Observation/oa-lab", set_status.clone()).expect(200, "its own");
    // The other patient's: answered as one that does not exist, whether the test would pass
    // or fail.
    let absent = json_patch(&pa, "Observation/nothing", set_status.clone());
    assert_outcome(&absent, 404, &["not-found"]);
    for value in ["final", "amended"] {
        let probe = json!([{"op": "test", "path": "/status", "value": value}]);
        let reply = json_patch(&pa, "Observation/ob-lab", probe);
        assert_outcome(&reply, 404, &["not-found"]);
        assert_eq!(
            reply.text.replace("ob-lab", "nothing"),
            absent.text,
            "a hidden resource's patch answers as an absent one's"
        );
    }
    // Giving its own away is refused too.
    let give_away = json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/pb"}]);
    assert_outcome(
        &json_patch(&pa, "Observation/oa-vital", give_away),
        403,
        &["forbidden"],
    );
    // A conditional patch picks among its own only: pb's laboratory Observation is not seen.
    json_patch(&pa, "Observation?category=vital-signs", set_status.clone())
        .expect(200, "its one vital-signs Observation");
    assert_outcome(
        &json_patch(&pa, "Observation?subject=Patient/pb", set_status),
        404,
        &["not-found"],
    );
    let admin = bearer(&server, &token("system/*.cruds", None));
    let ob = admin
        .get("Observation/ob-lab")
        .expect(200, "read")
        .resource();
    assert_eq!(
        (ob["status"].as_str(), ob["meta"]["versionId"].as_str()),
        (Some("final"), Some("1"))
    );
}
