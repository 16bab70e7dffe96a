//! The API against a real S3-compatible server: s3s-fs (crates.io; tests/setup.sh builds it
//! into the workspace's `target/test-tools/bin`), started on a free port with a temporary
//! directory. Multipart uploads, streaming reads, listing, deleting, a presigned GET fetched
//! without credentials, the NDJSON inputs of a prefix, and the errors of a missing bucket and
//! a wrong secret.

use fhirlake_objstore::{Store, ndjson_inputs};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCESS_KEY: &str = "objstore-test";
const SECRET_KEY: &str = "objstore-test-secret";

struct S3Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl S3Server {
    fn start() -> S3Server {
        let binary =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools/bin/s3s-fs");
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("lake")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} ({e}): run tests/setup.sh", binary.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        S3Server { child, port, root }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One process, one environment: every test of this file runs here, in order.
#[test]
fn the_api_against_a_real_s3_server() {
    let s3 = S3Server::start();
    // SAFETY: set before any thread of this test binary reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", s3.port));
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    }
    objects_and_multipart(&s3);
    presigned_get(&s3);
    failures();
}

fn objects_and_multipart(s3: &S3Server) {
    let store = Store::open("s3://lake/exports").unwrap();
    let big: Vec<u8> = (0..fhirlake_objstore::PART_SIZE * 5 / 2)
        .map(|i| (i % 253) as u8)
        .collect();
    let mut writer = store.create("job/Observation-1.ndjson").unwrap();
    for piece in big.chunks(65_536) {
        writer.write_all(piece).unwrap();
    }
    assert!(
        store
            .open_object("job/Observation-1.ndjson")
            .unwrap()
            .is_none(),
        "a multipart upload is not an object before it is completed"
    );
    writer.finish().unwrap();
    let on_disk = s3.root.path().join("lake/exports/job/Observation-1.ndjson");
    assert_eq!(
        std::fs::read(&on_disk).unwrap(),
        big,
        "the server holds it whole"
    );
    let mut read = Vec::new();
    store
        .open_object("job/Observation-1.ndjson")
        .unwrap()
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert_eq!(read, big);

    store
        .put("job/Patient-1.ndjson", b"{\"id\":\"a\"}\n")
        .unwrap();
    store.put("job/notes.txt", b"not NDJSON").unwrap();
    let keys: Vec<String> = store
        .list("job")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        [
            "job/Observation-1.ndjson",
            "job/Patient-1.ndjson",
            "job/notes.txt"
        ]
    );
    let inputs = ndjson_inputs("s3://lake/exports/job").unwrap();
    let urls: Vec<&str> = inputs.iter().map(|i| i.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "s3://lake/exports/job/Observation-1.ndjson",
            "s3://lake/exports/job/Patient-1.ndjson"
        ]
    );
    let mut text = String::new();
    inputs[1].open().unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "{\"id\":\"a\"}\n");

    // Unfinished: nothing appears.
    let mut writer = store.create("job/Condition-1.ndjson").unwrap();
    writer
        .write_all(&vec![b'x'; fhirlake_objstore::PART_SIZE + 10])
        .unwrap();
    drop(writer);
    assert!(
        store
            .open_object("job/Condition-1.ndjson")
            .unwrap()
            .is_none()
    );

    assert_eq!(store.delete_prefix("job").unwrap(), 3);
    assert!(store.list("").unwrap().is_empty());
    assert!(!on_disk.exists());
}

/// A presigned URL is fetched by a client with no credentials at all.
fn presigned_get(s3: &S3Server) {
    let store = Store::open("s3://lake/shared").unwrap();
    store.put("Patient-1.ndjson", b"{\"id\":\"p\"}\n").unwrap();
    let url = store
        .signed_url("Patient-1.ndjson", Duration::from_secs(300))
        .unwrap()
        .unwrap();
    let origin = format!("http://127.0.0.1:{}", s3.port);
    let target = url.strip_prefix(&origin).unwrap_or_else(|| panic!("{url}"));
    let answer = |target: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", s3.port)).unwrap();
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            s3.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let response = answer(target);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("{\"id\":\"p\"}\n"), "{response}");
    // The signature covers the key: another key with it is refused.
    let forged = target.replace("Patient-1", "Patient-2");
    assert!(answer(&forged).starts_with("HTTP/1.1 403"));
}

/// A missing bucket and a wrong secret are errors that say what the store answered.
fn failures() {
    // (s3s-fs creates a missing bucket on a PUT, where S3 refuses it: a listing tells.)
    let missing = Store::open("s3://no-such-bucket/x").unwrap();
    let error = missing.list("job").unwrap_err().to_string();
    assert!(error.contains("s3://no-such-bucket/x"), "{error}");
    assert!(
        error.contains("404") || error.contains("NoSuchBucket"),
        "{error}"
    );
    unsafe { std::env::set_var("AWS_SECRET_ACCESS_KEY", "wrong") };
    let refused = Store::open("s3://lake/x").unwrap();
    let error = refused.put("a.ndjson", b"{}\n").unwrap_err().to_string();
    assert!(error.contains("403"), "{error}");
    let error = refused.list("").unwrap_err().to_string();
    assert!(error.contains("403"), "{error}");
}
