"""The report: a static site (``index.html``, ``gallery.html``, ``errors.html``, their images and data
scripts) that opens from disk with no network, and a Markdown summary for pull requests.

Every image is a thumbnail written once (``thumbs/``); charts are PNGs drawn by matplotlib.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from eiad.benchmark.scoring import SHORT_TYPES, TYPES
from eiad.data.layout import OK, read_manifest
from eiad.ddqa.boxes import parse_boxes
from eiad.io import atomic_directory, read_jsonl
from eiad.report import figures
from eiad.report.answers import answers_page, ddqa_kinds, mmad_kinds
from eiad.report.html import Markup, figure, page, table
from eiad.report.overlays import annotated, jpeg, thumbnail
from eiad.report.summary import summary_markdown

SAMPLES_PER_DEFECT = 3  # gallery samples per dataset, class and defect


@dataclass(frozen=True)
class Inputs:
    """Where the report reads from (the pipeline's outputs)."""

    ddqa: Path  # data/ddqa
    organised: Path  # data/organised
    counts: Path  # metrics/ddqa_counts.json
    benchmark: Path  # data/benchmark
    predictions: Path  # data/predictions (base/, tuned/)
    base_metrics: Path  # metrics/base
    tuned_metrics: Path  # metrics
    compared: Path  # metrics/compare_scores.json
    training: Path  # metrics/train


class Site:
    """The files of the site being written, with thumbnails made once per source image."""

    def __init__(self, root: Path) -> None:
        self.root, self.made = root, set()

    def write(self, name: str, data: bytes | str) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return name

    def thumb(self, source: Path) -> str:
        name = f"thumbs/{hashlib.sha256(str(source).encode()).hexdigest()[:20]}.jpg"
        if name not in self.made:
            self.write(name, jpeg(thumbnail(source)))
            self.made.add(name)
        return name


def build_report(inputs: Inputs, out: Path) -> dict[str, Any]:
    """Write the site into ``out`` (replaced atomically) and return the figures the summary shows."""
    scores = {name: _json(folder / "mmad_scores.json") for name, folder in
              (("base", inputs.base_metrics), ("tuned", inputs.tuned_metrics))}
    ddqa = {name: _json(folder / "ddqa_scores.json") for name, folder in
            (("base", inputs.base_metrics), ("tuned", inputs.tuned_metrics))}
    compared = _json(inputs.compared)
    with atomic_directory(out) as staging:
        site = Site(staging)
        charts = _charts(site, scores, ddqa, inputs)
        site.write("index.html", _index(scores, ddqa, compared, _json(inputs.counts), charts))
        site.write("gallery.html", _gallery(site, inputs))
        html, scripts = _answers(site, inputs)
        site.write("errors.html", html)
        for name, text in scripts.items():
            site.write(name, text)
        site.write("summary.md", summary_markdown(scores, ddqa, compared, charts))
    return {"mmad": scores, "ddqa": ddqa, "compare": compared}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _band(scores: dict[str, Any], *keys: str) -> list[float] | None:
    node: Any = scores.get("intervals", {})
    for key in keys:
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, list) else None


# --- charts ---------------------------------------------------------------------------------------


def _charts(site: Site, scores: dict[str, Any], ddqa: dict[str, Any], inputs: Inputs) -> dict[str, str]:
    types = [name for name in TYPES if name in scores["tuned"]["average"]]
    mmad = figures.paired_bars([SHORT_TYPES[t] for t in types] + ["Average"], {
        model: [(table["average"][t], _band(table, "average", t)) for t in [*types, "Average"]]
        for model, table in scores.items()}, "MMAD: base and fine-tuned, 95% intervals", "percent")
    tasks = sorted(ddqa["tuned"])
    headline = {"AD": "balanced_accuracy", "DFM": "mean_iou"}
    ddqa_chart = figures.paired_bars(tasks, {
        model: [_ddqa_bar(table[task], headline.get(task, "accuracy")) for task in tasks]
        for model, table in ddqa.items()}, "DDQA test split (DFM: mean IoU x 100)", "percent")
    charts = {"mmad": site.write("charts/mmad.png", mmad), "ddqa": site.write("charts/ddqa.png", ddqa_chart)}
    curves = _training_curves(inputs.training)
    if curves:
        charts["training"] = site.write("charts/training.png", figures.curves(curves, "Fine-tuning"))
    ious = {model: [row["iou"] for row in read_jsonl(inputs.predictions / model / "ddqa_predictions.jsonl")
                    if row["task"] == "DFM"] for model in ("base", "tuned")}
    if any(ious.values()):
        charts["iou"] = site.write("charts/dfm_iou.png", figures.histogram(ious, "DFM: IoU per record", "IoU"))
    return charts


def _ddqa_bar(task: dict[str, Any], name: str) -> figures.Bar:
    name = name if name in task else "accuracy"
    scale = 100 if name == "mean_iou" else 1
    band = task.get("intervals", {}).get(name)
    return task[name] * scale, (band[0] * scale, band[1] * scale) if band else None


def _training_curves(folder: Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    panels = {}
    for name, label in (("loss", "loss"), ("learning_rate", "learning rate")):
        path = folder / "plots" / "metrics" / f"{name}.tsv"
        if path.is_file():
            rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line]
            panels[label] = {"tuned": ([float(row[0]) for row in rows], [float(row[-1]) for row in rows])}
    return panels


# --- the summary page -----------------------------------------------------------------------------


def _index(scores: dict[str, Any], ddqa: dict[str, Any], compared: dict[str, Any], counts: dict[str, Any],
           charts: dict[str, str]) -> str:
    base, tuned, paired = scores["base"], scores["tuned"], compared["mmad"]
    average = paired["Average"]
    cards = "".join(f'<div class="card">{escape(label)}<b>{value}</b>{note}</div>' for label, value, note in (
        ("MMAD average, fine-tuned", f"{tuned['average']['Average']:.2f}", _interval(_band(tuned, "average", "Average"))),
        ("MMAD average, base", f"{base['average']['Average']:.2f}", _interval(_band(base, "average", "Average"))),
        ("fine-tuned - base", figure(average["difference"], [average["low"], average["high"]], signed=True), ""),
        ("MMAD's script, fine-tuned", f"{tuned['mmad_script']['average']['Average']:.2f}", ""),
    ))
    types = [name for name in (*TYPES, "Average", "Overkill", "Miss") if name in tuned["average"]]
    mmad_rows = [[name, figure(base["average"].get(name), _band(base, "average", name)),
                  figure(tuned["average"].get(name), _band(tuned, "average", name)),
                  figure(paired[name]["difference"], [paired[name]["low"], paired[name]["high"]], signed=True)
                  if name in paired else "–"] for name in types]
    datasets = [[dataset, *(figure(row.get(name), _band(tuned, "per_dataset", dataset, name)) for name in types)]
                for dataset, row in tuned["per_dataset"].items()]
    ddqa_rows = []
    for task in sorted(ddqa["tuned"]):
        for name in (n for n in ("accuracy", "balanced_accuracy", "parse_rate", "mean_iou", "iou_ge_0_5")
                     if n in ddqa["tuned"][task]):
            pair = compared["ddqa"].get(task, {})
            difference = (figure(pair["difference"], [pair["low"], pair["high"]], signed=True)
                          if pair.get("figure") == name else "")
            ddqa_rows.append([f"{task} {name}", figure(ddqa["base"][task][name], _ddqa_band(ddqa["base"][task], name)),
                              figure(ddqa["tuned"][task][name], _ddqa_band(ddqa["tuned"][task], name)), difference])
    images = "".join(f'<p><img src="{charts[key]}" alt="{key} chart"></p>' for key in ("mmad", "ddqa", "training", "iou")
                     if key in charts)
    body = (f'<div class="cards">{cards}</div>'
            f"<p>{escape(tuned['protocol'])}, answers by {escape(tuned['answer'])}, {tuned['questions']} questions; "
            f"the fine-tuned model got {paired['tuned_only']} right that the base did not, the base "
            f"{paired['base_only']} the other way. Figures in brackets are 95% bootstrap intervals over images.</p>"
            f"<h2>MMAD, per question type</h2>"
            + table(["", "base", "fine-tuned", "fine-tuned - base"], mmad_rows)
            + "<h2>MMAD, fine-tuned, per dataset</h2>" + table(["dataset", *types], datasets)
            + "<h2>DDQA test split</h2>" + table(["", "base", "fine-tuned", "fine-tuned - base"], ddqa_rows)
            + f"<h2>Charts</h2>{images}<h2>DDQA records</h2>" + _counts(counts))
    return page("EIAD pipeline report", body)


def _interval(band: list[float] | None) -> str:
    return f'<span class="band">[{band[0]:.2f}, {band[1]:.2f}]</span>' if band else ""


def _ddqa_band(task: dict[str, Any], name: str) -> list[float] | None:
    return task.get("intervals", {}).get(name)


def _counts(counts: dict[str, Any]) -> str:
    records = counts["records"]
    tasks = sorted({task for split in records.values() for task in split})
    split_table = table(["split", *tasks, "images"], [[split, *(records[split].get(t, 0) for t in tasks),
                                                       counts["images"][split]] for split in records])
    rows = []
    for split, by_task in counts["by_label"].items():
        for task, by_dataset in by_task.items():
            for dataset, by_class in by_dataset.items():
                for cls, by_defect in by_class.items():
                    rows.extend([split, task, dataset, cls, defect, number] for defect, number in by_defect.items())
    return split_table + "<h3>By dataset, class and defect</h3>" + table(
        ["split", "task", "dataset", "class", "defect", "records"], rows)


# --- the gallery ----------------------------------------------------------------------------------


def _gallery(site: Site, inputs: Inputs) -> str:
    """A few samples per dataset, class and defect: the image with its mask, boxes and grid cell,
    every record of it, and the other images of its split group."""
    masks, groups = {}, defaultdict(list)
    for folder in sorted(p for p in inputs.organised.iterdir() if (p / "manifest.jsonl").is_file()):
        for sample in read_manifest(folder):
            masks[sample.image] = sample.mask
            groups[sample.group].append(sample.image)
    by_image: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for split, name in (("train", "train.jsonl"), ("test", "test.jsonl")):
        for record in read_jsonl(inputs.ddqa / name):
            by_image[record["images"][0]].append((split, record))
    strata: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for image, entries in sorted(by_image.items()):
        record = entries[0][1]
        strata[(record["source_dataset"], record["class"], record["defect"])].append(image)
    sections = []
    for (dataset, cls, defect), images in sorted(strata.items()):
        samples = "".join(_sample(site, image, by_image[image], masks.get(image), groups)
                          for image in images[:SAMPLES_PER_DEFECT])
        label = "normal" if defect == OK else defect
        sections.append(f"<h2>{escape(dataset)} / {escape(cls)} / {escape(label)} "
                        f'<span class="band">({len(images)} images)</span></h2>{samples}')
    intro = ("<p>For a few images of each dataset, class and defect: the mask in red, DFM's boxes in blue, "
             "RDL's 3x3 grid with the answer's cell in yellow, every record built from the image, and the images "
             "of its split group (the views of one part travel together).</p>")
    return page("DDQA gallery", intro + "".join(sections))


def _sample(site: Site, image: str, entries: list[tuple[str, dict[str, Any]]], mask: str | None,
            groups: dict[str, list[str]]) -> str:
    records = {record["task"]: record for _, record in entries}
    boxes = parse_boxes(records["DFM"]["messages"][1]["content"]) if "DFM" in records else []
    cell = None
    if "RDL" in records:
        rdl = records["RDL"]
        cell = rdl["choices"][rdl["messages"][1]["content"]]
    picture = site.write(f"gallery/{hashlib.sha256(image.encode()).hexdigest()[:20]}.jpg",
                         jpeg(annotated(Path(image), Path(mask) if mask else None, boxes, cell)))
    split, first = entries[0]
    rows = [[record["task"], Markup(f"<pre>{escape(record['messages'][0]['content'])}</pre>"), _answer(record)]
            for _, record in entries]
    views = "".join(f'<img src="{site.thumb(Path(other))}" alt="view">' for other in groups.get(first["group"], [])
                    if other != image)
    return (f'<div class="sample" data-sample><div><img src="{picture}" alt="annotated {escape(image)}"><br>'
            f'<span class="band">{escape(split)} split, group {escape(first["group"])}</span>'
            f'<div class="views">{views}</div></div><div class="records">'
            f"{table(['task', 'question', 'answer'], rows)}</div></div>")


def _answer(record: dict[str, Any]) -> str:
    """The answer with the option it names: ``C (crack)``; a box list as it is."""
    answer = record["messages"][1]["content"]
    option = (record["choices"] or {}).get(answer)
    return f"{answer} ({option})" if option else answer


# --- the answers page -----------------------------------------------------------------------------


def _answers(site: Site, inputs: Inputs) -> tuple[str, dict[str, str]]:
    def thumb(where: str, path: str) -> str:
        return site.thumb(inputs.benchmark / path if where == "benchmark" else Path(path))

    answers = {model: _json(inputs.predictions / model / "mmad_answers.json") for model in ("base", "tuned")}
    predictions = {model: read_jsonl(inputs.predictions / model / "ddqa_predictions.jsonl")
                   for model in ("base", "tuned")}
    kinds = mmad_kinds(answers["base"], answers["tuned"], thumb)
    kinds.update(ddqa_kinds(read_jsonl(inputs.ddqa / "test.jsonl"), predictions["base"], predictions["tuned"], thumb))
    return answers_page(kinds)
