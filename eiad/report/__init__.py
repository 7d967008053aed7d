"""The report stage: what the pipeline built and how the models did, as a static site that opens
from disk with no network (DDQA counts and gallery, training curves, MMAD and DDQA scores with
their intervals, the answers to browse), and a Markdown summary for pull requests."""
