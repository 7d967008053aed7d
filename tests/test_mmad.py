import json

import pytest

from eiad.benchmark.mmad import check_files, load_benchmark
from eiad.benchmark.parsing import parse_answer
from eiad.benchmark.scoring import Scored, mmad_script_table, summarise
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


def test_eiad_keeps_the_first_letter_and_mmad_the_last():
    assert parse_answer("A, not C", FOUR, keep="first") == ("A", "letter")
    assert parse_answer("A, not C", FOUR, keep="last") == ("C", "letter")


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
    with pytest.raises(DataError, match="letters A, B, ... .at most E., in order"):
        load_benchmark(_write(tmp_path, {"a.png": {"conversation": [{**bad_answer, "Answer": "A",
                                                                      "Options": {"B": "x", "A": "y"}}]}}))
    with pytest.raises(DataError, match=r"lacks \['type'\]"):
        load_benchmark(_write(tmp_path, {"a.png": {"conversation": [{"Question": "q", "Answer": "A",
                                                                      "Options": YES_NO}]}}))


def test_missing_images_are_reported(demo_benchmark, tmp_path):
    questions = load_benchmark(demo_benchmark)
    check_files(demo_benchmark, questions, 1, "random")
    data = json.loads((demo_benchmark / "mmad.json").read_text())
    copy = _write(tmp_path, data)
    with pytest.raises(DataError, match=r"image\(s\) referenced by mmad.json are missing: Demo/"):
        check_files(copy, load_benchmark(copy), 0, "random")


def test_too_few_templates_is_an_error_naming_the_images(demo_benchmark):
    questions = load_benchmark(demo_benchmark)
    available = min(len(q.random_templates) for q in questions)
    check_files(demo_benchmark, questions, available, "random")
    with pytest.raises(DataError, match=rf"asks for {available + 1} random template.s. per image but \d+ image"):
        check_files(demo_benchmark, questions, available + 1, "random")


def _script_by_its_documented_rules(answers):
    """MMAD's summary.py from its documented behaviour, written without list surgery: an answer
    whose gpt_answer (or correct_answer) is not a letter A-E is dropped and so is the entry after
    it; every type seen is a column of every dataset (0 where absent); a missing AD side counts 0."""
    merged = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
    kinds, datasets, kept, skip = [], [], [], False
    for answer in answers:
        kind = merged.get(answer["question_type"], answer["question_type"])
        kinds += [kind] if kind not in kinds else []
        dataset = answer["image"].split("/")[0]
        datasets += [dataset] if dataset not in datasets else []
    for answer in answers:
        if skip:
            skip = False
            continue
        if answer["gpt_answer"] not in "ABCDE" or answer["gpt_answer"] == "" or answer["correct_answer"] not in "ABCDE":
            skip = True
            continue
        kept.append(answer)
    table = {}
    for dataset in datasets:
        row = {}
        for kind in kinds:
            mine = [a for a in kept if a["image"].startswith(dataset + "/")
                    and merged.get(a["question_type"], a["question_type"]) == kind]
            if kind == "Anomaly Detection":
                sides = [[a for a in mine if ("good" in a["image"]) == normal] for normal in (True, False)]
                accuracies = [sum(a["gpt_answer"] == a["correct_answer"] for a in side) / len(side) if side else 0
                              for side in sides]
                row[kind] = 100 * sum(accuracies) / 2
            else:
                row[kind] = 100 * sum(a["gpt_answer"] == a["correct_answer"] for a in mine) / len(mine) if mine else 0
        table[dataset] = sum(row.values()) / len(row)
    return sum(table.values()) / len(table)


def test_mmad_script_figure_follows_its_summary_including_dropped_and_skipped_answers():
    rows = [
        ("X/a/test/good/1.png", "Anomaly Detection", "B", "B"),
        ("X/a/test/good/1.png", "Object Structure", "A", ""),  # empty: dropped, and the next one skipped
        ("X/a/test/good/1.png", "Object Details", "A", "C"),  # skipped although wrong
        ("X/a/test/cut/1.png", "Anomaly Detection", "A", "I think so"),  # not a letter: dropped ...
        ("X/a/test/cut/1.png", "Defect Classification", "C", "C"),  # ... and this right one skipped
        ("X/a/test/cut/1.png", "Defect Localization", "D", "D"),
        ("X/a/test/cut/2.png", "Anomaly Detection", "A", "F"),  # out of range
        ("X/a/test/cut/2.png", "Defect Classification", "B", "A"),
        ("Y/b/test/good/1.png", "Anomaly Detection", "B", "B"),  # Y: only the normal side of AD
        ("Y/b/test/good/1.png", "Object Classification", "A", "A"),
    ]
    answers = [{"image": i, "question": "q", "question_type": t, "correct_answer": c, "gpt_answer": g}
               for i, t, c, g in rows]
    ours = mmad_script_table(answers)
    assert ours["average"]["Average"] == round(_script_by_its_documented_rules(answers), 2)
    # the script's missing cells are zeros: Y has no DC or DL, X has no OC, and Y's AD lacks its defective side
    assert ours["per_dataset"]["Y"]["Defect Classification"] == 0.0 and ours["per_dataset"]["Y"]["Anomaly Detection"] == 50.0
    # ours counts every question (an unparseable answer is wrong) and has no cells a dataset lacks
    scored = [Scored(a["image"], {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}.get(
        a["question_type"], a["question_type"]), a["gpt_answer"] == a["correct_answer"]) for a in answers]
    table = summarise(scored)
    assert "Defect Classification" not in table["per_dataset"]["Y"]
    assert table["per_dataset"]["X"]["Defect Classification"] == 50.0  # both DC answers count here
    assert table["average"]["Average"] != ours["average"]["Average"]
