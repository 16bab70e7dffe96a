//! SMART Backend Services over HTTP against the real binary: clients registered with
//! `fhirlake client add`, signed client assertions, the token endpoint's answers and
//! refusals, and its tokens at work (read and search within the scopes granted, 403 beyond),
//! beside the HS256 tokens of the configured issuer.
//!
//! The clients' keys are made in each test by `openssl` (RSA 2048 for RS384, EC P-384 for
//! ES384: `common::keys::make_client_keys`), their JWKS by jsonwebtoken from the private keys;
//! one test follows the README's recipe, where openssl alone makes the JWKS and signs.

mod common;

use common::TestServer;
use common::auth::{HS256, bearer, token};
use common::fhir::{Reply, assert_outcome, send};
use common::keys::public_jwk;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A data directory and the keys of the clients the tests register.
struct Setup {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    /// `jwks.json`: the RSA key as `rsa-1` (RS384) and the EC key as `ec-1` (ES384).
    jwks: PathBuf,
    rsa: EncodingKey,
    ec: EncodingKey,
}

fn setup() -> Setup {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().to_path_buf();
    common::keys::make_client_keys(&dir);
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(dir.join("rsa.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(dir.join("ec384.pem")).unwrap()).unwrap();
    let set = JwkSet {
        keys: vec![
            public_jwk(&rsa, Algorithm::RS384, "rsa-1"),
            public_jwk(&ec, Algorithm::ES384, "ec-1"),
        ],
    };
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec(&set).unwrap()).unwrap();
    Setup {
        data: dir.join("data"),
        _temp: temp,
        dir,
        jwks,
        rsa,
        ec,
    }
}

/// Runs `fhirlake ARGS --data DATA`; its output, whether it succeeded or not.
fn fhirlake(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fhirlake"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run fhirlake")
}

impl Setup {
    /// Registers `id` with `scope` and the keys of `jwks.json`.
    fn register(&self, id: &str, scope: &str) -> String {
        let jwks = self.jwks.to_str().unwrap();
        let args = [
            "client", "add", "--id", id, "--jwks", jwks, "--scope", scope,
        ];
        common::run_command(&args, &self.data)
    }

    fn start(&self, extra: &[&str]) -> TestServer {
        TestServer::start_on(&self.data, &[HS256, extra].concat())
    }
}

fn token_url(server: &TestServer) -> String {
    format!("{}/auth/token", server.origin)
}

/// The claims of a good assertion of `client` for `server`, changed by `changes` (a null
/// removes a claim).
fn claims(client: &str, server: &TestServer, changes: Value) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({"iss": client, "sub": client, "aud": token_url(server),
        "exp": now + 240, "jti": uuid::Uuid::new_v4().to_string()});
    for (name, value) in changes.as_object().unwrap() {
        let claims = claims.as_object_mut().unwrap();
        match value {
            Value::Null => claims.remove(name),
            value => claims.insert(name.clone(), value.clone()),
        };
    }
    claims
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// POSTs `pairs` as a form to the token endpoint.
fn post(server: &TestServer, pairs: &[(&str, &str)]) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    send(
        common::client()
            .post(token_url(server))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
}

/// A token request with `assertion` for `scope`.
fn ask(server: &TestServer, assertion: &str, scope: &str) -> Reply {
    post(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", scope),
        ],
    )
}

/// Asserts a 200 token answer; returns it.
fn granted(reply: &Reply) -> Value {
    reply.expect(200, "a token");
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    let answer = reply.json();
    assert_eq!(answer["token_type"], "bearer");
    assert!(
        answer["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    answer
}

/// Asserts an OAuth 2.0 error (400, JSON, `error` = `code`); returns its description.
fn refused(reply: &Reply, code: &str, what: &str) -> String {
    assert_eq!(reply.status, 400, "{what}: {}", reply.text);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(reply.header("cache-control").as_deref(), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["error"], code, "{what}: {body}");
    body["error_description"].as_str().unwrap().to_string()
}

/// Seeds Patient `p1` and its Observation `o1` with an HS256 token of the configured issuer.
fn seed(server: &TestServer) {
    let admin = bearer(server, &token("system/*.cruds", None));
    admin
        .put(
            "Patient/p1",
            &json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}]}),
        )
        .expect(201, "Patient");
    admin
        .put(
            "Observation/o1",
            &common::auth::observation("o1", "p1", "laboratory", None),
        )
        .expect(201, "Observation");
}

#[test]
fn a_registered_client_gets_a_token_and_reads_within_its_scopes() {
    let setup = setup();
    let registered = setup.register("bulk", "system/*.read");
    assert!(registered.contains("system/*.rs"), "{registered}");
    setup.register("narrow", "system/Patient.rs");
    let listed = common::run_command(&["client", "list"], &setup.data);
    assert!(
        listed.contains("bulk\tsystem/*.rs\tjwks kid=rsa-1,ec-1"),
        "{listed}"
    );
    assert!(listed.contains("narrow\tsystem/Patient.rs"), "{listed}");
    let server = setup.start(&[]);
    seed(&server);

    // What the server announces, under the FHIR base without a token.
    let smart = send(common::client().get(server.url(".well-known/smart-configuration")));
    let smart = smart.expect(200, "smart-configuration").json();
    assert_eq!(smart["token_endpoint"], token_url(&server));
    assert_eq!(
        smart["grant_types_supported"],
        json!(["client_credentials"])
    );
    assert_eq!(
        smart["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt"])
    );
    assert_eq!(
        smart["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS384", "ES384"])
    );
    let capabilities = smart["capabilities"].as_array().unwrap();
    for capability in ["client-confidential-asymmetric", "permission-v2"] {
        assert!(capabilities.contains(&json!(capability)), "{smart}");
    }
    let statement = send(common::client().get(server.url("metadata"))).json();
    let uris = &statement["rest"][0]["security"]["extension"][0];
    assert_eq!(
        uris["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(uris["extension"][0]["url"], "token");
    assert_eq!(uris["extension"][0]["valueUri"], token_url(&server));

    // RS384: everything its scopes allow to read and search, nothing to write.
    let assertion = sign(
        &setup.rsa,
        Algorithm::RS384,
        Some("rsa-1"),
        &claims("bulk", &server, json!({})),
    );
    let answer = granted(&ask(&server, &assertion, "system/*.rs"));
    assert_eq!(answer["scope"], "system/*.rs");
    assert_eq!(answer["expires_in"], 300);
    let client = bearer(&server, answer["access_token"].as_str().unwrap());
    client.get("Patient/p1").expect(200, "read a Patient");
    client
        .get("Observation/o1")
        .expect(200, "read an Observation");
    let found = client.get("Observation?subject=Patient/p1").resource();
    assert_eq!(found["entry"].as_array().unwrap().len(), 1, "{found}");
    assert_outcome(
        &client.put(
            "Patient/p1",
            &json!({"resourceType": "Patient", "id": "p1", "active": true}),
        ),
        403,
        &["forbidden"],
    );

    // ES384, a client asking for more than it may have: what both allow.
    let assertion = sign(
        &setup.ec,
        Algorithm::ES384,
        Some("ec-1"),
        &claims("narrow", &server, json!({})),
    );
    let answer = granted(&ask(
        &server,
        &assertion,
        "system/Patient.rs system/Observation.rs launch",
    ));
    assert_eq!(answer["scope"], "system/Patient.rs");
    let narrow = bearer(&server, answer["access_token"].as_str().unwrap());
    narrow.get("Patient/p1").expect(200, "read a Patient");
    let found = narrow.get("Patient?name=One").resource();
    assert_eq!(found["entry"].as_array().unwrap().len(), 1, "{found}");
    assert_outcome(&narrow.get("Observation/o1"), 403, &["forbidden"]);
    assert_outcome(&narrow.get("Observation"), 403, &["forbidden"]);

    // The configured issuer's tokens still work beside them.
    bearer(&server, &token("system/*.rs", None))
        .get("Observation/o1")
        .expect(200, "an HS256 token");
}

#[test]
fn every_bad_request_is_refused_as_oauth_says() {
    let setup = setup();
    setup.register("bulk", "system/*.rs");
    setup.register("narrow", "system/Patient.rs");
    let server = setup.start(&[]);
    let now = jsonwebtoken::get_current_timestamp();
    let rs384 = |client: &str, changes: Value| {
        sign(
            &setup.rsa,
            Algorithm::RS384,
            Some("rsa-1"),
            &claims(client, &server, changes),
        )
    };
    let good = || rs384("bulk", json!({}));

    // The assertion.
    let cases = [
        (
            sign(
                &setup.rsa,
                Algorithm::RS256,
                Some("rsa-1"),
                &claims("bulk", &server, json!({})),
            ),
            "RS384 or ES384",
            "an RS256 assertion",
        ),
        (
            sign(
                &setup.ec,
                Algorithm::ES384,
                Some("rsa-1"),
                &claims("bulk", &server, json!({})),
            ),
            "kid",
            "a kid naming a key of another type",
        ),
        (
            sign(
                &setup.rsa,
                Algorithm::RS384,
                Some("rsa-9"),
                &claims("bulk", &server, json!({})),
            ),
            "kid",
            "an unknown kid",
        ),
        (
            sign(
                &setup.rsa,
                Algorithm::RS384,
                None,
                &claims("bulk", &server, json!({})),
            ),
            "kid",
            "no kid",
        ),
        (
            rs384("bulk", json!({"aud": format!("{}/fhir", server.origin)})),
            "aud",
            "the FHIR base as aud",
        ),
        (
            rs384(
                "bulk",
                json!({"aud": "https://elsewhere.example/auth/token"}),
            ),
            "aud",
            "another server's token URL as aud",
        ),
        (
            rs384("bulk", json!({"exp": now - 3600})),
            "expired",
            "an expired assertion",
        ),
        (
            rs384("bulk", json!({"exp": now + 3600})),
            "five minutes",
            "exp an hour ahead",
        ),
        (
            rs384("bulk", json!({"sub": "narrow"})),
            "iss and sub",
            "sub another client",
        ),
        (rs384("bulk", json!({"jti": null})), "jti", "no jti"),
        (
            rs384("stranger", json!({})),
            "no backend client 'stranger'",
            "an unknown client",
        ),
        ("not-a-jwt".to_string(), "well-formed", "not a JWT"),
        (
            format!("{}.{}", good(), "x".repeat(9000)),
            "larger than 8192 bytes",
            "an oversized assertion",
        ),
    ];
    for (assertion, says, what) in cases {
        let why = refused(
            &ask(&server, &assertion, "system/*.rs"),
            "invalid_client",
            what,
        );
        assert!(why.contains(says), "{what}: {why}");
    }

    // Scopes the client is not registered with.
    for scope in ["system/Observation.rs", "patient/*.rs", "system/Patient.c"] {
        let assertion = rs384("narrow", json!({}));
        refused(&ask(&server, &assertion, scope), "invalid_scope", scope);
    }

    // The form.
    let assertion = good();
    let base = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("scope", "system/*.rs"),
    ];
    let without = |name: &str| -> Vec<(&str, &str)> {
        base.iter().copied().filter(|(n, _)| *n != name).collect()
    };
    let with = |name: &'static str, value: &'static str| -> Vec<(&'static str, &str)> {
        let mut pairs = without(name);
        pairs.push((name, value));
        pairs
    };
    let long_scope = "system/*.rs ".repeat(400);
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form, &str, &str)> = vec![
        (without("grant_type"), "invalid_request", "no grant_type"),
        (
            with("grant_type", "password"),
            "unsupported_grant_type",
            "grant_type password",
        ),
        (
            with("grant_type", "authorization_code"),
            "unsupported_grant_type",
            "grant_type authorization_code",
        ),
        (
            without("client_assertion"),
            "invalid_client",
            "no client_assertion",
        ),
        (
            with("client_assertion_type", "urn:other"),
            "invalid_client",
            "another assertion type",
        ),
        (without("scope"), "invalid_request", "no scope"),
        (
            [base.to_vec(), vec![("scope", "system/*.rs")]].concat(),
            "invalid_request",
            "scope twice",
        ),
        (
            [without("scope"), vec![("scope", long_scope.as_str())]].concat(),
            "invalid_request",
            "a scope of 4800 characters",
        ),
        (
            [base.to_vec(), vec![("client_id", "narrow")]].concat(),
            "invalid_client",
            "a client_id that is not the assertion's",
        ),
    ];
    for (pairs, code, what) in cases {
        refused(&post(&server, &pairs), code, what);
    }
    // Not a form, not UTF-8, too large.
    let endpoint = token_url(&server);
    let raw = |content_type: &str, body: Vec<u8>| {
        send(
            common::client()
                .post(&endpoint)
                .header("content-type", content_type)
                .body(body),
        )
    };
    refused(
        &raw(
            "application/json",
            b"{\"grant_type\": \"client_credentials\"}".to_vec(),
        ),
        "invalid_request",
        "a JSON body",
    );
    refused(
        &raw(
            "application/x-www-form-urlencoded",
            b"grant_type=%FF%FE".to_vec(),
        ),
        "invalid_request",
        "a form that is not UTF-8",
    );
    let huge = format!("grant_type=client_credentials&pad={}", "x".repeat(20_000));
    refused(
        &raw("application/x-www-form-urlencoded", huge.into_bytes()),
        "invalid_request",
        "a form of 20 kB",
    );
    // Other methods are not the endpoint's.
    let get = send(common::client().get(&endpoint));
    assert_eq!(get.status, 405);

    // After all that, the good assertion still buys its token.
    granted(&ask(&server, &assertion, "system/*.rs"));
}

#[test]
fn an_assertion_buys_one_token_across_restarts() {
    let setup = setup();
    setup.register("bulk", "system/*.rs");
    // The public URL stays when the server restarts (on another port, here).
    let public = ["--base-url", "https://fhir.example.org/fhir"];
    let aud = json!({"aud": "https://fhir.example.org/auth/token"});
    let mut server = setup.start(&public);
    let assertion = sign(
        &setup.ec,
        Algorithm::ES384,
        Some("ec-1"),
        &claims("bulk", &server, aud.clone()),
    );
    granted(&ask(&server, &assertion, "system/*.rs"));
    let why = refused(
        &ask(&server, &assertion, "system/*.rs"),
        "invalid_client",
        "a reused assertion",
    );
    assert!(why.contains("used before"), "{why}");

    // The CLI cannot open the store while the server runs, and says so.
    let output = fhirlake(&["client", "remove", "--id", "bulk"], &setup.data);
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("stop it"), "{error}");

    // A crash does not forget the assertion, but the token issued before stays good until it
    // expires.
    server.kill();
    let server = setup.start(&public);
    let why = refused(
        &ask(&server, &assertion, "system/*.rs"),
        "invalid_client",
        "a reused assertion after a restart",
    );
    assert!(why.contains("used before"), "{why}");
    // Two requests with one new assertion at once: one token.
    let assertion = sign(
        &setup.rsa,
        Algorithm::RS384,
        Some("rsa-1"),
        &claims("bulk", &server, aud.clone()),
    );
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let asks: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| ask(&server, &assertion, "system/*.rs")))
            .collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    let token = granted(replies.iter().find(|r| r.status == 200).unwrap())["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    drop(server);

    // A removed client gets no more tokens.
    common::run_command(&["client", "remove", "--id", "bulk"], &setup.data);
    let server = setup.start(&public);
    bearer(&server, &token)
        .get("Patient")
        .expect(200, "a token issued before the restart");
    let assertion = sign(
        &setup.rsa,
        Algorithm::RS384,
        Some("rsa-1"),
        &claims("bulk", &server, aud.clone()),
    );
    let why = refused(
        &ask(&server, &assertion, "system/*.rs"),
        "invalid_client",
        "a removed client",
    );
    assert!(why.contains("no backend client"), "{why}");
}

/// Serves `jwks` at `http://127.0.0.1:PORT/jwks.json` until the test ends; counts the GETs.
fn serve_jwks(jwks: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n",
                jwks.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&jwks);
        }
    });
    (url, count)
}

#[test]
fn keys_from_a_jwks_url_follow_the_endpoint_rules() {
    let setup = setup();
    let (url, fetches) = serve_jwks(std::fs::read(&setup.jwks).unwrap());
    let register = |id: &str, url: &str| {
        let args = [
            "client",
            "add",
            "--id",
            id,
            "--jwks-url",
            url,
            "--scope",
            "system/*.rs",
        ];
        common::run_command(&args, &setup.data)
    };
    register("by-url", &url);
    // A loopback address that --subscription-endpoints does not list.
    let unlisted = format!("http://127.0.0.1:{}/jwks.json", {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    });
    register("unlisted", &unlisted);
    let prefix = url.trim_end_matches("jwks.json");
    let server = setup.start(&["--subscription-endpoints", prefix]);

    for round in 0..2 {
        let assertion = sign(
            &setup.ec,
            Algorithm::ES384,
            Some("ec-1"),
            &claims("by-url", &server, json!({})),
        );
        granted(&ask(&server, &assertion, "system/*.rs"));
        // Fetched once, then taken from the cache.
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "round {round}");
    }
    // A jku that is the registered URL is fine; any other is refused.
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some("rsa-1".into());
    header.jku = Some(url.clone());
    let claims_now = claims("by-url", &server, json!({}));
    let assertion = jsonwebtoken::encode(&header, &claims_now, &setup.rsa).unwrap();
    granted(&ask(&server, &assertion, "system/*.rs"));
    header.jku = Some(unlisted.clone());
    let assertion =
        jsonwebtoken::encode(&header, &claims("by-url", &server, json!({})), &setup.rsa).unwrap();
    let why = refused(
        &ask(&server, &assertion, "system/*.rs"),
        "invalid_client",
        "jku",
    );
    assert!(why.contains("jku"), "{why}");

    let assertion = sign(
        &setup.ec,
        Algorithm::ES384,
        Some("ec-1"),
        &claims("unlisted", &server, json!({})),
    );
    let why = refused(
        &ask(&server, &assertion, "system/*.rs"),
        "invalid_client",
        "an unlisted loopback JWKS URL",
    );
    assert!(
        why.contains("loopback") && why.contains("--subscription-endpoints"),
        "{why}"
    );
}

#[test]
fn registration_refuses_what_cannot_work() {
    let setup = setup();
    let jwks = setup.jwks.to_str().unwrap();
    let p256 = setup.dir.join("p256.json");
    let key = EncodingKey::from_ec_pem(
        &Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let jwk = public_jwk(&key, Algorithm::ES256, "p256");
    std::fs::write(&p256, serde_json::to_vec(&json!({"keys": [jwk]})).unwrap()).unwrap();
    for (args, says) in [
        (
            vec!["--id", "c", "--jwks", jwks, "--scope", "patient/*.rs"],
            "system/",
        ),
        (
            vec!["--id", "c", "--jwks", jwks, "--scope", "system/*.xyz"],
            "not a SMART resource scope",
        ),
        (
            vec!["--id", "c d", "--jwks", jwks, "--scope", "system/*.rs"],
            "client id",
        ),
        (
            vec![
                "--id",
                "c",
                "--jwks",
                p256.to_str().unwrap(),
                "--scope",
                "system/*.rs",
            ],
            "RS384",
        ),
        (
            vec![
                "--id",
                "c",
                "--jwks-url",
                "file:///etc/passwd",
                "--scope",
                "system/*.rs",
            ],
            "http(s)",
        ),
        (vec!["--id", "c", "--scope", "system/*.rs"], "--jwks"),
    ] {
        let output = fhirlake(&[&["client", "add"][..], &args[..]].concat(), &setup.data);
        assert!(!output.status.success(), "{args:?}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains(says), "{args:?}: {error}");
    }
    setup.register("c", "system/*.rs");
    let output = fhirlake(
        &[
            "client",
            "add",
            "--id",
            "c",
            "--jwks",
            jwks,
            "--scope",
            "system/*.rs",
        ],
        &setup.data,
    );
    assert!(!output.status.success(), "a second registration of c");
    // `--replace` changes a client's scopes.
    let args = [
        "client",
        "add",
        "--replace",
        "--id",
        "c",
        "--jwks",
        jwks,
        "--scope",
        "system/Patient.rs",
    ];
    common::run_command(&args, &setup.data);
    let listed = common::run_command(&["client", "list"], &setup.data);
    assert!(listed.starts_with("c\tsystem/Patient.rs\t"), "{listed}");
}

#[test]
fn an_external_token_endpoint_is_announced_as_before() {
    let setup = setup();
    let server = setup.start(&[
        "--auth-authorize-url",
        "https://as.example/authorize",
        "--auth-token-url",
        "https://as.example/token",
    ]);
    let smart = send(common::client().get(server.url(".well-known/smart-configuration"))).json();
    assert_eq!(smart["token_endpoint"], "https://as.example/token");
    assert_eq!(
        smart["grant_types_supported"],
        json!(["authorization_code"])
    );
    assert!(smart.get("token_endpoint_auth_methods_supported").is_none());
    assert!(
        !smart["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("client-confidential-asymmetric"))
    );
    let statement = send(common::client().get(server.url("metadata"))).json();
    let uris = &statement["rest"][0]["security"]["extension"][0]["extension"];
    assert_eq!(
        uris,
        &json!([{"url": "authorize", "valueUri": "https://as.example/authorize"},
            {"url": "token", "valueUri": "https://as.example/token"}])
    );
    bearer(&server, &token("system/*.rs", None))
        .get("Patient")
        .expect(200, "the configured issuer's token");

    // Without authorization, there is no token endpoint.
    let open = TestServer::start();
    let reply = send(
        common::client()
            .post(format!("{}/auth/token", open.origin))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials"),
    );
    assert_outcome(&reply, 404, &["not-found"]);
}

/// The README's recipe: openssl alone makes the client's key and JWKS, and signs the
/// assertion (RS384 is PKCS#1 v1.5 with SHA-384, what `openssl dgst -sha384 -sign` makes).
#[test]
fn the_readme_recipe_works_with_openssl_alone() {
    let setup = setup();
    let script = |body: &str, env: &[(&str, &str)]| {
        let output = Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(format!(
                "b64url() {{ openssl base64 -A | tr '+/' '-_' | tr -d '='; }}\n{body}"
            ))
            .current_dir(&setup.dir)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{body}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    script(
        r#"openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out client.pem 2>/dev/null
n=$(openssl rsa -in client.pem -noout -modulus | cut -d= -f2 | xxd -r -p | b64url)
printf '{"keys":[{"kty":"RSA","alg":"RS384","use":"sig","kid":"key-1","n":"%s","e":"AQAB"}]}' "$n" > client.jwks.json"#,
        &[],
    );
    let jwks = setup.dir.join("client.jwks.json");
    let args = [
        "client",
        "add",
        "--id",
        "my-exporter",
        "--jwks",
        jwks.to_str().unwrap(),
        "--scope",
        "system/*.rs",
    ];
    common::run_command(&args, &setup.data);
    let server = setup.start(&[]);
    seed(&server);
    let assertion = script(
        r#"header=$(printf '{"alg":"RS384","kid":"key-1","typ":"JWT"}' | b64url)
claims=$(printf '{"iss":"my-exporter","sub":"my-exporter","aud":"%s","exp":%d,"jti":"%s"}' \
  "$TOKEN_URL" $(( $(date +%s) + 240 )) "$(openssl rand -hex 16)" | b64url)
signature=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha384 -sign client.pem | b64url)
printf '%s.%s.%s' "$header" "$claims" "$signature""#,
        &[("TOKEN_URL", &token_url(&server))],
    );
    let answer = granted(&ask(&server, &assertion, "system/*.rs"));
    bearer(&server, answer["access_token"].as_str().unwrap())
        .get("Patient/p1")
        .expect(200, "read with the token");
}
