"""Randomness keyed by what it decides, so outputs do not depend on processing order.

Keying by the item (task, image path) rather than drawing from one shared stream means a
record's options do not change when other records are added, removed or reordered.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def stable_seed(seed: int, *keys: str) -> int:
    """A 64-bit integer determined by ``seed`` and ``keys`` alone."""
    digest = hashlib.sha256("\x1f".join([str(seed), *keys]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def stable_rng(seed: int, *keys: str) -> np.random.Generator:
    """A NumPy generator for bulk draws (image synthesis)."""
    return np.random.default_rng(stable_seed(seed, *keys))


def stable_random(seed: int, *keys: str) -> random.Random:
    """A light generator for a handful of draws (option sampling): cheaper to create per record."""
    return random.Random(stable_seed(seed, *keys))
