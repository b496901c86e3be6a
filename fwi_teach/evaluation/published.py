"""Published numbers the course compares with: OpenFWI's InversionNet results and set-up, the paper's labels.

These values are copied from the publications (Deng et al. 2022, OpenFWI; Ghosal et
al. 2024), not computed by this package; ``FACTS.md`` lists their sources. Everything
computed *from* them (ratios, gaps, verdicts) is a function here, so that the book's
chapters and the reference results use one rule.
"""

from __future__ import annotations

__all__ = ["OPENFWI_INVERSIONNET", "OPENFWI_TRAINING", "OPENFWI_PARAMETERS", "PAPER_FAMILY_LABELS",
           "openfwi_metrics", "compare_with_openfwi"]

#: OpenFWI's published InversionNet test metrics per family, ``(MAE, RMSE, SSIM)`` on
#: normalised velocity (L1 training).
OPENFWI_INVERSIONNET = {
    "flatvel-a": (0.0131, 0.0211, 0.9895), "flatvel-b": (0.0351, 0.0876, 0.9461),
    "curvevel-a": (0.0685, 0.1273, 0.8074), "curvevel-b": (0.1497, 0.2891, 0.6727),
    "flatfault-a": (0.0172, 0.0426, 0.9766), "flatfault-b": (0.1055, 0.1741, 0.7208),
    "curvefault-a": (0.0260, 0.0650, 0.9566), "curvefault-b": (0.1646, 0.2477, 0.6163),
    "style-a": (0.0625, 0.1024, 0.8859), "style-b": (0.0689, 0.1614, 0.6314),
}
#: OpenFWI's training set-up behind those numbers: epochs and training samples per family
#: (FlatVel / CurveVel 24,000; Fault families 48,000; Style 60,000).
OPENFWI_TRAINING = {"epochs": 120, "n_train": {"flatvel-a": 24_000, "flatvel-b": 24_000, "curvevel-a": 24_000,
                                                "curvevel-b": 24_000, "flatfault-a": 48_000,
                                                "flatfault-b": 48_000, "curvefault-a": 48_000,
                                                "curvefault-b": 48_000, "style-a": 60_000, "style-b": 60_000}}
#: Trainable parameters of the full-size InversionNet as OpenFWI reports them
#: (``tests/test_models.py`` checks that :class:`~fwi_teach.models.InversionNet` has as many).
OPENFWI_PARAMETERS = 24_409_123
#: The paper's short labels of the pretraining families (its Fig. 2).
PAPER_FAMILY_LABELS = {"flatvel-a": "FVA", "curvevel-a": "CVA", "curvevel-b": "CVB", "flatfault-a": "FFA",
                       "flatfault-b": "FFB", "curvefault-a": "CFA"}
#: :func:`compare_with_openfwi` calls a run "close" to OpenFWI within these bounds.
CLOSE_MAE_RATIO, CLOSE_SSIM_GAP = 1.5, 0.02


def openfwi_metrics(family: str) -> dict:
    """OpenFWI's published ``{"mae", "rmse", "ssim"}`` of InversionNet on ``family``.

    Raises
    ------
    ValueError
        For a family OpenFWI did not publish (the message lists those it did).
    """
    from ..data.families import canonical_family

    fam = canonical_family(family)
    if fam not in OPENFWI_INVERSIONNET:
        raise ValueError(f"OpenFWI published no InversionNet result for {family!r}; it did for "
                         f"{', '.join(OPENFWI_INVERSIONNET)}")
    return dict(zip(("mae", "rmse", "ssim"), OPENFWI_INVERSIONNET[fam]))


def compare_with_openfwi(family: str, mae: float, ssim: float, n_train: int, epochs: int,
                         parameters: int) -> dict:
    """How a task-specific model compares with OpenFWI's published InversionNet on ``family``.

    Parameters
    ----------
    family : str
        The family the model was trained and tested on.
    mae, ssim : float
        Its test metrics (normalised velocity).
    n_train, epochs, parameters : int
        Its training samples, epochs and trainable parameters.

    Returns
    -------
    dict
        ``mae_ratio`` (ours / OpenFWI's), ``ssim_gap`` (OpenFWI's minus ours), the
        ratios of training data (``data_ratio``), sample passes (``passes_ratio``) and
        parameters (``parameters_ratio``) of OpenFWI's set-up to ours, ``close``
        (``mae_ratio <= 1.5`` and ``ssim_gap <= 0.02``) and ``sentence``, a verdict
        in words that states these numbers.
    """
    from ..data.families import canonical_family, family_title

    fam = canonical_family(family)
    published = openfwi_metrics(fam)
    n_open = OPENFWI_TRAINING["n_train"][fam]
    out = {"mae_ratio": mae / published["mae"], "ssim_gap": published["ssim"] - ssim,
           "data_ratio": n_open / n_train, "passes_ratio": n_open * OPENFWI_TRAINING["epochs"] / (n_train * epochs),
           "parameters_ratio": OPENFWI_PARAMETERS / parameters}
    out["close"] = bool(out["mae_ratio"] <= CLOSE_MAE_RATIO and out["ssim_gap"] <= CLOSE_SSIM_GAP)
    head = (f"On {family_title(fam)} the model comes close to OpenFWI's published accuracy" if out["close"] else
            f"On {family_title(fam)} OpenFWI's published accuracy is NOT reproduced")
    out["sentence"] = (f"{head}: MAE {out['mae_ratio']:.1f}x the published value, SSIM {ssim:.3f} against "
                       f"{published['ssim']:.3f}, with {out['data_ratio']:,.0f}x less training data, "
                       f"{out['passes_ratio']:,.0f}x fewer sample passes and {out['parameters_ratio']:,.0f}x fewer "
                       f"parameters.")
    return out
