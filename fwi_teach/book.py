"""Execute the course notebooks with papermill and build the Jupyter Book.

The build never executes notebooks in place in the repository. It copies the book sources
(``_config.yml``, ``_toc.yml``, ``references.bib`` and ``book/``) into a staging tree
``_build/book_src`` with the same layout, executes every chapter listed in ``_toc.yml`` there
with papermill, and then renders the stored outputs with ``jupyter-book build``. The HTML ends
up in ``_build/html``. Because the layout is kept, the launch and repository links of each page
still point at ``book/<chapter>.ipynb`` in the repository.

Command line: ``python -m fwi_teach.book [--profile P] [--chapters intro ...] [--skip-execute]``.
Only the standard library is imported at module level (papermill and jupyter-book are imported
when a build runs), so the package imports on Colab, where they are not installed. The device and
cache folder are resolved by :mod:`fwi_teach.runtime`.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .runtime import DEVICES, find_book_root, resolve_cache_dir, resolve_device

PROFILES = ("smoke", "cpu", "gpu", "paper")
#: Parameters the build passes to a notebook, when its ``parameters`` cell declares them.
BOOK_PARAMETERS = ("profile", "seed", "device", "cache_dir", "data_dir")
#: Files and folders copied from the repository root into the staging tree.
STAGED_PATHS = ("_config.yml", "_toc.yml", "references.bib", "book")
DEFAULT_TIMEOUT_S = 3600


def glue(name, value, display=False):
    """Store ``value`` under ``name`` for the page's prose, and return ``value``.

    A chapter computes a number in a code cell and its Markdown cites it with
    ``{glue:text}`name:.3f``` (MyST-NB's glue), so no number in the prose is typed by
    hand. Where MyST-NB is not installed (a Colab runtime) nothing is stored and the
    prose shows the role as written.

    Parameters
    ----------
    name : str
        Key, unique within the page.
    value : object
        Number, string or figure to store.
    display : bool, optional
        Also show ``value`` in the cell's output (default False).
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return value
    import numpy as np  # a numpy scalar would be stored as 'np.float64(0.3)', which :.2f cannot format

    _glue(name, value.item() if isinstance(value, np.generic) else value, display=display)
    return value


class ChapterExecutionError(RuntimeError):
    """A chapter notebook raised an error while papermill executed it."""


def toc_documents(root):
    """List the documents of ``_toc.yml`` in reading order, e.g. ``["book/intro", ...]``."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text(encoding="utf-8"))
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{Path(root) / '_toc.yml'} has no 'root' entry; see the comment at its top")
    docs = [str(toc["root"])]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                docs.append(str(entry["file"]))
            walk(entry.get("sections"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return [d[: -len(".ipynb")] if d.endswith(".ipynb") else d for d in docs]


def notebook_chapters(root):
    """List the notebook documents of ``_toc.yml`` (those with a ``.ipynb`` file), in order."""
    return [d for d in toc_documents(root) if (Path(root) / f"{d}.ipynb").is_file()]


def _select_chapters(root, chapters):
    available = notebook_chapters(root)
    if chapters is None:
        return available
    selected = []
    for name in chapters:
        stem = str(name)[: -len(".ipynb")] if str(name).endswith(".ipynb") else str(name)
        matches = [d for d in available if d == stem or Path(d).name == stem]
        if not matches:
            names = ", ".join(Path(d).name for d in available)
            raise ValueError(f"chapter {name!r} is not a notebook listed in _toc.yml; choose from: {names}")
        selected.extend(m for m in matches if m not in selected)
    return [d for d in available if d in selected]


def notebook_parameters(path):
    """Return the names assigned in the notebook's cell tagged ``parameters``.

    Returns an empty list when the notebook has no ``parameters`` cell.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse(cell.source)
            return [t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
    return []


def stage_sources(root, staging_dir, refresh_notebooks=()):
    """Copy the book sources into ``staging_dir``, keeping their relative layout.

    Notebooks already in the staging tree (executed earlier) are kept, except those named
    in ``refresh_notebooks`` (document names such as ``"book/intro"``).
    """
    root, staging_dir = Path(root), Path(staging_dir)
    staging_dir.mkdir(parents=True, exist_ok=True)
    refresh = {f"{d}.ipynb" for d in refresh_notebooks}
    for name in STAGED_PATHS:
        src = root / name
        if src.is_file():
            shutil.copy2(src, staging_dir / name)
            continue
        if not src.is_dir():
            continue
        for path in src.rglob("*"):
            rel = path.relative_to(root)
            if path.is_dir() or ".ipynb_checkpoints" in rel.parts or "__pycache__" in rel.parts:
                continue
            dest = staging_dir / rel
            if path.suffix == ".ipynb" and dest.exists() and rel.as_posix() not in refresh:
                if path.stat().st_mtime > dest.stat().st_mtime:
                    print(f"note: {dest} is older than {rel}; execute that chapter again", flush=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def hide_injected_parameters(path):
    """Tag papermill's ``injected-parameters`` cell of an executed notebook ``remove-cell``.

    That cell repeats the parameters with this build's values (``cache_dir`` is a path of
    the build machine), so the rendered page shows the notebook's own ``parameters`` cell
    only. Returns the number of cells tagged.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    tagged = 0
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
            tagged += 1
    if tagged:
        nbformat.write(nb, str(path))
    return tagged


def execute_chapters(profile=None, cache_dir=None, chapters=None, output_dir=None,
                     timeout_s=DEFAULT_TIMEOUT_S, seed=0, device="auto", data_dir="", root=None,
                     progress=None):
    """Execute chapter notebooks with papermill into the staging tree.

    Parameters
    ----------
    profile : str or None, optional
        One of :data:`PROFILES`; ``None`` or ``"auto"``: ``"gpu"`` when the device resolves
        to CUDA, else ``"smoke"``.
    cache_dir : str or Path or None, optional
        Passed to the notebooks; see :func:`fwi_teach.runtime.resolve_cache_dir`.
    chapters : list of str or None, optional
        Chapters to execute (``"intro"`` or ``"book/intro"``); ``None`` executes all notebooks
        of ``_toc.yml``, in order.
    output_dir : str or Path or None, optional
        Staging tree; executed notebooks are written to ``output_dir/book/<chapter>.ipynb``.
        Default ``<root>/_build/book_src``.
    timeout_s : float, optional
        Longest time one cell may run, in seconds.
    seed, device, data_dir : optional
        Passed to the notebooks that declare them.
    root : str or Path or None, optional
        Repository root; default :func:`fwi_teach.runtime.find_book_root`.
    progress : bool or None, optional
        Show papermill's per-cell progress bar; default: when stderr is a terminal.

    Returns
    -------
    dict
        Wall time in seconds of each executed chapter, in order.

    Raises
    ------
    ValueError
        For an unknown profile, device or chapter.
    ChapterExecutionError
        When a notebook fails; the message names the chapter and the failing cell.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = find_book_root(root)
    torch_device = resolve_device(device)  # fails early, with a clear message
    if profile in (None, "auto"):  # default: the gpu profile exactly when CUDA is used
        profile = "gpu" if torch_device.type == "cuda" else "smoke"
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not known; use one of {PROFILES} or 'auto'")
    selected = _select_chapters(root, chapters)
    staging = Path(output_dir) if output_dir is not None else root / "_build" / "book_src"
    staging = staging.resolve()
    stage_sources(root, staging, refresh_notebooks=selected)
    values = {"profile": profile, "seed": int(seed), "device": str(device),
              "cache_dir": str(resolve_cache_dir(cache_dir)), "data_dir": str(data_dir or "")}
    progress = sys.stderr.isatty() if progress is None else progress
    # The kernel must import the same fwi_teach as this process, whatever its cwd.
    package_parent = str(Path(__file__).resolve().parents[1])
    old_pythonpath = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, old_pythonpath) if p)
    timings = {}
    print(f"Executing {len(selected)} chapter(s): profile={profile} device={device} "
          f"cache_dir={values['cache_dir']}", flush=True)
    try:
        for i, doc in enumerate(selected, 1):
            src, dest = root / f"{doc}.ipynb", staging / f"{doc}.ipynb"
            dest.parent.mkdir(parents=True, exist_ok=True)
            running = dest.with_name(f".{dest.stem}.running.ipynb")
            params = {k: values[k] for k in notebook_parameters(src) if k in BOOK_PARAMETERS}
            print(f"[{i}/{len(selected)}] {doc}.ipynb ...", flush=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(src), str(running), parameters=params, kernel_name="python3",
                    cwd=str(dest.parent), progress_bar=progress, execution_timeout=timeout_s)
            except Exception as err:
                failed = dest.with_name(f"{dest.stem}.failed.ipynb")
                if running.exists():
                    os.replace(running, failed)
                if isinstance(err, PapermillExecutionError):
                    what = (f"failed in cell {err.cell_index} (execution count {err.exec_count}): "
                            f"{err.ename}: {err.evalue}")
                else:
                    what = f"could not be executed: {type(err).__name__}: {err}"
                raise ChapterExecutionError(f"chapter {doc}.ipynb {what}\nThe partly executed "
                                            f"notebook, if any, is {failed}") from err
            hide_injected_parameters(running)
            os.replace(running, dest)
            dest.with_name(f"{dest.stem}.failed.ipynb").unlink(missing_ok=True)
            timings[doc] = time.perf_counter() - start
            print(f"[{i}/{len(selected)}] {doc}.ipynb done in {timings[doc]:.1f} s", flush=True)
    finally:
        if old_pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_pythonpath
    print(f"Executed {len(timings)} chapter(s) in {sum(timings.values()):.1f} s", flush=True)
    return timings


def _allow_unexecuted(staging_dir) -> None:
    """A partial build (``--chapters intro``) stages the other chapters without outputs, whose
    ``{glue:text}`` and figure ``{numref}`` roles would fail ``-W``: only then the staged
    ``_config.yml`` (never the repository's) silences those two warnings, with a notice."""
    import json

    import yaml

    bare = [p.name for p in sorted((Path(staging_dir) / "book").glob("*.ipynb"))
            if not any(c.get("outputs") for c in json.loads(p.read_text())["cells"])]
    if bare:
        path = Path(staging_dir) / "_config.yml"
        config = yaml.safe_load(path.read_text())
        extra = config.setdefault("sphinx", {}).setdefault("config", {})
        extra["suppress_warnings"] = [*extra.get("suppress_warnings", []), "mystnb.glue", "ref.numref"]
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        print(f"not executed, rendered without their glued numbers: {', '.join(bare)}", flush=True)


def build_html(staging_dir, path_output):
    """Render the staging tree with ``jupyter-book build -W --keep-going``.

    The HTML goes to ``path_output/_build/html`` (jupyter-book's ``--path-output``). Returns
    the path of ``index.html``. Raises RuntimeError if the build fails or warns.
    """
    staging_dir, path_output = Path(staging_dir).resolve(), Path(path_output).resolve()
    _allow_unexecuted(staging_dir)
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build",
           str(staging_dir), "--path-output", str(path_output), "-W", "--keep-going"]
    print("Running: jupyter-book build " + " ".join(cmd[4:]), flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit code {result.returncode}); "
                           "see its warnings above (the build treats warnings as errors)")
    print(f"HTML built in {time.perf_counter() - start:.1f} s", flush=True)
    return path_output / "_build" / "html" / "index.html"


def build_book(profile=None, cache_dir=None, chapters=None, path_output=None, skip_execute=False,
               timeout_s=DEFAULT_TIMEOUT_S, seed=0, device="auto", data_dir="", root=None):
    """Execute the chapters (unless ``skip_execute``) and build the HTML book.

    Other parameters are those of :func:`execute_chapters`.

    Parameters
    ----------
    path_output : str or Path or None, optional
        Folder that receives ``_build/``, default the repository root: the staging tree goes
        to ``path_output/_build/book_src`` and the HTML to ``path_output/_build/html``.
    skip_execute : bool, optional
        Render the notebooks executed earlier in the staging tree (committed, output-free
        copies for chapters never executed).

    Returns
    -------
    Path
        Path of the book's ``index.html``.
    """
    root = find_book_root(root)
    path_output = Path(path_output) if path_output is not None else root
    staging = path_output / "_build" / "book_src"
    start = time.perf_counter()
    if skip_execute:
        stage_sources(root, staging)
    else:
        execute_chapters(profile=profile, cache_dir=cache_dir, chapters=chapters,
                         output_dir=staging, timeout_s=timeout_s, seed=seed, device=device,
                         data_dir=data_dir, root=root)
    index = build_html(staging, path_output)
    print(f"Book built in {time.perf_counter() - start:.1f} s: {index}", flush=True)
    return index


def _add_arguments(parser):
    parser.add_argument("--profile", default=None,
                        help=f"one of {', '.join(PROFILES)}, or auto (default: gpu when CUDA "
                             "is available, else smoke)")
    parser.add_argument("--chapters", nargs="+", default=None, metavar="CHAPTER",
                        help="execute only these chapters (e.g. intro); the others keep "
                             "their earlier outputs")
    parser.add_argument("--skip-execute", action="store_true",
                        help="only build the HTML from notebooks executed earlier")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="device passed to the notebooks (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--cache-dir", default=None,
                        help="cache folder (default: $FWI_TEACH_CACHE or ~/.cache/fwi_teach)")
    parser.add_argument("--data-dir", default="",
                        help="folder with real OpenFWI files (default: generated data)")
    parser.add_argument("--path-output", default=None,
                        help="folder that receives _build/ with the HTML (default: the repo root)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, dest="timeout_s",
                        help=f"longest time one cell may run, in s (default: {DEFAULT_TIMEOUT_S})")
    parser.add_argument("--root", default=None, help="repository root (default: found from cwd)")
    return parser


def run_book_command(args):
    """Run the build from parsed arguments; return the process exit code."""
    try:
        build_book(profile=args.profile, cache_dir=args.cache_dir, chapters=args.chapters,
                   path_output=args.path_output, skip_execute=args.skip_execute,
                   timeout_s=args.timeout_s, seed=args.seed, device=args.device,
                   data_dir=args.data_dir, root=args.root)
    except (ChapterExecutionError, RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


def add_book_subcommand(subparsers):
    """Register ``book`` on an argparse sub-parser collection (``fwi-teach book ...``).

    The sub-parser stores :func:`run_book_command` as ``func``: call ``args.func(args)``,
    which returns the exit code.
    """
    parser = subparsers.add_parser("book", help="execute the chapters and build the HTML book",
                                   description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    parser.set_defaults(func=run_book_command)
    return parser


def main(argv=None):
    """Entry point of ``python -m fwi_teach.book``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fwi_teach.book",
                                     description=__doc__.split("\n\n")[0])
    args = _add_arguments(parser).parse_args(argv)
    return run_book_command(args)


if __name__ == "__main__":
    sys.exit(main())
