"""An independent bulk client against fhirlake: SMART's smart-fetch (PyPI) runs a whole
Bulk Data export with SMART Backend Services authorization and downloads every file, then
DuckDB (PyPI) reads the downloaded NDJSON with read_json.

usage: bulk_export.py BASE CLIENT_ID PEM TYPES OUT

- PEM is the client's RSA private key; its private JWKS (kid key-1, RS384, the form
  smart-fetch signs with) is written beside it, as a `.jwks` file;
- TYPES is the comma-separated resource types to export;
- OUT is the directory smart-fetch downloads into.

The last line printed is a JSON object: for each resource type, the rows DuckDB read from
its files and how many distinct ids they had.
"""

import json
import pathlib
import subprocess
import sys

import duckdb
from jwcrypto import jwk


def private_jwks(pem: pathlib.Path) -> pathlib.Path:
    key = jwk.JWK.from_pem(pem.read_bytes()).export(as_dict=True)
    key.update(kid="key-1", alg="RS384", key_ops=["sign"])
    path = pem.with_suffix(".jwks")
    path.write_text(json.dumps({"keys": [key]}))
    return path


def main() -> None:
    base, client_id, pem, types, out = sys.argv[1:]
    key = private_jwks(pathlib.Path(pem))
    smart_fetch = pathlib.Path(sys.executable).with_name("smart-fetch")
    subprocess.run(
        [
            str(smart_fetch),
            "bulk",
            "--fhir-url",
            base,
            "--smart-client-id",
            client_id,
            "--smart-key",
            str(key),
            "--type",
            types,
            "--no-default-filters",
            out,
        ],
        check=True,
    )
    counts = {}
    database = duckdb.connect()
    for resource_type in types.split(","):
        files = sorted(pathlib.Path(out).glob(f"{resource_type}.*.ndjson*"))
        if not files:
            counts[resource_type] = {"rows": 0, "ids": 0, "files": 0}
            continue
        rows, ids = database.execute(
            "SELECT count(*), count(DISTINCT id) FROM read_json(?, "
            "format = 'newline_delimited', union_by_name = true)",
            [[str(f) for f in files]],
        ).fetchone()
        counts[resource_type] = {"rows": rows, "ids": ids, "files": len(files)}
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
