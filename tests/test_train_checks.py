"""train_lora's up-front checks: every problem with its params key or file and line, before the
model loads."""

import json
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner
from conftest import PARAMS, load_stage, train_config

from eiad.models.config import ModelHandle
from eiad.training.checks import record_problems, value_problems


def test_values_out_of_range_are_each_named():
    config = train_config(learning_rate=-1e-3, max_steps=0, epochs=0, warmup_ratio=1.5, scheduler="cosine_x",
                          lora={"dropout": 1.0})
    assert value_problems(config) == [
        "train.learning_rate: must be > 0, got -0.001",
        "train.max_steps: with epochs 0.0 trains no step: set max_steps > 0 or epochs > 0",
        "train.warmup_ratio: must be in [0, 1), got 1.5",
        "train.lora.dropout: must be in [0, 1), got 1.0",
        value_problems(config)[-1],
    ]
    assert value_problems(config)[-1].startswith("train.scheduler: 'cosine_x' is not one of [")
    assert value_problems(train_config()) == []


def _damaged_records(small_ddqa: Path, tmp_path: Path) -> tuple[Path, str]:
    """The DDQA train file with one image gone (named by several records), one image that is not
    an image, and a malformed line."""
    lines = (small_ddqa / "train.jsonl").read_text().splitlines()
    gone = [json.loads(line)["images"][0] for line in lines if json.loads(line)["task"] == "DC"][-1]
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    record = json.loads(lines[1])
    record["images"] = [str(broken)]
    lines[1] = json.dumps(record)
    lines[2] = "{not json"
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(line.replace(gone, str(tmp_path / "gone.png")) for line in lines) + "\n")
    return train, str(tmp_path / "gone.png")


def test_every_bad_record_and_image_is_named_with_its_line(small_ddqa, tmp_path):
    train, gone = _damaged_records(small_ddqa, tmp_path)
    naming = [number for number, line in enumerate(train.read_text().splitlines(), start=1) if gone in line]
    problems = record_problems(train)
    assert problems[0].startswith(f"{train}:3: not a DDQA record")
    assert len(naming) == 4  # AD, DC, RDL, DFM: reported once, on the first
    assert f"{train}:{naming[0]}: image {gone} does not exist (and 3 more records)" in problems
    assert f"{train}:2: image {tmp_path / 'broken.png'} is not an image file Pillow can decode" in problems
    assert len(problems) == 3
    assert record_problems(small_ddqa / "train.jsonl") == []


def test_the_stage_stops_before_the_model_loads(small_ddqa, tiny_model, tmp_path, monkeypatch):
    train, gone = _damaged_records(small_ddqa, tmp_path)
    params = {**PARAMS, "train": {**PARAMS["train"], "learning_rate": -1.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(ModelHandle, "model", load_model)
    args = ["--model", str(tiny_model), "--data", str(train), "--out", str(tmp_path / "adapter"),
            "--checkpoints", str(tmp_path / "checkpoints"), "--metrics", str(tmp_path / "metrics"),
            "--summary", str(tmp_path / "train.json"), "--params", str(tmp_path / "params.yaml")]
    result = CliRunner().invoke(load_stage("train_lora"), args)
    assert result.exit_code == 1, result.output
    assert "train_lora cannot start, 4 problem(s):" in result.output
    assert "train.learning_rate: must be > 0, got -1.0" in result.output
    assert f"image {gone} does not exist (and 3 more records)" in result.output
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "checkpoints").exists()
    shutil.rmtree(tmp_path / "metrics", ignore_errors=True)
