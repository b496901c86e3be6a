"""Evaluation: OpenFWI's metrics, paired confidence intervals, verdicts and the published numbers.

- :mod:`~fwi_teach.evaluation.metrics`    MAE, RMSE and OpenFWI's SSIM, per map and per sample
- :mod:`~fwi_teach.evaluation.stats`      paired bootstrap intervals, hierarchical over seeds
- :mod:`~fwi_teach.evaluation.evidence`   per-sample tables, comparisons, "did it learn?", verdicts
- :mod:`~fwi_teach.evaluation.data_fit`   relative L2 data misfit: does a model explain the recorded data?
- :mod:`~fwi_teach.evaluation.published`  OpenFWI's and the paper's published numbers, and the rule
  that compares a run with them
"""

from .metrics import VELOCITY_SCALE_MPS, evaluate_metrics, mae, per_sample_metrics, rmse, ssim_openfwi
from .stats import Interval, paired_interval
from .evidence import (BETTER, MEAN_MAP, METRICS, VERDICTS, Comparison, SampleIndex, compare, contrast, learned,
                       relative_improvement, verdict)
from .data_fit import data_misfit, relative_l2
from .published import (OPENFWI_INVERSIONNET, OPENFWI_PARAMETERS, OPENFWI_TRAINING, PAPER_FAMILY_LABELS,
                        compare_with_openfwi, openfwi_metrics)

__all__ = ["VELOCITY_SCALE_MPS", "mae", "rmse", "ssim_openfwi", "evaluate_metrics", "per_sample_metrics",
           "Interval", "paired_interval", "METRICS", "BETTER", "VERDICTS", "MEAN_MAP", "SampleIndex", "Comparison",
           "compare", "contrast", "learned", "relative_improvement", "verdict", "OPENFWI_INVERSIONNET",
           "OPENFWI_TRAINING", "OPENFWI_PARAMETERS", "PAPER_FAMILY_LABELS", "openfwi_metrics",
           "compare_with_openfwi", "data_misfit", "relative_l2"]
