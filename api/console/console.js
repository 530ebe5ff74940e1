// Tessera console. It reads the same HTTP API clients use and shows: the repositories and each
// one's version DAG, a selected version's note, log, committed state and data instances, a
// labelmap's mutation log, the server's info and load, and a slice viewer for label and
// grayscale instances. Plain JavaScript with no framework and no build step; it loads nothing
// but this server's own files and API, so it works on an air-gapped cluster.
'use strict';

const TOKEN_KEY = 'tessera.console.token';
const LOAD_POLL_MS = 3000;
const MAX_SLICE = 2048;       // per side; a larger slice would be a multi-MB fetch per draw
const MAX_MUTATION_ROWS = 500; // the newest ones; a long-lived labelmap can log many thousands

// Types the slice viewer can draw, and how their voxels are read.
const VIEWABLE = { labelmap: 'label', labelarray: 'label', labelblk: 'label', uint8blk: 'gray' };

const state = {
  token: localStorage.getItem(TOKEN_KEY) || '',
  repos: {},        // GET /api/repos/info
  node: null,       // the selected version: {root, uuid}
  viewer: null,     // the slice viewer's instance: {name, kind, info, sources: [{instance, scale}]}
  slice: null,      // the last slice drawn: {kind, data (DataView), w, h, x, y, z, scale}
  drawSeq: 0,       // a later draw (or node click) wins over an earlier one still loading
};

// ---------------------------------------------------------------------------------------------
// HTTP

// A failed request with a message a person can act on (the status alone is not enough: a 401
// means "set a token", a 403 means "this token may not do that").
class ApiError extends Error {
  constructor(status, path, body) {
    const said = body ? ` Server said: ${body.trim().slice(0, 300)}` : '';
    let msg;
    if (status === 0) msg = `${path}: could not reach the server (${body}).`;
    else if (status === 401) msg = `${path}: 401 Unauthorized. The server wants a valid token: enter one in the Token field above and press Save.${said}`;
    else if (status === 403) msg = `${path}: 403 Forbidden. The token in use is not allowed to read this.${said}`;
    else msg = `${path}: ${status} error.${said}`;
    super(msg);
    this.status = status;
  }
}

// Every request goes through here, so every one carries the token when one is set.
async function api(path) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  let r;
  try {
    r = await fetch(path, { headers, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, path, String(e));
  }
  if (!r.ok) throw new ApiError(r.status, path, await r.text().catch(() => ''));
  return r;
}

async function apiJSON(path) {
  return (await api(path)).json();
}

// ---------------------------------------------------------------------------------------------
// DOM helpers (textContent only: names, notes and logs come from users and are never parsed as
// HTML).

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  setAttrs(e, attrs);
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
}

const errorBox = (err) => el('div', { class: 'error', role: 'alert' }, err.message || String(err));
const muted = (text) => el('p', { class: 'muted' }, text);

function showBanner(text) {
  $('banner').textContent = text;
  $('banner').hidden = !text;
}

// A two-column table of an object's keys and values, each row marked with its key.
function kvTable(obj) {
  return el('table', {}, Object.keys(obj).sort().map((k) =>
    el('tr', { 'data-key': k }, el('th', {}, k),
      el('td', { class: typeof obj[k] === 'number' ? 'num' : null },
        typeof obj[k] === 'object' ? JSON.stringify(obj[k]) : String(obj[k])))));
}

// ---------------------------------------------------------------------------------------------
// Repositories and their version DAGs

// With access control on, the repo list holds only what the caller may read, so an empty list
// without a token most likely means "sign in", not "no data".
async function emptyListReason() {
  const routes = await apiJSON('/api/server/routes').catch(() => ({}));
  return routes.enforced && !state.token
    ? 'No repositories are public on this server: enter a token in the Token field.'
    : 'The server holds no repositories you may read.';
}

async function loadRepos() {
  try {
    state.repos = await apiJSON('/api/repos/info');
    showBanner('');
  } catch (e) {
    state.repos = {};
    $('repos').replaceChildren(errorBox(e));
    showBanner(e.message);
    return;
  }
  const roots = Object.keys(state.repos).sort((a, b) =>
    (state.repos[a].Alias || a).localeCompare(state.repos[b].Alias || b));
  $('repos').replaceChildren(...(roots.length ? roots.map((r) => repoView(r, state.repos[r]))
    : [muted(await emptyListReason())]));
  // Keep the selected version across a reload when it still exists.
  const sel = state.node;
  if (sel && state.repos[sel.root]?.DAG?.Nodes?.[sel.uuid]) selectNode(sel.root, sel.uuid);
}

function repoView(root, repo) {
  const nodes = repo.DAG?.Nodes || {};
  const instances = Object.keys(repo.DataInstances || {}).length;
  return el('div', { class: 'repo', 'data-root': root },
    el('h3', {}, repo.Alias || '(no alias)', ' ', el('span', { class: 'uuid muted' }, root)),
    repo.Description ? el('p', {}, repo.Description) : null,
    el('p', { class: 'muted' }, `${Object.keys(nodes).length} versions, ${instances} data instances`),
    el('div', { class: 'dag-frame' }, dagSvg(root, nodes)));
}

const NODE_W = 150, NODE_H = 40, GAP_X = 22, GAP_Y = 36, PAD = 10;

// Lays nodes out in rows by depth: a node's depth is one more than its deepest parent's, so a
// merge sits below all of its parents and every edge points down. Parents always have smaller
// VersionIDs than their children (they existed first), so one pass in VersionID order suffices.
function layoutDag(nodes) {
  const list = Object.values(nodes).sort((a, b) => a.VersionID - b.VersionID);
  const byVid = new Map(list.map((n) => [n.VersionID, n]));
  const depth = new Map();
  for (const n of list) {
    let d = 0;
    for (const p of n.Parents || []) {
      const pn = byVid.get(p);
      if (pn && depth.has(pn.UUID)) d = Math.max(d, depth.get(pn.UUID) + 1);
    }
    depth.set(n.UUID, d);
  }
  const rows = [];
  for (const n of list) (rows[depth.get(n.UUID)] ||= []).push(n);
  // Within a row, children follow their first parent's left-to-right order, which keeps
  // siblings together and edges from crossing in the common (tree-shaped) case.
  const col = new Map();
  const widest = Math.max(1, ...rows.map((r) => r.length));
  const pos = new Map();
  rows.forEach((row, d) => {
    row.sort((a, b) => {
      const pa = col.get(byVid.get(a.Parents?.[0])?.UUID) ?? -1;
      const pb = col.get(byVid.get(b.Parents?.[0])?.UUID) ?? -1;
      return pa - pb || a.VersionID - b.VersionID;
    });
    const shift = ((widest - row.length) * (NODE_W + GAP_X)) / 2; // center each row
    row.forEach((n, i) => {
      col.set(n.UUID, i);
      pos.set(n.UUID, { x: PAD + shift + i * (NODE_W + GAP_X), y: PAD + d * (NODE_H + GAP_Y) });
    });
  });
  return {
    byVid, pos,
    width: 2 * PAD + widest * NODE_W + (widest - 1) * GAP_X,
    height: 2 * PAD + rows.length * NODE_H + Math.max(0, rows.length - 1) * GAP_Y,
  };
}

function dagSvg(root, nodes) {
  const { byVid, pos, width, height } = layoutDag(nodes);
  const marker = `arrow-${root}`; // ids are document-wide: one marker per repo's SVG
  const out = svg('svg', { class: 'dag', 'data-root': root, width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `version DAG of ${root}` },
    svg('defs', {}, svg('marker', { id: marker, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow-head' }))));
  // Edges first so nodes are drawn over them.
  for (const n of Object.values(nodes)) {
    for (const vid of n.Parents || []) {
      const p = byVid.get(vid);
      if (!p) continue;
      const a = pos.get(p.UUID), b = pos.get(n.UUID);
      const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2, y2 = b.y;
      const my = (y1 + y2) / 2;
      out.append(svg('path', { class: 'edge', 'data-parent': p.UUID, 'data-child': n.UUID,
        d: `M ${x1} ${y1} C ${x1} ${my} ${x2} ${my} ${x2} ${y2}`, 'marker-end': `url(#${marker})` }));
    }
  }
  for (const n of Object.values(nodes)) {
    const { x, y } = pos.get(n.UUID);
    const kind = n.Locked ? 'locked' : 'open';
    const label = n.UUID.slice(0, 8) + (n.Branch ? ` ${n.Branch}` : '');
    // Both lines are cut to what fits the box (11 px monospace); the tooltip has them whole.
    const note = n.Note ? (n.Note.length > 19 ? `${n.Note.slice(0, 18)}…` : n.Note) : '';
    const pick = () => selectNode(root, n.UUID);
    out.append(svg('g', { class: `dag-node ${kind}`, 'data-uuid': n.UUID, 'data-locked': String(!!n.Locked),
      tabindex: 0, role: 'button', 'aria-label': `version ${n.UUID} (${kind})`,
      onclick: pick, onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') pick(); } },
      svg('title', {}, `${n.UUID}\n${n.Locked ? 'committed' : 'open'}${n.Branch ? `, branch ${n.Branch}` : ''}\n${n.Note || ''}`),
      svg('rect', { class: `node-box ${kind}`, x, y, width: NODE_W, height: NODE_H, rx: 6 }),
      svg('text', { x: x + 8, y: y + 16 }, label.length > 19 ? `${label.slice(0, 18)}…` : label),
      svg('text', { x: x + 8, y: y + 31 }, note)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// A version's details

function nodeUUID(repo, vid) {
  return Object.values(repo.DAG.Nodes).find((n) => n.VersionID === vid)?.UUID ?? `version ${vid}`;
}

async function selectNode(root, uuid) {
  state.node = { root, uuid };
  for (const g of document.querySelectorAll('.dag-node')) g.classList.toggle('selected', g.dataset.uuid === uuid);
  const repo = state.repos[root];
  const info = repo?.DAG?.Nodes?.[uuid];
  if (!info) return;
  const box = $('node');
  box.dataset.uuid = uuid;
  box.dataset.state = 'loading';
  box.replaceChildren(muted(`Loading ${uuid}…`));
  updateViewerInstances();

  // The note, log and lock state are read live, not from the repo listing, which may be stale.
  const [note, log, commit] = await Promise.allSettled([
    apiJSON(`/api/node/${uuid}/note`), apiJSON(`/api/node/${uuid}/log`), apiJSON(`/api/node/${uuid}/commit`)]);
  if (state.node?.uuid !== uuid) return; // another node was clicked meanwhile
  const failed = (r) => (r.status === 'rejected' ? errorBox(r.reason) : null);
  const uuids = (vids) => (vids?.length ? vids.map((v) => el('div', { class: 'uuid' }, nodeUUID(repo, v))) : '—');

  const locked = commit.status === 'fulfilled' ? !!commit.value.Locked : null;
  const logLines = log.status === 'fulfilled' ? log.value.log || [] : [];
  const rows = [
    ['UUID', el('span', { class: 'uuid', id: 'node-uuid' }, uuid)],
    ['Repository', `${repo.Alias || ''} (root ${root})`],
    ['Version ID', String(info.VersionID)],
    ['Branch', info.Branch || '(master)'],
    ['Parents', uuids(info.Parents)],
    ['Children', uuids(info.Children)],
    ['Created', info.Created || ''],
    ['Committed', failed(commit) || el('span', { id: 'node-committed', class: `badge ${locked ? 'locked' : 'open'}`, 'data-locked': String(locked) },
      locked ? 'committed (locked)' : 'open (uncommitted)')],
    ['Note', failed(note) || el('span', { id: 'node-note' }, note.value.note || '')],
    ['Log', failed(log) || (logLines.length
      ? el('ol', { id: 'node-log' }, logLines.map((l) => el('li', {}, l)))
      : el('span', { id: 'node-log', class: 'muted' }, 'empty'))],
  ];

  const instances = Object.entries(repo.DataInstances || {}).sort(([a], [b]) => a.localeCompare(b));
  const table = el('table', { id: 'node-instances' },
    el('tr', {}, el('th', {}, 'Instance'), el('th', {}, 'Type'), el('th', {}, 'Versioned'), el('th', {}, '')),
    instances.map(([name, d]) => {
      const type = d.Base?.TypeName || '?';
      return el('tr', { 'data-instance': name, 'data-type': type },
        el('td', {}, name), el('td', {}, type), el('td', {}, d.Base?.Versioned === false ? 'no' : 'yes'),
        el('td', {},
          type === 'labelmap' ? el('button', { type: 'button', class: 'show-mutations', onclick: () => showMutations(uuid, name) }, 'mutations') : null,
          VIEWABLE[type] ? el('button', { type: 'button', class: 'view-slice', onclick: () => pickViewerInstance(name) }, 'view') : null));
    }));

  box.replaceChildren(
    el('table', {}, rows.map(([k, v]) => el('tr', {}, el('th', {}, k), el('td', {}, v)))),
    el('h3', {}, `Data instances (${instances.length})`),
    instances.length ? table : muted('No data instances.'));
  box.dataset.state = 'ready';
}

// ---------------------------------------------------------------------------------------------
// A labelmap's mutation log (GET mutations: completed merges, cleaves, splits... of a version)

async function showMutations(uuid, name) {
  const box = $('mutations');
  Object.assign(box.dataset, { uuid, instance: name, state: 'loading' });
  box.replaceChildren(muted(`Loading the mutations of ${name}…`));
  let list;
  try {
    list = await apiJSON(`/api/node/${uuid}/${name}/mutations`);
  } catch (e) {
    box.replaceChildren(errorBox(e));
    box.dataset.state = 'error';
    return;
  }
  if (box.dataset.uuid !== uuid || box.dataset.instance !== name) return;
  list = Array.isArray(list) ? list : [];
  const shown = list.slice(-MAX_MUTATION_ROWS);
  const common = new Set(['MutationID', 'Action', 'Timestamp', 'User', 'App', 'UUID']);
  box.replaceChildren(
    el('p', {}, `${name} at `, el('span', { class: 'uuid' }, uuid), `: ${list.length} mutations`,
      shown.length < list.length ? ` (the last ${shown.length} shown)` : ''),
    shown.length ? el('table', { id: 'mutation-table' },
      el('tr', {}, ['Mutation', 'Action', 'Time', 'User', 'App', 'Details'].map((h) => el('th', {}, h))),
      shown.map((m) => {
        const rest = Object.fromEntries(Object.entries(m).filter(([k]) => !common.has(k)));
        return el('tr', { 'data-mutation-id': String(m.MutationID ?? ''), 'data-action': m.Action ?? '' },
          el('td', { class: 'num' }, String(m.MutationID ?? '')), el('td', {}, m.Action ?? ''),
          // The date and time to the second; the full timestamp is in the tooltip.
          el('td', { title: m.Timestamp ?? '' }, String(m.Timestamp ?? '').slice(0, 19)),
          el('td', {}, m.User ?? ''), el('td', {}, m.App ?? ''),
          el('td', {}, el('code', {}, JSON.stringify(rest))));
      })) : muted('No mutations at this version.'));
  box.dataset.state = 'ready';
}

// ---------------------------------------------------------------------------------------------
// Server info and load

async function loadServerInfo() {
  try {
    $('server-info').replaceChildren(kvTable(await apiJSON('/api/server/info')));
  } catch (e) {
    $('server-info').replaceChildren(errorBox(e));
  }
}

// Polls one request at a time (the next is scheduled when this one is done) so a slow server
// is never sent a pile of overlapping requests.
async function pollLoad() {
  const box = $('load');
  try {
    box.replaceChildren(kvTable(await apiJSON('/api/load')));
    $('load-time').textContent = `(every ${LOAD_POLL_MS / 1000} s; last ${new Date().toLocaleTimeString()})`;
  } catch (e) {
    box.replaceChildren(errorBox(e));
  }
  box.dataset.polls = String(Number(box.dataset.polls || 0) + 1);
  setTimeout(pollLoad, LOAD_POLL_MS);
}

// ---------------------------------------------------------------------------------------------
// Slice viewer

// The deterministic label color, also implemented in tests/browser/console.py. Label 0 is black.
// Any other label goes through the splitmix64 finalizer (all arithmetic mod 2^64):
//   h = (l ^ l >> 30) * 0xbf58476d1ce4e5b9;  h = (h ^ h >> 27) * 0x94d049bb133111eb;  h ^= h >> 31
// and its low bytes b0, b1, b2 give r = 55 + b0 % 201, g = 55 + b1 % 201, b = 55 + b2 % 201, so
// neighbouring labels get unrelated colors and no label is as dark as the background.
function labelColor(label) {
  if (label === 0n) return [0, 0, 0];
  let h = label;
  h = BigInt.asUintN(64, (h ^ (h >> 30n)) * 0xbf58476d1ce4e5b9n);
  h = BigInt.asUintN(64, (h ^ (h >> 27n)) * 0x94d049bb133111ebn);
  h ^= h >> 31n;
  const byte = (i) => Number((h >> BigInt(8 * i)) & 0xffn);
  return [55 + (byte(0) % 201), 55 + (byte(1) % 201), 55 + (byte(2) % 201)];
}

function sliceInput(id) {
  return Math.trunc(Number($(id).value));
}

function updateViewerInstances() {
  const sel = $('slice-instance');
  const repo = state.node && state.repos[state.node.root];
  $('slice-version').textContent = state.node ? `Version: ${state.node.uuid}` : 'Version: none selected.';
  const names = Object.entries(repo?.DataInstances || {})
    .filter(([, d]) => VIEWABLE[d.Base?.TypeName]).map(([n]) => n).sort();
  const current = sel.value;
  sel.replaceChildren(el('option', { value: '' }, names.length ? '(pick one)' : '(none viewable)'),
    ...names.map((n) => el('option', { value: n }, `${n} (${repo.DataInstances[n].Base.TypeName})`)));
  if (names.includes(current)) {
    sel.value = current;
    if (state.slice) drawSlice(); // same instance, new version: redraw to compare versions
  } else {
    state.viewer = null;
    $('slice-scale').replaceChildren();
  }
}

function pickViewerInstance(name) {
  $('slice-instance').value = name;
  viewerInstanceChanged();
  $('viewer-section').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
}

// Reads the instance's info at the selected version to learn its scales and extents. Label types
// keep their scales in one instance (MaxDownresLevel; `?scale=k`); grayscale keeps them in
// sibling uint8blk instances by DVID's convention (`grayscale_1`, `grayscale_2`, …).
async function viewerInstanceChanged() {
  const name = $('slice-instance').value;
  const msg = $('slice-message');
  state.viewer = null;
  $('slice-scale').replaceChildren();
  if (!name || !state.node) return;
  const repo = state.repos[state.node.root];
  const kind = VIEWABLE[repo.DataInstances[name]?.Base?.TypeName];
  let info;
  try {
    info = await apiJSON(`/api/node/${state.node.uuid}/${name}/info`);
  } catch (e) {
    msg.replaceChildren(errorBox(e));
    return;
  }
  const sources = [{ instance: name, scale: 0, query: false }];
  if (kind === 'label') {
    for (let k = 1; k <= (info.Extended?.MaxDownresLevel || 0); k++) sources.push({ instance: name, scale: k, query: true });
  } else {
    for (let k = 1; repo.DataInstances[`${name}_${k}`]?.Base?.TypeName === 'uint8blk'; k++) {
      sources.push({ instance: `${name}_${k}`, scale: k, query: false });
    }
  }
  state.viewer = { name, kind, info, sources };
  $('slice-scale').replaceChildren(...sources.map((s) =>
    el('option', { value: s.scale }, s.instance === name ? String(s.scale) : `${s.scale} (${s.instance})`)));
  $('slice-scale').dataset.last = '0';
  msg.replaceChildren();
  await fitExtents();
}

// When the scale changes, keep looking at the same place: positions scale by 2^(old - new).
function viewerScaleChanged() {
  const sel = $('slice-scale');
  const old = Number(sel.dataset.last || 0), k = Number(sel.value);
  const f = 2 ** (old - k);
  for (const id of ['slice-x', 'slice-y', 'slice-z']) $(id).value = Math.floor(sliceInput(id) * f);
  sel.dataset.last = String(k);
}

// Sets the position and size to the instance's stored extents at the chosen scale, with z in the
// middle.
async function fitExtents() {
  const v = state.viewer;
  if (!v || !state.node) return;
  const k = Number($('slice-scale').value || 0);
  const src = v.sources[k];
  let info = v.info, div = 2 ** k;
  if (src.instance !== v.name) { // a grayscale sibling: its own extents are already at its scale
    try {
      info = await apiJSON(`/api/node/${state.node.uuid}/${src.instance}/info`);
    } catch (e) {
      $('slice-message').replaceChildren(errorBox(e));
      return;
    }
    div = 1;
  }
  const lo = info.Extents?.MinPoint || info.Extended?.MinPoint;
  const hi = info.Extents?.MaxPoint || info.Extended?.MaxPoint;
  if (!lo || !hi) return; // nothing stored yet: keep what the user typed
  const at = (p) => p.map((c) => Math.floor(c / div));
  const [a, b] = [at(lo), at(hi)];
  $('slice-x').value = a[0];
  $('slice-y').value = a[1];
  $('slice-z').value = Math.floor((a[2] + b[2]) / 2);
  $('slice-w').value = Math.min(MAX_SLICE, b[0] - a[0] + 1);
  $('slice-h').value = Math.min(MAX_SLICE, b[1] - a[1] + 1);
}

// Fetches one XY plane as a w×h×1 subvolume (GET raw/0_1_2/<w>_<h>_1/<x>_<y>_<z>): that answers
// the voxels themselves (uint64 little-endian per voxel for labels, one byte for grayscale),
// whereas a 2-D `raw/0_1` answers a PNG whose 16-bit channels a browser would round to 8 bits.
async function drawSlice() {
  const seq = ++state.drawSeq;
  const msg = $('slice-message');
  const canvas = $('slice');
  const v = state.viewer;
  if (!state.node) return msg.replaceChildren(errorBox(new Error('Select a version in a DAG first.')));
  if (!v) return msg.replaceChildren(errorBox(new Error('Pick an instance to view.')));
  const [x, y, z, w, h] = ['slice-x', 'slice-y', 'slice-z', 'slice-w', 'slice-h'].map(sliceInput);
  if (!(w >= 1 && h >= 1 && w <= MAX_SLICE && h <= MAX_SLICE)) {
    return msg.replaceChildren(errorBox(new Error(`width and height must be 1..${MAX_SLICE}`)));
  }
  const k = Number($('slice-scale').value || 0);
  const src = v.sources[k];
  const uuid = state.node.uuid;
  const path = `/api/node/${uuid}/${src.instance}/raw/0_1_2/${w}_${h}_1/${x}_${y}_${z}${src.query ? `?scale=${k}` : ''}`;
  canvas.dataset.state = 'loading';
  msg.replaceChildren(muted(`Loading ${path}…`));
  let buf;
  try {
    buf = await (await api(path)).arrayBuffer();
  } catch (e) {
    if (seq !== state.drawSeq) return;
    canvas.dataset.state = 'error';
    return msg.replaceChildren(errorBox(e));
  }
  if (seq !== state.drawSeq) return;
  const bytes = v.kind === 'label' ? 8 : 1;
  if (buf.byteLength !== w * h * bytes) {
    canvas.dataset.state = 'error';
    return msg.replaceChildren(errorBox(new Error(`${path}: expected ${w * h * bytes} bytes, got ${buf.byteLength}`)));
  }
  const data = new DataView(buf);
  const img = new ImageData(w, h);
  const px = img.data;
  let distinct = 0;
  if (v.kind === 'label') {
    // Labels repeat a lot within a slice: hash each once. The cache is keyed by a plain number
    // where the label fits one exactly (below 2^53), which is much faster than BigInt keys.
    const colors = new Map();
    for (let i = 0; i < w * h; i++) {
      const lo = data.getUint32(8 * i, true), hi = data.getUint32(8 * i + 4, true);
      const key = hi < 0x200000 ? hi * 0x100000000 + lo : `${hi}:${lo}`;
      let c = colors.get(key);
      if (!c) colors.set(key, (c = labelColor((BigInt(hi) << 32n) | BigInt(lo))));
      px.set(c, 4 * i);
      px[4 * i + 3] = 255;
    }
    distinct = colors.size;
  } else {
    for (let i = 0; i < w * h; i++) {
      const g = data.getUint8(i);
      px[4 * i] = px[4 * i + 1] = px[4 * i + 2] = g;
      px[4 * i + 3] = 255;
    }
  }
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = false; // one voxel is one pixel: never blend neighbours
  ctx.putImageData(img, 0, 0);
  state.slice = { kind: v.kind, data, w, h, x, y, z, scale: k };
  Object.assign(canvas.dataset, { state: 'drawn', uuid, instance: src.instance, scale: String(k), x, y, z, w, h });
  msg.replaceChildren(el('p', {}, `${src.instance} at ${uuid.slice(0, 8)}, scale ${k}: ${w}×${h} voxels from (${x}, ${y}, ${z})`,
    v.kind === 'label' ? `, ${distinct} distinct labels` : ''));
}

// Shows the voxel under the pointer: its coordinates (at the slice's scale) and its value.
function readout(e) {
  const s = state.slice;
  if (!s) return;
  const i = Math.floor(e.offsetX), j = Math.floor(e.offsetY);
  if (i < 0 || j < 0 || i >= s.w || j >= s.h) return;
  const n = j * s.w + i;
  const value = s.kind === 'label' ? `label ${s.data.getBigUint64(8 * n, true)}` : `gray ${s.data.getUint8(n)}`;
  $('slice-readout').textContent = `(${s.x + i}, ${s.y + j}, ${s.z}) at scale ${s.scale}: ${value}`;
}

// ---------------------------------------------------------------------------------------------
// Token and start-up

function showAuthState() {
  $('auth-state').textContent = state.token ? 'requests send the token' : 'no token';
}

function setToken(token) {
  state.token = token;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  showAuthState();
  // Everything shown may depend on what the token allows: read it all again.
  loadRepos();
  loadServerInfo();
}

function start() {
  $('token').value = state.token;
  showAuthState();
  $('auth-form').addEventListener('submit', (e) => { e.preventDefault(); setToken($('token').value.trim()); });
  $('token-clear').addEventListener('click', () => { $('token').value = ''; setToken(''); });
  $('slice-form').addEventListener('submit', (e) => { e.preventDefault(); drawSlice(); });
  $('slice-instance').addEventListener('change', viewerInstanceChanged);
  $('slice-scale').addEventListener('change', viewerScaleChanged);
  $('slice-fit').addEventListener('click', fitExtents);
  $('slice').addEventListener('mousemove', readout);
  // An unexpected failure is shown, never left as a silently half-drawn page.
  window.addEventListener('unhandledrejection', (e) => showBanner(`Unexpected error: ${e.reason?.message || e.reason}`));
  loadRepos();
  loadServerInfo();
  pollLoad();
}

start();
