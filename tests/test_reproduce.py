"""`fwi-teach reproduce`: export of a finished chain, reading it back, and the claim verdicts."""

import ast
import contextlib
import dataclasses
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from fwi_teach import experiments as ex
from fwi_teach.claims import OPENFWI_INVERSIONNET, SSIM_MARGIN, evaluate_claims, openfwi_comparison
from fwi_teach.cli import main
from fwi_teach.profiles import get_profile
from fwi_teach.reproduce import ReferenceResults, export_results, load_reference_results

TINY = dataclasses.replace(
    get_profile("smoke"), name="tiny", n_train=4, n_val=2, nt=100, batch_size=2,
    pretrain_families=("flatvel-a", "curvevel-a"), baseline_families=("flatvel-a", "curvevel-a", "style-a"),
    finetune_families=("style-a",), low_data_families=("style-a",), low_data_fractions=(0.5, 1.0))
TABLES = ("meta", "runs", "matrix", "lowdata", "timings", "openfwi", "claims")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(2)
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("results")
    ex.run_chain(TINY, cache_dir=cache, device="cpu", progress=False)
    return cache, out, export_results(TINY, out, cache_dir=cache)


def test_export_writes_every_table_and_figure_atomically(exported):
    cache, out, folder = exported
    assert folder == out / "tiny"
    for table in TABLES:
        assert (folder / f"{table}.json").is_file()
    assert (folder / "runs.csv").read_text().splitlines()[0].startswith("experiment,")
    assert sorted(p.name for p in (folder / "figures").iterdir()) == sorted(
        f"{n}.png" for n in ("pretraining", "finetuning", "ood_matrix", "lowdata", "openfwi"))
    assert [p.name for p in out.iterdir()] == ["tiny"], "no temporary or old folder is left behind"
    summary = (folder / "summary.md").read_text()
    assert "profile `tiny`" in summary and summary.count("**") == 2 * 5  # five verdicts in bold


def test_loaded_tables_are_the_cached_results(exported):
    cache, out, folder = exported
    ref = load_reference_results("tiny", out)
    pfm = json.loads((cache / "tiny" / "results" / "pfm-s0.json").read_text())
    assert ref.metric("pfm", "curvevel-a", "ssim") == next(r["ssim"] for r in pfm["rows"]
                                                             if r["eval_family"] == "curvevel-a")
    matrix = json.loads((cache / "tiny" / "results" / "matrix-s0.json").read_text())["rows"]
    assert ref.matrix == matrix
    assert len(ref.runs) == 2 + 3 + 2 + 3  # PFM on its 2 sets, 3 baselines, FFT + LoRA, 3 low-data runs
    assert {r["stage"] for r in ref.timings} == {"data", "pretrain", "baselines", "finetune", "matrix", "lowdata"}
    assert ref.meta["timing"]["total_s"] == pytest.approx(sum(r["measured_s"] for r in ref.timings))
    assert ref.meta["timing"]["unrecorded_stages"] == []  # the chain ran in full in one call
    assert ref.meta["profile_settings"] == TINY.settings() and ref.meta["git_commits"] is not None
    text = ref.describe()
    assert "profile 'tiny'" in text and "4 training and 2 test samples" in text
    # The saved verdicts are what evaluate_claims computes from the saved tables.
    assert [c.to_dict() for c in ref.claims()] == json.loads(json.dumps(ref.claims_saved))


def test_openfwi_table_pairs_our_baselines_with_published_numbers(exported):
    ref = load_reference_results("tiny", exported[1])
    rows = {r["family"]: r for r in ref.openfwi}
    assert set(rows) == {"flatvel-a", "curvevel-a", "style-a"}
    assert rows["style-a"]["openfwi_ssim"] == OPENFWI_INVERSIONNET["style-a"][2]
    assert rows["flatvel-a"]["ssim"] == ref.metric("baseline", "flatvel-a", "ssim")
    assert rows["flatvel-a"]["n_train"] == 4 and rows["flatvel-a"]["openfwi_parameters"] == 24_409_123


def test_missing_results_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="fwi-teach reproduce --profile tiny"):
        export_results(TINY, tmp_path / "out", cache_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no committed results of profile 'gpu'.*FWI_TEACH_RESULTS"):
        load_reference_results("gpu", tmp_path)
    assert not (tmp_path / "out").exists()


def test_cli_reproduce_reuses_the_cache_and_prints_verdicts(exported, tmp_path, capsys, monkeypatch):
    cache, _, _ = exported
    from fwi_teach import profiles

    monkeypatch.setitem(profiles.PROFILES, "tiny", TINY)
    monkeypatch.setattr("fwi_teach.training.fit", lambda *a, **k: pytest.fail("nothing is retrained"))
    assert main(["reproduce", "--profile", "tiny", "--cache-dir", str(cache), "--results-dir", str(tmp_path),
                 "--device", "cpu", "--no-progress", "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "Claim 1:" in out and "Claim 5:" in out and "verdict:" in out
    assert (tmp_path / "tiny" / "claims.json").is_file()
    assert not list((tmp_path / "tiny" / "figures").glob("*.png"))


# ------------------------------------------------------------------ claims on made-up tables
def _table(pfm_better=True, lora_gap=0.0, lora_ood=0.1, low_gain=(0.2, 0.1, 0.0)):
    fams6, targets = ["a1", "a2", "a3"], ["t1", "t2"]
    runs = []
    for f in fams6:
        runs.append({"kind": "pfm", "train_family": "+".join(fams6), "eval_family": f, "fraction": 1.0,
                     "ssim": 0.8 if pfm_better else 0.6, "mae": 0.1 if pfm_better else 0.3})
        runs.append({"kind": "baseline", "train_family": f, "eval_family": f, "fraction": 1.0, "ssim": 0.7, "mae": 0.2})
    for f in targets:
        runs.append({"kind": "baseline", "train_family": f, "eval_family": f, "fraction": 1.0, "ssim": 0.7,
                     "mae": 0.2})
        for kind, ssim, params in (("fft", 0.8, 100), ("lora", 0.8 - lora_gap, 5)):
            runs.append({"kind": kind, "train_family": f, "eval_family": f, "fraction": 1.0, "ssim": ssim,
                         "mae": 0.1, "trainable_params": params, "total_params": 100,
                         "peak_memory_mb": 50.0 if kind == "lora" else 60.0, "memory_kind": "tensor_accounting"})
    matrix = [{"kind": k, "train_family": f, "relation": "unseen", "ssim": 0.5 + (lora_ood if k == "lora" else 0)}
              for f in targets for k in ("fft", "lora")]
    lowdata = []
    for x, gain in zip((0.1, 0.25, 1.0), low_gain):
        for m, s in (("scratch", 0.5), ("fft", 0.5 + gain), ("lora", 0.5)):
            lowdata.append({"train_family": "t1", "method": m, "fraction": x, "ssim": s})
    settings = {"pretrain_families": fams6, "finetune_families": targets, "low_data_families": ["t1"]}
    return ReferenceResults("made-up", None, {"profile_settings": settings}, runs, matrix, lowdata, [], [])


def test_claims_follow_the_stated_rules():
    good = evaluate_claims(_table())
    assert [c.number for c in good] == [1, 2, 3, 4, 5]
    assert [c.verdict for c in good] == ["reproduced"] * 5
    assert all(c.hypothesis == "" for c in good)
    assert good[2].numbers["trainable_share"] == pytest.approx(0.05)
    assert good[2].numbers["memory_ratio"] == pytest.approx(50 / 60)

    bad = evaluate_claims(_table(pfm_better=False, lora_gap=2 * SSIM_MARGIN, lora_ood=-0.1, low_gain=(-0.1, 0, 0.2)))
    assert [c.verdict for c in bad] == ["not reproduced", "reproduced", "partly reproduced", "not reproduced",
                                        "not reproduced"]
    assert all(c.hypothesis for c in bad if c.verdict != "reproduced")
    assert "0 of 3 sets" in bad[0].evidence and "Claim 1:" in str(bad[0])


def test_openfwi_comparison_skips_families_without_a_baseline():
    rows = openfwi_comparison(_table())
    assert rows == []  # the made-up families are not OpenFWI families


# ------------------------------------------------------------------ the book's reference sections
BOOK = Path(__file__).resolve().parents[1] / "book"
REFERENCE_CHAPTERS = ("baseline", "pretraining", "finetuning", "ood", "lowdata")


def _reference_section(chapter):
    cells = json.loads((BOOK / f"{chapter}.ipynb").read_text())["cells"]
    start = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith("## Reference results"))
    end = next(i for i in range(start + 1, len(cells)) if "".join(cells[i]["source"]).startswith("## "))
    return [(c["cell_type"], "".join(c["source"])) for c in cells[start:end]]


@pytest.mark.parametrize("chapter", REFERENCE_CHAPTERS)
def test_reference_section_types_no_number_by_hand(chapter):
    section = _reference_section(chapter)
    code = "\n".join(s for kind, s in section if kind == "code")
    assert "load_reference_results(reference_profile)" in code
    for kind, source in section:
        if kind == "markdown":
            prose = re.sub(r"\{cite:\w+\}`[^`]*`", "", source)  # citation keys may hold a year
            assert not re.search(r"\d", prose), f"{chapter}: a digit in the prose of the reference section: {source!r}"
        else:
            numbers = [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
                       and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)]
            assert all(isinstance(v, int) and 0 <= v <= 5 for v in numbers), (
                f"{chapter}: numeric literals {numbers} in a reference cell; read numbers from the results files")


def _run_section(chapter, results_dir, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("FWI_TEACH_RESULTS", str(results_dir))
    out = io.StringIO()
    namespace = {"reference_profile": "tiny"}
    with contextlib.redirect_stdout(out):
        for kind, source in _reference_section(chapter):
            if kind == "code":
                exec(compile(source, f"<{chapter} reference section>", "exec"), namespace)
    return out.getvalue()


@pytest.mark.parametrize("chapter", REFERENCE_CHAPTERS)
def test_reference_section_prints_what_the_files_hold(chapter, exported, tmp_path, monkeypatch):
    _, out, folder = exported
    first = _run_section(chapter, out, monkeypatch)
    assert "Reference results of profile 'tiny'" in first
    # Change every metric in the files: the printed numbers must change with them.
    changed = tmp_path / "results"
    shutil.copytree(folder, changed / "tiny")
    for table in ("runs", "matrix", "lowdata", "openfwi"):
        path = changed / "tiny" / f"{table}.json"
        record = json.loads(path.read_text())
        for row in record["rows"]:
            for key in [k for k in row if k.split("_")[-1] in ("mae", "rmse", "ssim")]:
                row[key] = row[key] * 0.5 + 0.123
        path.write_text(json.dumps(record))
    second = _run_section(chapter, changed, monkeypatch)
    numbers = lambda text: re.findall(r"\d+\.\d{3}", text)  # noqa: E731
    assert numbers(first) != numbers(second)
    ssim = {"baseline": ("baseline", "flatvel-a"), "pretraining": ("pfm", "flatvel-a"),
            "finetuning": ("fft", "style-a"), "ood": None, "lowdata": None}[chapter]
    if ssim:
        value = load_reference_results("tiny", changed).metric(ssim[0], ssim[1], "ssim")
        assert f"{value:.3f}" in second


def test_readme_results_block_is_generated_from_the_committed_results(exported, tmp_path):
    from fwi_teach.reproduce import README_END, README_START, readme_block, update_readme

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split(README_START, 1)[1].split(README_END, 1)[0]
    assert README_START + block + README_END == readme_block(load_reference_results("cpu", root / "results"))
    # update_readme rewrites only the block, atomically, and says whether it changed anything.
    copy = tmp_path / "README.md"
    copy.write_text(f"# title\n\n{README_START}\nold\n{README_END}\n\nrest\n")
    tiny = load_reference_results("tiny", exported[1])
    assert update_readme(tiny, copy) and not update_readme(tiny, copy)
    text = copy.read_text()
    assert text.startswith("# title\n\n") and text.endswith("\n\nrest\n") and "profile 'tiny'" in text
    with pytest.raises(ValueError, match="no generated results block"):
        update_readme(tiny, tmp_path / "missing.md") if (tmp_path / "missing.md").write_text("x") else None


def test_default_results_dir_finds_the_repository_from_a_staging_tree(tmp_path, monkeypatch):
    from fwi_teach.reproduce import default_results_dir

    monkeypatch.delenv("FWI_TEACH_RESULTS", raising=False)
    (tmp_path / "_config.yml").write_text("")
    (tmp_path / "_toc.yml").write_text("")
    monkeypatch.chdir(tmp_path)  # like the book's staging tree: a book root without results/
    assert default_results_dir() == Path(__file__).resolve().parents[1] / "results"
    monkeypatch.setenv("FWI_TEACH_RESULTS", str(tmp_path / "elsewhere"))
    assert default_results_dir() == tmp_path / "elsewhere"


def test_stages_done_by_an_earlier_chain_call_are_not_reported_as_zero(exported, tmp_path):
    cache = exported[0]
    chain = cache / "tiny" / "results" / "chain-s0.json"
    record = json.loads(chain.read_text())
    for row in record["rows"]:  # as left by a later call that found everything cached
        row["wall_time_s"] = 0.0
    chain.write_text(json.dumps(record))
    ref = load_reference_results("tiny", export_results(TINY, tmp_path, cache_dir=cache, figures=False).parent)
    rows = {r["stage"]: r for r in ref.timings}
    assert rows["data"]["measured_s"] is None and rows["matrix"]["measured_s"] is None
    assert rows["pretrain"]["measured_s"] > 0 and "earlier chain call" in rows["data"]["source"]
    assert ref.meta["timing"]["unrecorded_stages"] == ["data", "matrix"]
    assert "(not recorded: data, matrix)" in ref.describe()
