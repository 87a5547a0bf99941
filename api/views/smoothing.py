"""A binned kernel smoother: the objective over a grid of two parameters, filled in between
the trials, for the study page's contour (the Plotly bundle the page loads has no contour
or heatmap trace, so the page draws the grid's cells itself).

Trials are summed into the grid's cells first, then the sums and the counts are blurred by
the same Gaussian, and a cell's value is their ratio (Nadaraya–Watson on binned data): one
pass over the trials and a few small convolutions, whatever the study's size.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

# A cell is drawn only when this much kernel weight (a trial in the cell itself weighs 1)
# is near it: about a trial within 1.7 bandwidths, so the map does not extrapolate.
MIN_WEIGHT = 0.25
# The bandwidth, in cells, holds about this many trials on average.
TRIALS_PER_KERNEL = 3.0


def bandwidth(cells: int, trials: int) -> float:
    """Cells along an axis a kernel spans (its standard deviation): one cell when trials are
    dense, wider as they thin out, so the map stays filled between them."""
    return max(1.0, cells * math.sqrt(TRIALS_PER_KERNEL / (2 * math.pi * max(trials, 1))))


def smooth(
    sums: NDArray[np.float64], counts: NDArray[np.float64], sigmas: tuple[float, float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each cell's kernel-weighted mean and the kernel weight behind it; a sigma of 0 keeps
    an axis's cells apart (the choices of a categorical)."""
    for axis, sigma in enumerate(sigmas):
        if sigma > 0:
            sums = _blur(sums, sigma, axis)
            counts = _blur(counts, sigma, axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts >= MIN_WEIGHT, sums / counts, np.nan)
    return means, counts


def _blur(grid: NDArray[np.float64], sigma: float, axis: int) -> NDArray[np.float64]:
    reach = math.ceil(3 * sigma)
    offsets = np.arange(-reach, reach + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)  # peak 1: a trial weighs 1 in its cell
    size = grid.shape[axis]
    # "full", then the cells' own span: "same" would return the kernel's length when the
    # kernel is the longer (a wide bandwidth over a few trials).
    return np.apply_along_axis(
        lambda line: np.convolve(line, kernel, mode="full")[reach : reach + size], axis, grid
    )
