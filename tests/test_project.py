"""Project-level consistency: dependency lists, README commands, CI script, book config."""

import os
import re
import stat
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads(text)


def _normalise(requirement):
    """'Jupyter_Book >=1.0.4, <2' -> 'jupyter-book>=1.0.4,<2' (PEP 503 name, no spaces)."""
    req = requirement.replace(" ", "")
    match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$", req)
    assert match, f"cannot parse requirement {requirement!r}"
    name, spec = match.groups()
    return re.sub(r"[-_.]+", "-", name).lower() + ",".join(sorted(spec.split(",")))


def _readme_block(heading):
    """Lines of the first fenced code block after the README heading ``heading``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pattern = rf"^#+ {re.escape(heading)}\s*$.*?^```[a-z]*\n(.*?)^```"
    match = re.search(pattern, readme, flags=re.M | re.S)
    assert match, f"README.md has no fenced code block under a heading '{heading}'"
    lines = [ln.strip() for ln in match.group(1).splitlines() if ln.strip()]
    assert lines, f"the code block under '{heading}' in README.md is empty"
    return lines


def test_environment_yml_matches_pyproject():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    expected = project["dependencies"] + extras["book"] + extras["test"]

    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert env["name"] == "fwi-teach"
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    assert any(re.fullmatch(r"python\s*>=\s*3\.10", d) for d in conda_deps), conda_deps
    assert "pip" in conda_deps

    listed = [_normalise(d) for d in pip_sections[0] if not d.startswith("-")]
    wanted = [_normalise(d) for d in expected]
    missing = sorted(set(wanted) - set(listed))
    extra = sorted(set(listed) - set(wanted))
    assert not missing and not extra, (
        f"environment.yml and pyproject.toml disagree: missing from environment.yml {missing}, "
        f"not in pyproject.toml {extra}; copy the lines from pyproject.toml"
    )
    assert len(listed) == len(set(listed)), "environment.yml lists a dependency twice"


def test_torch_is_a_lower_bound_not_a_pin():
    deps = [_normalise(d) for d in _pyproject()["project"]["dependencies"]]
    torch = [d for d in deps if re.match(r"torch(?![a-z-])", d)]
    assert len(torch) == 1 and torch[0].startswith("torch>="), torch
    assert "==" not in torch[0] and "<" not in torch[0]


def test_ci_runs_readme_commands_verbatim_in_order():
    ci_script = ROOT / ".ci" / "run"
    text = ci_script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert os.stat(ci_script).st_mode & stat.S_IXUSR, ".ci/run must be executable"
    ci_lines = [ln.strip() for ln in text.splitlines()]
    tests = _readme_block("Run the tests")
    book = _readme_block("Build the book")
    assert tests == ["bash scripts/run_tests.sh"]
    assert book == ["bash scripts/build_book.sh"]
    for command in tests + book:
        assert command in ci_lines, f".ci/run does not run the README command {command!r} verbatim"
    assert ci_lines.index(tests[0]) < ci_lines.index(book[0]), ".ci/run must test before building"


def test_scripts_share_the_setup():
    setup = (ROOT / "scripts" / "setup_env.sh").read_text(encoding="utf-8")
    assert 'torch==${FWI_TEACH_TORCH:-2.13.0}' in setup
    assert 'pip install -e ".[book,test]"' in setup
    for name, command in [("build_book.sh", "python -m fwi_teach.book"),
                          ("run_tests.sh", "python -m pytest -q")]:
        lines = [ln for ln in (ROOT / "scripts" / name).read_text(encoding="utf-8").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        sources = [i for i, ln in enumerate(lines) if ln.startswith("source ") and "setup_env.sh" in ln]
        runs = [i for i, ln in enumerate(lines) if ln.startswith(command)]
        assert sources and runs and sources[0] < runs[0], f"{name} must source setup_env.sh, then run {command}"


def test_github_workflow_runs_ci_script():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["cpu"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert "bash .ci/run" in runs
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"


def test_book_config():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["repository"]["url"] == "https://github.com/fwi-teach/fwi_teach"
    assert config["repository"]["branch"] == "main"
    assert config["repository"]["path_to_book"] == ""
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["only_build_toc_files"] is True
    assert config["bibtex_bibfiles"] == ["references.bib"]

    from fwi_teach.book import toc_documents

    docs = toc_documents(ROOT)
    assert docs[0] == "book/intro"
    assert "book/bibliography" in docs
    for doc in docs:
        assert (ROOT / f"{doc}.ipynb").is_file() or (ROOT / f"{doc}.md").is_file(), (
            f"_toc.yml lists {doc}, but neither {doc}.ipynb nor {doc}.md exists"
        )


def test_every_citation_is_in_references_bib():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", bib, flags=re.M))
    for required in ["ghosal2024", "deng2022", "wu2020", "hu2022", "virieux2009",
                     "tarantola1984", "cerjan1985", "komatitsch2007", "mangrulkar2022"]:
        assert required in keys
    cited = set()
    for path in (ROOT / "book").rglob("*"):
        if path.suffix in {".ipynb", ".md"} and ".ipynb_checkpoints" not in path.parts:
            for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", path.read_text(encoding="utf-8")):
                cited.update(k.strip() for k in group.split(","))
    assert "ghosal2024" in cited
    assert not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_workflow_has_cpu_gpu_and_publish_jobs():
    import yaml

    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    jobs = wf["jobs"]
    assert "bash .ci/run" in str(jobs["cpu"]["steps"])
    assert "self-hosted" in jobs["gpu"]["runs-on"] and "vars." in jobs["gpu"]["if"]
    assert "PROFILE=gpu" in str(jobs["gpu"]["steps"]) and "executed-notebooks-gpu" in str(jobs["gpu"]["steps"])
    publish = str(jobs["publish"]["steps"])
    assert "deploy-pages" in publish and "book-html-gpu" in publish and jobs["publish"]["needs"] == ["cpu", "gpu"]


def test_readme_package_example_runs(tmp_path, monkeypatch):
    """The README's "package in five lines" (and the training lines after it) run as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The package in five lines", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)
    assert len(blocks) == 2, "README: expected the five-line example and the training example"
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile("\n".join(blocks), "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    assert scope["records"].shape == (4, 5, 1000, 70)
    assert tuple(scope["seismic"].shape) == (5, 1000, 70) and tuple(scope["velocity"].shape) == (1, 70, 70)
    assert (tmp_path / "data" / "flatvel-a").is_dir()


def test_readme_performance_figures_are_the_recorded_ones(tmp_path):
    """The README's performance list is written from benchmark_rates.json, never by hand."""
    from fwi_teach.experiments.report import (PERFORMANCE_END, PERFORMANCE_START, performance_block,
                                              update_performance_block)

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = PERFORMANCE_START + readme.split(PERFORMANCE_START, 1)[1].split(PERFORMANCE_END, 1)[0] + PERFORMANCE_END
    assert block == performance_block(), "run `python benchmarks/forward.py --record` / training.py --record"
    fake = {"cpu": {"recorded": {"forward": {"date": "2026-01-01", "machine": "x"}},
                    "forward": {"samples_per_s": {"default": 30.0, "eager": 8.0}, "deepwave_samples_per_s": 12.0,
                                "vs_deepwave": 2.5, "generation_min_per_2000": 1.5, "generation_measured": True,
                                "boundary_error": {"thin": 0.025, "openfwi": 0.001}}}}
    text = performance_block(fake)
    assert "30.0 samples/s" in text and "2.50x deepwave's 12.0" in text and "1.5 min (measured" in text
    copy = tmp_path / "README.md"
    copy.write_text(f"# x\n\n{PERFORMANCE_START}\nold\n{PERFORMANCE_END}\n")
    assert update_performance_block(copy) and not update_performance_block(copy)
    assert performance_block() in copy.read_text()
