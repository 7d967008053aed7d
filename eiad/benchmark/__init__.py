"""The MMAD benchmark: its file format, the prompts a model is asked, answer parsing and scoring.

Follows MMAD's reference scripts (REFERENCE.md §1) with one deliberate difference: an answer
that cannot be parsed at all counts as wrong and is reported, where MMAD's script drops it.
Nothing here imports torch.
"""
