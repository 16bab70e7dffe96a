"""fhirlake driven by fhirpy (PyPI), the way fhirpy's users write it.

Usage: fhirpy_client.py BASE_URL [TOKEN]. The server holds the Synthea providers and at least
one Synthea patient. Prints one line per check ("ok: ..." or "FAILED: ..."), exits 1 when any
check failed. Run by tests/clients.rs.
"""

import sys
import uuid

from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from checks import Checks

base = sys.argv[1]
token = sys.argv[2] if len(sys.argv) > 2 else None
client = SyncFHIRClient(base, authorization=f"Bearer {token}" if token else None)
checks = Checks("fhirpy")
run = uuid.uuid4().hex


@checks.check("create, read, update and delete a Patient")
def crud():
    patient = client.resource(
        "Patient", name=[{"family": f"Crud{run}", "given": ["Ada"]}], gender="female"
    )
    patient.save()
    assert patient.id, "the server gave no id"
    read = client.reference("Patient", patient.id).to_resource()
    assert read["name"][0]["family"] == f"Crud{run}", read
    assert read["meta"]["versionId"] == "1", read["meta"]
    patient["birthDate"] = "1985-04-12"
    patient.save()
    read = client.reference("Patient", patient.id).to_resource()
    assert read["birthDate"] == "1985-04-12", read
    assert read["meta"]["versionId"] == "2", read["meta"]
    patient.delete()
    try:
        client.reference("Patient", patient.id).to_resource()
    except ResourceNotFound:
        return
    raise AssertionError("a deleted Patient still reads")


@checks.check("patch a Patient (fhirpy sends a partial resource)")
def patch():
    patient = client.resource("Patient", name=[{"family": f"Patch{run}"}], active=True)
    patient.save()
    patched = client.patch("Patient", patient.id, active=False, gender="other")
    assert patched["active"] is False, patched
    assert patched["gender"] == "other", patched
    assert patched["name"][0]["family"] == f"Patch{run}", "a patch removed what it did not name"
    patient.refresh()
    assert patient["meta"]["versionId"] == "2", patient["meta"]


@checks.check("get_or_create: a conditional create by query string")
def get_or_create():
    identifier = {"system": "urn:fhirlake:clients", "value": f"goc-{run}"}
    patient = client.resource("Patient", identifier=[identifier], name=[{"family": "Goc"}])
    search = client.resources("Patient").search(identifier=f"urn:fhirlake:clients|goc-{run}")
    first, created = search.get_or_create(patient)
    assert created, "the first get_or_create did not create"
    second, created = search.get_or_create(patient)
    assert not created, "the second get_or_create created again"
    assert second.id == first.id, (first.id, second.id)
    assert search.count() == 1, f"{search.count()} Patients carry the identifier"


@checks.check("paging: fetch_all returns every match once")
def paging():
    search = client.resources("Observation").search(category="vital-signs").limit(37)
    total = search.count()
    assert total > 100, f"only {total} vital signs"
    ids = [o.id for o in search.fetch_all()]
    assert len(ids) == total, f"{len(ids)} fetched of {total}"
    assert len(set(ids)) == total, "a resource came twice"


@checks.check("_include: an Encounter's subject comes along")
def include():
    bundle = (
        client.resources("Encounter").include("Encounter", "subject").limit(5).fetch_raw()
    )
    matches = [e for e in bundle.entry if e.search.mode == "match"]
    included = {f"Patient/{e.resource.id}" for e in bundle.entry if e.search.mode == "include"}
    assert matches, "no Encounter"
    for entry in matches:
        assert entry.resource.subject.reference in included, entry.resource.subject


@checks.check("search by token and date prefix, and sort, against a plain scan")
def search():
    everyone = client.resources("Patient").fetch_all()
    for gender in ("male", "female"):
        expected = {p.id for p in everyone if p.get("gender") == gender}
        found = {p.id for p in client.resources("Patient").search(gender=gender).fetch_all()}
        assert found == expected, (gender, len(found), len(expected))
    expected = {p.id for p in everyone if p.get("birthDate", "") >= "1940-01-01"}
    found = {p.id for p in client.resources("Patient").search(birthdate__ge="1940-01-01").fetch_all()}
    assert found == expected, (len(found), len(expected))
    ordered = client.resources("Patient").sort("birthdate").fetch_all()
    dates = [p.get("birthDate") for p in ordered if p.get("birthDate")]
    assert dates == sorted(dates), dates


checks.done()
