import json

import pytest
from conftest import config

from eiad.benchmark.mmad import check_files, load_benchmark
from eiad.benchmark.parsing import parse_answer
from eiad.benchmark.prompts import INSTRUCTION, build_prompt
from eiad.benchmark.scoring import Scored, summarise
from eiad.errors import DataError

YES_NO = {"A": "Yes", "B": "No"}
FOUR = {"A": "scratch", "B": "hole", "C": "crack", "D": "stain"}


@pytest.mark.parametrize(
    ("output", "options", "expected"),
    [
        ("B", YES_NO, ("B", "letter")),
        ("The answer is B.", YES_NO, ("B", "letter")),
        ("A or B? I choose C", FOUR, ("C", "letter")),  # several letters: MMAD keeps the last
        ("E", {**FOUR, "E": "dent"}, ("E", "letter")),
        ("(D)", FOUR, ("D", "letter")),
        ("b. no", YES_NO, ("B", "fuzzy")),  # lower case is no letter to MMAD's regex: closest text wins
        ("crack!", FOUR, ("C", "fuzzy")),
        ("ABCD stain", FOUR, ("D", "fuzzy")),  # no standalone letter inside a word
        ("", FOUR, (None, "unparsed")),
        ("   ", FOUR, (None, "unparsed")),
        ("something", {}, (None, "unparsed")),
    ],
)
def test_parse_answer(output, options, expected):
    assert parse_answer(output, options) == expected


def test_summary_matches_hand_computed_values():
    rows = [
        # dataset X: AD normal 1/2 right, anomalous 2/2 right -> balanced (50 + 100) / 2 = 75
        Scored("X/a/test/good/1.png", "Anomaly Detection", True),
        Scored("X/a/test/good/2.png", "Anomaly Detection", False),
        Scored("X/a/test/cut/1.png", "Anomaly Detection", True),
        Scored("X/a/test/cut/2.png", "Anomaly Detection", True),
        Scored("X/a/test/cut/1.png", "Defect Classification", True),
        Scored("X/a/test/cut/2.png", "Defect Classification", False),  # DC 50
        Scored("X/a/test/cut/1.png", "Object Analysis", True),  # OA 100
        # dataset Y (one question type only): AD anomalous 0/1, normal 1/1 -> 50; OC 100
        Scored("Y/b/test/good/1.png", "Anomaly Detection", True),
        Scored("Y/b/test/bad/1.png", "Anomaly Detection", False),
        Scored("Y/b/test/bad/1.png", "Object Classification", True),
        Scored("Y/b/test/bad/1.png", "Object Classification", True),
        Scored("Y/b/test/bad/1.png", "Object Classification", True),
    ]
    table = summarise(rows)
    x, y = table["per_dataset"]["X"], table["per_dataset"]["Y"]
    assert x == {"Anomaly Detection": 75.0, "Defect Classification": 50.0, "Object Analysis": 100.0,
                 "Average": 75.0, "Overkill": 50.0, "Miss": 0.0}
    assert y == {"Anomaly Detection": 50.0, "Object Classification": 100.0, "Average": 75.0,
                 "Overkill": 0.0, "Miss": 100.0}
    average = table["average"]
    assert average["Anomaly Detection"] == 62.5  # unweighted over datasets, not over questions
    assert average["Defect Classification"] == 50.0 and average["Object Classification"] == 100.0
    assert average["Average"] == 75.0 and average["Miss"] == 50.0 and average["Overkill"] == 25.0


def _write(tmp_path, data):
    (tmp_path / "mmad.json").write_text(json.dumps(data))
    return tmp_path


def test_schema_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="mmad.json: missing"):
        load_benchmark(tmp_path)
    with pytest.raises(DataError, match="non-empty object"):
        load_benchmark(_write(tmp_path, []))
    with pytest.raises(DataError, match="'conversation'"):
        load_benchmark(_write(tmp_path, {"a.png": {"image_path": "a.png"}}))
    bad_answer = {"Question": "q", "Answer": "C", "Options": YES_NO, "type": "Anomaly Detection"}
    with pytest.raises(DataError, match="answer 'C' is not one of the options"):
        load_benchmark(_write(tmp_path, {"a.png": {"conversation": [bad_answer]}}))
    with pytest.raises(DataError, match=r"lacks \['type'\]"):
        load_benchmark(_write(tmp_path, {"a.png": {"conversation": [{"Question": "q", "Answer": "A",
                                                                      "Options": YES_NO}]}}))


def test_missing_images_are_reported(demo_benchmark, tmp_path):
    questions = load_benchmark(demo_benchmark)
    check_files(demo_benchmark, questions, True, "random")
    data = json.loads((demo_benchmark / "mmad.json").read_text())
    copy = _write(tmp_path, data)
    with pytest.raises(DataError, match=r"image\(s\) referenced by mmad.json are missing: Demo/"):
        check_files(copy, load_benchmark(copy), False, "random")


def test_prompts_for_both_protocols(demo_benchmark):
    question = load_benchmark(demo_benchmark)[0]
    zero = build_prompt(demo_benchmark, question, "0-shot")
    assert len(zero) == 2 and not isinstance(zero[0], str)
    assert zero[1].startswith(question.text) and zero[1].endswith("Answer with the option's letter from the given "
                                                                  "choices directly.")
    one = build_prompt(demo_benchmark, question, "1-shot", "similar")
    assert [isinstance(part, str) for part in one] == [False, False, True]
    assert one[2].startswith(INSTRUCTION) and f"Question 1: {question.text} \n" in one[2]
    assert "A. " in one[2]


def test_evaluate_mmad_with_a_perfect_model_in_one_shot(demo_benchmark):
    from eiad.evaluation.runner import EvalConfig, evaluate_mmad

    expected = iter(q.answer for q in load_benchmark(demo_benchmark))  # asked in this order
    shown = []

    def ask(prompts, max_new_tokens):
        shown.extend(prompts)
        return [f"The answer is {next(expected)}." for _ in prompts]

    metrics, answers = evaluate_mmad(ask, demo_benchmark, config(EvalConfig, "evaluate", protocol="1-shot", batch_size=5))
    assert metrics["average"]["Average"] == 100.0 and metrics["parse"]["letter"] == metrics["questions"]
    assert all(sum(not isinstance(part, str) for part in prompt) == 2 for prompt in shown)
    assert {a["gpt_answer"] for a in answers} <= set("ABCDE") and len(answers) == metrics["questions"]


def test_evaluate_ddqa_scores_a_perfect_and_a_silent_model(small_ddqa):
    from eiad.evaluation.runner import EvalConfig, evaluate_ddqa
    from eiad.io import read_jsonl

    records = sorted(read_jsonl(small_ddqa / "test.jsonl"), key=lambda r: r["task"])  # asked task by task
    truth = iter(r["messages"][1]["content"] for r in records)
    perfect, _ = evaluate_ddqa(lambda prompts, n: [next(truth) for _ in prompts], small_ddqa / "test.jsonl",
                               config(EvalConfig, "evaluate", batch_size=7))
    assert perfect["AD"]["balanced_accuracy"] == 100.0 and perfect["DC"]["accuracy"] == 100.0
    assert perfect["DFM"] == {**perfect["DFM"], "parse_rate": 100.0, "mean_iou": 1.0, "iou_ge_0_5": 100.0}
    silent, rows = evaluate_ddqa(lambda prompts, n: ["" for _ in prompts], small_ddqa / "test.jsonl", config(EvalConfig, "evaluate"))
    assert silent["AD"]["accuracy"] == 0.0 and silent["AD"]["unparsed"] == silent["AD"]["n"]
    assert silent["DFM"]["parse_rate"] == 0.0 and all(row["output"] == "" for row in rows)
