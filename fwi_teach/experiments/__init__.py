"""Experiments: the paper's runs at a chosen scale, their cache, the claims and the reference results.

- :mod:`~fwi_teach.experiments.profiles`    run sizes (``smoke``, ``cpu``, ``gpu``, ``paper``) and their cost model
- :mod:`~fwi_teach.experiments.cache`       where data, models and results live on disk
- :mod:`~fwi_teach.experiments.runs`        pretraining, baselines, fine-tuning, the evaluation matrix, low data
- :mod:`~fwi_teach.experiments.physics_loop`  data misfit of the predictions; hybrid FWI started from them
- :mod:`~fwi_teach.experiments.physics_results`  their summaries with CIs and ``results/<profile>/physics_loop/``
- :mod:`~fwi_teach.experiments.claims`      the paper's five claims, judged from per-sample metrics
- :mod:`~fwi_teach.experiments.results`     the committed results folder: format, reading, merging
- :mod:`~fwi_teach.experiments.reproduce`   run every seed, export ``results/<profile>/``, the README block
- :mod:`~fwi_teach.experiments.pretrained`  the shipped PFM weights (safetensors)

The runs are importable from here: ``from fwi_teach import experiments as ex;
ex.pretrain_pfm("smoke")``.
"""

from .profiles import PROFILES, Profile, get_profile
from .cache import find_family_dir, load_model, load_split, model_specs, run_name
from .runs import (evaluation_matrix, finetune, low_data_sweep, prepare_data, pretrain_pfm, run_chain, train_baseline,
                   train_spec)
from .physics_loop import PhysicsLoopConfig, data_misfit_rows, hybrid_rows, loop_config
from .physics_results import export_physics_loop, load_physics_loop, summarise_hybrid, summarise_misfit
from .reproduce import export_results, reproduce
from .results import load_reference_results

__all__ = ["Profile", "PROFILES", "get_profile", "prepare_data", "pretrain_pfm", "train_baseline", "finetune",
           "evaluation_matrix", "low_data_sweep", "run_chain", "load_model", "model_specs", "train_spec", "run_name",
           "load_split", "find_family_dir", "reproduce", "export_results", "load_reference_results",
           "PhysicsLoopConfig", "loop_config", "data_misfit_rows", "hybrid_rows", "summarise_hybrid",
           "summarise_misfit", "export_physics_loop", "load_physics_loop"]
