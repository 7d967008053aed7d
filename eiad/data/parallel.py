"""Spreading independent work over the machine's cores, results in input order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from eiad.errors import ConfigError

Item = TypeVar("Item")
Result = TypeVar("Result")
WORKERS_VARIABLE = "EIAD_WORKERS"  # processes for data stages; unset: one per usable core


def worker_count() -> int:
    """``$EIAD_WORKERS``, else the cores this process may run on. Outputs never depend on it."""
    value = os.environ.get(WORKERS_VARIABLE, "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"{WORKERS_VARIABLE} must be a whole number >= 1, got {value!r}")
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ordered_map(function: Callable[[list[Item]], list[Result]], batches: Iterable[list[Item]],
                workers: int) -> Iterator[Result]:
    """``function`` over each batch in ``workers`` processes (in this one for a single worker),
    results in input order; at most two batches per worker are in flight, so memory stays flat."""
    if workers == 1:
        for batch in batches:
            yield from function(batch)
        return
    with ProcessPoolExecutor(workers) as pool:
        pending: deque[Future[list[Result]]] = deque()
        for batch in batches:
            pending.append(pool.submit(function, batch))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
