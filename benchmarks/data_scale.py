"""Benchmark: fetch -> organise -> build_ddqa at scale, on a generated Real-IAD-like dataset.

For each size it generates a Real-IAD-like release of N 256-pixel JPEGs (30 categories, five
camera views per physical sample, a third of the images defective with a 0/255 PNG mask, some
NG-folder views labelled OK), zipped per category as the Hub holds it and served over loopback
by the tests' fake Hub. Then, in a throwaway copy of this repository (its .dvc/config included),
``dvc repro build_ddqa`` runs the three stages with each stage's command wrapped to measure it,
and prints per stage the wall time, CPU time (the stage's processes and its workers) and the
peak memory of its largest process; then DVC's own share of the repro, a no-op repro, the disk
per folder (a hard-linked file counted once, in the first folder that holds it) and its ratio
to the archive, and organise's CPU time against the floor: reading every image header and
decoding every mask once, in one process, measured before and after the repro.

    python benchmarks/data_scale.py --images 2000 --images 8000 --images 32000 --work /tmp/scale

Needs about 5x the archive (0.04 GB per 1,000 images) free under --work, which is deleted
afterwards unless --keep.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' loopback Hub serves the generated archives
from fake_hub import HubState, serve

from eiad.sources.realiad import CATEGORIES, DEFECT_CODES

COMMIT = "5" * 40
SIZE = 256  # Real-IAD's smallest resolution
VIEWS = 5
STAGES = ("fetch@realiad", "organise@realiad", "build_ddqa")
FOLDERS = ("data/downloads", "data/raw/realiad", "data/organised/realiad", "data/ddqa", ".dvc/cache")


# --- a Real-IAD-like release ----------------------------------------------------------------------


def _photo(rng: np.random.Generator) -> bytes:
    """A 256-pixel JPEG of about Real-IAD's size: a smooth pattern under sensor noise."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    f, phase = rng.uniform(0.02, 0.08, 2), rng.uniform(0, 6.3, 2)
    pattern = 128 + 50 * np.sin(xx * f[0] + phase[0]) * np.cos(yy * f[1] + phase[1])
    pixels = (pattern[..., None] * (1.0, 0.8, 0.6) + rng.normal(0, 12, (SIZE, SIZE, 3))).clip(0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _mask(rng: np.random.Generator) -> bytes:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    cx, cy, rx, ry = rng.uniform(40, 216, 2).tolist() + rng.uniform(4, 30, 2).tolist()
    buffer = io.BytesIO()
    Image.fromarray(((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _category(job: tuple[str, int, int]) -> tuple[str, bytes, dict[str, Any]]:
    """One category's archive (``<cat>/OK|NG/...``) and its JSON file, for ``samples`` samples.

    Half the samples are defective; of those, views C1-C3 show the defect (with a mask) and C4,
    C5 are labelled OK, as about 27k of Real-IAD's NG-folder images are. Every fifth sample tests.
    """
    category, samples, seed = job
    rng = np.random.default_rng(seed)
    codes = sorted(DEFECT_CODES)
    entries: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        for number in range(1, samples + 1):
            code = codes[number % len(codes)] if number % 2 else None
            folder = f"OK/S{number:04d}" if code is None else f"NG/{code}/S{number:04d}"
            for view in range(1, VIEWS + 1):
                stem = f"{category}_{number:04d}_{'OK' if code is None else 'NG_' + code}_C{view}_20230612{number:06d}"
                bundle.writestr(f"{category}/{folder}/{stem}.jpg", _photo(rng))
                visible = code is not None and view <= 3
                if visible:
                    bundle.writestr(f"{category}/{folder}/{stem}.png", _mask(rng))
                entries["test" if number % 5 == 0 else "train"].append({
                    "category": category, "anomaly_class": code if visible else "OK",
                    "image_path": f"{folder}/{stem}.jpg", "mask_path": f"{folder}/{stem}.png" if visible else None})
    meta = {"prefix": f"{category}/", "normal_class": "OK"}
    return category, buffer.getvalue(), {"meta": meta, **entries}


def release(images: int) -> dict[str, bytes]:
    """The Hub files of a Real-IAD-like release of about ``images`` images over all 30 categories."""
    samples = max(1, images // VIEWS)
    jobs = [(category, samples // len(CATEGORIES) + (index < samples % len(CATEGORIES)), index)
            for index, category in enumerate(CATEGORIES)]
    files: dict[str, bytes] = {}
    jsons = io.BytesIO()
    with ProcessPoolExecutor() as pool, zipfile.ZipFile(jsons, "w", zipfile.ZIP_DEFLATED) as bundle:
        for category, archive, index in pool.map(_category, jobs):
            files[f"realiad_256/{category}.zip"] = archive
            bundle.writestr(f"realiad_jsons/{category}.json", json.dumps(index))
    files["realiad_jsons.zip"] = jsons.getvalue()
    return files


# --- the project, and each stage measured ---------------------------------------------------------


def make_project(root: Path, url: str, log: Path) -> None:
    """This repository's tracked files in ``root`` (git + DVC), set up to fetch Real-IAD from ``url``,
    with the three stages' commands wrapped by :func:`measure`."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if (REPO / name).is_file() and not name.startswith(("data/", "metrics/")) and name != "dvc.lock":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["datasets"] = ["realiad"]
    params["sources"]["realiad"]["fetch"].update(endpoint=url, revision=COMMIT, resolution="256")
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    spec = yaml.safe_load((root / "dvc.yaml").read_text())
    wrap = f"{sys.executable} {Path(__file__).resolve()} measure --log {log} --"
    for stage in ("fetch", "organise"):
        spec["stages"][stage]["do"]["cmd"] = f"{wrap} {spec['stages'][stage]['do']['cmd']}"
    spec["stages"]["build_ddqa"]["cmd"] = f"{wrap} {spec['stages']['build_ddqa']['cmd']}"
    (root / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "scale"]):
        subprocess.run(command, cwd=root, check=True, env=_environment())


def _environment() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com", "PYTHONPATH": str(REPO)}


def _timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, env=_environment(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def floor_cpu(raw: Path) -> float:
    """CPU seconds to read every image's header and decode every mask once, in this process."""
    index = {}
    for json_file in (raw / "realiad_jsons").glob("*.json"):
        index[json_file.stem] = json.loads(json_file.read_text())
    start = time.process_time()
    for category, data in index.items():
        for entry in [*data["train"], *data["test"]]:
            Image.open(raw / category / entry["image_path"]).close()  # opening reads the header
            if entry["mask_path"]:
                with Image.open(raw / category / entry["mask_path"]) as mask:
                    mask.load()
    return time.process_time() - start


def disk(root: Path) -> dict[str, int]:
    """Bytes on disk per folder; a file with several names (hard links) counts once, in the first."""
    seen: set[tuple[int, int]] = set()
    usage = {}
    for folder in FOLDERS:
        total = 0
        for path in (root / folder).rglob("*") if (root / folder).exists() else []:
            info = path.lstat()
            if path.is_file() and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
        usage[folder] = total
    return usage


def run_size(images: int, work: Path) -> dict[str, Any]:
    """Generate, serve, repro and measure one size; the figures as a dict."""
    started = time.perf_counter()
    files = release(images)
    generated = time.perf_counter() - started
    archive = sum(len(body) for body in files.values())
    root, log = work / f"project-{images}", work / f"stages-{images}.jsonl"
    root.mkdir(parents=True)
    state = HubState(commits={COMMIT: COMMIT}, stated_sha256={name: hashlib.sha256(body).hexdigest() for name, body in files.items()})
    state.add_repo("dataset", "Real-IAD/Real-IAD", files)
    with serve(state) as url:
        make_project(root, url, log)
        repro = _timed(["dvc", "repro", "build_ddqa"], root)
        noop = _timed(["dvc", "repro", "build_ddqa"], root)
    usage = disk(root)
    stages = {row["stage"]: row for row in map(json.loads, log.read_text().splitlines())}
    raw = root / "data/raw/realiad"
    return {"images": sum(1 for _ in raw.rglob("*.jpg")), "archive": archive, "generated_s": generated,
            "repro_s": repro, "noop_s": noop, "stages": stages, "disk": usage,
            "organise_vs_floor": organise_against_floor(root, work / f"again-{images}")}


def organise_against_floor(root: Path, scratch: Path, rounds: int = 2) -> list[tuple[float, float]]:
    """Organise (outside DVC) alternating with the floor, so both see the same machine load:
    (organise CPU s, mean of the floors measured just before and after it) per round."""
    raw, log = root / "data/raw/realiad", scratch / "organise.jsonl"
    scratch.mkdir()
    floors, organised = [floor_cpu(raw)], []
    for number in range(rounds):
        out = scratch / f"organised-{number}"
        command = [sys.executable, str(Path(__file__).resolve()), "measure", "--log", str(log), "--", sys.executable,
                   "stages/organise.py", "realiad", "--raw", str(raw), "--out", str(out), "--report", f"{out}.json"]
        subprocess.run(command, cwd=root, check=True, env=_environment(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        organised.append(json.loads(log.read_text().splitlines()[-1])["cpu_s"])
        floors.append(floor_cpu(raw))
        shutil.rmtree(out)
    return [(cpu, (floors[i] + floors[i + 1]) / 2) for i, cpu in enumerate(organised)]


# --- the report -----------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    mb = 1e6
    click.echo(f"\n== {result['images']:,} images, archive {result['archive'] / mb:,.0f} MB "
               f"(generated in {result['generated_s']:.0f} s)")
    click.echo(f"{'stage':<18}{'wall s':>9}{'CPU s':>9}{'peak MB':>10}{'CPU us/image':>14}")
    stage_wall = 0.0
    for name in STAGES:
        row = result["stages"][_command_of(name)]
        stage_wall += row["wall_s"]
        click.echo(f"{name:<18}{row['wall_s']:>9.1f}{row['cpu_s']:>9.1f}{row['peak_rss_mb']:>10.0f}"
                   f"{1e6 * row['cpu_s'] / result['images']:>14.0f}")
    click.echo(f"dvc repro (first) {result['repro_s']:.1f} s wall, of which DVC itself (hashing, caching, "
               f"linking) {result['repro_s'] - stage_wall:.1f} s; no-op repro {result['noop_s']:.1f} s")
    rounds = result["organise_vs_floor"]
    click.echo("organise vs floor (every header read and every mask decoded once, one process), alternating: "
               + "; ".join(f"{cpu:.1f} s / {floor:.1f} s = {cpu / floor:.2f}" for cpu, floor in rounds))
    total = sum(result["disk"].values())
    click.echo("disk: " + ", ".join(f"{folder} {size / mb:,.0f} MB" for folder, size in result["disk"].items())
               + f"; total {total / mb:,.0f} MB = {total / result['archive']:.2f}x the archive "
               f"({(total + result['archive']) / result['archive']:.2f}x with keep_archives: true)")


def _command_of(stage: str) -> str:
    return {"fetch@realiad": "fetch", "organise@realiad": "organise", "build_ddqa": "build_ddqa"}[stage]


@click.group(invoke_without_command=True)
@click.option("--images", type=int, multiple=True, default=(2000, 8000, 32000), show_default=True)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/eiad-scale"),
              show_default=True, help="Scratch folder (outside the repository); deleted afterwards unless --keep.")
@click.option("--keep", is_flag=True, help="Keep the scratch folder.")
@click.pass_context
def main(context: click.Context, images: tuple[int, ...], work: Path, keep: bool) -> None:
    if context.invoked_subcommand is not None:
        return
    work.mkdir(parents=True, exist_ok=False)
    free = shutil.disk_usage(work).free
    click.echo(f"{work}: {free / 1e9:.0f} GB free; {os.cpu_count()} CPUs; workers: "
               f"{os.environ.get('EIAD_WORKERS', 'one per usable core')}")
    try:
        results = [run_size(n, work) for n in images]
        for result in results:
            report(result)
        _scaling(results)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _scaling(results: list[dict[str, Any]]) -> None:
    """CPU per image of each stage at each size, relative to the smallest size (1.00 = linear)."""
    if len(results) < 2:
        return
    click.echo("\nscaling: CPU per image relative to the smallest size (1.00 = linear)")
    first = results[0]
    for name in STAGES:
        ratios = [(r["stages"][_command_of(name)]["cpu_s"] / r["images"])
                  / (first["stages"][_command_of(name)]["cpu_s"] / first["images"]) for r in results]
        click.echo(f"  {name:<18}" + "  ".join(f"{r['images']:,}: {ratio:.2f}" for r, ratio in zip(results, ratios)))


@main.command()
@click.option("--log", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.argument("command", nargs=-1, required=True)
def measure(log: Path, command: tuple[str, ...]) -> None:
    """Run COMMAND (a stage) and append its wall time, CPU time and largest process's peak memory to LOG."""
    start = time.perf_counter()
    status = subprocess.run(command, check=False).returncode
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the stage and every worker it waited for
    row = {"stage": Path(command[1]).stem, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
           "peak_rss_mb": usage.ru_maxrss / 1024}
    with log.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    sys.exit(status)


if __name__ == "__main__":
    main()
