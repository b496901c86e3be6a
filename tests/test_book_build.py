"""The book: committed notebooks are clean, and the builder executes and renders them."""

import argparse
import ast
import re
from pathlib import Path

import nbformat
import pytest

import fwi_teach
from fwi_teach import book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
COLAB_INTRO = "https://colab.research.google.com/github/fwi-teach/fwi_teach/blob/main/book/intro.ipynb"


def test_there_are_notebooks():
    assert ROOT / "book" / "intro.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_committed_notebook_is_clean(path):
    rel = path.relative_to(ROOT).as_posix()
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", f"{rel}: kernelspec must be python3"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code_cells:
        assert cell.outputs == [] and cell.execution_count is None, (
            f"{rel} is committed with outputs; clear them (e.g. jupyter nbconvert "
            "--clear-output --inplace) before committing")
    params = [c for c in code_cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{rel} needs exactly one code cell tagged 'parameters', has {len(params)}"
    tree = ast.parse(params[0].source)
    assert tree.body, f"{rel}: the parameters cell is empty"
    for node in tree.body:
        assert isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets), (
            f"{rel}: the parameters cell may only hold 'name = literal' lines")
        ast.literal_eval(node.value)  # raises ValueError for anything but a literal
    assert any(re.search(r"^\s*(import fwi_teach|from fwi_teach[\w.]* import)", c.source, re.M)
               for c in code_cells), f"{rel} never imports fwi_teach"


#: Helpers a chapter may define itself: one-line illustrations that close over the chapter's own data.
ONE_OFF_HELPERS = {"fwi_background.ipynb": {"rms"}, "paper_scale.ipynb": {"show"}}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebooks_import_their_logic_from_the_package(path):
    """No chapter defines a function or class of its own (verdict rules, figures, tables belong in fwi_teach)."""
    nb = nbformat.read(str(path), as_version=4)
    defined = set()
    for cell in nb.cells:
        if cell.cell_type == "code":
            tree = ast.parse("\n".join(l for l in cell.source.splitlines() if not l.lstrip().startswith(("!", "%"))))
            defined.update(n.name for n in ast.walk(tree)
                           if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    extra = defined - ONE_OFF_HELPERS.get(path.name, set())
    assert not extra, f"{path.name} defines {sorted(extra)}; move them into fwi_teach and import them"


CODE_COLUMNS = 88  # the widest code line a page shows without a horizontal scroll bar
FILE_NAME = re.compile(r"(^|/)[\w.-]+\.(png|svg|jpe?g|pdf)$|^_images/|^[\w-]+$", re.I)


def _figure_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "plt.show()" in c.source]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_chapter_follows_the_presentation_rules(path):
    """What a reader of the HTML sees: no web image, install cell collapsed, code within 88
    columns, one figure per cell with a caption, a cross-reference name and real alt text."""
    rel = path.relative_to(ROOT).as_posix()
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        web = re.findall(r"!\[[^\]]*\]\((https?://[^)]+)\)|<img[^>]+src=[\"']https?://", cell.source)
        assert not web, f"{rel}: an image is fetched from the web ({web[0]}); the book must read offline"
        if cell.cell_type != "code":
            continue
        wide = [line for line in cell.source.splitlines() if len(line) > CODE_COLUMNS]
        assert not wide, (f"{rel} cell {cell.get('id')}: {len(wide)} line(s) over {CODE_COLUMNS} "
                          f"columns, e.g. {wide[0][:60]!r}...; wrap them")
        last = cell.source.rstrip().splitlines()[-1:] or [""]
        if not last[0].split("  #")[0].rstrip().endswith(";"):
            tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!"))))
            tail = tree.body[-1] if tree.body else None
            bare = (isinstance(tail, ast.Expr) and isinstance(tail.value, ast.Call)
                    and getattr(tail.value.func, "id", None) == "glue")
            assert not bare, (f"{rel} cell {cell.get('id')}: ends in a bare glue(...) call, whose return value "
                              "the page would show as output; end the cell with a print or a ';'")
    install = [c for c in nb.cells if c.cell_type == "code" and "git\", \"clone" in c.source]
    assert len(install) == 1, f"{rel}: expected one install (git clone) cell, found {len(install)}"
    assert "hide-cell" in install[0].metadata.get("tags", []), (
        f"{rel}: tag the install cell 'hide-cell' so the page shows it collapsed")
    for cell in _figure_cells(nb):
        where = f"{rel} cell {cell.get('id')}"
        assert cell.source.count("plt.show()") == 1, f"{where}: show one figure per cell"
        meta = cell.metadata.get("mystnb", {})
        caption = meta.get("figure", {}).get("caption", "").strip()
        name = meta.get("figure", {}).get("name", "")
        alt = meta.get("image", {}).get("alt", "").strip()
        assert len(caption.split()) >= 5, f"{where}: give the figure a caption (metadata mystnb.figure.caption)"
        assert name.startswith("fig-"), f"{where}: name the figure 'fig-...' (mystnb.figure.name)"
        assert len(alt.split()) >= 3 and not FILE_NAME.search(alt), (
            f"{where}: describe the figure in mystnb.image.alt (not a file name)")


def test_figure_names_are_unique_across_the_book():
    names = [c.metadata["mystnb"]["figure"]["name"] for p in NOTEBOOKS
             for c in _figure_cells(nbformat.read(str(p), as_version=4))
             if "name" in c.metadata.get("mystnb", {}).get("figure", {})]
    assert names and len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_intro_declares_the_book_parameters():
    assert book.notebook_parameters(ROOT / "book" / "intro.ipynb") == list(book.BOOK_PARAMETERS)


def test_unknown_chapter_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match=r"'nope'.*intro"):
        book.execute_chapters(chapters=["nope"], device="cpu", root=ROOT)


def test_unknown_profile_and_device_are_rejected():
    with pytest.raises(ValueError, match="profile 'huge'"):
        book.execute_chapters(profile="huge", device="cpu", root=ROOT)
    with pytest.raises(ValueError, match="device 'tpu'"):
        book.resolve_device("tpu")


def test_display_path_names_no_folder_of_the_build_machine(monkeypatch, tmp_path):
    from fwi_teach.runtime import display_path

    monkeypatch.delenv("FWI_TEACH_CACHE", raising=False)
    cache = tmp_path / "cache"
    assert display_path(cache / "cpu" / "data", cache) == "<cache>/cpu/data"
    assert display_path(cache, str(cache)) == "<cache>"
    assert display_path(ROOT / "book" / "intro.ipynb") == "./book/intro.ipynb"
    assert display_path(Path.home() / ".cache" / "fwi_teach" / "smoke") == "~/.cache/fwi_teach/smoke"
    assert display_path(Path.home() / "elsewhere") == "~/elsewhere"
    assert str(tmp_path) not in display_path(cache / "x", cache)


def test_resolve_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FWI_TEACH_CACHE", str(tmp_path / "c"))
    assert book.resolve_cache_dir() == tmp_path / "c"
    assert book.resolve_cache_dir("") == tmp_path / "c"
    assert book.resolve_cache_dir(tmp_path / "d") == tmp_path / "d"
    monkeypatch.delenv("FWI_TEACH_CACHE")
    assert book.resolve_cache_dir() == Path.home().resolve() / ".cache" / "fwi_teach"


def test_book_subcommand_registration():
    parser = argparse.ArgumentParser(prog="fwi-teach")
    book.add_book_subcommand(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["book", "--chapters", "intro", "--skip-execute", "--device", "cpu"])
    assert args.func is book.run_book_command
    assert args.chapters == ["intro"] and args.skip_execute and args.device == "cpu"
    assert args.profile is None


def _write_notebook(path, sources, params):
    cells = [nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


@pytest.mark.slow
def test_failing_chapter_stops_the_build_and_is_named(tmp_path, capsys):
    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    for name in ("_config.yml", "references.bib"):
        (root / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/ok\nchapters:\n  - file: book/broken\n")
    _write_notebook(root / "book" / "ok.ipynb", ["import fwi_teach\nprint('fine')"], 'profile = "x"')
    _write_notebook(root / "book" / "broken.ipynb",
                    ["import os\nprint(os.getcwd())", "raise RuntimeError('boom 42')"],
                    'profile = "x"\nanswer = 1')
    code = book.main(["--root", str(root), "--path-output", str(tmp_path),
                      "--device", "cpu", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 1
    assert "book/broken.ipynb" in err and "RuntimeError: boom 42" in err
    staged = (tmp_path / "_build" / "book_src" / "book").resolve()
    assert (staged / "ok.ipynb").is_file()  # the chapter before it was executed
    ok = nbformat.read(str(staged / "ok.ipynb"), as_version=4)
    (ok_injected,) = [c for c in ok.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "remove-cell" in ok_injected.metadata["tags"]  # the page does not show the build's values
    assert not (tmp_path / "_build" / "html").exists()  # no HTML from a failed run
    failed = nbformat.read(str(staged / "broken.failed.ipynb"), as_version=4)
    injected = [c for c in failed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    # only the parameters the notebook declares are passed, and cwd is the staged book/
    assert 'profile = "smoke"' in injected[0].source and "seed" not in injected[0].source
    cwd_cell = next(c for c in failed.cells if "os.getcwd()" in c.source)
    assert cwd_cell.outputs[0]["text"].strip() == str(staged)


@pytest.mark.slow
def test_build_intro_renders_html_with_colab_link(tmp_path):
    build_dir = tmp_path / "_build"
    index = book.build_book(profile="smoke", chapters=["intro"], path_output=tmp_path, device="cpu",
                            cache_dir=tmp_path / "cache", root=ROOT)
    assert index == build_dir / "html" / "index.html" and index.is_file()
    page = (build_dir / "html" / "book" / "intro.html").read_text(encoding="utf-8")
    assert "Traceback" not in page and "output traceback" not in page
    assert f"fwi_teach {fwi_teach.__version__}" in page  # the environment cell ran
    assert "profile: smoke" in page and "device: cpu" in page
    assert COLAB_INTRO in page
    assert str(tmp_path) not in page, "the page shows a path of the build machine"
    assert (build_dir / "html" / "book" / "bibliography.html").is_file()
    executed = nbformat.read(str(build_dir / "book_src" / "book" / "intro.ipynb"), as_version=4)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    assert any(c.outputs for c in code_cells)
    committed = nbformat.read(str(ROOT / "book" / "intro.ipynb"), as_version=4)
    assert all(c.outputs == [] for c in committed.cells if c.cell_type == "code")
