//! The API on a `file://` store (a real `object_store` backend, with multipart uploads), the
//! URL parsing, and the signing of S3 URLs (offline: signing sends nothing).

use super::*;

fn folder_store(dir: &std::path::Path) -> Store {
    Store::open(&format!("file://{}/lake", dir.display())).unwrap()
}

fn read_all(mut reader: impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn urls_parse_into_bucket_and_prefix() {
    for (url, scheme, bucket, prefix) in [
        ("s3://bucket", Scheme::S3, "bucket", ""),
        ("s3://bucket/", Scheme::S3, "bucket", ""),
        (
            "s3://my.bucket-1/exports/fhir/",
            Scheme::S3,
            "my.bucket-1",
            "exports/fhir",
        ),
        ("gs://b_2/p", Scheme::Gcs, "b_2", "p"),
        ("az://container/a/b", Scheme::Azure, "container", "a/b"),
        ("s3://b/with%20space", Scheme::S3, "b", "with space"),
        ("file:///tmp/lake", Scheme::File, "", "tmp/lake"),
    ] {
        let location = Location::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            (
                location.scheme,
                location.bucket.as_str(),
                location.prefix.as_str()
            ),
            (scheme, bucket, prefix),
            "{url}"
        );
    }
    assert_eq!(
        Location::parse("s3://b/x/y/").unwrap().to_string(),
        "s3://b/x/y"
    );
    assert_eq!(Location::parse("s3://b").unwrap().to_string(), "s3://b");
}

#[test]
fn urls_that_name_no_store_are_refused() {
    let long_bucket = format!("s3://{}/p", "b".repeat(300));
    let bad = [
        "",
        "bucket/prefix",
        "http://example.com/bucket",
        "https://s3.amazonaws.com/bucket",
        "ftp://bucket/p",
        "s3://",
        "s3:///prefix",
        "s3://key:secret@bucket/p",
        "s3://bucket:9000/p",
        "s3://bucket/p?x-id=1",
        "s3://bucket/p#f",
        "s3://bucket/a//b",
        "s3://bucket/a/%00",
        "s3://bucket/a/%FF",
        "s3://bu*cket/p",
        "file://host/tmp",
        "file:///",
        &long_bucket,
    ];
    for url in bad {
        match Location::parse(url) {
            Err(Error::Url { why, .. }) => assert!(!why.is_empty()),
            other => panic!("{url}: {other:?}"),
        }
        assert!(Store::open(url).is_err(), "{url}");
    }
}

#[test]
fn keys_stay_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = folder_store(dir.path());
    for key in [
        "",
        "/a",
        "a/",
        "a//b",
        "..",
        "a/../../x",
        "./a",
        "a\\b",
        "a\0b",
    ] {
        assert!(matches!(store.create(key), Err(Error::Key(_))), "{key:?}");
        assert!(
            matches!(store.open_object(key), Err(Error::Key(_))),
            "{key:?}"
        );
        assert!(matches!(store.delete(key), Err(Error::Key(_))), "{key:?}");
    }
    assert!(store.create(&"k".repeat(1025)).is_err());
}

/// Small and multipart objects appear whole only once finished, read back the same, list in
/// key order under a prefix, and go with their prefix.
#[test]
fn objects_are_written_whole_read_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = folder_store(dir.path());
    // Three and a half parts: a multipart upload.
    let big: Vec<u8> = (0..PART_SIZE * 7 / 2).map(|i| (i % 251) as u8).collect();
    let mut writer = store.create("job/big.ndjson").unwrap();
    for piece in big.chunks(100_000) {
        writer.write_all(piece).unwrap();
    }
    assert!(
        store.open_object("job/big.ndjson").unwrap().is_none(),
        "not before it is finished"
    );
    assert_eq!(writer.bytes(), big.len() as u64);
    assert_eq!(writer.finish().unwrap(), big.len() as u64);
    let reader = store.open_object("job/big.ndjson").unwrap().unwrap();
    assert_eq!(reader.size(), big.len() as u64);
    assert_eq!(read_all(reader), big);

    store.put("job/small.ndjson", b"{}\n").unwrap();
    store.put("job/small.ndjson", b"{\"a\":1}\n").unwrap();
    store.put("jobs-other/x.ndjson", b"x").unwrap();
    store.put("empty.ndjson", b"").unwrap();
    assert_eq!(
        read_all(store.open_object("job/small.ndjson").unwrap().unwrap()),
        b"{\"a\":1}\n",
        "written again: replaced"
    );
    assert_eq!(
        read_all(store.open_object("empty.ndjson").unwrap().unwrap()),
        b""
    );
    let listed: Vec<(String, u64)> = store
        .list("job")
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(
        listed,
        [
            ("job/big.ndjson".to_string(), big.len() as u64),
            ("job/small.ndjson".to_string(), 8)
        ],
        "segment by segment: jobs-other is not under job"
    );
    assert_eq!(store.list("").unwrap().len(), 4);
    assert_eq!(store.list("nothing").unwrap(), []);

    assert_eq!(store.delete_prefix("job").unwrap(), 2);
    assert!(store.open_object("job/big.ndjson").unwrap().is_none());
    assert_eq!(store.delete_prefix("job").unwrap(), 0);
    store.delete("empty.ndjson").unwrap();
    store.delete("empty.ndjson").unwrap();
    assert_eq!(store.list("").unwrap().len(), 1);
}

/// A writer dropped unfinished leaves nothing behind, however much it had written.
#[test]
fn an_unfinished_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = folder_store(dir.path());
    for size in [10, PART_SIZE * 2 + 1] {
        let mut writer = store.create("job/partial.ndjson").unwrap();
        writer.write_all(&vec![b'x'; size]).unwrap();
        drop(writer);
        assert!(store.open_object("job/partial.ndjson").unwrap().is_none());
    }
}

/// The import side: the NDJSON objects under a prefix, in key order, each a reader; one object
/// named by its URL; nothing under an empty prefix.
#[test]
fn ndjson_inputs_are_listed_and_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = folder_store(dir.path());
    store
        .put("in/b/Observation.ndjson", b"{\"o\":1}\n")
        .unwrap();
    store.put("in/a/Patient.ndjson.gz", b"gzipped").unwrap();
    store.put("in/readme.txt", b"not an input").unwrap();
    let base = format!("file://{}/lake", dir.path().display());
    let inputs = ndjson_inputs(&format!("{base}/in")).unwrap();
    let found: Vec<(String, bool, u64)> = inputs
        .iter()
        .map(|input| (input.url.clone(), input.gzip, input.size))
        .collect();
    let url = |key: &str| format!("{base}/{key}");
    assert_eq!(
        found,
        [
            (url("in/a/Patient.ndjson.gz"), true, 7),
            (url("in/b/Observation.ndjson"), false, 8)
        ]
    );
    assert_eq!(read_all(inputs[1].open().unwrap()), b"{\"o\":1}\n");
    let one = ndjson_inputs(&format!("{base}/in/b/Observation.ndjson")).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(read_all(one[0].open().unwrap()), b"{\"o\":1}\n");
    assert!(ndjson_inputs(&format!("{base}/none")).unwrap().is_empty());
    assert!(
        ndjson_inputs(&format!("{base}/in/readme.txt"))
            .unwrap()
            .is_empty()
    );
    store.delete("in/b/Observation.ndjson").unwrap();
    assert!(inputs[1].open().err().unwrap().is_not_found());
}

/// An S3 URL is signed with the credentials, for GET, with the expiry asked (at most seven
/// days); a file:// store has no URLs.
#[test]
fn s3_urls_are_signed_with_an_expiry() {
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_url("s3://bucket")
        .with_region("us-east-1")
        .with_access_key_id("AKIDEXAMPLE")
        .with_secret_access_key("secret")
        .build()
        .unwrap();
    let s3 = Arc::new(s3);
    let store = Store {
        inner: s3.clone(),
        signer: Some(s3),
        location: Location::parse("s3://bucket/exports").unwrap(),
        prefix: Path::from("exports"),
    };
    let url = store
        .signed_url("job/Patient-1.ndjson", Duration::from_secs(600))
        .unwrap()
        .unwrap();
    assert!(
        url.starts_with("https://bucket.s3.us-east-1.amazonaws.com/exports/job/Patient-1.ndjson?")
            || url.starts_with(
                "https://s3.us-east-1.amazonaws.com/bucket/exports/job/Patient-1.ndjson?"
            ),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=600&"), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.contains("X-Amz-Credential=AKIDEXAMPLE"), "{url}");
    let capped = store
        .signed_url("k", Duration::from_secs(30 * 24 * 3600))
        .unwrap()
        .unwrap();
    assert!(capped.contains("X-Amz-Expires=604800&"), "{capped}");
    assert!(store.signed_url("../k", Duration::from_secs(1)).is_err());

    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        folder_store(dir.path())
            .signed_url("k", Duration::from_secs(1))
            .unwrap(),
        None
    );
}
