"""fwi_teach: a reproducible course on deep-learning full-waveform inversion and LoRA.

Sub-modules follow the story of the book:

- :mod:`fwi_teach.physics`  acoustic wave equation, OpenFWI acquisition, classical FWI
- :mod:`fwi_teach.data`     OpenFWI-style velocity families, datasets on disk, loading
- :mod:`fwi_teach.plotting` figures
"""

__version__ = "0.1.0"
