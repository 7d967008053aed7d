"""One package per model family (see :mod:`eiad.models`)."""
