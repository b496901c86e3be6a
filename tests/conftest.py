"""Suite-wide settings.

The compiled time step is the package's default, but each new array shape costs a
compilation of several seconds, and the suite simulates dozens of small grids. So
the suite runs the eager path unless a test opts in (``monkeypatch.setenv(
"FWI_TEACH_COMPILE", "1")``), as tests/test_physics.py does to check that both paths
agree. Set ``FWI_TEACH_COMPILE=1`` before pytest to run the whole suite compiled.
"""

import os

import numpy as np
import pytest

os.environ.setdefault("FWI_TEACH_COMPILE", "0")


@pytest.fixture
def small_problem():
    """A small inversion problem: (acquisition, true velocity in m/s).

    A 40 x 40 grid of 10 m cells, three layers (2000, 2600, 3200 m/s) and a round
    2900 m/s inclusion; three surface sources, 40 receivers, 500 steps of 1 ms, a
    15 Hz Ricker wavelet. Small enough that FWI on it runs in seconds.
    """
    from fwi_teach.physics import Acquisition

    acq = Acquisition(source_locations=((1, 2), (1, 20), (1, 37)), receiver_locations=tuple((1, c) for c in range(40)),
                      nt=500, dt_s=1e-3, dx_m=10.0, freq_hz=15.0)
    v = np.full((40, 40), 2000.0, np.float32)
    v[12:] = 2600.0
    v[26:] = 3200.0
    yy, xx = np.mgrid[:40, :40]
    v[(yy - 19) ** 2 + (xx - 20) ** 2 < 25] = 2900.0
    return acq, v
