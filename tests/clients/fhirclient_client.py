"""fhirlake driven by fhirclient (PyPI, SMART on FHIR's Python client), whose R4 models parse
strictly: a date in the wrong format, an unknown element or a wrong type raises.

Usage: fhirclient_client.py BASE_URL [TOKEN]. The server holds the Synthea providers and at
least one Synthea patient. Prints one line per check, exits 1 when any check failed. Run by
tests/clients.rs.
"""

import sys
import uuid

from fhirclient import server as fhirserver
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient
from fhirclient.models.fhirdate import FHIRDate

from checks import Checks

base = sys.argv[1]
token = sys.argv[2] if len(sys.argv) > 2 else None
server = fhirserver.FHIRServer(None, base_uri=base)
if token:
    server.session.headers["Authorization"] = f"Bearer {token}"
checks = Checks("fhirclient")
run = uuid.uuid4().hex


def pages(path):
    """Every page of a search or history Bundle, each parsed strictly, following `next`."""
    while path:
        page = Bundle(server.request_json(path), strict=True)
        yield page
        path = next((link.url for link in page.link or [] if link.relation == "next"), None)


@checks.check("the CapabilityStatement parses strictly")
def capability():
    statement = CapabilityStatement(server.request_json("metadata"), strict=True)
    assert statement.fhirVersion == "4.0.1", statement.fhirVersion
    types = {r.type for r in statement.rest[0].resource}
    assert "Patient" in types and "Observation" in types, types


@checks.check("create, read, update and delete a Patient with the models")
def crud():
    patient = Patient()
    patient.name = [HumanName({"family": f"Models{run}", "given": ["Grace"]})]
    patient.identifier = [Identifier({"system": "urn:fhirlake:clients", "value": run})]
    patient.birthDate = FHIRDate("1990-02-28")
    created = patient.create(server)
    patient_id = (created or {}).get("id")
    assert patient_id, created
    read = Patient.read(patient_id, server)
    assert read.name[0].family == f"Models{run}"
    assert read.birthDate.isostring == "1990-02-28", read.birthDate.isostring
    read.gender = "female"
    read.update(server)
    again = Patient.read(patient_id, server)
    assert again.gender == "female" and again.meta.versionId == "2", again.as_json()
    found = list(Patient.where(struct={"identifier": f"urn:fhirlake:clients|{run}"})
                 .perform_resources_iter(server))
    assert [p.id for p in found] == [patient_id], [p.id for p in found]
    again.delete(server)
    try:
        Patient.read(patient_id, server)
    except Exception as error:  # fhirclient raises requests' HTTPError on 404 and 410
        assert getattr(error, "response", None) is not None, error
        assert error.response.status_code in (404, 410), error.response.status_code
        return
    raise AssertionError("a deleted Patient still reads")


@checks.check("every resource a search of the whole server returns parses strictly")
def strict_search():
    parsed = 0
    types = set()
    for page in pages("?_count=1000"):
        for entry in page.entry or []:
            parsed += 1
            types.add(entry.resource.resource_type)
    assert parsed > 1000, f"only {parsed} resources"
    print(f"  fhirclient parsed {parsed} resources of {len(types)} types", flush=True)


@checks.check("every history entry of the Patients parses strictly")
def strict_history():
    entries = sum(len(page.entry or []) for page in pages("Patient/_history?_count=200"))
    assert entries > 0, "no history"


@checks.check("search with the models: token, date and paging")
def search():
    everyone = [p for page in pages("Patient?_count=7") for p in
                (e.resource for e in page.entry or []) if p.resource_type == "Patient"]
    for gender in ("male", "female"):
        expected = sorted(p.id for p in everyone if p.gender == gender)
        found = sorted(p.id for p in Patient.where(struct={"gender": gender, "_count": "3"})
                       .perform_resources_iter(server))
        assert found == expected, (gender, found, expected)


checks.done()
