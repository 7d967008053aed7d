"""The evaluation run: checks before the model, the answer cache and resuming after kill -9,
images dealt to two processes, intervals and the paired comparison."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import PARAMS, REPO, TINY, config, model_handle, params
from dvc_project import tree_bytes

from eiad.errors import DataError
from eiad.evaluation.compare import compare
from eiad.evaluation.config import EvalConfig
from eiad.evaluation.runner import run_evaluation
from eiad.launch import free_port
from eiad.stats import BootstrapSettings

FAST = {"batch_size": 4,  # small groups: a run has many, to kill between and deal to ranks
        "max_new_tokens": 3, "max_new_tokens_box": 6, "bootstrap": {"samples": 200, "seed": 0}}


@pytest.fixture(scope="module")
def few(tmp_path_factory, demo_benchmark, small_ddqa) -> tuple[Path, Path]:
    """The demo benchmark cut to 6 images (normal and defective) and the DDQA test split to 5 images' records."""
    root = tmp_path_factory.mktemp("few")
    shutil.copytree(demo_benchmark, root / "benchmark")
    entries = json.loads((demo_benchmark / "mmad.json").read_text())
    keys = [key for key in entries if "good" in key][:2] + [key for key in entries if "good" not in key][:4]
    (root / "benchmark" / "mmad.json").write_text(json.dumps({key: entries[key] for key in keys}))
    records = [json.loads(line) for line in (small_ddqa / "test.jsonl").read_text().splitlines()]
    images = list(dict.fromkeys(r["images"][0] for r in records if r["defect"] != "OK"))[:3] + list(
        dict.fromkeys(r["images"][0] for r in records if r["defect"] == "OK"))[:2]
    (root / "ddqa").mkdir()
    (root / "ddqa" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records if r["images"][0] in images))
    return root / "benchmark", root / "ddqa"


def _evaluate(tiny_model, benchmark, ddqa, out: Path, **changes):
    settings = config(EvalConfig, "evaluate", **{**FAST, **changes})
    return run_evaluation(model_handle(), tiny_model, benchmark, ddqa / "test.jsonl", out / "metrics",
                          out / "predictions", out / "cache", settings)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_model, few):
    out = tmp_path_factory.mktemp("evaluated")
    return out, _evaluate(tiny_model, *few, out, protocol="mmad-1shot")


def test_outputs_record_what_was_asked_and_both_scores(evaluated):
    out, scores = evaluated
    rows = json.loads((out / "predictions" / "mmad_answers.json").read_text())
    mmad = json.loads((out / "metrics" / "mmad_scores.json").read_text())
    assert len(rows) == mmad["questions"] and mmad["protocol"] == "mmad-1shot"
    first = rows[0]["prompt"]
    assert [list(part) for part in first] == [["image"], ["image"], ["text"]]  # template, query, text
    assert first[1]["image"] == rows[0]["image"] and "Question 1: " in first[2]["text"]
    assert any("Question 2: " in row["prompt"][-1]["text"] for row in rows)
    headline = json.loads((out / "metrics" / "mmad.json").read_text())
    assert headline["average"] == mmad["average"]["Average"] and headline["low"] <= headline["average"] <= headline["high"]
    assert headline["mmad_script"] == mmad["mmad_script"]["average"]["Average"]
    ddqa = json.loads((out / "metrics" / "ddqa.json").read_text())
    assert set(ddqa) == {"AD", "DC", "RDL", "DFM"} and scores["ddqa"]["AD"]["intervals"]["accuracy"][0] >= 0


def test_a_finished_run_is_read_back_from_its_cache_without_loading_the_model(evaluated, tiny_model, few,
                                                                              monkeypatch):
    out, _ = evaluated
    before = {name: tree_bytes(out / name) for name in ("metrics", "predictions")}
    from eiad.models.config import ModelHandle

    monkeypatch.setattr(ModelHandle, "model", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    _evaluate(tiny_model, *few, out, protocol="mmad-1shot")
    assert {name: tree_bytes(out / name) for name in ("metrics", "predictions")} == before


def test_another_setting_clears_the_cache(evaluated, tiny_model, few, tmp_path):
    out, _ = evaluated
    cache = tmp_path / "cache"
    shutil.copytree(out / "cache", cache)
    settings = config(EvalConfig, "evaluate", **{**FAST, "protocol": "eiad-0shot"})
    benchmark, ddqa = few
    run_evaluation(model_handle(), tiny_model, benchmark, ddqa / "test.jsonl", tmp_path / "m", tmp_path / "p", cache,
                   settings)
    header = json.loads((cache / "answers.rank0.jsonl").read_text().splitlines()[0])["run"]
    assert '"protocol": "eiad-0shot"' in header
    rows = json.loads((tmp_path / "p" / "mmad_answers.json").read_text())
    assert [list(part) for part in rows[0]["prompt"]] == [["image"], ["text"]]


def test_another_version_of_the_code_keys_another_cache(tiny_model, few, tmp_path, monkeypatch):
    """Answers cached by other code are not reused (a changed engine may answer otherwise); bytecode is ignored."""
    from eiad.evaluation import runner

    code = tmp_path / "eiad"
    (code / "evaluation").mkdir(parents=True)
    source = code / "evaluation" / "engine.py"
    source.write_text("ANSWER = 1\n")
    monkeypatch.setattr(runner, "PACKAGE", code)
    benchmark, ddqa = few
    settings = config(EvalConfig, "evaluate", **FAST)
    inputs = runner.Inputs.load(benchmark, ddqa / "test.jsonl", settings)
    key = lambda: runner.run_key(tiny_model, inputs, ddqa / "test.jsonl", settings)
    first = key()
    (code / "evaluation" / "engine.cpython-311.pyc").write_bytes(b"compiled")
    assert key() == first
    source.write_text("ANSWER = 2\n")
    assert key() != first


def test_bad_inputs_stop_before_the_model_loads(demo_benchmark, small_ddqa, tmp_path):
    no_model = tmp_path / "no-model"  # loading it would fail: the input checks must come first
    for changes, message in (({"protocol": "mmad-1shot", "domain_knowledge": True}, "domain_knowledge.json: missing"),
                             ({"protocol": "mmad-1shot", "template_count": 99}, "asks for 99 random template")):
        with pytest.raises(DataError, match=message):
            run_evaluation(model_handle(), no_model, demo_benchmark, small_ddqa / "test.jsonl", tmp_path / "m",
                           tmp_path / "p", tmp_path / "c", config(EvalConfig, "evaluate", **changes))
    assert not (tmp_path / "m").exists()


def test_intervals_are_seeded_and_a_model_against_itself_differs_by_nothing(evaluated, few, tmp_path):
    out, _ = evaluated
    ddqa = few[1]
    predictions = out / "predictions"
    bootstrap = BootstrapSettings.parse({"samples": 300, "seed": 1}, "evaluate.bootstrap")
    first = compare(predictions, predictions, ddqa / "test.jsonl", tmp_path / "a.json", tmp_path / "b.json",
                    bootstrap)
    again = compare(predictions, predictions, ddqa / "test.jsonl", tmp_path / "c.json", tmp_path / "d.json",
                    bootstrap)
    assert first == again
    assert first["mmad"]["Average"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    assert first["mmad"]["tuned_only"] == first["mmad"]["base_only"] == 0
    assert all(task["difference"] == 0 for task in first["ddqa"].values())


# --- the stage as DVC runs it ----------------------------------------------------------------------


def _stage_files(root: Path, tiny_model: Path, benchmark: Path, ddqa: Path, **evaluate) -> list[str]:
    params_file = root / "params.yaml"
    model = {**params("model"), "tiny": TINY}
    params_file.write_text(yaml.safe_dump({**PARAMS, "model": model, "evaluate": {**params("evaluate"), **FAST,
                                                                                   **evaluate}}))
    return ["--model", str(tiny_model), "--benchmark", str(benchmark), "--ddqa-test", str(ddqa / "test.jsonl"),
            "--metrics", str(root / "metrics"), "--predictions",
            str(root / "predictions"), "--cache", str(root / "cache"), "--params", str(params_file)]


def _run_stage(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(REPO / "stages" / "evaluate.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _answered(cache: Path) -> int:
    return sum(max(0, len(path.read_text().splitlines()) - 1) for path in cache.glob("answers.rank*.jsonl"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model, few):
    root = tmp_path_factory.mktemp("uninterrupted")
    done = _run_stage(_stage_files(root, tiny_model, *few))
    output, _ = done.communicate()
    assert done.returncode == 0, output
    return root


@pytest.mark.slow
def test_kill_9_at_three_moments_then_a_rerun_gives_the_uninterrupted_outputs(uninterrupted, tiny_model, few, tmp_path):
    args = _stage_files(tmp_path, tiny_model, *few)
    total = _answered(uninterrupted / "cache")
    seen = [0]
    for fraction in (0.15, 0.45, 0.75):  # moments: answers on disk when the process is killed
        running = _run_stage(args)
        # a group of the tiny model's questions takes milliseconds: look often, and wait for this run's own answers
        while _answered(tmp_path / "cache") < max(fraction * total, seen[-1] + 1) and running.poll() is None:
            time.sleep(0.002)
        running.send_signal(signal.SIGKILL)
        running.wait()
        seen.append(_answered(tmp_path / "cache"))
    finish = _run_stage(args)
    output, _ = finish.communicate()
    assert finish.returncode == 0, output
    assert seen[0] < seen[1] < seen[2] < seen[3] < total, seen  # each run went on from the last, none finished
    for name in ("metrics", "predictions"):
        assert tree_bytes(tmp_path / name) == tree_bytes(uninterrupted / name), name


@pytest.mark.slow
def test_two_processes_give_the_one_process_outputs_byte_for_byte(uninterrupted, tiny_model, few, tmp_path):
    launch = {**params("evaluate.launch"), "gpus_per_node": 2, "master_port": free_port()}
    sharded = _run_stage(_stage_files(tmp_path, tiny_model, *few, launch=launch))
    output, _ = sharded.communicate()
    assert sharded.returncode == 0, output
    assert sorted(path.name for path in (tmp_path / "cache").glob("answers.rank*.jsonl")) == [
        "answers.rank0.jsonl", "answers.rank1.jsonl"]  # both ranks answered part of the images
    for name in ("metrics", "predictions"):
        assert tree_bytes(tmp_path / name) == tree_bytes(uninterrupted / name), name


@pytest.mark.parametrize("protocol", ["mmad-1shot", "mmad-0shot"])
def test_engine_answers_equal_asking_each_question_from_scratch_on_qwen2_vl(tiny_model, few, protocol):
    """The demo's family: MMAD questions (a shared prefix) and DDQA records (two budgets per image)."""
    from eiad.benchmark.mmad import by_image, load_benchmark
    from eiad.benchmark.protocols import PROTOCOLS, Asking, plan
    from eiad.data.images import load_rgb
    from eiad.ddqa.records import record_plan
    from eiad.evaluation.engine import Ask, Engine
    from eiad.questions import load_prompt

    handle = model_handle()
    processor, network = handle.processor(tiny_model), handle.model(tiny_model).eval()
    engine = Engine(handle, network, processor, "generate", 32)
    benchmark, ddqa = few
    asking = Asking(PROTOCOLS[protocol], "random", 1, "minicpm", False, None)
    load = lambda path: load_rgb(benchmark / path)
    asks = [[Ask(plan(q, asking), 5, q.options) for q in group] for group in by_image(load_benchmark(benchmark))]
    assert len(asks) > 1  # every image's questions continue together from their own prefixes
    for image, answers in zip(asks, engine.answer_all(asks, load)):
        assert answers == [handle.adapter.generate(network, processor, [load_prompt(a.plan, load)], 5)[0]
                           for a in image]
    records = [json.loads(line) for line in (ddqa / "test.jsonl").read_text().splitlines()]
    image = records[0]["images"][0]
    mine = [r for r in records if r["images"][0] == image]
    plans = [record_plan(r) for r in mine]
    budgets = [12 if r["task"] == "DFM" else 4 for r in mine]
    disk = lambda path: load_rgb(Path(path))
    answers = engine.answer_all([[Ask(p, b, r["choices"]) for p, b, r in zip(plans, budgets, mine)]], disk)[0]
    assert answers == [handle.adapter.generate(network, processor, [load_prompt(p, disk)], b)[0]
                       for p, b in zip(plans, budgets)]


def test_the_mmad_style_anchor_answers_as_the_pipeline_asks_from_scratch(tiny_model, few):
    """The speed anchor (the processor's own template and call, stock loading) asks the same questions:
    its answers equal the from-scratch ones question by question, so its speed is a like-for-like anchor."""
    from transformers import AutoModelForImageTextToText

    from eiad.benchmark.mmad import load_benchmark
    from eiad.benchmark.protocols import PROTOCOLS, Asking, plan
    from eiad.data.images import load_rgb
    from eiad.evaluation.anchor import ask_as_mmad
    from eiad.questions import load_prompt

    handle = model_handle()
    processor, network = handle.processor(tiny_model), handle.model(tiny_model).eval()
    stock = AutoModelForImageTextToText.from_pretrained(tiny_model).eval()
    benchmark, _ = few
    asking = Asking(PROTOCOLS["mmad-1shot"], "random", 1, "minicpm", False, None)
    prompts = [load_prompt(plan(q, asking), lambda path: load_rgb(benchmark / path))
               for q in load_benchmark(benchmark)][:6]
    assert [ask_as_mmad(handle.adapter, stock, processor, prompt, 5) for prompt in prompts] == \
        [handle.adapter.generate(network, processor, [prompt], 5)[0] for prompt in prompts]
