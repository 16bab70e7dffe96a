#!/usr/bin/env bash
# Installs what the tests need beyond cargo. The README's test command (and .ci/run) is
# `tests/setup.sh && cargo test --workspace`.
#
# Idempotent and quick when everything is there: apt-get runs only when a Debian package is
# missing; npm and pip run only when their lock file changed since the last install. Nothing
# is installed globally except the Debian packages: the Node and Python tools live under
# target/test-tools/.
#
# - chromium (+ fonts): the headless browser that tests/explorer.rs drives;
# - nats-server: the JetStream broker that tests/nats.rs starts (on a free port, with a temporary
#   store directory) for the change-stream sink; the package starts no service of its own;
# - openssl: makes the RS256 and ES256 keys of tests/auth.rs and the backend clients' keys of
#   tests/backend_services.rs; xxd: the README's recipe of a client's JWKS, which that test runs;
# - playwright-core (tests/explorer/package-lock.json): the Node driver of that browser;
# - fhir-kit-client (tests/clients/package-lock.json): a FHIR client of tests/clients.rs;
# - s3s-fs (crates.io, built by cargo install into $tools/bin): the S3-compatible server that
#   tests/object_storage.rs starts (on a free port, with a temporary directory) for bulk export
#   to object storage; pinned, with its own Cargo.lock, at the last version this toolchain
#   builds (0.15 and later want Rust 1.96); the first install builds it from source;
# - openapi-spec-validator, fhirpy, fhirclient, smart-fetch and duckdb (tests/requirements.txt):
#   the OpenAPI validator of tests/openapi.rs, the Python FHIR clients of tests/clients.rs, and
#   the bulk client and the SQL engine that reads its downloads in tests/bulk_client.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/test-tools

missing=()
for package in chromium fonts-liberation nats-server openssl xxd; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    echo "tests/setup.sh: installing ${missing[*]} with apt-get" >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Each Node package folder of the tests goes to its own directory under $tools, reinstalled
# when its lock file changes.
install_node() {
    local from=$1 node_dir=$2
    if ! cmp -s "$from/package-lock.json" "$node_dir/installed-lock.json"; then
        echo "tests/setup.sh: installing the Node packages of $from" >&2
        rm -rf "$node_dir"
        mkdir -p "$node_dir"
        cp "$from/package.json" "$from/package-lock.json" "$node_dir/"
        (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
        cp "$from/package-lock.json" "$node_dir/installed-lock.json"
    fi
}
install_node tests/explorer "$tools/node"
install_node tests/clients "$tools/clients-node"

s3s_fs_version=0.14.1
if ! "$tools/bin/s3s-fs" --version 2>/dev/null | grep -qx "s3s-fs $s3s_fs_version"; then
    echo "tests/setup.sh: building s3s-fs $s3s_fs_version with cargo install" >&2
    cargo install --quiet --locked --root "$tools" --version "$s3s_fs_version" \
        --features binary s3s-fs
fi

venv=$tools/venv
if ! cmp -s tests/requirements.txt "$venv/installed-requirements.txt"; then
    echo "tests/setup.sh: installing the Python packages of tests/requirements.txt" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$venv/installed-requirements.txt"
fi
