//! Authorization cost benchmark: `cargo bench --bench auth`.
//!
//! 1. In process, what the middleware does per request: verifying one bearer token (HS256,
//!    RS256 with a 2048-bit key, ES256 on P-256), and what a confined token (a `patient/`
//!    scope) adds per resource it reads: judging it in a scratch index (`Engine::visible`),
//!    for one resource (a read) and for a page of 50 (included resources, history).
//!    And what a confined write adds: judging its before or after as the token's alone
//!    (`Engine::owned`).
//! 2. Over HTTP, `GET /fhir/Observation/{id}` one request after the other on one connection,
//!    against the release server with `--auth none`, `hs256`, `rs256`, and `hs256` with a
//!    `patient/` scope: the whole difference a client sees. Then, with `system/*.cruds` and
//!    with `patient/*.cruds`: `PUT /fhir/Observation/{id}` (a confined update judges the
//!    version before and after) and `GET /fhir/_history?_count=50` over 400 versions of which
//!    half are another patient's (a confined page is filled with readable versions only).
//!
//! Keys come from the `openssl` command (tests/setup.sh installs it). Settings (environment):
//! `FHIRLAKE_BENCH_ITERATIONS` (per in-process case, default 2000), `FHIRLAKE_BENCH_REQUESTS`
//! (per HTTP case, default 2000).

#[path = "../common/mod.rs"]
mod common;

use fhirlake::auth::scope::{Permission, Scopes};
use fhirlake::auth::token::{Expected, KeySource, Mode, Verifier};
use fhirlake::auth::{Access, Principal};
use fhirlake::search::registry::Registry;
use fhirlake::search::{Candidate, Engine};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let iterations = setting("FHIRLAKE_BENCH_ITERATIONS", 2000);
    let requests = setting("FHIRLAKE_BENCH_REQUESTS", 2000);
    let keys = tempfile::tempdir().expect("temp dir");
    let dir = keys.path();
    common::keys::make_keys(dir);
    let read = |name: &str| std::fs::read(dir.join(name)).expect("key file");
    let secret = b"a-benchmark-secret-of-at-least-32-bytes";
    let cases = [
        ("HS256", Mode::Hs256, EncodingKey::from_secret(secret), None),
        (
            "RS256 (2048)",
            Mode::Rs256,
            EncodingKey::from_rsa_pem(&read("rsa.pem")).expect("RSA key"),
            Some(read("rsa.pub.pem")),
        ),
        (
            "ES256 (P-256)",
            Mode::Es256,
            EncodingKey::from_ec_pem(&read("ec.pem")).expect("EC key"),
            Some(read("ec.pub.pem")),
        ),
    ];

    println!("fhirlake authorization benchmark ({iterations} iterations per case)");
    println!();
    println!("| work per request | µs |");
    println!("|---|---:|");
    let claims = claims("system/*.cruds", None);
    let mut tokens = Vec::new();
    for (name, mode, key, public) in &cases {
        let algorithm = mode.algorithm().expect("a signing mode");
        let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, key).expect("sign");
        let source = match public {
            None => KeySource::Secret(secret),
            Some(pem) => KeySource::Public {
                pem: Some(pem),
                jwks: None,
            },
        };
        let verifier = Verifier::new(*mode, source, &Expected::default()).expect("verifier");
        let per = time(iterations, || {
            verifier.verify(&token).expect("verifies");
        });
        println!("| verify a {name} token | {:.1} |", micros(per));
        tokens.push(token);
    }

    let access = Access::Token(Arc::new(Principal {
        subject: Some("bench".into()),
        client: None,
        patient: Some("p1".into()),
        scopes: Scopes::parse("patient/*.rs"),
    }));
    let view = access.view(Permission::Read);
    let body = serde_json::to_vec(&observation("p1")).expect("JSON");
    let registry = Registry::r4_shared();
    for page in [1, 50] {
        let ids: Vec<String> = (0..page).map(|n| n.to_string()).collect();
        let candidates: Vec<Candidate> = ids
            .iter()
            .map(|id| Candidate {
                resource_type: "Observation",
                id,
                last_updated: 0,
                body: &body,
            })
            .collect();
        let per = time(iterations / page.min(10), || {
            let visible = Engine::visible_in(registry, &view, &candidates).expect("judged");
            assert!(visible.iter().all(|v| *v));
        });
        println!(
            "| judge {page} resource(s) for a patient/ scope | {:.1} ({:.1} per resource) |",
            micros(per),
            micros(per) / page as f64
        );
    }
    let writer = Access::Token(Arc::new(Principal {
        subject: Some("bench".into()),
        client: None,
        patient: Some("p1".into()),
        scopes: Scopes::parse("patient/*.cruds"),
    }));
    let writable = writer.view(Permission::Update);
    let candidate = [Candidate {
        resource_type: "Observation",
        id: "o1",
        last_updated: 0,
        body: &body,
    }];
    let per = time(iterations, || {
        let owned = Engine::owned_in(registry, &writable, &candidate).expect("judged");
        assert!(owned[0]);
    });
    println!(
        "| judge a write (before or after) for a patient/ scope | {:.1} |",
        micros(per)
    );

    println!();
    println!(
        "| GET Observation/{{id}}, sequential, one connection | requests | mean µs | p50 µs | p99 µs |"
    );
    println!("|---|---:|---:|---:|---:|");
    let secret_text = std::str::from_utf8(secret).expect("ASCII");
    let rsa_public = dir.join("rsa.pub.pem");
    let http_cases: [(&str, Vec<&str>, Option<String>); 4] = [
        ("--auth none", vec!["--auth", "none"], None),
        (
            "--auth hs256, system/*.cruds",
            vec!["--auth", "hs256", "--auth-secret", secret_text],
            Some(tokens[0].clone()),
        ),
        (
            "--auth rs256, system/*.cruds",
            vec![
                "--auth",
                "rs256",
                "--auth-key",
                rsa_public.to_str().expect("UTF-8 path"),
            ],
            Some(tokens[1].clone()),
        ),
        (
            "--auth hs256, patient/*.rs",
            vec!["--auth", "hs256", "--auth-secret", secret_text],
            Some(
                jsonwebtoken::encode(
                    &Header::new(Algorithm::HS256),
                    &self::claims("patient/*.rs", Some("p1")),
                    &EncodingKey::from_secret(secret),
                )
                .expect("sign"),
            ),
        ),
    ];
    for (name, args, token) in http_cases {
        let latencies = http(&args, token.as_deref(), secret, requests, Work::Read);
        print_latencies(name, requests, &latencies);
    }

    println!();
    println!("| --auth hs256, sequential, one connection | requests | mean µs | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    let hs256 = ["--auth", "hs256", "--auth-secret", secret_text];
    let signed = |scope: &str, patient: Option<&str>| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &self::claims(scope, patient),
            &EncodingKey::from_secret(secret),
        )
        .expect("sign")
    };
    for (work, what) in [
        (Work::Update, "PUT Observation/{id}"),
        (Work::History, "GET _history?_count=50"),
    ] {
        for (scope, patient) in [("system/*.cruds", None), ("patient/*.cruds", Some("p1"))] {
            let token = signed(scope, patient);
            let latencies = http(&hs256, Some(&token), secret, requests, work);
            print_latencies(&format!("{what}, {scope}"), requests, &latencies);
        }
    }
}

fn print_latencies(name: &str, requests: usize, latencies: &[Duration]) {
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!(
        "| {name} | {requests} | {:.0} | {:.0} | {:.0} |",
        micros(mean),
        micros(latencies[latencies.len() / 2]),
        micros(latencies[latencies.len() * 99 / 100])
    );
}

/// What a timed request does.
#[derive(Clone, Copy)]
enum Work {
    /// `GET Observation/o1`.
    Read,
    /// `PUT Observation/o1`, the same body each time.
    Update,
    /// `GET _history?_count=50` over 200 versions of `p1`'s and 200 of `p2`'s, interleaved.
    History,
}

/// Sorted latencies of `requests` requests doing `work` on the Observation `o1` (of patient
/// `p1`) of a server started with `args`, each sent with `token`.
fn http(
    args: &[&str],
    token: Option<&str>,
    secret: &[u8],
    requests: usize,
    work: Work,
) -> Vec<Duration> {
    let server = common::TestServer::start_with(args);
    let http = common::client();
    // The resources are written with an all-powerful token made here (or none).
    let admin = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("system/*.cruds", None),
        &EncodingKey::from_secret(secret),
    )
    .expect("sign");
    let authorized = |request: reqwest::blocking::RequestBuilder, token: Option<&str>| match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let writer = if args.contains(&"rs256") {
        token
    } else {
        Some(admin.as_str())
    };
    let with_id = |patient: &str, id: &str| {
        let mut o = observation(patient);
        o["id"] = id.into();
        o
    };
    let mut seed = vec![
        (
            "Patient/p1".to_string(),
            json!({"resourceType": "Patient", "id": "p1"}),
        ),
        ("Observation/o1".to_string(), with_id("p1", "o1")),
    ];
    if let Work::History = work {
        for n in 0..400 {
            let (patient, id) = (["p1", "p2"][n % 2], format!("h{n}"));
            seed.push((format!("Observation/{id}"), with_id(patient, &id)));
        }
    }
    for (path, body) in seed {
        let path = path.as_str();
        let response = authorized(http.put(server.url(path)), writer)
            .header("content-type", common::FHIR_JSON)
            .body(body.to_string())
            .send()
            .expect("PUT");
        assert!(
            response.status().is_success(),
            "PUT {path}: {}",
            response.status()
        );
    }
    let url = server.url("Observation/o1");
    let history = server.url("_history?_count=50");
    let update = with_id("p1", "o1").to_string();
    let mut latencies = Vec::with_capacity(requests);
    for n in 0..requests + 100 {
        let start = Instant::now();
        let request = match work {
            Work::Read => http.get(&url),
            Work::Update => http
                .put(&url)
                .header("content-type", common::FHIR_JSON)
                .body(update.clone()),
            Work::History => http.get(&history),
        };
        let response = authorized(request, token).send().expect("request");
        assert!(
            response.status().is_success(),
            "request: {}",
            response.status()
        );
        response.bytes().expect("body");
        if n >= 100 {
            latencies.push(start.elapsed());
        }
    }
    latencies.sort();
    latencies
}

fn claims(scope: &str, patient: Option<&str>) -> serde_json::Value {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({"sub": "bench", "exp": now + 3600, "scope": scope});
    if let Some(patient) = patient {
        claims["patient"] = patient.into();
    }
    claims
}

/// A laboratory Observation of `patient`, of a typical size.
fn observation(patient: &str) -> serde_json::Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory", "display": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0",
            "display": "Glucose [Mass/volume] in Blood"}], "text": "Glucose"},
        "subject": {"reference": format!("Patient/{patient}")},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2020-03-01T10:00:00+01:00",
        "issued": "2020-03-01T10:00:00.000+01:00",
        "valueQuantity": {"value": 93.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
            "code": "mg/dL"},
    })
}

/// The mean time of one call of `f`, after a tenth as many calls to warm up.
fn time(iterations: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations.max(1) as u32
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
