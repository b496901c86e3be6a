"""`fwi-teach reproduce`: export of a finished chain, reading it back, and the claim verdicts."""

import ast
import contextlib
import dataclasses
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fwi_teach import experiments as ex
from fwi_teach.evaluation.published import OPENFWI_INVERSIONNET
from fwi_teach.cli import main
from fwi_teach.experiments.profiles import get_profile
from fwi_teach.experiments.reproduce import export_results
from fwi_teach.experiments.results import load_reference_results

TINY = dataclasses.replace(
    get_profile("smoke"), name="tiny", n_train=8, n_val=2, n_test=3, nt=100, batch_size=2,
    pretrain_families=("flatvel-a", "curvevel-a"), baseline_families=("flatvel-a", "curvevel-a", "style-a"),
    finetune_families=("style-a",), low_data_families=("style-a",), low_data_fractions=(0.25, 1.0))
TABLES = ("meta", "runs", "matrix", "lowdata", "timings", "histories", "openfwi", "memory", "claims")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(2)
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("results")
    for seed in (0, 1):
        ex.run_chain(TINY, cache_dir=cache, seed=seed, device="cpu", progress=False)
    export_results(TINY, out, cache_dir=cache, seeds=[0], figures=False)
    return cache, out, export_results(TINY, out, cache_dir=cache, seeds=[1])  # merged into the seed-0 folder


def test_export_writes_every_table_and_figure_atomically(exported):
    cache, out, folder = exported
    assert folder == out / "tiny"
    for table in TABLES:
        assert (folder / f"{table}.json").is_file()
    assert (folder / "runs.csv").read_text().splitlines()[0].startswith("experiment,")
    figures = {p.stem for p in (folder / "figures").iterdir()}
    assert {"pretraining", "finetuning", "ood_matrix", "lowdata", "openfwi", "baselines_vs_mean_map",
            "finetuning_references", "histories", "claim1", "claim4a", "claim5", "predictions_style-a"} <= figures
    assert [p.name for p in out.iterdir()] == ["tiny"], "no temporary or old folder is left behind"
    summary = (folder / "summary.md").read_text()
    assert "profile `tiny`" in summary and all(f"**{n}. " in summary for n in ("1", "2", "3", "4a", "4b", "5"))


def test_seeds_merge_and_every_sample_is_kept(exported):
    cache, out, folder = exported
    ref = load_reference_results("tiny", out)
    assert ref.seeds == [0, 1] and ref.meta["seeds"] == [0, 1]
    assert sorted(ref.meta["timing"]["per_seed_s"]) == ["0", "1"]
    assert len(ref.runs) == 2 * (2 + 3 + 2 + 3)  # per seed: PFM on its 2 sets, 3 baselines, FFT + LoRA, 3 low-data
    n_models = 1 + 3 + 2
    trained = [r for r in ref.per_sample_rows if r["seed"] is not None and r["split"] == "test"]
    # every model of the matrix on 10 families and the 3 low-data runs, each on TINY.n_test samples, per seed
    assert len(trained) == 2 * (n_models * 10 + 3) * TINY.n_test
    assert len([r for r in ref.per_sample_rows if r["seed"] is None and r["split"] == "test"]) == 10 * TINY.n_test
    pfm = json.loads((cache / "tiny" / "results" / "pfm-s1.json").read_text())
    assert ref.per_sample.values("pfm", "curvevel-a", "ssim", seeds=[1])[0].tolist() == pytest.approx(
        pfm["per_sample"]["curvevel-a"]["ssim"], abs=1e-6)
    assert ref.metric("pfm", "curvevel-a", "ssim") == pytest.approx(np.mean(
        [r["ssim"] for r in ref.runs if r["kind"] == "pfm" and r["eval_family"] == "curvevel-a"]))
    assert {h["seed"] for h in ref.histories} == {0, 1} and {"train_loss", "val_loss"} <= set(ref.histories[0])
    low = ref.mean_rows("lowdata")
    assert len(low) == len(ref.lowdata) // 2 and all(r["seeds"] == 2 for r in low)  # one row per run, over seeds
    val = [r for r in ref.per_sample_rows if r.get("split") == "val"]
    assert val and {r["model"] for r in val if r["seed"] == 0} >= {"pfm", "baseline:flatvel-a", "lora:style-a"}
    pred = ref.predictions()
    assert pred["style-a/truth"].shape == (3, 70, 70) and {"style-a/fft", "style-a/lora", "style-a/pfm"} <= set(pred)
    # What a chapter's live verdict cell reads: the same evidence straight from the cache, nothing written.
    from fwi_teach.experiments.claims import evaluate_claims
    from fwi_teach.experiments.reproduce import collect_results

    live = collect_results(TINY, cache_dir=cache, seeds=[0, 1])
    assert live.seeds == [0, 1] and [c.label for c in evaluate_claims(live, only=["1", "5"])] == ["1", "5"]
    assert len(live.per_sample_rows) == len(ref.per_sample_rows)
    # A record written before runs kept their validation samples: they are evaluated again from the weights.
    path = cache / "tiny" / "results" / "baseline-flatvel-a-s0.json"
    record = json.loads(path.read_text())
    kept = record.pop("per_sample_val")
    path.write_text(json.dumps(record))
    again = [r for r in collect_results(TINY, cache_dir=cache, seeds=[0]).per_sample_rows
             if r["model"] == "baseline:flatvel-a" and r["split"] == "val"]
    assert [r["ssim"] for r in again] == pytest.approx(kept["flatvel-a"]["ssim"], abs=1e-6)
    path.write_text(json.dumps({**record, "per_sample_val": kept}))
    # Exporting seed 0 again replaces its rows instead of adding them twice.
    again = load_reference_results("tiny", export_results(TINY, out, cache_dir=cache, seeds=[0], figures=False).parent)
    assert len(again.runs) == len(ref.runs) and len(again.per_sample_rows) == len(ref.per_sample_rows)


def test_loaded_tables_are_the_cached_results(exported):
    cache, out, folder = exported
    ref = load_reference_results("tiny", out)
    matrix = json.loads((cache / "tiny" / "results" / "matrix-s1.json").read_text())["rows"]
    assert [r for r in ref.matrix if r["seed"] == 1] == matrix
    assert {r["stage"] for r in ref.timings} == {"data", "pretrain", "baselines", "finetune", "matrix", "lowdata"}
    assert ref.meta["profile_settings"] == TINY.settings() and ref.meta["git_commits"] is not None
    text = ref.describe()
    assert "profile 'tiny'" in text and "8 training, 2 validation and 3 test samples" in text and "2 seed(s)" in text
    # The saved verdicts are what evaluate_claims computes from the saved tables.
    assert [c.to_dict() for c in ref.claims()] == json.loads(json.dumps(ref.claims_saved))


def test_openfwi_table_pairs_our_baselines_with_the_mean_map_and_published_numbers(exported):
    ref = load_reference_results("tiny", exported[1])
    rows = {r["family"]: r for r in ref.openfwi}
    assert set(rows) == {"flatvel-a", "curvevel-a", "style-a"}
    assert rows["style-a"]["openfwi_ssim"] == OPENFWI_INVERSIONNET["style-a"][2]
    assert rows["flatvel-a"]["ssim"] == pytest.approx(ref.per_sample.values("baseline:flatvel-a", "flatvel-a",
                                                                            "ssim").mean())
    r = rows["flatvel-a"]
    assert r["mae_vs_mean_low"] <= r["mae_vs_mean"] <= r["mae_vs_mean_high"] and r["seeds"] == 2
    assert r["mae_ratio"] == pytest.approx(r["mae"] / r["mean_map_mae"]) and isinstance(r["learned"], bool)
    assert r["n_train"] == 8 and r["openfwi_parameters"] == 24_409_123
    # the test-split CIs are of the reported means (the validation ones are the claims' gate)
    for row in rows.values():
        assert row["ssim_vs_mean_test"] == pytest.approx(row["ssim_gain"], abs=1e-9)
        assert row["mae_vs_mean_test"] == pytest.approx(row["mae"] - row["mean_map_mae"], abs=1e-9)
        assert row["ssim_vs_mean_test_low"] <= row["ssim_vs_mean_test"] <= row["ssim_vs_mean_test_high"]
        assert not row["meets_targets"] or row["learned_test"]


def test_merging_other_profiles_or_settings_is_refused(exported, tmp_path):
    cache, out, folder = exported
    for change, match in ((lambda m: m.update(profile="smoke"), "profile 'smoke'"),
                          (lambda m: m["profile_settings"].update(epochs_baseline=99), "other settings"),
                          (lambda m: m.update(data_source="/data/openfwi"), "different data")):
        target = tmp_path / str(len(list(tmp_path.iterdir())))
        shutil.copytree(folder, target / "tiny")
        meta = json.loads((target / "tiny" / "meta.json").read_text())
        change(meta)
        (target / "tiny" / "meta.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=match):
            export_results(TINY, target, cache_dir=cache, seeds=[0], figures=False)
    assert export_results(TINY, target, cache_dir=cache, seeds=[0], figures=False, merge=False).is_dir()


def test_a_new_export_keeps_the_files_written_on_their_own(exported, tmp_path):
    # the physics loop's folder and the tuning probes are not made by export_results: a re-export keeps them
    cache, out, folder = exported
    shutil.copytree(folder, tmp_path / "tiny")
    (tmp_path / "tiny" / "physics_loop").mkdir()
    (tmp_path / "tiny" / "physics_loop" / "config.json").write_text('{"kept": 1}')
    (tmp_path / "tiny" / "tuning.json").write_text("[]")
    again = export_results(TINY, tmp_path, cache_dir=cache, seeds=[0], figures=False, merge=False)
    assert (again / "physics_loop" / "config.json").read_text() == '{"kept": 1}'
    assert (again / "tuning.json").read_text() == "[]"


def test_missing_results_give_clear_errors(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="fwi-teach reproduce --profile tiny --seeds 0"):
        export_results(TINY, tmp_path / "out", cache_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no results of profile 'gpu'.*FWI_TEACH_RESULTS"):
        load_reference_results("gpu", tmp_path)
    assert not (tmp_path / "out").exists()
    shutil.copytree(exported[2], tmp_path / "cut" / "tiny")
    (tmp_path / "cut" / "tiny" / "per_sample.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="per-sample metrics"):
        load_reference_results("tiny", tmp_path / "cut")
    for bad, match in (([0, 0], "repeat"), ([-1], "non-negative"), ([], "no seed")):
        with pytest.raises(ValueError, match=match):
            export_results(TINY, tmp_path / "out", cache_dir=exported[0], seeds=bad)


def test_cli_reproduce_reuses_the_cache_and_prints_verdicts(exported, tmp_path, capsys, monkeypatch):
    cache, _, _ = exported
    from fwi_teach.experiments import profiles

    monkeypatch.setitem(profiles.PROFILES, "tiny", TINY)
    monkeypatch.setattr("fwi_teach.training.fit", lambda *a, **k: pytest.fail("nothing is retrained"))
    assert main(["reproduce", "--profile", "tiny", "--cache-dir", str(cache), "--results-dir", str(tmp_path),
                 "--device", "cpu", "--no-progress", "--no-figures", "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "Claim 1:" in out and "Claim 4a:" in out and "Claim 5:" in out and "verdict:" in out
    assert (tmp_path / "tiny" / "claims.json").is_file()
    assert not list((tmp_path / "tiny" / "figures").glob("*.png"))
    assert load_reference_results("tiny", tmp_path).seeds == [0, 1]
    assert main(["reproduce", "--profile", "tiny", "--cache-dir", str(cache), "--results-dir", str(tmp_path),
                 "--seeds", "1", "1"]) != 0
    assert "repeat" in capsys.readouterr().err


# ------------------------------------------------------------------ the book's reference sections
BOOK = Path(__file__).resolve().parents[1] / "book"
REFERENCE_CHAPTERS = ("baseline", "pretraining", "finetuning", "ood", "lowdata")


def _reference_section(chapter):
    cells = json.loads((BOOK / f"{chapter}.ipynb").read_text())["cells"]
    start = next(i for i, c in enumerate(cells) if "".join(c["source"]).startswith("## Reference results"))
    end = next(i for i in range(start + 1, len(cells)) if "".join(cells[i]["source"]).startswith("## "))
    return [(c["cell_type"], "".join(c["source"])) for c in cells[start:end]]


@pytest.mark.parametrize("chapter", REFERENCE_CHAPTERS + ("physics_loop",))
def test_reference_section_types_no_number_by_hand(chapter):
    section = _reference_section(chapter)
    code = "\n".join(s for kind, s in section if kind == "code")
    loader = "load_physics_loop" if chapter == "physics_loop" else "load_reference_results"
    assert f"{loader}(reference_profile)" in code
    for kind, source in section:
        if kind == "markdown":
            prose = re.sub(r"\{cite:\w+\}`[^`]*`", "", source)  # citation keys may hold a year
            prose = re.sub(r"[Cc]laims? \d+[ab]?(?: and \d+[ab]?)?", "", prose)  # claim labels, not results
            assert not re.search(r"\d", prose), f"{chapter}: a digit in the prose of the reference section: {source!r}"
        else:
            tree = ast.parse(source)
            layout = set()  # figure sizes, font sizes and "100 *" for percent are presentation, not results
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("set_size_inches", "set_fontsize"):
                    layout |= {id(c) for a in node.args for c in ast.walk(a)}
                if isinstance(node, ast.keyword) and node.arg in ("figsize", "fontsize"):
                    layout |= {id(c) for c in ast.walk(node.value)}
                if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(node.left, ast.Constant)
                        and node.left.value == 100):
                    layout.add(id(node.left))
            numbers = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and id(n) not in layout
                       and isinstance(n.value, (int, float)) and not isinstance(n.value, bool)]
            assert all(isinstance(v, int) and 0 <= v <= 5 for v in numbers), (
                f"{chapter}: numeric literals {numbers} in a reference cell; read numbers from the results files")


def _run_section(chapter, results_dir, monkeypatch):
    import matplotlib
    import matplotlib.pyplot

    matplotlib.use("Agg")
    monkeypatch.setenv("FWI_TEACH_RESULTS", str(results_dir))
    out = io.StringIO()
    namespace = {"reference_profile": "tiny"}
    with contextlib.redirect_stdout(out):
        for kind, source in _reference_section(chapter):
            if kind == "code":
                exec(compile(source, f"<{chapter} reference section>", "exec"), namespace)
                matplotlib.pyplot.close("all")
    return out.getvalue()


@pytest.mark.parametrize("chapter", REFERENCE_CHAPTERS)
def test_reference_section_prints_what_the_files_hold(chapter, exported, tmp_path, monkeypatch):
    from fwi_teach.experiments.results import per_sample_bytes, read_per_sample

    _, out, folder = exported
    first = _run_section(chapter, out, monkeypatch)
    assert "Reference results of profile 'tiny'" in first and "No reference results" not in first
    # Change every metric in the files: the printed numbers must change with them.
    changed = tmp_path / "results"
    shutil.copytree(folder, changed / "tiny")
    rows = read_per_sample(changed / "tiny" / "per_sample.csv.gz")
    for row in rows:
        for key in ("mae", "rmse", "ssim"):
            row[key] = row[key] * 0.5 + (0.123 if row["model"].startswith("fft") else 0.01)
    (changed / "tiny" / "per_sample.csv.gz").write_bytes(per_sample_bytes(rows))
    for table in ("runs", "matrix", "lowdata"):
        path = changed / "tiny" / f"{table}.json"
        record = json.loads(path.read_text())
        for row in record["rows"]:
            for key in [k for k in row if k.split("_")[-1] in ("mae", "rmse", "ssim")]:
                row[key] = row[key] * 0.5 + 0.123
        path.write_text(json.dumps(record))
    if chapter == "baseline":  # its table is the exported openfwi.csv: recompute it from the changed samples
        from fwi_teach.experiments.claims import openfwi_comparison

        ref = load_reference_results("tiny", changed)
        path = changed / "tiny" / "openfwi.json"
        path.write_text(json.dumps({"rows": openfwi_comparison(ref)}))
    second = _run_section(chapter, changed, monkeypatch)
    numbers = lambda text: re.findall(r"[+-]?\d+\.\d{3}", text)  # noqa: E731
    assert numbers(first) != numbers(second)
    ref = load_reference_results("tiny", changed)
    label = {"baseline": None, "pretraining": "1", "finetuning": "2", "ood": "4a", "lowdata": "5"}[chapter]
    if label:
        claim = next(c for c in ref.claims() if c.label == label)
        assert claim.evidence in second  # the verdict printed is the one computed from the files
    else:
        r = next(r for r in ref.openfwi if r["family"] == "flatvel-a")
        assert f"{r['ssim']:.3f}" in second and f"{r['mae_vs_mean_test']:+.3f}" in second


def test_physics_loop_reference_section_prints_what_the_files_hold(tmp_path, monkeypatch):
    from fwi_teach.experiments.physics_results import load_physics_loop, versus_smoothed_truth

    committed = Path(__file__).resolve().parents[1] / "results" / "cpu" / "physics_loop"
    folder = tmp_path / "results" / "tiny" / "physics_loop"
    shutil.copytree(committed, folder)
    first = _run_section("physics_loop", tmp_path / "results", monkeypatch)
    ref = load_physics_loop("tiny", tmp_path / "results")
    assert ref["config"]["description"] in first
    for r in ref["data_misfit_summary"]:
        assert f"{r['data_misfit']:.3f} [{r['data_misfit_low']:.3f}, {r['data_misfit_high']:.3f}]" in first
    for r in ref["hybrid_summary"]:
        versus = versus_smoothed_truth(r)
        if versus is not None:  # the reading printed is the one computed from the interval
            assert f"vs smoothed truth {versus[0].mean:+.0f} [{versus[0].low:+.0f}, {versus[0].high:+.0f}] m/s: " \
                   f"{versus[1]}" in first
    # Change the files: the printed numbers and readings must follow.
    for name in ("data_misfit_summary", "hybrid_summary"):
        record = json.loads((folder / f"{name}.json").read_text())
        for row in record["rows"]:
            if name == "data_misfit_summary":
                for key in ("data_misfit", "data_misfit_low", "data_misfit_high"):
                    row[key] = row[key] * 0.5 + 0.123
            else:
                for key in [k for k in row if k.startswith("final_model_rmse_mps_minus")]:
                    row[key] = {**row[key], "mean": -500.0, "low": -600.0, "high": -400.0}
        (folder / f"{name}.json").write_text(json.dumps(record))
    second = _run_section("physics_loop", tmp_path / "results", monkeypatch)
    numbers = lambda text: re.findall(r"[+-]?\d+\.\d{3}", text)  # noqa: E731
    assert numbers(first) != numbers(second)
    assert "vs smoothed truth -500 [-600, -400] m/s: better" in second and ": worse" not in second


def test_readme_results_block_is_generated_from_the_committed_results(exported, tmp_path):
    from fwi_teach.experiments.report import README_END, README_START, readme_block, update_readme

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split(README_START, 1)[1].split(README_END, 1)[0]
    try:
        committed = load_reference_results("cpu", root / "results")
    except (FileNotFoundError, ValueError):  # none made under the current protocol yet: the block says so
        committed = None
    assert README_START + block + README_END == readme_block(committed)
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
    from fwi_teach.experiments.results import default_results_dir

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
    folder = export_results(TINY, tmp_path, cache_dir=cache, seeds=[0], figures=False)
    rows = {r["stage"]: r for r in load_reference_results("tiny", folder.parent).timings}
    assert rows["data"]["measured_s"] is None and rows["matrix"]["measured_s"] is None
    assert rows["pretrain"]["measured_s"] > 0 and "earlier chain call" in rows["data"]["source"]
