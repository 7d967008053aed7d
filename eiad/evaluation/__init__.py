"""Running a model over a benchmark and the DDQA test split: the ``evaluate`` settings, asking the
model, and writing scores and per-question predictions."""
