"""The built book, as a reader sees it: every chapter page exists, has its figures, shows no
error, and its Colab button opens ``book/<chapter>.ipynb`` on ``main``.

These tests read ``_build/html`` as made by ``bash scripts/build_book.sh``. They run when
``FWI_TEACH_CHECK_HTML=1`` is set (``.ci/run`` sets it and runs this file after the build);
otherwise they are skipped, so a stale or partial local build does not fail the suite.
"""

import os
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
COLAB = "https://colab.research.google.com/github/fwi-teach/fwi_teach/blob/main/book/{}.ipynb"
NO_FIGURES = {"api", "bibliography", "paper_scale"}  # reference pages: tables and text only
NOT_NOTEBOOKS = {"api", "bibliography"}  # Markdown pages: nothing to open in Colab


def _toc_chapters():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for c in toc.get("chapters", [])]
    return [f.split("/", 1)[1] for f in files]


CHAPTERS = _toc_chapters()


def _page(name):
    if os.environ.get("FWI_TEACH_CHECK_HTML") != "1":
        pytest.skip("checks the built book: run `bash scripts/build_book.sh`, then set FWI_TEACH_CHECK_HTML=1")
    assert (HTML / "index.html").is_file(), "no built book in _build/html: run `bash scripts/build_book.sh` first"
    path = HTML / "book" / f"{name}.html"
    assert path.is_file(), f"chapter {name} is listed in _toc.yml but {path} was not built"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_has_no_error_output(name):
    page = _page(name)
    assert "Traceback (most recent call last)" not in page, f"{name}: a traceback is shown"
    assert not re.search(r'class="[^"]*output (?:traceback|error)', page), f"{name}: an error output is shown"


@pytest.mark.parametrize("name", [c for c in CHAPTERS if c not in NO_FIGURES])
def test_chapter_page_has_figures(name):
    page = _page(name)
    figures = re.findall(r"<img [^>]*src=\"[^\"]*\.(?:png|svg|jpg)\"", page)
    assert figures, f"{name}: no figure in the built page"


@pytest.mark.parametrize("name", [c for c in CHAPTERS if c not in NOT_NOTEBOOKS])
def test_chapter_colab_link_targets_its_notebook_on_main(name):
    page = _page(name)
    assert COLAB.format(name) in page, f"{name}: no Colab link to book/{name}.ipynb on main"
