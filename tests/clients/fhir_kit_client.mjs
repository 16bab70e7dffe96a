// fhirlake driven by fhir-kit-client (npm), the way its users write it.
//
// Usage: node fhir_kit_client.mjs BASE_URL [TOKEN], with FHIRLAKE_NODE_MODULES naming the
// node_modules that tests/setup.sh installed (an ES module finds packages only beside itself). The server holds the Synthea providers and at least one Synthea
// patient. Prints one line per check, exits 1 when any check failed. Run by tests/clients.rs.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.FHIRLAKE_NODE_MODULES;
const entry = join(modules, 'fhir-kit-client', 'dist', 'index.js');
const { Client } = await import(pathToFileURL(entry).href);

const [baseUrl, token] = process.argv.slice(2);
const client = new Client({ baseUrl, ...(token ? { bearerToken: token } : {}) });
const run = randomUUID().replace(/-/g, '');
const failed = [];

async function check(name, body) {
  try {
    await body();
    console.log(`ok: fhir-kit-client: ${name}`);
  } catch (error) {
    failed.push(name);
    const detail = error.response ? JSON.stringify(error.response.data ?? error.response) : '';
    console.log(`FAILED: fhir-kit-client: ${name}: ${error.message} ${detail}`.slice(0, 2000));
  }
}

// Every match of a search, following `next` links with the client's own paging.
async function everyMatch(first) {
  const matches = [];
  let bundle = first;
  while (bundle) {
    for (const entry of bundle.entry ?? []) {
      if (entry.search?.mode !== 'include') matches.push(entry.resource);
    }
    bundle = await client.nextPage({ bundle });
  }
  return matches;
}

async function main() {
  await check('create, read, update and delete a Patient', async () => {
    const created = await client.create({
      resourceType: 'Patient',
      body: { resourceType: 'Patient', name: [{ family: `Kit${run}` }] },
    });
    assert.ok(created.id, 'no id');
    const read = await client.read({ resourceType: 'Patient', id: created.id });
    assert.equal(read.name[0].family, `Kit${run}`);
    read.gender = 'unknown';
    const updated = await client.update({ resourceType: 'Patient', id: created.id, body: read });
    assert.equal(updated.meta.versionId, '2');
    const vread = await client.vread({ resourceType: 'Patient', id: created.id, version: '1' });
    assert.equal(vread.gender, undefined);
    await client.delete({ resourceType: 'Patient', id: created.id });
    await assert.rejects(client.read({ resourceType: 'Patient', id: created.id }));
  });

  await check('JSON Patch (RFC 6902)', async () => {
    const created = await client.create({
      resourceType: 'Patient',
      body: { resourceType: 'Patient', active: true, name: [{ family: `Json${run}` }] },
    });
    const patched = await client.patch({
      resourceType: 'Patient',
      id: created.id,
      jsonPatch: [
        { op: 'test', path: '/active', value: true },
        { op: 'replace', path: '/active', value: false },
        { op: 'add', path: '/name/0/given', value: ['Ada'] },
      ],
    });
    assert.equal(patched.active, false);
    assert.deepEqual(patched.name[0].given, ['Ada']);
    assert.equal(patched.meta.versionId, '2');
    await assert.rejects(
      client.patch({
        resourceType: 'Patient',
        id: created.id,
        jsonPatch: [{ op: 'test', path: '/active', value: true }],
      }),
      'a failed test op was applied',
    );
  });

  await check('system search (sent to the base with a trailing slash)', async () => {
    const bundle = await client.search({ searchParams: { _type: 'Patient', _count: 5 } });
    assert.equal(bundle.type, 'searchset');
    const patients = await everyMatch(bundle);
    assert.ok(patients.length >= 1, 'no Patient');
    assert.ok(patients.every((p) => p.resourceType === 'Patient'));
  });

  await check('type search with paging: every match once', async () => {
    const all = await everyMatch(await client.search({
      resourceType: 'Encounter', searchParams: { _count: 100 },
    }));
    const paged = await everyMatch(await client.search({
      resourceType: 'Encounter', searchParams: { _count: 7 },
    }));
    const ids = paged.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'a match came twice');
    assert.deepEqual([...ids].sort(), all.map((e) => e.id).sort());
  });

  await check('a batch with searches and a read', async () => {
    const patient = await client.create({
      resourceType: 'Patient',
      body: { resourceType: 'Patient', name: [{ family: `Batch${run}` }] },
    });
    const response = await client.batch({
      body: {
        resourceType: 'Bundle',
        type: 'batch',
        entry: [
          { request: { method: 'GET', url: `Patient?family=Batch${run}` } },
          { request: { method: 'GET', url: `Patient/${patient.id}` } },
          { request: { method: 'GET', url: 'Patient?family=nobody-has-this-name' } },
        ],
      },
    });
    assert.equal(response.type, 'batch-response');
    const [search, read, empty] = response.entry;
    assert.match(search.response.status, /^200/);
    assert.equal(search.resource.type, 'searchset');
    assert.deepEqual(search.resource.entry.map((e) => e.resource.id), [patient.id]);
    assert.match(read.response.status, /^200/);
    assert.equal(read.resource.id, patient.id);
    assert.equal(empty.resource.total ?? 0, 0);
  });

  await check('a transaction with a urn:uuid reference', async () => {
    const response = await client.transaction({
      body: {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: 'urn:uuid:0e7ad6a6-7d36-4a53-9c3e-3f8d8e0f7c11',
            resource: { resourceType: 'Patient', name: [{ family: `Tx${run}` }] },
            request: { method: 'POST', url: 'Patient' },
          },
          {
            resource: {
              resourceType: 'Observation',
              status: 'final',
              code: { text: 'note' },
              subject: { reference: 'urn:uuid:0e7ad6a6-7d36-4a53-9c3e-3f8d8e0f7c11' },
            },
            request: { method: 'POST', url: 'Observation' },
          },
        ],
      },
    });
    assert.equal(response.type, 'transaction-response');
    const patientId = response.entry[0].response.location.split('/')[1];
    const found = await client.search({
      resourceType: 'Observation', searchParams: { subject: `Patient/${patientId}` },
    });
    assert.equal(found.entry.length, 1);
  });

  await check('the CapabilityStatement names every interaction the checks use', async () => {
    const statement = await client.capabilityStatement();
    const patient = statement.rest[0].resource.find((r) => r.type === 'Patient');
    const codes = patient.interaction.map((i) => i.code);
    for (const code of ['read', 'vread', 'update', 'patch', 'delete', 'create', 'search-type']) {
      assert.ok(codes.includes(code), `${code} is not listed`);
    }
  });

  if (failed.length) {
    console.log(`fhir-kit-client: ${failed.length} checks failed`);
    process.exit(1);
  }
  console.log('fhir-kit-client: every check passed');
}

await main();
