"""Plotting: the course's figures (matplotlib); every function returns its Figure and never calls ``show``.

- :mod:`~fwi_teach.plotting.style`     colours, labels and colour maps shared by every figure
- :mod:`~fwi_teach.plotting.maps`      velocity models, shot gathers, family galleries, predictions
- :mod:`~fwi_teach.plotting.results`   experiment figures: model comparisons, the evaluation matrix, low data,
  memory
- :mod:`~fwi_teach.plotting.evidence`  claims with confidence intervals, reference rows, learning curves,
  predictions of the reference run
- :mod:`~fwi_teach.plotting.physics_loop`  a prediction's gathers against the data, data misfits, hybrid FWI
- :mod:`~fwi_teach.plotting.waves`     wavefield snapshots, the FWI gradient, the Taylor test
"""

from .maps import plot_family_gallery, plot_shot_gather, plot_velocity, plot_velocity_comparison
from .results import (plot_evaluation_matrix, plot_low_data, plot_memory_breakdown, plot_model_comparison,
                      plot_openfwi_comparison, save_reference_figures)
from .evidence import plot_claim, plot_histories, plot_predictions, plot_tuning, plot_with_references
from .physics_loop import plot_data_misfit, plot_gather_residual, plot_hybrid_curves
from .waves import plot_gradient, plot_taylor_test, plot_wavefield_snapshots

__all__ = ["plot_velocity", "plot_shot_gather", "plot_family_gallery", "plot_velocity_comparison",
           "plot_model_comparison", "plot_evaluation_matrix", "plot_low_data", "plot_openfwi_comparison",
           "plot_memory_breakdown", "save_reference_figures", "plot_claim", "plot_with_references",
           "plot_histories", "plot_predictions", "plot_tuning", "plot_wavefield_snapshots", "plot_gradient",
           "plot_taylor_test", "plot_gather_residual", "plot_data_misfit", "plot_hybrid_curves"]
