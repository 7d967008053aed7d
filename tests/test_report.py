"""The report opens from disk in headless Chromium with the network off, and shows what it says."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import config

from eiad.evaluation.compare import compare
from eiad.evaluation.config import EvalConfig
from eiad.evaluation.runner import Inputs as EvalInputs
from eiad.evaluation.runner import ddqa_id, write_outputs
from eiad.report.answers import slug
from eiad.report.build import Inputs, build_report
from eiad.stats import BootstrapSettings

CHROMIUM = Path("/usr/bin/chromium")


def _lucky(key: str, right: int) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % right == 0


def _answers(inputs: EvalInputs, right: int) -> dict[str, str]:
    """Answers right for about one question (and DDQA record) in ``right``, a wrong letter elsewhere."""
    answers = {}
    for question in inputs.questions:
        wrong = next(letter for letter in question.options if letter != question.answer)
        answers[f"mmad:{question.id}"] = question.answer if _lucky(question.id, right) else wrong
    for record in inputs.records:
        truth = record["messages"][1]["content"]
        other = next((k for k in (record["choices"] or {}) if k != truth), "[0, 0, 0.01, 0.01]")
        answers[ddqa_id(record)] = truth if _lucky(ddqa_id(record), right) else other
    return answers


@pytest.fixture(scope="module")
def site(tmp_path_factory, demo_benchmark, small_ddqa, demo_organised) -> Path:
    root = tmp_path_factory.mktemp("report")
    settings = config(EvalConfig, "evaluate", bootstrap={"samples": 100, "seed": 0})
    inputs = EvalInputs.load(demo_benchmark, small_ddqa / "test.jsonl", settings)
    for model, right in (("base", 4), ("tuned", 2)):  # the fine-tuned model right twice as often
        metrics = root / "metrics" if model == "tuned" else root / "metrics" / "base"
        write_outputs(inputs, _answers(inputs, right), metrics, root / "predictions" / model, settings)
    compare(root / "predictions" / "base", root / "predictions" / "tuned", small_ddqa / "test.jsonl",
            root / "compare.json", root / "compare_scores.json", BootstrapSettings.parse({"samples": 100, "seed": 0},
                                                                                        "b"))
    curves = root / "train" / "plots" / "metrics"
    curves.mkdir(parents=True)
    (curves / "loss.tsv").write_text("step\tloss\n0\t5.0\n10\t2.0\n20\t0.7\n")
    (curves / "learning_rate.tsv").write_text("step\tlearning_rate\n0\t0.001\n10\t0.0005\n20\t0.0\n")
    build_report(Inputs(small_ddqa, demo_organised.parent, small_ddqa.parent / "counts.json", demo_benchmark,
                        root / "predictions", root / "metrics" / "base", root / "metrics", root / "compare_scores.json",
                        root / "train"), root / "reports")
    return root


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield launched
        launched.close()


def _open(browser, path: Path, shot: str | None = None):
    """The page at ``path``, with every console error and every request that is not a local file."""
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    page, errors, outside = context.new_page(), [], []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def guard(route):
        if route.request.url.startswith("file://"):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    context.route("**/*", guard)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    if shot and os.environ.get("EIAD_REPORT_SHOTS"):  # screenshots for a person to look at
        page.screenshot(path=str(Path(os.environ["EIAD_REPORT_SHOTS"]) / shot), full_page=True)
    return context, page, errors, outside


def test_the_summary_page_opens_offline_with_both_models(site, browser):
    context, page, errors, outside = _open(browser, site / "reports" / "index.html", "index.png")
    assert errors == [] and outside == []
    heads = page.locator("table").first.locator("th").all_inner_texts()
    assert heads == ["", "base", "fine-tuned", "fine-tuned - base"]
    assert page.locator("img[alt='mmad chart']").evaluate("image => image.naturalWidth") > 0
    assert "Overkill" in page.content() and "Miss" in page.content()
    context.close()
    assert (site / "reports" / "index.html").stat().st_size < 2_000_000


def test_the_gallery_shows_every_task_with_its_overlay(site, browser):
    context, page, errors, outside = _open(browser, site / "reports" / "gallery.html", "gallery.png")
    assert errors == [] and outside == []
    samples = page.locator("[data-sample]")
    assert samples.count() >= 4
    loaded = samples.locator("img[alt^='annotated']").evaluate_all("images => images.map(i => i.naturalWidth)")
    assert loaded and all(width > 0 for width in loaded)
    tasks = set(page.locator(".records td:first-child").all_inner_texts())
    assert tasks == {"AD", "DC", "RDL", "DFM"}
    context.close()


def test_the_answers_page_lists_the_fixture_wrong_answers(site, browser):
    answers = json.loads((site / "predictions" / "tuned" / "mmad_answers.json").read_text())
    first_type = min({row["question_type"] for row in answers})
    wrong = [row for row in answers if row["question_type"] == first_type and row["gpt_answer"] != row["correct_answer"]]
    context, page, errors, outside = _open(browser, site / "reports" / "errors.html", "errors.png")
    page.wait_for_selector("[data-row]")
    page.select_option("#kind", slug(f"MMAD {first_type}"))
    page.wait_for_function(f"document.getElementById('count').textContent === '{len(wrong)} questions'")
    assert errors == [] and outside == []
    assert page.locator("[data-row]").count() == min(50, len(wrong))
    assert wrong[0]["model_output"] in page.locator("[data-row]").first.inner_text()
    page.select_option("#set", "gained")  # right now, wrong before
    gained = [a for b, a in zip(json.loads((site / "predictions" / "base" / "mmad_answers.json").read_text()), answers)
              if a["question_type"] == first_type and a["gpt_answer"] == a["correct_answer"] != b["gpt_answer"]]
    assert page.locator("#count").inner_text() == f"{len(gained)} questions"
    context.close()


def test_the_summary_markdown_has_the_intervals_and_a_chart_github_draws(site):
    summary = (site / "reports" / "summary.md").read_text()
    assert "```mermaid\nxychart-beta" in summary and "| Average |" in summary and "[" in summary


def test_thumbnails_are_made_once_per_image(site):
    thumbs = list((site / "reports" / "thumbs").iterdir())
    assert len(thumbs) == len({p.name for p in thumbs})
    assert shutil.disk_usage(site).free > 0 and all(p.stat().st_size < 40_000 for p in thumbs)
