"""The built book in a real browser: every page opened in headless Chromium, as a reader sees it.

Each page of ``_build/html`` is served from localhost (no network) and opened in Chromium with
a small script appended that waits for MathJax, then reports what the reader would see. The
test fails on raw TeX left in the page, on an image fetched from a web address, on a code cell
wider than its container (a horizontal scroll bar) and on a path of the build machine.

Runs when ``FWI_TEACH_CHECK_HTML=1`` (``.ci/run`` sets it after building the book) and
Debian's ``chromium`` package (or ``google-chrome``) is installed; otherwise it is skipped,
with the reason.
"""

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = "1280,1600"  # a laptop screen: the theme shows its sidebars

#: Appended to each page: waits for MathJax to typeset, then writes its findings as JSON.
PROBE = """
<script>
(async () => {  // at the end of <body>: the DOM is there; waiting for "load" can outlast the budget
  // MathJax 3 typesets after its startup promise; wait for it, but not forever (virtual time)
  const settle = new Promise(r => setTimeout(r, 8000));
  try {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await Promise.race([MathJax.startup.promise, settle]);
    } else { await settle; }
  } catch (e) {}
  const article = document.querySelector("main") || document.body;
  const math = [...article.querySelectorAll(".math")];
  const raw = math.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.trim());
  const text = article.cloneNode(true);
  text.querySelectorAll("pre, code, script, style, mjx-container, .math").forEach(e => e.remove());
  const leftover = (text.textContent.match(/\\\\(?:frac|begin|mathrm|partial|nabla|sum)\\b|\\$\\$/g)
                    || []);
  const wide = [...article.querySelectorAll("div.cell_input pre, div.highlight pre")]
    .filter(p => p.clientWidth > 0 && p.scrollWidth > p.clientWidth + 1)
    .map(p => p.textContent.split("\\n").sort((a, b) => b.length - a.length)[0].slice(0, 90));
  const images = [...document.images].map(i => i.getAttribute("src") || "");
  const out = document.createElement("pre");
  out.id = "fwi-teach-probe";
  out.textContent = JSON.stringify({mathjax: !!window.MathJax, math: math.length,
                                    raw: raw.concat(leftover), wide: wide, images: images});
  document.body.appendChild(out);
})();
</script>
"""


def _browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _pages():
    return sorted(p.relative_to(HTML).as_posix() for p in (HTML / "book").glob("*.html"))  # index.html: a redirect


class _ProbeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves _build/html; a page asked for with ``?probe`` gets the probe script appended."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path, _, query = self.path.partition("?")
        if query != "probe":
            return super().do_GET()
        page = (HTML / path.lstrip("/")).read_text(encoding="utf-8")
        body = page.replace("</body>", PROBE + "</body>").encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if os.environ.get("FWI_TEACH_CHECK_HTML") != "1":
        pytest.skip("checks the built book: run `bash scripts/build_book.sh`, then set FWI_TEACH_CHECK_HTML=1")
    if _browser() is None:
        pytest.skip("no headless browser: install Debian's chromium package (apt-get install chromium)")
    assert (HTML / "index.html").is_file(), "no built book in _build/html: run `bash scripts/build_book.sh` first"
    handler = functools.partial(_ProbeHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _probe(base_url, page, tmp_path):
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WINDOW}",
           "--virtual-time-budget=20000", "--dump-dom", f"{base_url}/{page}?probe"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    found = re.search(r'<pre id="fwi-teach-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"{page}: Chromium returned no probe result (exit {result.returncode}): {result.stderr[-500:]}"
    return json.loads(html.unescape(found.group(1)))


def _machine_paths():
    from fwi_teach.runtime import resolve_cache_dir

    paths = {str(ROOT), str(Path.home()), str(resolve_cache_dir())}
    return sorted(p for p in paths if len(p) > 1)


@pytest.mark.parametrize("page", _pages() if HTML.is_dir() else ["index.html"])
def test_page_reads_right_in_a_browser(server, page, tmp_path):
    report = _probe(server, page, tmp_path)
    if report["math"]:
        assert report["mathjax"], f"{page}: has equations but MathJax did not load"
    assert not report["raw"], f"{page}: raw TeX left after MathJax ran: {report['raw'][:3]}"
    web = [src for src in report["images"] if re.match(r"(https?:)?//", src)]
    assert not web, f"{page}: images fetched from the web: {web[:3]}"
    assert not report["wide"], (f"{page}: {len(report['wide'])} code cell(s) wider than the page, "
                                f"e.g. {report['wide'][0]!r}")
    source = (HTML / page).read_text(encoding="utf-8")
    named = [p for p in _machine_paths() if p in source]
    assert not named, f"{page}: the HTML names a path of the build machine: {named}"
