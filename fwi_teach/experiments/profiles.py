"""Named experiment profiles: how big each experiment of the course is.

A :class:`Profile` fixes everything that sets the cost of the paper's experiments
(:mod:`fwi_teach.experiments`): samples per family, the time decimation of the
network input, the InversionNet width, epochs, batch size, learning rates, LoRA rank,
and which families take part in which experiment. Four profiles ship with the package:

``smoke``
    CI: the whole chain (data generation included) on 2 CPU cores in under 10 minutes.
    The numbers it produces only show that everything runs; they carry no trend.
``cpu``
    2 CPU cores, about 100 minutes per training seed for the whole chain (2000 training,
    100 validation and 100 test samples per family, quarter-width network, cosine
    learning rates with a warm-up), run for three seeds. Tuned on the validation split
    with ``benchmarks/tune_cpu.py``. Its results are committed under ``results/cpu/``.
``gpu``
    One Colab-class GPU (a T4 or better) in well under an hour (800 + 160 samples per
    family, 500 time samples per trace).
``paper``
    The paper's sizes: real OpenFWI data (``data_dir``), full-width InversionNet (24.4 M
    parameters), 1000 time samples, 120 pretraining epochs, batch 256, several GPUs.

Every family has three disjoint splits: ``n_train`` samples train, ``n_val`` select the
best epoch (and any tuning), and ``n_test`` give every reported number; training and
selection never read them. On downloaded OpenFWI data, which has a training and a
validation split only, the first half of the validation samples is the validation
split and the second half the test split (:func:`fwi_teach.data.layout.download_holdout`).
Make a variant with
``dataclasses.replace(get_profile("smoke"), name="mine", epochs_pretrain=3)``; give it a
new name, since results are cached per profile name.

Only the standard library is imported here, so the table can be printed quickly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["Profile", "PROFILES", "PROFILE_NAMES", "METHODS", "LOW_DATA_METHODS", "get_profile"]

_ALL = ("flatvel-a", "flatvel-b", "curvevel-a", "curvevel-b", "flatfault-a", "flatfault-b",
        "curvefault-a", "curvefault-b", "style-a", "style-b")
_PRETRAIN = ("flatvel-a", "curvevel-a", "curvevel-b", "flatfault-a", "flatfault-b", "curvefault-a")
_FINETUNE = ("flatvel-b", "curvefault-b", "style-a", "style-b")
_LOW_DATA = ("curvefault-b", "style-a", "style-b")
#: Fine-tuning methods: full fine-tuning of the PFM, or LoRA adapters on the frozen PFM.
METHODS = ("fft", "lora")
#: Methods of the low-data sweep: "scratch" is the task-specific baseline.
LOW_DATA_METHODS = ("scratch", "fft", "lora")
_BOUNDARIES = ("thin", "openfwi")


@dataclass(frozen=True)
class Profile:
    """Sizes and settings of one scale of the experiments.

    Attributes
    ----------
    name, description : str
    n_train, n_val, n_test : int or None
        Training, validation (best epoch, tuning) and test (reported only) samples per
        family. ``None``: all samples of the real data in ``data_dir`` (such a profile
        cannot generate data); all three are ``None`` or none is.
    samples_per_file : int
        Samples per ``.npy`` file of generated sets (OpenFWI: 500).
    nt : int
        Recorded time samples of the simulated survey (OpenFWI: 1000 at 1 ms). Only
        test profiles shorten it, to make simulation cheap.
    time_decimation : int
        The network sees every ``time_decimation``-th sample: input length ``nt // td``.
    boundary : {"thin", "openfwi"}
        Absorbing boundary used to generate data (:func:`fwi_teach.physics.simulate`).
    width_multiplier : float
        InversionNet width (1.0: the 24.4 M-parameter original).
    epochs_pretrain, epochs_baseline, epochs_finetune : int
        Epochs of the foundation model, of each task-specific baseline, and of each
        fine-tuning run (FFT, LoRA, and the low-data runs of every method).
    batch_size : int
    lr_pretrain, lr_baseline, lr_finetune, lr_lora : float
        Peak AdamW learning rates of pretraining, baselines, full fine-tuning and LoRA.
        LoRA's ``B`` matrices start at zero, so it usually wants a larger rate.
    schedule, warmup_epochs : str, float
        Learning-rate schedule of every run (:func:`fwi_teach.training.learning_rate`):
        ``"constant"`` or ``"cosine"``, after a linear warm-up of ``warmup_epochs``.
    weight_decay : float
    loss : str
        ``"l1"`` (OpenFWI) or ``"l1+l2"``.
    lora_rank, lora_alpha : int, float
        Adapter rank and scaling numerator on every convolution (``target="all"``).
        Rank 16 on the full network trains 4.7 % of its weights (the paper reports a
        95.5 % cut); smaller networks use a proportionally smaller rank.
    pretrain_families, baseline_families, finetune_families, low_data_families : tuple
        Canonical family names; baselines default to all ten families.
    low_data_fractions : tuple of float
        Shares of the training set for the low-data sweep (paper: 10 ... 100 %).
    data_seed : int
        Seed of the generated velocity models (independent of the training seed).
    device_hint : str
        ``"cpu"``, ``"cuda"`` or ``"multi-gpu"``: what the profile was sized for.
    est_minutes_cpu, est_minutes_gpu : float or None
        Rough wall time of the whole chain (:func:`fwi_teach.experiments.run_chain`) on
        2 CPU cores / one Colab-class GPU. Estimates from :func:`fwi_teach.experiments.costs.estimate_minutes`, or a
        measurement where the note says so; ``None``: not a sensible target.
    est_note : str
        Where the estimates come from.
    """

    name: str
    description: str
    n_train: int | None
    n_val: int | None
    n_test: int | None = None
    samples_per_file: int = 500
    nt: int = 1000
    time_decimation: int = 4
    boundary: str = "thin"
    width_multiplier: float = 0.25
    epochs_pretrain: int = 1
    epochs_baseline: int = 1
    epochs_finetune: int = 1
    batch_size: int = 8
    lr_pretrain: float = 1e-3
    lr_baseline: float = 1e-3
    lr_finetune: float = 5e-4
    lr_lora: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "l1"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    lora_rank: int = 4
    lora_alpha: float = 4.0
    pretrain_families: tuple = _PRETRAIN
    baseline_families: tuple = _ALL
    finetune_families: tuple = _FINETUNE
    low_data_families: tuple = _LOW_DATA
    low_data_fractions: tuple = (0.1, 0.25, 0.5, 0.75, 1.0)
    data_seed: int = 0
    device_hint: str = "cpu"
    est_minutes_cpu: float | None = None
    est_minutes_gpu: float | None = None
    est_note: str = "estimate"

    def __post_init__(self):
        def fail(what):
            raise ValueError(f"profile {self.name!r}: {what}")

        for field in ("pretrain_families", "baseline_families", "finetune_families", "low_data_families"):
            names = tuple(getattr(self, field))
            bad = [f for f in names if f not in _ALL]
            if bad or not names:
                fail(f"{field}={names!r}; use canonical family names from {_ALL}")
            object.__setattr__(self, field, names)
        sizes = (self.n_train, self.n_val, self.n_test)
        if any(v is None for v in sizes) and not all(v is None for v in sizes):
            fail(f"n_train, n_val, n_test = {sizes}; set all three (generated data) or none (all of the real data)")
        for field in ("n_train", "n_val", "n_test"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                fail(f"{field}={value!r}; expected a positive integer, or None for 'all of the real data'")
        for field in ("samples_per_file", "nt", "time_decimation", "epochs_pretrain", "epochs_baseline",
                      "epochs_finetune", "batch_size", "lora_rank"):
            value = getattr(self, field)
            if isinstance(value, bool) or int(value) != value or value < 1:
                fail(f"{field}={value!r}; expected a positive integer")
        if self.nt // self.time_decimation < 1:
            fail(f"time_decimation={self.time_decimation} leaves no samples of nt={self.nt}")
        if self.schedule not in ("constant", "cosine"):
            fail(f"schedule={self.schedule!r}; expected 'constant' or 'cosine'")
        if not 0 <= self.warmup_epochs < min(self.epochs_pretrain, self.epochs_baseline, self.epochs_finetune):
            fail(f"warmup_epochs={self.warmup_epochs!r}; expected a number of epochs in [0, the smallest epochs)")
        if self.boundary not in _BOUNDARIES:
            fail(f"boundary={self.boundary!r}; expected one of {_BOUNDARIES}")
        for field in ("width_multiplier", "lr_pretrain", "lr_baseline", "lr_finetune", "lr_lora", "lora_alpha"):
            if not getattr(self, field) > 0:
                fail(f"{field}={getattr(self, field)!r}; expected a positive number")
        fractions = tuple(float(f) for f in self.low_data_fractions)
        if not fractions or any(not 0 < f <= 1 for f in fractions):
            fail(f"low_data_fractions={self.low_data_fractions!r}; expected shares in (0, 1], e.g. (0.1, 0.5, 1.0)")
        object.__setattr__(self, "low_data_fractions", fractions)

    @property
    def compile_mode(self) -> str:
        """``TrainConfig.compile`` of every run of this profile: ``"on"`` when its pretraining run is
        long enough for ``compile="auto"`` (real data, or ``epochs_pretrain`` times its steps per
        epoch >= :data:`fwi_teach.training.compiled.COMPILE_MIN_STEPS`), else ``"off"``.

        One setting for the whole profile keeps its models in one precision: on a CPU with
        bf16 in hardware a compiled step trains in bf16 autocast (``TrainConfig.amp``), so
        choosing per run would mix precisions between, say, the shares of the low-data sweep.
        """
        from ..training.compiled import COMPILE_MIN_STEPS

        if self.n_train is None:
            return "on"
        steps_per_epoch = -(-self.n_train * len(self.pretrain_families) // self.batch_size)
        return "on" if steps_per_epoch * self.epochs_pretrain >= COMPILE_MIN_STEPS else "off"

    @property
    def input_length(self) -> int:
        """Time samples per trace that the network sees: ``nt // time_decimation``."""
        return self.nt // self.time_decimation

    def settings(self) -> dict:
        """The fields that change results (not name, description, estimates): a cache fingerprint."""
        skip = {"name", "description", "device_hint", "est_minutes_cpu", "est_minutes_gpu", "est_note"}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
                if k not in skip}


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("smoke", "CI check of the whole chain on 2 CPU cores; numbers carry no trend",
            n_train=24, n_val=8, n_test=8, batch_size=8,
            est_note="cost model; `python benchmarks/chain_smoke.py` measures it on your machine "
                     "(several times longer when other processes share the cores)"),
    Profile("cpu", "the paper's experiments on 2 CPU cores, about 100 minutes per seed (data included)",
            n_train=2000, n_val=100, n_test=100, width_multiplier=0.25, epochs_pretrain=8, epochs_baseline=12,
            epochs_finetune=6, batch_size=16, lr_pretrain=2e-3, lr_baseline=2e-3, lr_finetune=5e-4,
            lr_lora=2e-3, schedule="cosine", warmup_epochs=1.0, lora_rank=4, lora_alpha=4.0,
            est_note="cost model (estimate_minutes) per seed; seeds after the first reuse its data; the committed "
                     "run in results/cpu/ records the measured times (python benchmarks/chain_times.py)"),
    Profile("gpu", "one Colab-class GPU (T4 or better) in well under an hour",
            n_train=800, n_val=160, n_test=160, time_decimation=2, width_multiplier=0.5,
            epochs_pretrain=25, epochs_baseline=25, epochs_finetune=12, batch_size=64,
            lora_rank=8, lora_alpha=8.0, device_hint="cuda",
            est_note="cost model; a T4 is taken as 5x slower than the H100 the GPU constants were measured on"),
    Profile("paper", "the paper's scale: real OpenFWI data via data_dir, full InversionNet, several GPUs",
            n_train=None, n_val=None, n_test=None, time_decimation=1, boundary="openfwi", width_multiplier=1.0,
            epochs_pretrain=120, epochs_baseline=120, epochs_finetune=50, batch_size=256,
            lr_pretrain=1e-4, lr_baseline=1e-4, lr_finetune=1e-4, lr_lora=1e-3, lora_rank=16, lora_alpha=16.0,
            device_hint="multi-gpu",
            est_note="not estimated: pretraining alone is 26 M sample passes (216,000 samples x 120 epochs), "
                     "hours on one H100 even at full bf16 speed, if data loading keeps up (chapter 9 estimates it); "
                     "the fine-tuning epochs are our choice, the paper does not give them"),
)}
#: Names of the built-in profiles, smallest first.
PROFILE_NAMES = tuple(PROFILES)


def get_profile(profile) -> Profile:
    """Return a built-in :class:`Profile` by name (a :class:`Profile` is returned unchanged).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid ones.
    """
    if isinstance(profile, Profile):
        return profile
    key = str(profile).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILE_NAMES)} "
                         "(or pass a Profile made with dataclasses.replace)")
    return PROFILES[key]
