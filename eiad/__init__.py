"""EIAD: build the DDQA defect question-answering set, fine-tune a VLM on it, score it on MMAD.

The package holds all logic; the DVC stage scripts in ``stages/`` are thin click wrappers.
"""

__version__ = "0.1.0"
