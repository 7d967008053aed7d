"""Profiles: the paper's settings as one `dvc exp run` command, checked before anything runs."""

import pytest
from conftest import REPO
from dvc_project import commit_all, make_project, run

from eiad.errors import ConfigError
from eiad.profiles import exp_run_arguments, flatten, resolve

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROFILE = str(REPO / "profiles" / "eiad-paper.yaml")
PARAMS = str(REPO / "params.yaml")


def _settings(arguments: list[str]) -> dict[str, str]:
    pairs = [arguments[i + 1] for i in range(0, len(arguments), 2)]
    assert arguments[::2] == ["-S"] * len(pairs)
    return dict(pair.split("=", 1) for pair in pairs)


def test_paper_profile_is_ms_swift_2_on_minicpm_v_2_6():
    settings = _settings(resolve(PROFILE, (f"model.hub.revision={COMMIT}",), PARAMS))
    assert settings["model.family"] == "minicpmv2_6" and settings["model.hub.trust_remote_code"] == "true"
    assert settings["model.hub.revision"] == COMMIT
    expected = {"train.epochs": "1", "train.learning_rate": "0.0001", "train.lora.r": "8", "train.lora.alpha": "32",
                "train.lora.dropout": "0.05", "train.lora.targets": "swift2", "train.per_device_batch": "1",
                "train.grad_accum": "16", "train.max_length": "2048", "train.weight_decay": "0.1",
                "train.scheduler": "cosine", "train.warmup_ratio": "0.05", "train.max_grad_norm": "0.5",
                "train.deepspeed": "zero2", "train.precision": "bf16"}
    assert {key: settings[key] for key in expected} == expected
    assert settings["datasets"] == '["bsdata","realiad","vision","prreal"]'


def test_a_profile_fails_before_anything_runs():
    with pytest.raises(ConfigError, match="model.hub.revision must be a 40-hex commit"):
        resolve(PROFILE, (), PARAMS)
    with pytest.raises(ConfigError, match="must be >= 1"):
        resolve(PROFILE, (f"model.hub.revision={COMMIT}", "train.lora.r=0"), PARAMS)
    with pytest.raises(ConfigError, match="unknown model family 'llama9'"):
        resolve(PROFILE, (f"model.hub.revision={COMMIT}", "model.family=llama9"), PARAMS)
    with pytest.raises(ConfigError, match="no profile 'nope'"):
        resolve("nope", (), PARAMS)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        resolve(PROFILE, ("train.lora.r",), PARAMS)


def test_values_survive_the_shell_and_dvc():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}
    assert exp_run_arguments({"x": "", "y": None, "z": ["a", "b"]}) == ["-S", 'x=""', "-S", "y=null", "-S", 'z=["a","b"]']
    assert exp_run_arguments({"r": "256", "t": "true", "s": "swift2"}) == ["-S", 'r="256"', "-S", 't="true"', "-S", "s=swift2"]
    with pytest.raises(ConfigError, match="spaces"):
        exp_run_arguments({"x": "two words"})


@pytest.mark.slow
def test_dvc_takes_the_profile_as_one_experiment(tmp_path):
    import json

    project = make_project(tmp_path / "repo")
    commit_all(project, "initial")
    arguments = resolve(str(project / "profiles" / "eiad-paper.yaml"), (f"model.hub.revision={COMMIT}",),
                        str(project / "params.yaml"))
    run("dvc", "exp", "run", "--queue", "--name", "paper", *arguments, cwd=project)  # parsed, not run
    shown = json.loads(run("dvc", "exp", "show", "--json", cwd=project, stderr=False))
    queued = [rev for row in shown for exp in row.get("experiments") or [] for rev in exp["revs"]]
    params = next(rev for rev in queued if rev["name"] == "paper")["data"]["params"]["params.yaml"]["data"]
    assert params["model"]["hub"]["revision"] == COMMIT and params["train"]["deepspeed"] == "zero2"
    assert params["datasets"] == ["bsdata", "realiad", "vision", "prreal"]
    assert params["train"]["learning_rate"] == 1e-4 and params["model"]["hub"]["trust_remote_code"] is True
