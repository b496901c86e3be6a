"""Suite-wide settings.

The compiled time step is the package's default, but each new array shape costs a
compilation of several seconds, and the suite simulates dozens of small grids. So
the suite runs the eager path unless a test opts in (``monkeypatch.setenv(
"FWI_TEACH_COMPILE", "1")``), as tests/test_physics.py does to check that both paths
agree. Set ``FWI_TEACH_COMPILE=1`` before pytest to run the whole suite compiled.
"""

import os

os.environ.setdefault("FWI_TEACH_COMPILE", "0")
