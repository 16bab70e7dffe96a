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
# - openssl: makes the RS256 and ES256 keys of tests/auth.rs;
# - playwright-core (tests/explorer/package-lock.json): the Node driver of that browser;
# - openapi-spec-validator (tests/requirements.txt): the OpenAPI validator of tests/openapi.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=target/test-tools

missing=()
for package in chromium fonts-liberation nats-server openssl; do
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

node_dir=$tools/node
if ! cmp -s tests/explorer/package-lock.json "$node_dir/installed-lock.json"; then
    echo "tests/setup.sh: installing the Node packages of tests/explorer" >&2
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    cp tests/explorer/package.json tests/explorer/package-lock.json "$node_dir/"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/explorer/package-lock.json "$node_dir/installed-lock.json"
fi

venv=$tools/venv
if ! cmp -s tests/requirements.txt "$venv/installed-requirements.txt"; then
    echo "tests/setup.sh: installing the Python packages of tests/requirements.txt" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$venv/installed-requirements.txt"
fi
