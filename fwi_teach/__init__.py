"""fwi_teach: a reproducible course on deep-learning full-waveform inversion and LoRA.

The sub-packages follow the course, and each imports only those before it:

- :mod:`fwi_teach.physics`      the acoustic wave equation, OpenFWI's survey, classical FWI
- :mod:`fwi_teach.data`         OpenFWI-style velocity families, data sets on disk, loading
- :mod:`fwi_teach.models`       InversionNet, LoRA from scratch and with peft, saved adapters
- :mod:`fwi_teach.evaluation`   metrics, paired confidence intervals, verdicts, published numbers
- :mod:`fwi_teach.training`     ``fit`` / ``evaluate`` / ``predict`` and the cost of a step
- :mod:`fwi_teach.plotting`     the course's figures
- :mod:`fwi_teach.experiments`  the paper's experiments, their cache, the claims, the reference results
- :mod:`fwi_teach.book`         execute and build the Jupyter Book; :mod:`fwi_teach.cli` the ``fwi-teach`` command

``ARCHITECTURE.md`` describes what flows between them and where a change belongs.
"""

__version__ = "0.1.0"
