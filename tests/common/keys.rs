//! Key pairs for the RS256 and ES256 tests and benchmark, made by the `openssl` command
//! (`tests/setup.sh` installs it).

use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `rsa.pem` and `rsa.pub.pem` (RSA 2048), `ec.pem` and `ec.pub.pem` (P-256) in `dir`.
pub fn make_keys(dir: &Path) {
    for args in [
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ][..],
        &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"],
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ],
        &["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub.pem"],
    ] {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("openssl (tests/setup.sh installs it)");
        assert!(status.success(), "openssl {args:?}");
    }
}
