#!/usr/bin/env python3
"""The web console (api/console/) in a real browser: Debian Chromium driven by PyPI playwright
(sync API), against a running Tessera. A client suite (tests/python/suite.py: one JSON line per
check) run by tests/tests/console.rs.

    console.py TESSERA_URL SCREENSHOT_DIR OLD_NODE NEW_NODE LARGE_NODE GUARDED_URL TOKEN GUARDED_ROOT

OLD_NODE and NEW_NODE are two versions of one repo whose labelmap differs (e.g. the demo's root
and a descendant of its proofread child); LARGE_NODE is a version whose labelmap holds labels
above 2^53 (where JavaScript numbers stop being exact) next to smaller ones. GUARDED_URL is a
second server with access control on (`[auth] enforce = "token"`), TOKEN a read token for its
repo GUARDED_ROOT. Everything the checks expect is read from the server
over HTTP; the browser's drawing is compared pixel by pixel with the voxels fetched here, colored
by label_color below (the same function as labelColor in api/console/console.js). Screenshots go
to SCREENSHOT_DIR. $CHROMIUM names the browser (default /usr/bin/chromium, from
`bash scripts/browser.sh`); playwright's own browser download is never used.
"""
import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from suite import check, expect, run  # noqa: E402

BASE, SHOTS, OLD, NEW, LARGE = sys.argv[1].rstrip("/"), *sys.argv[2:6]
GUARDED, GUARD_TOKEN, GUARDED_ROOT = sys.argv[6].rstrip("/"), *sys.argv[7:9]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "console-test-token-7f3a"
PAGE_ERRORS = []  # uncaught exceptions in the page
REQUESTS = []     # (url, Authorization header or None) of every request the page made
page = None
np = None


# ------------------------------------------------------------------------------------------------
# HTTP, independent of the browser

def get(path):
    with urllib.request.urlopen(BASE + path, timeout=60) as r:
        return r.read(), r.headers.get("Content-Type", "")


def get_json(path):
    return json.loads(get(path)[0])


def repo_of(uuid):
    for root, repo in get_json("/api/repos/info").items():
        if uuid in repo["DAG"]["Nodes"]:
            return root, repo
    raise AssertionError(f"no repo holds {uuid}")


def plane(uuid, instance, x, y, z, w, h, scale=None, label=True):
    """One XY plane as a (h, w) array: uint64 labels or uint8 gray."""
    q = f"?scale={scale}" if scale is not None else ""
    body, _ = get(f"/api/node/{uuid}/{instance}/raw/0_1_2/{w}_{h}_1/{x}_{y}_{z}{q}")
    a = np.frombuffer(body, dtype="<u8" if label else np.uint8)
    expect(a.size == w * h, f"{instance} plane: {a.size} voxels, asked for {w}x{h}")
    return a.reshape(h, w)


def label_color(labels):
    """labelColor of console.js on an array of uint64 labels → (..., 3) uint8 RGB: label 0 is
    black; else the splitmix64 finalizer h of the label (mod 2^64) and its low bytes b0, b1, b2
    give (55 + b0 % 201, 55 + b1 % 201, 55 + b2 % 201)."""
    h = labels.astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    h = h ^ (h >> np.uint64(31))
    rgb = np.stack([55 + ((h >> np.uint64(8 * i)) & np.uint64(0xFF)) % np.uint64(201)
                    for i in range(3)], axis=-1).astype(np.uint8)
    rgb[labels == 0] = 0
    return rgb


# ------------------------------------------------------------------------------------------------
# The browser

def setup():
    global page, np
    try:
        import numpy
        from PIL import Image  # noqa: F401
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RuntimeError(f"{e}: this python lacks playwright, numpy or Pillow; "
                           "run `bash scripts/pyenv.sh`") from e
    np = numpy
    if not os.path.isfile(CHROMIUM):
        raise RuntimeError(f"no browser at {CHROMIUM}; run `bash scripts/browser.sh` (or set CHROMIUM)")
    os.makedirs(SHOTS, exist_ok=True)
    pw = sync_playwright().start()
    # sRGB output and no GPU: the canvas's pixels reach the screenshot unchanged.
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--force-color-profile=srgb", "--disable-lcd-text"])
    context = browser.new_context(viewport={"width": 1600, "height": 1600}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.on("pageerror", lambda e: PAGE_ERRORS.append(str(e)))
    page.on("request", lambda r: REQUESTS.append((r.url, r.headers.get("authorization"))))
    page.goto(BASE + "/")
    page.wait_for_selector(".dag-node")


def select_node(uuid):
    page.click(f'.dag-node[data-uuid="{uuid}"]')
    page.wait_for_selector(f'#node[data-uuid="{uuid}"][data-state="ready"]')


def shown_kv(selector):
    return page.eval_on_selector_all(
        f"{selector} tr[data-key]", "rows => rows.map(r => [r.dataset.key, r.cells[1].textContent])")


# ------------------------------------------------------------------------------------------------
# Checks

@check
def page_served():
    html, kind = get("/")
    expect(kind.startswith("text/html"), f"GET / is {kind}")
    expect(b'src="/console/console.js"' in html, "index.html loads console.js")
    for name, want in [("console.js", "text/javascript"), ("console.css", "text/css")]:
        body, kind = get(f"/console/{name}")
        expect(kind.startswith(want) and len(body) > 100, f"/console/{name}: {kind}, {len(body)} bytes")
    expect(page.title() == "Tessera console", f"title {page.title()!r}")
    # Nothing but the server itself is asked for anything.
    foreign = [u for u, _ in REQUESTS if not u.startswith(BASE + "/")]
    expect(not foreign, f"requests outside the server: {foreign}")


@check
def dag_matches_repos_info():
    repos = get_json("/api/repos/info")
    shown = page.eval_on_selector_all("svg.dag", """svgs => svgs.map(s => ({
        root: s.dataset.root,
        nodes: [...s.querySelectorAll('.dag-node')].map(g => ({uuid: g.dataset.uuid,
            locked: g.classList.contains('locked'), open: g.classList.contains('open'),
            y: g.querySelector('rect').getBBox().y})),
        edges: [...s.querySelectorAll('.edge')].map(e => [e.dataset.parent, e.dataset.child])}))""")
    expect(sorted(s["root"] for s in shown) == sorted(repos), f"repos shown {[s['root'] for s in shown]}")
    for s in shown:
        nodes = repos[s["root"]]["DAG"]["Nodes"]
        uuid_of = {n["VersionID"]: u for u, n in nodes.items()}
        got = sorted(n["uuid"] for n in s["nodes"])
        expect(got == sorted(nodes), f"repo {s['root']}: nodes shown {got}, DAG has {sorted(nodes)}")
        for n in s["nodes"]:
            locked = nodes[n["uuid"]]["Locked"]
            expect(n["locked"] == locked and n["open"] != locked, f"{n['uuid']} drawn locked={n['locked']}, is {locked}")
        want = sorted([uuid_of[p], u] for u, n in nodes.items() for p in n["Parents"])
        expect(sorted(s["edges"]) == want, f"repo {s['root']}: edges {sorted(s['edges'])}, DAG {want}")
        y = {n["uuid"]: n["y"] for n in s["nodes"]}
        for parent, child in want:
            expect(y[child] > y[parent], f"{child} is drawn no lower than its parent {parent}")
    page.screenshot(path=os.path.join(SHOTS, "dag.png"), full_page=True)


@check
def node_details():
    select_node(NEW)
    node = get_json(f"/api/node/{NEW}/note")["note"]
    log = get_json(f"/api/node/{NEW}/log")["log"]
    locked = get_json(f"/api/node/{NEW}/commit")["Locked"]
    expect(node and log, f"the test needs a note and a log on {NEW}: {node!r} {log!r}")
    expect(page.text_content("#node-uuid") == NEW, "uuid shown")
    expect(page.text_content("#node-note") == node, f"note shown {page.text_content('#node-note')!r}, is {node!r}")
    items = page.eval_on_selector_all("#node-log li", "li => li.map(x => x.textContent)")
    expect(items == log, f"log shown {items}, is {log}")
    shown = page.get_attribute("#node-committed", "data-locked")
    expect(shown == str(locked).lower(), f"committed shown {shown}, is {locked}")
    sel = page.eval_on_selector_all(".dag-node.selected", "g => g.map(x => x.dataset.uuid)")
    expect(sel == [NEW], f"selected in the DAG: {sel}")


@check
def instance_list():
    _, repo = repo_of(NEW)
    want = sorted((n, d["Base"]["TypeName"]) for n, d in repo["DataInstances"].items())
    got = page.eval_on_selector_all("#node-instances tr[data-instance]",
                                    "rows => rows.map(r => [r.dataset.instance, r.cells[1].textContent])")
    expect(len(want) >= 3 and sorted(map(tuple, got)) == want, f"instances shown {got}, repo has {want}")


@check
def mutation_log():
    root, repo = repo_of(NEW)
    labelmaps = sorted(n for n, d in repo["DataInstances"].items() if d["Base"]["TypeName"] == "labelmap")
    expect(labelmaps, "the repo has a labelmap")
    # The version whose log has entries (the demo proofreads one version).
    found = [(u, name, get_json(f"/api/node/{u}/{name}/mutations"))
             for u in sorted(repo["DAG"]["Nodes"]) for name in labelmaps]
    found = [f for f in found if f[2]]
    expect(found, "some version has mutations")
    uuid, name, muts = found[0]
    select_node(uuid)
    page.click(f'#node-instances tr[data-instance="{name}"] .show-mutations')
    page.wait_for_selector(f'#mutations[data-uuid="{uuid}"][data-instance="{name}"][data-state="ready"]')
    rows = page.eval_on_selector_all("#mutation-table tr[data-mutation-id]",
                                     "rows => rows.map(r => [r.dataset.mutationId, r.dataset.action])")
    want = [[str(m["MutationID"]), m["Action"]] for m in muts]
    expect(rows == want, f"mutations shown {rows}, log has {want}")
    wide = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    expect(wide[0] <= wide[1], f"the mutation log widens the page to {wide[0]} px (window {wide[1]})")
    page.locator("#mutations-section").screenshot(path=os.path.join(SHOTS, "mutations.png"))


@check
def server_info_and_load():
    info = get_json("/api/server/info")
    shown = dict(shown_kv("#server-info"))
    expect(sorted(shown) == sorted(info), f"server info keys {sorted(shown)}, server has {sorted(info)}")
    moving = {"Server time", "Server uptime"}
    diff = {k: (shown[k], info[k]) for k in info if k not in moving and shown[k] != str(info[k])}
    expect(not diff, f"server info shown differs: {diff}")
    # The load panel is polled: wait for two more polls, then compare its keys with /api/load.
    polls = int(page.get_attribute("#load", "data-polls"))
    page.wait_for_function(f"Number(document.getElementById('load').dataset.polls) >= {polls + 2}",
                           timeout=15_000)
    load = get_json("/api/load")
    shown = dict(shown_kv("#load"))
    expect(sorted(shown) == sorted(load), f"load keys {sorted(shown)}, server has {sorted(load)}")
    expect(all(v.isdigit() for v in shown.values()), f"load values {shown}")


def pick_instance(name, scales):
    page.select_option("#slice-instance", name)
    page.wait_for_function(f"document.getElementById('slice-scale').options.length === {len(scales)}")
    got = page.eval_on_selector_all("#slice-scale option", "o => o.map(x => x.value)")
    expect(got == [str(k) for k in scales], f"{name}: scales offered {got}, want {scales}")


def draw(uuid, name, scale, x, y, z, w, h):
    """Draws through the form and returns the canvas's screenshot as an (h, w, 3) array; `name`
    is the instance the drawing must come from (a grayscale sibling for scale > 0)."""
    page.select_option("#slice-scale", str(scale))
    for field, v in zip("xyzwh", (x, y, z, w, h)):
        page.fill(f"#slice-{field}", str(v))
    page.click("#slice-draw")
    want = {"state": "drawn", "uuid": uuid, "instance": name, "scale": str(scale), "x": str(x), "y": str(y),
            "z": str(z), "w": str(w), "h": str(h)}
    page.wait_for_function(f"""() => {{ const d = document.getElementById('slice').dataset;
        const want = {json.dumps(want)};
        return Object.keys(want).every(k => d[k] === want[k]); }}""")
    page.eval_on_selector("#slice", "c => c.scrollIntoView({block: 'start', inline: 'start'})")
    box = page.eval_on_selector("#slice", "c => { const r = c.getBoundingClientRect(); "
                                          "return [r.width, r.height, c.width, c.height, devicePixelRatio, r.left, r.top]; }")
    expect(box[:5] == [w, h, w, h, 1], f"canvas [css w, css h, w, h, dpr] = {box[:5]}: not 1 voxel = 1 pixel")
    # The canvas may sit at a fractional layout position (text above it has fractional line
    # heights); Chromium paints it snapped to the nearest whole pixel, where this clip takes it.
    # A clip one pixel off would fail the exact comparison below, so no tolerance hides it.
    path = os.path.join(SHOTS, f"{name}-{uuid[:8]}-scale{scale}.png")
    page.screenshot(path=path, clip={"x": round(box[5]), "y": round(box[6]), "width": w, "height": h})
    from PIL import Image
    img = np.asarray(Image.open(path).convert("RGB"))
    expect(img.shape == (h, w, 3), f"screenshot {img.shape}, canvas {w}x{h}")
    return img


def compare(img, want, what):
    bad = np.argwhere(np.any(img != want, axis=-1))
    expect(len(bad) == 0, f"{what}: {len(bad)} of {want.shape[0] * want.shape[1]} pixels differ, first "
           + ", ".join(f"(x={c},y={r}) shown {img[r, c].tolist()} want {want[r, c].tolist()}" for r, c in bad[:3]))


def labelmap_window(scale):
    """The labelmap's name, its scales and a window inside its extents at `scale`, offset and not
    square so a transposed or shifted drawing cannot match."""
    _, repo = repo_of(OLD)
    name = sorted(n for n, d in repo["DataInstances"].items() if d["Base"]["TypeName"] == "labelmap")[0]
    ext = get_json(f"/api/node/{OLD}/{name}/info")["Extended"]
    lo = [c >> scale for c in ext["MinPoint"]]
    hi = [c >> scale for c in ext["MaxPoint"]]
    x, y = lo[0] + 5, lo[1] + 3
    w, h = hi[0] - x + 1 - 4, hi[1] - y + 1 - 2
    return name, list(range(ext["MaxDownresLevel"] + 1)), lo, hi, (x, y, w, h)


_plane_z = []


def differing_z():
    """A z (at scale 0) whose labelmap plane differs between OLD and NEW, found from the data."""
    if _plane_z:
        return _plane_z[0]
    name, _, lo, hi, (x, y, w, h) = labelmap_window(0)
    mid = (lo[2] + hi[2]) // 2
    for dz in range(0, hi[2] - lo[2] + 1, 3):
        for z in (mid + dz, mid - dz):
            if lo[2] <= z <= hi[2]:
                a, b = plane(OLD, name, x, y, z, w, h), plane(NEW, name, x, y, z, w, h)
                if (a != b).any() and len(np.unique(a)) >= 3:
                    _plane_z.append(z)
                    return z
    raise AssertionError("no z plane where the labelmap differs between the two versions")


def labelmap_check(uuid, scale):
    name, scales, _, _, (x, y, w, h) = labelmap_window(scale)
    z = differing_z() >> scale
    select_node(uuid)
    pick_instance(name, scales)
    img = draw(uuid, name, scale, x, y, z, w, h)
    labels = plane(uuid, name, x, y, z, w, h, scale=scale)
    expect(len(np.unique(labels)) >= 3, f"the plane holds {np.unique(labels)}: too few labels to tell")
    compare(img, label_color(labels), f"{name} at {uuid} scale {scale}")
    return labels


@check
def labelmap_old_scale0():
    labelmap_check(OLD, 0)


@check
def labelmap_new_scale0():
    # The same plane at the other version: the data differ there, and so must the drawing.
    labels = labelmap_check(NEW, 0)
    name, _, _, _, (x, y, w, h) = labelmap_window(0)
    expect((labels != plane(OLD, name, x, y, differing_z(), w, h)).any(), "the versions' planes differ")


@check
def labelmap_new_scale1():
    labelmap_check(NEW, 1)


@check
def labelmap_large_labels():
    _, repo = repo_of(LARGE)
    name = sorted(n for n, d in repo["DataInstances"].items() if d["Base"]["TypeName"] == "labelmap")[0]
    ext = get_json(f"/api/node/{LARGE}/{name}/info")["Extended"]
    lo, hi = ext["MinPoint"], ext["MaxPoint"]
    x, y, z = lo[0] + 3, lo[1] + 1, (lo[2] + hi[2]) // 2
    w, h = hi[0] - x + 1, hi[1] - y + 1 - 5
    select_node(LARGE)
    pick_instance(name, list(range(ext["MaxDownresLevel"] + 1)))
    img = draw(LARGE, name, 0, x, y, z, w, h)
    labels = plane(LARGE, name, x, y, z, w, h, scale=0)
    big, top = np.uint64(2**53), np.uint64(2**63)
    expect((labels >= big).any() and (labels > top).any() and ((labels < big) & (labels > 0)).any()
           and len(np.unique(labels)) >= 10, f"labels on both sides of 2^53 in {np.unique(labels)}")
    compare(img, label_color(labels), f"{name} at {LARGE}")


def grayscale_check(scale):
    _, repo = repo_of(NEW)
    kinds = {n: d["Base"]["TypeName"] for n, d in repo["DataInstances"].items()}
    # A grayscale with a pyramid by DVID's naming convention (name_1, name_2, ...).
    name = sorted(n for n, t in kinds.items() if t == "uint8blk" and kinds.get(f"{n}_1") == "uint8blk")[0]
    scales = [0]
    while kinds.get(f"{name}_{len(scales)}") == "uint8blk":
        scales.append(len(scales))
    source = name if scale == 0 else f"{name}_{scale}"
    ext = get_json(f"/api/node/{NEW}/{source}/info")["Extended"]
    lo, hi = ext["MinPoint"], ext["MaxPoint"]
    x, y, z = lo[0] + 5, lo[1] + 9, (lo[2] + hi[2]) // 2 + 1
    w, h = hi[0] - x + 1 - 3, hi[1] - y + 1
    select_node(NEW)
    pick_instance(name, scales)
    img = draw(NEW, source, scale, x, y, z, w, h)
    gray = plane(NEW, source, x, y, z, w, h, label=False)
    expect(len(np.unique(gray)) >= 20, f"{len(np.unique(gray))} gray levels: too few to tell")
    compare(img, np.repeat(gray[:, :, None], 3, axis=2), f"{source} at {NEW}")


@check
def grayscale_scale0():
    grayscale_check(0)


@check
def grayscale_scale1():
    grayscale_check(1)
    page.screenshot(path=os.path.join(SHOTS, "console.png"), full_page=True)


def api_requests():
    return [(u, a) for u, a in REQUESTS if u.startswith(BASE + "/api/")]


@check
def token_sent_on_every_request():
    with page.expect_response(lambda r: r.url.endswith("/api/repos/info")):
        page.fill("#token", TOKEN)
        page.click("#token-save")
    # Kept across a reload (localStorage), and sent by every kind of request the page makes
    # (from the save on: a load poll sent just before it rightly has no token).
    REQUESTS.clear()
    page.reload()
    page.wait_for_selector(".dag-node")
    expect(page.input_value("#token") == TOKEN, "the token field after a reload")
    polls = int(page.get_attribute("#load", "data-polls"))
    select_node(NEW)
    page.wait_for_function(f"Number(document.getElementById('load').dataset.polls) > {polls}")
    reqs = api_requests()
    kinds = {u.split("/api/")[1].split("/")[0] for u, _ in reqs}
    expect({"repos", "node", "load", "server"} <= kinds, f"requests made: {kinds}")
    without = [u for u, a in reqs if a != f"Bearer {TOKEN}"]
    expect(not without, f"requests without the token: {without}")
    # Cleared: stored no more, and no request carries it.
    page.click("#token-clear")
    expect(page.evaluate("localStorage.getItem('tessera.console.token')") is None, "token cleared")
    REQUESTS.clear()
    page.reload()
    page.wait_for_selector(".dag-node")
    select_node(NEW)
    reqs = api_requests()
    expect(reqs and all(a is None for _, a in reqs), f"requests after clearing: {reqs}")


@check
def auth_errors_readable():
    # A real token-checking server. Without a token nothing leaks and the console says a token
    # is needed; a forged token is refused (401) with the server's message; a reader's token
    # shows the repo.
    page.evaluate("localStorage.removeItem('tessera.console.token')")
    page.goto(GUARDED + "/")
    # The panel starts as "Loading…" (also p.muted): wait for the answer, not the placeholder.
    page.wait_for_selector("#repos p.muted:has-text('token')")
    empty = page.text_content("#repos")
    expect("token" in empty and page.locator(".dag-node").count() == 0, f"repos panel {empty!r}")
    with page.expect_response(lambda r: r.url.endswith("/api/repos/info") and r.status == 401):
        page.fill("#token", GUARD_TOKEN[:-2] + ("AA" if not GUARD_TOKEN.endswith("AA") else "BB"))
        page.click("#token-save")
    page.wait_for_selector("#banner:not([hidden])")
    page.wait_for_selector("#repos .error")
    banner = page.text_content("#banner")
    expect("401" in banner and "invalid token" in banner, f"banner {banner!r}")
    page.screenshot(path=os.path.join(SHOTS, "auth-errors.png"), full_page=True)
    with page.expect_response(lambda r: r.url.endswith("/api/repos/info") and r.status == 200):
        page.fill("#token", GUARD_TOKEN)
        page.click("#token-save")
    page.wait_for_selector(f'.dag-node[data-uuid="{GUARDED_ROOT}"]')
    expect(page.is_hidden("#banner"), "the banner goes once the server answers")
    page.evaluate("localStorage.removeItem('tessera.console.token')")
    page.goto(BASE + "/")
    page.wait_for_selector(".dag-node")


@check
def no_uncaught_page_errors():
    expect(not PAGE_ERRORS, f"uncaught errors in the page: {PAGE_ERRORS}")


if __name__ == "__main__":
    run(before=setup)
