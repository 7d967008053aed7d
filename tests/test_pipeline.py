"""The DVC project end to end at reduced size: repro, no-op repro, targeted re-runs, remote round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SMALL_BENCHMARK, SMALL_FETCH, TINY
from dvc_project import commit_all, make_project, run, set_param, stages_run, tree_bytes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A fresh git + DVC project holding the repository's tracked files, at reduced size."""
    root = make_project(tmp_path_factory.mktemp("project") / "repo")
    set_param(root, "sources.demo.fetch", SMALL_FETCH)
    set_param(root, "benchmark.demo", SMALL_BENCHMARK)
    set_param(root, "ddqa.test_ratio", 0.3)
    set_param(root, "model.tiny", TINY)
    set_param(root, "train.max_steps", 4)
    set_param(root, "train.per_device_batch", 4)
    set_param(root, "evaluate.max_new_tokens_box", 8)
    commit_all(root, "initial")
    return root


def test_repro_then_nothing_to_do(project):
    first = run("dvc", "repro", cwd=project)
    assert set(stages_run(first)) == {"fetch@demo", "organise@demo", "fetch_benchmark", "build_ddqa", "fetch_model",
                                      "train_lora", "merge", "evaluate@base", "evaluate@tuned", "compare", "report"}
    assert (project / "data/ddqa/train.jsonl").stat().st_size > 0
    assert (project / "data/organised/demo/manifest.jsonl").is_file()
    assert (project / "data/benchmark/mmad.json").is_file()
    for folder in ("metrics", "metrics/base"):
        mmad = json.loads((project / folder / "mmad_scores.json").read_text())
        assert set(mmad["average"]) >= {"Anomaly Detection", "Defect Classification", "Defect Localization",
                                        "Object Classification", "Average"}
        headline = json.loads((project / folder / "mmad.json").read_text())
        assert set(headline) >= {"average", "low", "high", "mmad_script", "AD", "DC", "DL", "OC"}
        assert set(json.loads((project / folder / "ddqa.json").read_text())) == {"AD", "DC", "RDL", "DFM"}
    compared = json.loads((project / "metrics" / "compare.json").read_text())
    assert set(compared) == {"average", "low", "high", "tuned_only", "base_only"}
    answers = json.loads((project / "data/predictions/tuned/mmad_answers.json").read_text())
    assert {"image", "question", "question_type", "correct_answer", "gpt_answer"} <= set(answers[0])
    shown = run("dvc", "metrics", "show", cwd=project)
    assert "metrics/base/mmad.json" in shown and "metrics/mmad.json" in shown
    assert stages_run(run("dvc", "repro", cwd=project)) == []
    assert "up to date" in run("dvc", "status", cwd=project)


def test_editing_code_evaluate_runs_marks_only_the_stages_that_run_it(project):
    """An edit of MMAD's scoring must re-run both evaluations, and nothing upstream of them."""
    scoring = project / "eiad" / "benchmark" / "scoring.py"
    original = scoring.read_text()
    scoring.write_text(original + "\n# a deliberate edit\n")
    try:
        status = run("dvc", "status", cwd=project)
    finally:
        scoring.write_text(original)
    changed = {line.strip().rstrip(":") for line in status.splitlines() if line and not line.startswith("\t")}
    assert changed == {"evaluate@base", "evaluate@tuned", "compare", "report"}, status
    assert "up to date" in run("dvc", "status", cwd=project)


def test_one_param_reruns_only_its_stage(project):
    set_param(project, "train.learning_rate", 0.002)
    assert stages_run(run("dvc", "repro", cwd=project)) == ["train_lora", "merge", "evaluate@tuned", "compare",
                                                          "report"]
    set_param(project, "ddqa.seed", 7)  # new options: every later stage would be affected
    assert stages_run(run("dvc", "repro", "build_ddqa", cwd=project)) == ["build_ddqa"]
    set_param(project, "ddqa.seed", 0)  # back: DVC's run cache restores the outputs, nothing runs
    assert stages_run(run("dvc", "repro", cwd=project)) == []
    set_param(project, "benchmark.demo.normal_per_product", 3)
    assert set(stages_run(run("dvc", "repro", cwd=project))) == {"fetch_benchmark", "evaluate@base", "evaluate@tuned",
                                                                 "compare", "report"}
    set_param(project, "sources.demo.organise.on_bad_sample", "skip")
    assert stages_run(run("dvc", "repro", cwd=project)) == ["organise@demo"]  # same output: ddqa stays
    run("git", "add", "-A", cwd=project)
    run("git", "commit", "-qm", "params", cwd=project)


def test_remote_round_trip(project, tmp_path):
    run("dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"), cwd=project)
    run("dvc", "push", cwd=project)
    run("git", "add", "-A", cwd=project)
    run("git", "commit", "-qm", "remote", cwd=project)
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(project), str(clone), cwd=tmp_path)
    run("dvc", "pull", cwd=clone)
    assert "up to date" in run("dvc", "status", cwd=clone)
    for folder in ("data/raw/demo", "data/organised/demo", "data/ddqa", "data/benchmark", "models/base",
                   "models/adapter", "models/merged", "data/predictions/tuned"):
        assert tree_bytes(clone / folder) == tree_bytes(project / folder), folder
    assert stages_run(run("dvc", "repro", cwd=clone)) == []
