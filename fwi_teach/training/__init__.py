"""Training: :func:`fit`, :func:`evaluate` and :func:`predict` for velocity-map regression, and their measurements.

- :mod:`~fwi_teach.training.config`       :class:`TrainConfig`, the learning-rate schedule, :class:`TrainResult`
- :mod:`~fwi_teach.training.engine`       :func:`fit`, :func:`evaluate`, :func:`predict`, :func:`load_weights`
- :mod:`~fwi_teach.training.loop`         one epoch, evaluation sums, preloading, precision (internal)
- :mod:`~fwi_teach.training.checkpoints`  ``last.pt`` / ``best.pt``, atomic writes, resuming (internal)
- :mod:`~fwi_teach.training.memory`       the memory and time of one training step, FFT against LoRA
- :mod:`~fwi_teach.training.distributed`  ``torchrun`` set-up for data-parallel training
"""

from .config import AMP_MODES, LOSSES, SCHEDULES, TrainConfig, TrainResult, learning_rate
from .engine import evaluate, fit, load_weights, predict

__all__ = ["TrainConfig", "TrainResult", "fit", "evaluate", "predict", "load_weights", "learning_rate", "LOSSES",
           "AMP_MODES", "SCHEDULES"]
