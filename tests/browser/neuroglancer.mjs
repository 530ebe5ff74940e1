// Neuroglancer (npm @janelia-flyem/neuroglancer, its standalone build) in headless Debian
// Chromium, driven by playwright-core, against a running Tessera (tests/tests/neuroglancer.rs).
//
//   node neuroglancer.mjs standalone NG_DIST TESSERA_URL NODE SEGMENT X,Y,Z OUT_DIR
//   node neuroglancer.mjs url VIEWER_URL TESSERA_URL OUT_DIR
//
// standalone: serves NG_DIST (the package's dist/min) on loopback and opens three views of
// the demo dataset — grayscale + segmentation with SEGMENT forced to magenta (xy), the
// segment's mesh (3d), and the synapse annotation layer in green (xy).
// url: opens a viewer already serving its own state (PyPI neuroglancer's), as view "pypi".
// Waits for each view to draw, saves its screenshot under OUT_DIR, and prints one JSON
// object: every response from Tessera (url, status) and, per view, pixel counts measured on
// its screenshot.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';

const mode = process.argv[2];
const [dist, tessera, node, segment, pos, out] = mode === 'standalone'
  ? process.argv.slice(3)
  : [null, process.argv[4], null, null, '0,0,0', process.argv[5]];
const position = pos.split(',').map(Number);
const WAIT_MS = Number(process.env.NG_WAIT_MS || 90000);

const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.map': 'application/json' };
const server = http.createServer((req, res) => {
  if (!dist) {
    res.writeHead(404).end();
    return;
  }
  const file = path.join(dist, decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const viewer = `http://127.0.0.1:${server.address().port}/index.html`;

const source = (name) => `dvid://${tessera}/${node}/${name}`;
const nm = { x: [8e-9, 'm'], y: [8e-9, 'm'], z: [8e-9, 'm'] };
const image = { type: 'image', name: 'grayscale', source: source('grayscale') };
const seg = {
  type: 'segmentation', name: 'segmentation', source: source('segmentation'),
  segments: [segment], segmentColors: { [segment]: '#ff00ff' }, selectedAlpha: 1,
  notSelectedAlpha: 0,
};
const standaloneViews = {
  xy: { dimensions: nm, position, crossSectionScale: 0.5, layout: 'xy',
    layers: [image, seg], showAxisLines: false, showScaleBar: false },
  mesh: { dimensions: nm, position, projectionScale: 400, layout: '3d',
    layers: [{ ...seg, selectedAlpha: 0 }], showAxisLines: false, showScaleBar: false,
    showDefaultAnnotations: false },
  synapses: { dimensions: nm, position, crossSectionScale: 0.5, layout: 'xy',
    layers: [{ type: 'annotation', name: 'synapses', source: source('synapses'),
      annotationColor: '#00ff00' }], showAxisLines: false, showScaleBar: false },
};

// A view is a state for the standalone build, or a whole URL.
const views = mode === 'standalone' ? standaloneViews : { pypi: process.argv[3] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--no-sandbox',
    '--disable-background-networking', '--disable-dev-shm-usage'],
});
const result = { responses: [], console: [], views: {} };
fs.mkdirSync(out, { recursive: true });
for (const [name, state] of Object.entries(views)) {
  const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
  page.on('response', (r) => {
    if (r.url().startsWith(tessera)) result.responses.push({ url: r.url(), status: r.status() });
  });
  page.on('console', (m) => {
    if (m.type() === 'error') result.console.push(`${name}: ${m.text()}`.slice(0, 300));
  });
  let inFlight = 0;
  page.on('request', (r) => { if (r.url().startsWith(tessera)) inFlight++; });
  page.on('requestfinished', (r) => { if (r.url().startsWith(tessera)) inFlight--; });
  page.on('requestfailed', (r) => { if (r.url().startsWith(tessera)) inFlight--; });
  await page.goto(typeof state === 'string'
    ? state : `${viewer}#!${encodeURIComponent(JSON.stringify(state))}`);
  // Drawn when no request to Tessera is in flight and two screenshots 3 s apart agree
  // (software WebGL on a small machine is slow); at most WAIT_MS.
  const file = path.join(out, `${name}.png`);
  const started = Date.now();
  let last = null;
  for (;;) {
    await page.waitForTimeout(3000);
    await page.screenshot({ path: file });
    const now = JSON.stringify(measure(PNG.sync.read(fs.readFileSync(file))));
    if ((now === last && inFlight === 0 && Date.now() - started > 6000)
        || Date.now() - started > WAIT_MS) {
      result.views[name] = JSON.parse(now);
      break;
    }
    last = now;
  }
  await page.close();
}
await browser.close();
server.close();
console.log(JSON.stringify(result));

// Pixel counts of a screenshot: magenta (the forced segment colour), green (annotations),
// grey levels (distinct values among neutral pixels), and non-black pixels.
function measure(png) {
  let magenta = 0, green = 0, lit = 0;
  const greys = new Set();
  for (let i = 0; i < png.data.length; i += 4) {
    const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
    if (r > 150 && b > 150 && g < 100) magenta++;
    if (g > 150 && r < 100 && b < 100) green++;
    if (Math.abs(r - g) < 8 && Math.abs(g - b) < 8) greys.add(r >> 2);
    if (r + g + b > 30) lit++;
  }
  return { pixels: png.width * png.height, magenta, green, lit, greyLevels: greys.size };
}
