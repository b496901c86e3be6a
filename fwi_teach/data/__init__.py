"""OpenFWI-style data: velocity families, normalisation, generation on disk and loading.

- :mod:`~fwi_teach.data.families`  velocity-model generators of the ten families
- :mod:`~fwi_teach.data.normalize` OpenFWI's seismic / velocity normalisation
- :mod:`~fwi_teach.data.layout`    OpenFWI file layouts, split files, manifests
- :mod:`~fwi_teach.data.generate`  :func:`generate_dataset`, resumable writer
- :mod:`~fwi_teach.data.datasets`  :class:`OpenFWIDataset`, memory-mapped loader
"""

from .families import (FAMILIES, FINETUNE_FAMILIES, PRETRAIN_FAMILIES, V_MAX_MPS, V_MIN_MPS, canonical_family,
                       describe_family, family_title, total_variation, velocity_models)
from .normalize import (DATA_BOUNDS, SeismicTransform, denormalize_velocity, inverse_log_transform, log_transform,
                        normalize_velocity, seismic_transform)
from .layout import FAULT_GROUPS, MANIFEST_NAME, discover_pairs, pair_names, read_manifest, read_split_file
from .datasets import OpenFWIDataset, dataset_summary, low_data_fractions, subset_indices
from .generate import generate_dataset, plan_files

__all__ = [
    "FAMILIES", "PRETRAIN_FAMILIES", "FINETUNE_FAMILIES", "V_MIN_MPS", "V_MAX_MPS",
    "canonical_family", "family_title", "velocity_models", "describe_family", "total_variation",
    "DATA_BOUNDS", "SeismicTransform", "seismic_transform", "log_transform", "inverse_log_transform",
    "normalize_velocity", "denormalize_velocity",
    "FAULT_GROUPS", "MANIFEST_NAME", "discover_pairs", "pair_names", "read_manifest", "read_split_file",
    "OpenFWIDataset", "dataset_summary", "low_data_fractions", "subset_indices",
    "generate_dataset", "plan_files",
]
