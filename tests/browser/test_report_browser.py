"""report.html of a tiny run in real headless Chromium: no console errors, every image decoded,
nothing requested from the network, tables sort on click. A screenshot is kept for a person to
look at (``DHS_SCREENSHOT_DIR``, default: the test's temporary directory)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

# Runs inside the page copy, before the report's own script: records errors and console.error
# calls, then, after load, checks the images and clicks a table header twice, recording the
# column's text after each click. The order is verified in Python, not here.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push('error: ' + e.message); });
(function () { var ce = console.error; console.error = function () {
  window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); ce.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var result = {n_images: imgs.length, undecoded: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                .map(function (i) { return i.alt; }), sorts: []};
  Array.prototype.slice.call(document.querySelectorAll('table.sortable')).forEach(function (t, ti) {
    if (t.tBodies[0].rows.length < 3) return;
    var th = t.querySelectorAll('th')[0];
    var col = function () { return Array.prototype.map.call(t.tBodies[0].rows, function (r) { return r.cells[0].textContent.trim(); }); };
    var before = col(); th.click(); var first = col(); th.click(); var second = col();
    result.sorts.push({table: ti, before: before, first: first, second: second});
  });
  result.errors = window.__errors;
  var pre = document.createElement('pre'); pre.id = '__probe'; pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            # any attempt to reach a host fails to resolve (the page must not need one)
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)


def _key(text: str):
    m = re.match(r"[-+]?[0-9][0-9,]*\.?[0-9]*(e[-+]?[0-9]+)?", text, re.I)
    return float(m.group(0).replace(",", "")) if m else None


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        pytest.skip("chromium is not installed and could not be installed (the nox session 'browser' runs "
                    "`apt-get install -y chromium`); report.html was not checked in a browser")
    return found


def test_report_in_headless_chromium(tiny_runs, browser, tmp_path):
    report = tiny_runs["a"] / "report.html"
    page = report.read_text()
    assert not re.search(r"https?://", page), "report.html names a network URL"
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    proc = _run(browser, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="__probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    result = json.loads(unescape(m.group(1)))
    assert result["errors"] == []
    assert not re.search(r"CONSOLE.*(Uncaught|Error)", proc.stderr), proc.stderr[-2000:]
    assert result["n_images"] >= 5 and result["undecoded"] == []
    # the gallery: injected arcs per θE and the top-scoring non-lenses, drawn in colour
    gallery = page[page.index('id="gallery"'):]
    assert gallery.count('class="stamp"') >= 4 and "Highest-scoring non-lenses" in gallery
    assert result["sorts"], "no sortable table with three rows"
    for s in result["sorts"]:
        keys = [_key(t) for t in s["first"]]
        if all(k is not None for k in keys):
            assert keys == sorted(keys) and [_key(t) for t in s["second"]] == sorted(keys, reverse=True)
        else:
            assert s["second"] == list(reversed(s["first"])) and sorted(s["first"]) == sorted(s["before"])
    # a screenshot of the unmodified page, for a person to look at
    out = Path(os.environ.get("DHS_SCREENSHOT_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    shot = out / "report.png"
    _run(browser, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file() and shot.read_bytes()[:4] == b"\x89PNG"
    print(f"screenshot: {shot}")
