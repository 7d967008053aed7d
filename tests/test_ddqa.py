import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import config, label_components
from PIL import Image

from eiad.data.images import encode_mask_png
from eiad.data.layout import Sample
from eiad.ddqa.build import DDQAConfig, build_ddqa, build_records, split_test_groups
from eiad.errors import ConfigError
from eiad.questions import ANSWER_INSTRUCTION, readable

GRID = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
MIN_AREA = 0.0005


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_samples):
    out = tmp_path_factory.mktemp("ddqa")
    counts = build_ddqa(demo_samples, out / "ddqa", out / "counts.json", config(DDQAConfig, "ddqa", dfm_min_area=MIN_AREA, test_ratio=0.2, wording="eiad"))
    return out, counts


def _records(samples, ddqa_config):
    """Every record by split and task, and the skipped counts."""
    skipped = Counter()
    records = {"train": {}, "test": {}}
    for split, task, record in build_records(samples, ddqa_config, skipped):
        records[split].setdefault(task, []).append(record)
    return records, skipped


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _answer_text(record):
    return record["choices"][record["messages"][1]["content"]]


def _expected_from_mask(mask_path: str):
    """Cell and boxes recomputed from the mask with a plain flood fill, not eiad.masks."""
    mask = (np.asarray(Image.open(mask_path)) > 127).tolist()
    height, width = len(mask), len(mask[0])
    components = sorted(label_components(mask), key=lambda c: (-len(c), min(r for r, _ in c), min(c_ for _, c_ in c)))
    largest = components[0]
    cx = sum(c + 0.5 for _, c in largest) / len(largest)
    cy = sum(r + 0.5 for r, _ in largest) / len(largest)
    cell = GRID[3 * min(int(3 * cy / height), 2) + min(int(3 * cx / width), 2)]
    kept = [c for c in components if len(c) >= MIN_AREA * width * height] or [largest]
    boxes = sorted(
        (min(c_ for _, c_ in c), min(r for r, _ in c), max(c_ for _, c_ in c) + 1, max(r for r, _ in c) + 1)
        for c in kept
    )
    boxes.sort(key=lambda b: (b[1], b[0], b[3], b[2]))
    return cell, [[round(v, 3) for v in (x1 / width, y1 / height, x2 / width, y2 / height)] for x1, y1, x2, y2 in boxes]


def test_outputs_and_record_format(built):
    out, counts = built
    names = sorted(p.relative_to(out / "ddqa").as_posix() for p in (out / "ddqa").rglob("*.jsonl"))
    assert names == ["Task_AD.jsonl", "Task_DC.jsonl", "Task_DFM.jsonl", "Task_RDL.jsonl", "test.jsonl",
                     "test/Task_AD.jsonl", "test/Task_DC.jsonl", "test/Task_DFM.jsonl", "test/Task_RDL.jsonl",
                     "train.jsonl"]
    train = _rows(out / "ddqa" / "train.jsonl")
    assert len(train) == sum(counts["records"]["train"].values())
    assert train == [r for t in ("AD", "DC", "RDL", "DFM") for r in _rows(out / "ddqa" / f"Task_{t}.jsonl")]
    for record in train:
        user, assistant = record["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert user["content"].startswith("<image>") and user["content"].count("<image>") == 1
        assert len(record["images"]) == 1 and Path(record["images"][0]).is_file()
        assert not {"label", "options", "objects", "tools", "channel"} & set(record)  # keys ms-swift reads
        if record["task"] != "DFM":
            assert user["content"].endswith(ANSWER_INSTRUCTION)
            assert assistant["content"] in record["choices"]


def test_every_answer_agrees_with_its_mask(built):
    out, _ = built
    checked = Counter()
    for path in [out / "ddqa" / "train.jsonl", out / "ddqa" / "test.jsonl"]:
        for record in _rows(path):
            image = record["images"][0]
            defective = "/NG/" in image
            task = record["task"]
            if task == "AD":
                assert _answer_text(record) == ("Yes." if defective else "No.")
                assert sorted(record["choices"].values()) == ["No.", "Yes."]
            elif task == "DC":
                defect = image.split("/NG/")[1].split("/")[0]
                assert _answer_text(record) == readable(defect)
                assert len(set(record["choices"].values())) == 4
            else:
                mask = image.replace("/image/", "/mask/").rsplit(".", 1)[0] + ".png"
                cell, boxes = _expected_from_mask(mask)
                if task == "RDL":
                    assert _answer_text(record) == cell
                    assert len(set(record["choices"].values())) == 4 and set(record["choices"].values()) <= set(GRID)
                else:
                    answer = json.loads(record["messages"][1]["content"])
                    got = [answer] if isinstance(answer[0], float) else answer
                    assert got == boxes
                    assert all(len(f"{v:.3f}") == 5 for box in got for v in box)
            checked[task] += 1
    assert min(checked.values()) > 0 and set(checked) == {"AD", "DC", "RDL", "DFM"}


def test_split_is_group_disjoint_and_stratified(built, demo_samples):
    out, _ = built
    train = {r["group"] for r in _rows(out / "ddqa" / "train.jsonl")}
    test = {r["group"] for r in _rows(out / "ddqa" / "test.jsonl")}
    assert train and test and not train & test
    groups, held_out = Counter(), Counter()
    for sample in {(s.cls, s.defect, s.group) for s in demo_samples}:
        groups[sample[:2]] += 1
        held_out[sample[:2]] += sample[2] in test
    for stratum, count in groups.items():
        assert held_out[stratum] == int(0.2 * count + 0.5), stratum


def test_split_ratio_per_stratum():
    samples = [Sample("D", "c", "OK", f"img{i}_{v}.png", None, f"g{i}") for i in range(50) for v in range(3)]
    test = split_test_groups(samples, 0.2, seed=0)
    assert len(test) == 10
    assert split_test_groups(samples, 0.2, seed=0) == test
    assert split_test_groups(samples, 0.2, seed=1) != test


def test_two_builds_give_the_same_bytes(tmp_path, built, demo_samples):
    out, _ = built
    build_ddqa(list(reversed(demo_samples)), tmp_path / "ddqa", tmp_path / "counts.json",
               config(DDQAConfig, "ddqa", dfm_min_area=MIN_AREA, test_ratio=0.2, wording="eiad"))
    for path in sorted((out / "ddqa").rglob("*.jsonl")):
        assert (tmp_path / "ddqa" / path.relative_to(out / "ddqa")).read_bytes() == path.read_bytes()
    assert (tmp_path / "counts.json").read_bytes() == (out / "counts.json").read_bytes()


def test_fixed_option_order_follows_the_figure(demo_samples):
    records, _ = _records(demo_samples, config(DDQAConfig, "ddqa", shuffle_options=False, wording="eiad"))
    for record in records["train"]["AD"]:
        assert record["choices"] == {"A": "No.", "B": "Yes."}
    for record in records["train"]["RDL"]:
        values = list(record["choices"].values())
        assert values == sorted(values, key=GRID.index)
    for record in records["train"]["DC"]:
        values = list(record["choices"].values())
        assert values == sorted(values)
    shuffled, _ = _records(demo_samples, config(DDQAConfig, "ddqa", shuffle_options=True))
    letters = Counter(r["messages"][1]["content"] for r in shuffled["train"]["RDL"])
    assert len(letters) == 4  # the answer is not always in one place


def test_varied_wording_draws_each_question_and_leaves_the_options_and_answers_alone(demo_samples):
    from eiad.ddqa.tasks import TASKS

    eiad, _ = _records(demo_samples, config(DDQAConfig, "ddqa", wording="eiad"))
    varied, _ = _records(demo_samples, config(DDQAConfig, "ddqa", wording="varied"))
    for task in ("AD", "DC", "RDL"):
        plain, drawn = eiad["train"][task], varied["train"][task]
        assert {r["messages"][0]["content"].split("\n")[0] for r in plain} == {"<image>" + TASKS[task].question}
        asked = Counter(r["messages"][0]["content"].split("\n")[0].removeprefix("<image>") for r in drawn)
        assert set(asked) == {TASKS[task].question, *TASKS[task].variants}  # every wording is used
        for before, after in zip(plain, drawn):  # the same record, reworded: same images, same answer letter
            assert before["images"] == after["images"]
            assert before["messages"][1]["content"] == after["messages"][1]["content"]
            same = [text.rstrip(".") for text in before["choices"].values()]
            assert [text.rstrip(".") for text in after["choices"].values()] == same
    stops = Counter(all(text.endswith(".") for text in r["choices"].values()) for r in varied["train"]["AD"])
    assert stops[True] and stops[False]  # EIAD's "Yes." and MMAD's "Yes" both occur
    assert varied == _records(demo_samples, config(DDQAConfig, "ddqa", wording="varied"))[0]


def _synthetic(tmp_path, dataset, cls, defect, name):
    mask = np.zeros((12, 12), dtype=bool)
    mask[2:5, 2:5] = True
    path = tmp_path / f"{dataset}_{name}.png"
    path.write_bytes(encode_mask_png(mask))
    return Sample(dataset, cls, defect, str(path), str(path), f"{dataset}-{name}")


def test_dc_distractors_come_from_the_same_dataset_then_the_pool(tmp_path):
    a = [_synthetic(tmp_path, "A", "part", d, d) for d in ("dent", "burr", "rust", "chip", "crack")]
    b = [_synthetic(tmp_path, "B", "gear", "pitting", "p1")]
    records, skipped = _records(a + b, config(DDQAConfig, "ddqa", test_ratio=0.0, tasks=("DC",)))
    by_dataset = {}
    for record in records["train"]["DC"]:
        by_dataset.setdefault(record["source_dataset"], []).append(set(record["choices"].values()))
    assert all(choices <= {"dent", "burr", "rust", "chip", "crack"} and len(choices) == 4
               for choices in by_dataset["A"])
    (only_b,) = by_dataset["B"]
    assert "pitting" in only_b and len(only_b) == 4  # BSData-like: one defect name, filled from the pool
    alone, skipped = _records(b, config(DDQAConfig, "ddqa", test_ratio=0.0, tasks=("DC",)))
    assert alone["train"] == {} and skipped == {"DC: no other defect name to offer": 1}


def test_bad_ddqa_params():
    with pytest.raises(ConfigError, match="tasks"):
        config(DDQAConfig, "ddqa", tasks=("AD", "XYZ"))
    with pytest.raises(ConfigError, match="test_ratio"):
        config(DDQAConfig, "ddqa", test_ratio=1.5)


def test_official_split_follows_the_manifest_and_needs_one_everywhere(tmp_path, caplog):
    a = [_synthetic(tmp_path, "A", "part", "dent", f"d{i}") for i in range(4)]
    a = [Sample(s.dataset, s.cls, s.defect, s.image, s.mask, "A-one-spot", split)
         for s, split in zip(a, ("train", "test", None, "test"))]
    records, _ = _records(a, config(DDQAConfig, "ddqa", split="official", tasks=("AD",)))
    assert sorted(r["images"][0] for r in records["test"]["AD"]) == sorted([a[1].image, a[3].image])
    assert len(records["train"]["AD"]) == 2  # an image the source leaves unassigned trains
    assert "puts images of 1 of 1 split groups on both sides (e.g. A-one-spot)" in caplog.text
    b = [_synthetic(tmp_path, "B", "gear", "pitting", "p1")]
    with pytest.raises(ConfigError, match="ddqa.split: official takes each source's own split, but B ships none"):
        _records(a + b, config(DDQAConfig, "ddqa", split="official"))
    with pytest.raises(ConfigError, match="'random' is not one of"):
        config(DDQAConfig, "ddqa", split="random")
