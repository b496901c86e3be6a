"""The survey: the Ricker source wavelet and the acquisition geometry (sources, receivers, sampling).

:meth:`Acquisition.openfwi` is OpenFWI's survey on its 70 x 70 grid (``FACTS.md``);
:func:`ricker` is its source wavelet, with OpenFWI's length and delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ricker", "Acquisition"]


def ricker(freq_hz: float, dt_s: float, nt: int) -> np.ndarray:
    """Ricker wavelet with OpenFWI's length and delay.

    ``nw = 2 floor((2.2 / f / dt) / 2) + 1`` samples centred on sample
    ``nw // 2`` (147 samples peaking at index 73 for 15 Hz and 1 ms), then
    zero-padded (or truncated) to ``nt`` samples.

    Parameters
    ----------
    freq_hz : float
        Peak frequency in Hz (> 0).
    dt_s : float
        Sample interval in seconds (> 0).
    nt : int
        Number of samples to return (>= 1).

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(nt,)``, peak value 1.

    Raises
    ------
    ValueError
        If a parameter is not positive.
    """
    if not (math.isfinite(freq_hz) and math.isfinite(dt_s) and freq_hz > 0 and dt_s > 0):
        raise ValueError(f"ricker needs finite freq_hz > 0 and dt_s > 0, got freq_hz={freq_hz}, dt_s={dt_s}")
    if int(nt) < 1:
        raise ValueError(f"ricker needs nt >= 1, got nt={nt}")
    nw = 2 * int(math.floor((2.2 / freq_hz / dt_s) / 2)) + 1
    k = np.arange(nw)
    a = (nw // 2 - k) * freq_hz * dt_s * math.pi
    w = (1.0 - 2.0 * a**2) * np.exp(-(a**2))
    out = np.zeros(int(nt), dtype=np.float64)
    m = min(nw, int(nt))
    out[:m] = w[:m]
    return out.astype(np.float32)


@dataclass(frozen=True)
class Acquisition:
    """Sources, receivers and sampling of a survey on a regular grid.

    Locations are ``(row, column)`` grid indices of the velocity model (row 0 is
    the surface). Every shot records on the same receivers.

    Parameters
    ----------
    source_locations : tuple of (int, int)
        One ``(row, column)`` per shot.
    receiver_locations : tuple of (int, int)
        One ``(row, column)`` per receiver.
    nt : int
        Recorded samples per trace.
    dt_s : float
        Time step and sample interval in seconds.
    dx_m : float
        Grid spacing in metres (both directions).
    freq_hz : float
        Peak frequency of the Ricker source wavelet in Hz.
    """

    source_locations: tuple
    receiver_locations: tuple
    nt: int = 1000
    dt_s: float = 1e-3
    dx_m: float = 10.0
    freq_hz: float = 15.0

    def __post_init__(self):
        for name in ("source_locations", "receiver_locations"):
            locs = tuple(tuple(int(c) for c in loc) for loc in getattr(self, name))
            if not locs or any(len(loc) != 2 for loc in locs):
                raise ValueError(f"{name} must be a non-empty sequence of (row, column) pairs, got {getattr(self, name)!r}")
            object.__setattr__(self, name, locs)
        if int(self.nt) < 1 or not all(math.isfinite(x) and x > 0 for x in (self.dt_s, self.dx_m, self.freq_hz)):
            raise ValueError(
                f"Acquisition needs nt >= 1 and positive dt_s, dx_m, freq_hz (finite numbers); got nt={self.nt}, "
                f"dt_s={self.dt_s}, dx_m={self.dx_m}, freq_hz={self.freq_hz}"
            )

    @classmethod
    def openfwi(cls, nt: int = 1000, dt_s: float = 1e-3, dx_m: float = 10.0, freq_hz: float = 15.0) -> "Acquisition":
        """OpenFWI's survey on a 70 x 70 grid: 5 sources at row 1, columns 0, 17,
        34, 52, 69; 70 receivers at row 1 (every column); 1000 samples of 1 ms;
        10 m cells; 15 Hz Ricker."""
        return cls(
            source_locations=tuple((1, c) for c in (0, 17, 34, 52, 69)),
            receiver_locations=tuple((1, c) for c in range(70)),
            nt=nt, dt_s=dt_s, dx_m=dx_m, freq_hz=freq_hz,
        )

    @property
    def n_shots(self) -> int:
        return len(self.source_locations)

    @property
    def n_receivers(self) -> int:
        return len(self.receiver_locations)

    def wavelet(self) -> np.ndarray:
        """The Ricker source wavelet, shape ``(nt,)``."""
        return ricker(self.freq_hz, self.dt_s, self.nt)

    def check_grid(self, nz: int, nx: int) -> None:
        """Raise ``ValueError`` if a source or receiver lies outside an ``nz x nx`` grid."""
        for name, locs in (("source", self.source_locations), ("receiver", self.receiver_locations)):
            for i, (r, c) in enumerate(locs):
                if not (0 <= r < nz and 0 <= c < nx):
                    raise ValueError(
                        f"{name} {i} at (row={r}, column={c}) lies outside the {nz} x {nx} velocity model; "
                        f"move it inside rows 0..{nz - 1} and columns 0..{nx - 1}"
                    )
