"""MMAD (Hugging Face ``jiang-cc/MMAD``): the evaluation benchmark, fetched as EIAD's README does.

``mmad.json``, ``domain_knowledge.json`` and ``ALL_DATA.zip`` (the images, from revision
``refs/pr/1``, as the EIAD README downloads it) go into one folder: the two JSON files at the
top, the archive's content beside them, so that every path in ``mmad.json`` resolves from
there. Nothing is reorganised; the fetch fails, listing what is missing, unless every image,
mask and template that ``mmad.json`` references is present.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from eiad.benchmark.mmad import BENCHMARK_FILE, load_benchmark, missing_references
from eiad.data.fetching import hub_file, unpack, write_record
from eiad.data.hub import HubParams
from eiad.errors import DataError
from eiad.sources import Source

JSON_FILES = (BENCHMARK_FILE, "domain_knowledge.json")
IMAGES = "ALL_DATA.zip"


def report_missing(root: Path) -> None:
    """Raise, naming counts and examples per kind, when ``mmad.json`` references absent files."""
    missing = {kind: paths for kind, paths in missing_references(root).items() if paths}
    if missing:
        summary = "; ".join(f"{len(paths)} {kind} (e.g. {', '.join(paths[:3])})" for kind, paths in missing.items())
        raise DataError(root / BENCHMARK_FILE, f"references files that {IMAGES} did not provide: {summary}")


class MMADSource(Source):
    key = "mmad"
    name = "MMAD"
    benchmark_params = HubParams  # revision refs/pr/1: where the EIAD README takes ALL_DATA.zip from

    def download_benchmark(self, config: HubParams, dest: Path) -> None:
        repo = config.repo()
        repo.warn_if_unpinned()
        records = []
        for name in JSON_FILES:
            path, record = hub_file(repo, name)
            shutil.copyfile(path, dest / name)
            records.append(record)
        archive, record = hub_file(repo, IMAGES)
        records.append(record)
        images = unpack(archive, dest, ".images")
        for entry in images.iterdir():  # the datasets' folders, next to mmad.json
            entry.rename(dest / entry.name)
        images.rmdir()
        load_benchmark(dest)  # schema check before the (long) existence check
        report_missing(dest)
        write_record(dest, records)


SOURCE = MMADSource()
