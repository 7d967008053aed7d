"""MMAD (Hugging Face ``jiang-cc/MMAD``): the evaluation benchmark, fetched as EIAD's README does.

``mmad.json``, ``domain_knowledge.json`` and ``ALL_DATA.zip`` (the images, from revision
``refs/pr/1``, as the EIAD README downloads it) go into one folder: the two JSON files at the
top, the archive's content beside them, so that every path in ``mmad.json`` resolves from
there. Nothing is reorganised; the fetch fails, listing what is missing, unless every image,
mask and template that ``mmad.json`` references is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eiad.benchmark.mmad import BENCHMARK_FILE, load_benchmark, missing_references
from eiad.data.fetching import discard_downloads, hub_file, unpack, write_record
from eiad.data.files import place
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


@dataclass(frozen=True)
class MMADParams(HubParams):
    """``benchmark.mmad``: revision refs/pr/1 is where the EIAD README takes ALL_DATA.zip from."""

    keep_archives: bool  # keep the verified downloads (ALL_DATA.zip, the JSON files) after the fetch


class MMADSource(Source):
    key = "mmad"
    name = "MMAD"
    benchmark_params = MMADParams

    def download_benchmark(self, config: MMADParams, dest: Path) -> None:
        repo = config.repo()
        repo.warn_if_unpinned()
        records, downloads = [], []
        for name in JSON_FILES:
            path, record = hub_file(repo, name)
            place(path, dest / name)
            records.append(record)
            downloads.append(path)
        archive, record = hub_file(repo, IMAGES)
        records.append(record)
        downloads.append(archive)
        images = unpack(archive, dest, ".images")
        for entry in images.iterdir():  # the datasets' folders, next to mmad.json
            entry.rename(dest / entry.name)
        images.rmdir()
        load_benchmark(dest)  # schema check before the (long) existence check
        report_missing(dest)
        write_record(dest, records)
        discard_downloads(downloads, config.keep_archives)


SOURCE = MMADSource()
