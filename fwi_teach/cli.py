"""Command-line interface: ``fwi-teach`` (also ``python -m fwi_teach``).

Subcommands are registered by small functions decorated with
:func:`subcommand`; each receives the top-level ``subparsers`` object, adds its
parser(s) and sets ``func`` (a callable taking the parsed ``argparse.Namespace``
and returning an exit code) with ``set_defaults``. To add a command, e.g.
``book``::

    @subcommand
    def _add_book(subparsers):
        p = subparsers.add_parser("book", help="build the Jupyter Book")
        p.add_argument("--clean", action="store_true")
        p.set_defaults(func=_run_book)

Import heavy modules (torch, the physics) inside the ``func`` so that
``fwi-teach --help`` stays fast. Errors a user can fix should be raised as
``ValueError``, ``FileNotFoundError`` or ``FileExistsError``; :func:`main` prints
them as ``error: ...`` and returns exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

__all__ = ["main", "build_parser", "subcommand"]

_REGISTRARS: list[Callable] = []


def subcommand(register: Callable) -> Callable:
    """Decorator: add ``register(subparsers)`` to the commands of :func:`build_parser`."""
    _REGISTRARS.append(register)
    return register


# -- data -------------------------------------------------------------------------------
def _run_data_generate(args) -> int:
    from .data.generate import generate_dataset
    from .physics import simulation_engine
    from .runtime import resolve_device

    device = resolve_device(args.device) if args.device else None  # before anything is written
    print(f"simulating with the {simulation_engine(device or 'cpu')} engine "
          f"(FWI_TEACH_COMPILE=0 forces the eager path)")
    root = generate_dataset(args.family, args.root, n_train=args.train, n_val=args.val, n_test=args.test,
                            seed=args.seed, samples_per_file=args.samples_per_file, boundary=args.boundary, device=device,
                            batch_size=args.batch_size, progress=not args.no_progress)
    print(f"wrote {args.train} training, {args.val} validation and {args.test} test samples to {root}")
    return 0


def _run_data_info(args) -> int:
    from .data.datasets import dataset_summary

    info = dataset_summary(args.root, family=args.family, scan=args.scan)
    print(f"source:  {info['source']}")
    print(f"family:  {info['family'] or 'unknown (pass --family)'}")
    print(f"layout:  {info['layout']}")
    for split, s in info["splits"].items():
        if "error" in s:
            print(f"{split:>5}:   unavailable ({s['error']})")
        else:
            print(f"{split:>5}:   {s['samples']} samples in {s['files']} files; seismic sample "
                  f"{tuple(s['seismic_shape'])}, velocity sample {tuple(s['velocity_shape'])}")
    if info["range_from"] is None:
        print("seismic range: not recorded (no manifest); rerun with --scan to compute it")
    else:
        print(f"seismic range: {info['data_min']:.6g} .. {info['data_max']:.6g} (from {info['range_from']})")
    return 0


@subcommand
def _add_data(subparsers) -> None:
    data = subparsers.add_parser("data", help="generate or inspect OpenFWI-format data sets")
    sub = data.add_subparsers(dest="data_command", metavar="{generate,info}", required=True)

    gen = sub.add_parser("generate", help="generate a family in OpenFWI's file layout (resumable)")
    gen.add_argument("family", help="family name, e.g. flatvel-a, curvefault-b, style-a")
    gen.add_argument("--root", required=True, help="output directory (new, empty, or an interrupted run)")
    gen.add_argument("--train", type=int, required=True, help="number of training samples")
    gen.add_argument("--val", type=int, default=0, help="number of validation samples (default 0)")
    gen.add_argument("--test", type=int, default=0, help="number of test samples, disjoint from the others (default 0)")
    gen.add_argument("--seed", type=int, default=0, help="random seed of the velocity models (default 0)")
    gen.add_argument("--samples-per-file", type=int, default=500, help="samples per .npy file (default 500)")
    gen.add_argument("--boundary", choices=("thin", "openfwi"), default="thin",
                     help="absorbing boundary: thin (fast, default) or openfwi (120-cell sponge, slow)")
    gen.add_argument("--device", default=None, help="torch device for the simulation, e.g. cuda (default CPU)")
    gen.add_argument("--batch-size", type=int, default=None, help="models per simulation batch")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.set_defaults(func=_run_data_generate)

    info = sub.add_parser("info", help="print family, sample counts, shapes and amplitude range of a data set")
    info.add_argument("root", help="data set directory or split file")
    info.add_argument("--family", default=None, help="family name, if it cannot be inferred from the path")
    info.add_argument("--scan", action="store_true", help="read all files to find the amplitude range")
    info.set_defaults(func=_run_data_info)


# -- experiments ------------------------------------------------------------------------
_COLUMNS = {
    "run": ("experiment", "eval_family", "mae", "rmse", "ssim", "trainable_params", "peak_memory_mb", "wall_time_s"),
    "matrix": ("model", "eval_family", "relation", "mae", "rmse", "ssim"),
    "lowdata": ("train_family", "method", "fraction", "n_train_samples", "mae", "rmse", "ssim"),
    "chain": ("stage", "wall_time_s", "estimated_s"),
}


def _run_experiment(args) -> int:
    from .experiments import runs as ex
    from .experiments.cache import print_rows, profile_dir

    kw = dict(cache_dir=args.cache_dir, seed=args.seed, device=args.device, data_dir=args.data_dir,
              progress=not args.no_progress)
    cmd = args.command
    if cmd == "pretrain":
        record = ex.pretrain_pfm(args.profile, force=args.force, **kw)
    elif cmd == "baseline":
        record = ex.train_baseline(args.family, args.profile, fraction=args.fraction, force=args.force, **kw)
    elif cmd == "finetune":
        record = ex.finetune(args.family, args.method, args.profile, fraction=args.fraction, force=args.force, **kw)
    elif cmd == "matrix":
        record = ex.evaluation_matrix(args.profile, models=args.models, families=args.families, **kw)
    elif cmd == "lowdata":
        record = ex.low_data_sweep(args.profile, families=args.families, fractions=args.fractions,
                                   methods=args.methods, **kw)
    else:
        record = ex.run_chain(args.profile, **kw)
    print_rows(record["rows"], _COLUMNS.get(cmd, _COLUMNS["run"]))
    print(f"results: {profile_dir(args.profile, args.cache_dir) / 'results' / (record['name'] + '.json')} (+ .csv)")
    return 0


def _run_profiles(args) -> int:
    from .experiments.costs import profile_table
    from .experiments.profiles import get_profile

    if args.name is None:
        print(profile_table())
        return 0
    p = get_profile(args.name)
    print(f"{p.name}: {p.description}")
    for key, value in p.settings().items():
        print(f"  {key:<20} {value}")
    print(f"  {'input_length':<20} {p.input_length}")
    return 0


def _experiment_arguments(p) -> None:
    p.add_argument("--profile", default="smoke", help="smoke, cpu, gpu or paper (default: smoke; see `fwi-teach profiles`)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: $FWI_TEACH_CACHE or ~/.cache/fwi_teach)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--data-dir", default=None,
                   help="real OpenFWI data, one sub-folder per family (default: generate data into the cache)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=_run_experiment)


def _run_reproduce(args) -> int:
    from .experiments.costs import estimate_minutes
    from .experiments.profiles import get_profile
    from .experiments.report import update_readme
    from .experiments.reproduce import check_seeds, refresh_memory, reproduce
    from .experiments.results import load_reference_results

    p = get_profile(args.profile)
    seeds = check_seeds(args.seeds if args.seeds is not None else [args.seed])
    if args.memory_only:
        folder = refresh_memory(p.name, args.results_dir)
    elif p.n_train is not None:
        print(f"reproducing the paper at profile {p.name!r}, seed(s) {', '.join(map(str, seeds))}: about "
              f"{estimate_minutes(p, 'cpu'):.0f} min per seed on 2 CPU cores or {estimate_minutes(p, 'cuda'):.0f} min "
              "on one GPU (cost model); resumable, rerun to continue", flush=True)
    if not args.memory_only:
        folder = reproduce(p, results_dir=args.results_dir, cache_dir=args.cache_dir, seeds=seeds,
                           device=args.device, data_dir=args.data_dir, progress=not args.no_progress,
                           figures=not args.no_figures, merge=not args.no_merge)
    ref = load_reference_results(p.name, folder.parent)
    print(ref.describe())
    for claim in ref.claims():
        print(claim)
    print(f"results: {folder}")
    if args.update_readme:
        from .runtime import find_book_root

        readme = find_book_root() / "README.md"
        print(f"{readme}: {'updated' if update_readme(ref, readme) else 'already up to date'}")
    return 0


def _run_physics_loop(args) -> int:
    from .experiments.physics_loop import TRUTH, loop_config
    from .experiments.physics_results import export_physics_loop, load_physics_loop
    from .experiments.reproduce import check_seeds

    seeds = check_seeds(args.seeds if args.seeds is not None else [args.seed])
    print(f"physics loop at profile {args.profile!r}: {loop_config(args.profile).describe()}", flush=True)
    folder = export_physics_loop(args.profile, args.results_dir, args.cache_dir, seeds, args.device, args.data_dir,
                                 progress=not args.no_progress)
    res = load_physics_loop(args.profile, folder.parent.parent)
    print("relative L2 data misfit of the test predictions (mean and 95 % CI over samples and seeds):")
    for r in res["data_misfit_summary"]:
        note = "  (the simulator's floor)" if r["model"] == TRUTH else ""
        print(f"  {r['eval_family']:<13} {r['model']:<9} {r['data_misfit']:.3f} "
              f"[{r['data_misfit_low']:.3f}, {r['data_misfit_high']:.3f}]{note}")
    if res["hybrid_summary"]:
        print("hybrid FWI, model RMSE in m/s at the start and after the last iteration (95 % CI):")
    for r in res["hybrid_summary"]:
        a, b = r["start_model_rmse_mps"], r["final_model_rmse_mps"]
        print(f"  {r['start']:<15} {a['mean']:6.0f} -> {b['mean']:6.0f} [{b['low']:.0f}, {b['high']:.0f}] "
              f"after {r['n_iterations']} iterations ({r['n_samples']} samples)")
    print(f"results: {folder}")
    return 0


@subcommand
def _add_physics_loop(subparsers) -> None:
    text = ("close the loop with physics: the data misfit of every reference model's test predictions, and "
            "classical multiscale FWI started from a smoothed truth, the mean map and the networks' predictions; "
            "writes RESULTS_DIR/PROFILE/physics_loop")
    p = subparsers.add_parser("physics-loop", help=text.split(":")[0], description=text[0].upper() + text[1:]
                              + ". Trains missing models first; every inversion is cached, so rerun it to continue.")
    p.add_argument("--results-dir", default=None,
                   help="where PROFILE/physics_loop goes (default: $FWI_TEACH_RESULTS or the repository's results/)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="training seeds of the models (default: --seed); hybrid FWI uses the first")
    _experiment_arguments(p)
    p.set_defaults(func=_run_physics_loop)


@subcommand
def _add_reproduce(subparsers) -> None:
    text = ("run every experiment of the paper at one profile (data, PFM, baselines, FFT and LoRA, OOD matrix, "
            "low-data sweep), then write the compact results, figures and claim verdicts to RESULTS_DIR/PROFILE")
    p = subparsers.add_parser("reproduce", help=text.split(" (")[0], description=text[0].upper() + text[1:]
                              + ". Resumable: finished runs are cached, so rerun it to continue after an interruption.")
    p.add_argument("--results-dir", default=None,
                   help="where to write PROFILE/ (default: $FWI_TEACH_RESULTS or the repository's results/)")
    p.add_argument("--no-figures", action="store_true", help="do not draw figures/*.png")
    p.add_argument("--update-readme", action="store_true",
                   help="rewrite the README's generated 'what reproduces' block from these results")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="training seeds, run one after the other on shared data, each exported as it finishes "
                        "(default: --seed); seeds run in separate calls merge into one results folder")
    p.add_argument("--no-merge", action="store_true",
                   help="replace RESULTS_DIR/PROFILE instead of merging these seeds into it")
    p.add_argument("--memory-only", action="store_true",
                   help="train nothing: recompute the memory table and the baselines' table (from the per-sample "
                        "metrics) of the existing RESULTS_DIR/PROFILE with the current code and re-judge its claims")
    _experiment_arguments(p)
    p.set_defaults(func=_run_reproduce)


@subcommand
def _add_experiments(subparsers) -> None:
    helps = {"pretrain": "pretrain the foundation model (PFM) on the six pretraining families",
             "baseline": "train a task-specific InversionNet from scratch on one family",
             "finetune": "fine-tune the PFM on one family (full: fft, or LoRA)",
             "matrix": "evaluate every model on every family's test set (out-of-distribution table)",
             "lowdata": "scratch / FFT / LoRA with 10-100 %% of the training data",
             "chain": "run every experiment in order (data, PFM, baselines, fine-tuning, matrix, low data)"}
    for name, text in helps.items():
        p = subparsers.add_parser(name, help=text, description=text[0].upper() + text[1:] + ". Results are "
                                  "cached: a finished run is never retrained, an interrupted one resumes.")
        if name in ("baseline", "finetune"):
            p.add_argument("family", help="family name, e.g. style-a, CurveFault_B")
            p.add_argument("--fraction", type=float, default=1.0, help="share of the training set (default 1.0)")
        if name == "finetune":
            p.add_argument("--method", choices=("fft", "lora"), default="lora", help="fft or lora (default: lora)")
        if name in ("pretrain", "baseline", "finetune"):
            p.add_argument("--force", action="store_true",
                           help="train again even if the run is cached (replaces its weights and results)")
        if name == "matrix":
            p.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                           help="pfm, baseline:FAMILY, fft:FAMILY, lora:FAMILY (default: all of the profile)")
        if name in ("matrix", "lowdata"):
            p.add_argument("--families", nargs="+", default=None, metavar="FAMILY",
                           help="families to test on (default: matrix all ten, lowdata the profile's)")
        if name == "lowdata":
            p.add_argument("--fractions", nargs="+", type=float, default=None, metavar="F",
                           help="shares of the training set (default: the profile's, e.g. 0.1 0.25 0.5 0.75 1)")
            p.add_argument("--methods", nargs="+", choices=("scratch", "fft", "lora"),
                           default=("scratch", "fft", "lora"), help="default: scratch fft lora")
        _experiment_arguments(p)
    p = subparsers.add_parser("profiles", help="print the table of experiment profiles",
                              description="Print the experiment profiles as a Markdown table, or one profile's "
                                          "settings.")
    p.add_argument("name", nargs="?", default=None, help="show every setting of this profile")
    p.set_defaults(func=_run_profiles)


# -- book -------------------------------------------------------------------------------
@subcommand
def _add_book(subparsers) -> None:
    from .book import add_book_subcommand

    add_book_subcommand(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """The ``fwi-teach`` argument parser with every registered subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="fwi-teach", description="Tools of the fwi_teach course.")
    parser.add_argument("--version", action="version", version=f"fwi_teach {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _REGISTRARS:
        register(subparsers)
    return parser


#: Errors that a user's input, files or machine cause: one line on stderr, no traceback.
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError)


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Usage errors exit through argparse (code 2). Errors of input, files, devices or the
    machine (:data:`USER_ERRORS`: a bad value, a missing, damaged or unwritable file, a
    full disk, no GPU, a run held by another process) print ``error: ...`` and return 1;
    Ctrl-C prints how to resume and returns 130. ``FWI_TEACH_DEBUG=1`` shows the traceback.
    """
    import os

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if os.environ.get("FWI_TEACH_DEBUG") == "1":
            raise
        print("\ninterrupted: nothing is left half-written; run the same command again to continue where it "
              "stopped", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if os.environ.get("FWI_TEACH_DEBUG") == "1":
            raise
        text = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.strerror and exc.filename and exc.filename not in text:
            text = f"{exc.filename}: {exc.strerror}"
        print(f"error: {text}", file=sys.stderr)
        if type(exc) in (TypeError, RuntimeError):  # not one of the package's own error types
            print("(if this looks like a bug of fwi_teach, rerun with FWI_TEACH_DEBUG=1 and report the traceback)",
                  file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
