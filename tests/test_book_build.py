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
    assert (build_dir / "html" / "book" / "bibliography.html").is_file()
    executed = nbformat.read(str(build_dir / "book_src" / "book" / "intro.ipynb"), as_version=4)
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    assert any(c.outputs for c in code_cells)
    committed = nbformat.read(str(ROOT / "book" / "intro.ipynb"), as_version=4)
    assert all(c.outputs == [] for c in committed.cells if c.cell_type == "code")
