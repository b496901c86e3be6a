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
    from fwi_teach.book import toc_documents

    return [doc.split("/", 1)[1] for doc in toc_documents(ROOT)]


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


FILE_NAME = re.compile(r"(^|/)[\w.-]+\.(png|svg|jpe?g)$|_images/|^[\w.-]+$", re.I)


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_figure_has_a_caption_and_alt_text(name):
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_page(name), "html.parser")
    main = soup.find("article") or soup  # the page's content, not the theme's buttons (the Colab logo)
    for img in main.find_all("img"):
        src, alt = img.get("src", ""), (img.get("alt") or "").strip()
        figure = img.find_parent("figure")
        caption = figure.find("figcaption") if figure else None
        assert caption and caption.get_text(strip=True), f"{name}: figure {src} has no caption"
        assert len(alt.split()) >= 3 and not FILE_NAME.search(alt), (
            f"{name}: figure {src} has alt text {alt!r}; describe what it shows")
        assert re.search(r"Fig(ure|\.)\s*\d", caption.get_text()), f"{name}: figure {src} is not numbered"


@pytest.mark.parametrize("name", CHAPTERS)
def test_page_loads_nothing_from_the_web(name):
    page = _page(name)
    remote = re.findall(r'<(?:script|img)[^>]+src="((?:https?:)?//[^"]+)"', page)
    remote += re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="((?:https?:)?//[^"]+)"', page)
    assert not remote, f"{name}: the page loads {remote[:3]} from the web and will not read offline"
