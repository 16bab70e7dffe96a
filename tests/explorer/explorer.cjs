// Drives fhirlake's API explorer (Swagger UI at /docs) in headless Debian chromium and prints
// what it saw as one JSON object on stdout; tests/explorer.rs starts the server and judges.
//
//   node tests/explorer/explorer.cjs ORIGIN PATIENT_ID [SCREENSHOT.png]
//
// It loads the page, runs GET /fhir/metadata with "Try it out" + "Execute", filters the tags
// to Patient, lists the Patient operations, runs GET /fhir/Patient/{id} for PATIENT_ID the same
// way, and, given a path, takes a screenshot of that view. playwright-core comes from
// target/test-tools/node (NODE_PATH, installed by tests/setup.sh).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [origin, patientId, screenshot] = process.argv.slice(2);
if (!origin || !patientId) {
  console.error('usage: explorer.cjs ORIGIN PATIENT_ID [SCREENSHOT.png]');
  process.exit(2);
}

// Each step has this long; loading the 4 MB document takes a few seconds in a debug build.
const TIMEOUT_MS = 60_000;

/** Opens the tag's section unless it is open. */
async function openTag(page, tag) {
  const section = page.locator('.opblock-tag-section').filter({ has: page.locator(`#operations-tag-${tag}`) });
  if (!(await section.evaluate((node) => node.classList.contains('is-open')))) {
    await page.locator(`#operations-tag-${tag}`).click();
  }
}

/** Expands an operation, presses "Try it out", fills `inputs`, presses "Execute", and
 * returns the status and body the page shows. */
async function execute(page, tag, operationId, inputs) {
  await openTag(page, tag);
  const block = page.locator(`#operations-${tag}-${operationId}`);
  await block.locator('.opblock-summary-control').click();
  await block.locator('button.try-out__btn').click();
  for (const [name, value] of Object.entries(inputs)) {
    await block.locator(`tr[data-param-name="${name}"] input`).fill(value);
  }
  await block.locator('button.execute').click();
  const response = block.locator('.live-responses-table .response');
  await response.locator('.response-col_status').waitFor();
  const body = await response.locator('.response-col_description pre').first().innerText();
  return {
    status: Number((await response.locator('.response-col_status').innerText()).trim()),
    body: body.slice(0, 2000),
  };
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'fhirlake-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context.setDefaultTimeout(TIMEOUT_MS);
  const seen = { requests: [] };
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('request', (request) => seen.requests.push(request.url()));
    await page.goto(`${origin}/docs`);
    seen.url = page.url();
    seen.title = (await page.locator('.swagger-ui .info .title').innerText()).trim();
    seen.authorize = await page.locator('button.authorize').count();

    seen.metadata = await execute(page, 'System', 'capabilities', {});

    await page.locator('input.operation-filter-input').fill('Patient');
    await openTag(page, 'Patient');
    const summaries = page.locator('[id^="operations-Patient-"].opblock .opblock-summary');
    await summaries.first().waitFor();
    seen.patientOperations = [];
    for (const summary of await summaries.all()) {
      seen.patientOperations.push(
        `${(await summary.locator('.opblock-summary-method').innerText()).trim()} ` +
          `${(await summary.locator('.opblock-summary-path').innerText()).trim()}`,
      );
    }

    seen.read = await execute(page, 'Patient', 'readPatient', { id: patientId });
    if (screenshot) {
      // From the top of the page to the end of the response the read got.
      const live = await page.locator('#operations-Patient-readPatient .live-responses-table').boundingBox();
      const scroll = await page.evaluate(() => window.scrollY);
      const height = Math.ceil(live.y + scroll + live.height + 24);
      await page.screenshot({ path: screenshot, fullPage: true, clip: { x: 0, y: 0, width: 1280, height } });
    }
    seen.search = await execute(page, 'Patient', 'searchPatient', {});
  } catch (error) {
    const failure = path.join(os.tmpdir(), 'fhirlake-explorer-failure.png');
    await context.pages()[0]?.screenshot({ path: failure, fullPage: true }).catch(() => {});
    error.message += ` (the page at the time: ${failure})`;
    throw error;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(seen));
}

main().catch((error) => {
  console.error(`explorer.cjs: ${error.stack || error}`);
  process.exit(1);
});
