"""The bootstrap every score's interval comes from: whole units (an image, a split group) are
resampled with replacement within their stratum (a dataset), seeded, so the same answers give
the same intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eiad.params import Params


@dataclass(frozen=True)
class BootstrapSettings(Params):
    """``evaluate.bootstrap``: replicates behind every 95% interval (0: no intervals), and their seed."""

    samples: int
    seed: int


def unit_weights(units: Sequence[str], strata: Sequence[str], samples: int, seed: int) -> np.ndarray:
    """``samples`` x items: how often each item is drawn in each replicate, its unit drawn whole.

    Each replicate draws, in every stratum, as many units as the stratum has, with replacement;
    every item of a drawn unit counts once per draw.
    """
    rng = np.random.default_rng(seed)
    names = list(dict.fromkeys(units))
    index = {name: i for i, name in enumerate(names)}
    stratum_of = {unit: stratum for unit, stratum in zip(units, strata)}
    unit_counts = np.zeros((samples, len(names)))
    for stratum in sorted(set(strata)):
        members = np.array([index[name] for name in names if stratum_of[name] == stratum])
        draws = members[rng.integers(0, len(members), size=(samples, len(members)))]
        for replicate in range(samples):
            unit_counts[replicate] += np.bincount(draws[replicate], minlength=len(names))
    return unit_counts[:, [index[unit] for unit in units]]


def interval(replicates: np.ndarray) -> list[float]:
    """The 95% percentile interval ``[low, high]`` of a figure's replicates, rounded to 2 decimals."""
    low, high = np.nanpercentile(replicates, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]
