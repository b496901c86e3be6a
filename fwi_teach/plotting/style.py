"""The course's figure conventions: one colour and one label per model kind, metric titles, colour maps.

Every figure of :mod:`fwi_teach.plotting` takes its colours and legend labels from here,
so a model kind looks the same in every chapter.
"""

from __future__ import annotations

__all__ = ["KIND_COLOURS", "KIND_LABELS", "OUTCOME_COLOURS", "METRIC_TITLES", "VELOCITY_CMAP", "DIFFERENCE_CMAP",
           "GATHER_CMAP", "check_metric"]

#: Colour of each model kind (``"scratch"`` is the low-data sweep's name for a baseline).
KIND_COLOURS = {"pfm": "tab:blue", "baseline": "tab:gray", "scratch": "tab:gray", "fft": "tab:green",
                "lora": "tab:orange", "mean-map": "black"}
#: Legend label of each model kind.
KIND_LABELS = {"pfm": "PFM", "baseline": "task-specific (scratch)", "scratch": "task-specific (scratch)",
               "fft": "FFT-PFM", "lora": "LoRA-PFM", "mean-map": "training-mean map"}
#: Colour of each comparison outcome.
OUTCOME_COLOURS = {"won": "tab:green", "lost": "tab:red", "tied": "0.45"}
#: Axis title of each metric.
METRIC_TITLES = {"mae": "MAE (lower is better)", "rmse": "RMSE (lower is better)", "ssim": "SSIM (higher is better)"}
VELOCITY_CMAP = "viridis"
DIFFERENCE_CMAP = "RdBu_r"
GATHER_CMAP = "gray"


def check_metric(metric: str) -> None:
    """Raise ``ValueError`` unless ``metric`` is one of :data:`METRIC_TITLES`."""
    if metric not in METRIC_TITLES:
        raise ValueError(f"metric={metric!r}; expected one of {tuple(METRIC_TITLES)}")
