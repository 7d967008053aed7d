"""Training, resuming and merging on the tiny model (seconds on a CPU)."""

import contextlib
import importlib.util
import json
import shutil
from dataclasses import replace

import pytest
import torch
from conftest import model_handle, train_config

from eiad.ddqa.records import record_prompt
from eiad.errors import ConfigError
from eiad.io import read_jsonl
from eiad.training.checkpoints import COMPLETE
from eiad.training.merge import load_with_adapter, merge_lora
from eiad.training.trainer import train_lora

MODEL = model_handle()
QWEN = MODEL.adapter
CONFIG = train_config(
    encoding="eager", seed=0, lora={"r": 8, "alpha": 16, "dropout": 0.0, "targets": "all"}, learning_rate=3e-3,
    max_steps=30, per_device_batch=8, grad_accum=1, warmup_ratio=0.0, scheduler="constant", weight_decay=0.0,
    max_grad_norm=1.0, save_steps=10, save_total_limit=5, logging_steps=5, max_length=256, loss_reduction="token",
)


def _loss_curve(metrics_dir):
    rows = (metrics_dir / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
    return [float(row.split("\t")[-1]) for row in rows]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, small_ddqa):
    root = tmp_path_factory.mktemp("train")
    result = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", root / "adapter", root / "checkpoints",
                        root / "metrics", CONFIG)
    return root, result


def test_a_few_steps_lower_the_loss(trained):
    root, result = trained
    curve = _loss_curve(root / "metrics")
    assert len(curve) == 6 and curve[-1] < 0.6 * curve[0]
    assert "loss" in json.loads((root / "metrics" / "metrics.json").read_text())
    assert (root / "adapter" / "adapter_config.json").is_file()
    assert result["train_loss"] > 0


def test_resume_after_an_interrupted_run(trained, tiny_model, small_ddqa, tmp_path):
    root, _ = trained
    # an interrupted run: only the checkpoint at step 20 survived, and it never finished
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(root / "checkpoints", checkpoints)
    shutil.rmtree(checkpoints / "checkpoint-30")
    (checkpoints / COMPLETE).unlink()
    train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "adapter", checkpoints,
               tmp_path / "metrics", CONFIG)
    state = json.loads((checkpoints / "checkpoint-30" / "trainer_state.json").read_text())
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == [5, 10, 15, 20, 25, 30]  # the first 20 steps were not trained again
    resumed = torch.load(checkpoints / "checkpoint-30" / "rng_state.pth", weights_only=False)
    assert resumed is not None
    from safetensors.torch import load_file

    first = load_file(root / "adapter" / "adapter_model.safetensors")
    second = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.allclose(first[k], second[k], atol=1e-5) for k in first)  # same result as uninterrupted


def test_a_finished_run_is_trained_again_not_resumed(trained, tiny_model, small_ddqa, tmp_path):
    root, result = trained
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(root / "checkpoints", checkpoints)
    assert (checkpoints / COMPLETE).exists()
    again = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "adapter", checkpoints,
                       tmp_path / "metrics", CONFIG)
    assert again["train_loss"] == pytest.approx(result["train_loss"], rel=1e-4)  # all 30 steps, not the last one
    state = json.loads((checkpoints / "checkpoint-30" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [5, 10, 15, 20, 25, 30]


@pytest.mark.parametrize("keep_encoded, workers", [(False, 0), (True, 1)])
def test_lazy_encoding_trains_as_eager_does(trained, tiny_model, small_ddqa, tmp_path, keep_encoded, workers):
    root, result = trained  # CONFIG encodes eagerly; its 30 steps of 8 see every record more than once
    lazy = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "adapter", tmp_path / "checkpoints",
                      tmp_path / "metrics", replace(CONFIG, encoding="lazy", keep_encoded=keep_encoded,
                                                    dataloader_workers=workers))
    assert lazy["train_loss"] == pytest.approx(result["train_loss"], rel=1e-5)
    assert _loss_curve(tmp_path / "metrics") == pytest.approx(_loss_curve(root / "metrics"), rel=1e-5)


def test_kept_encodings_are_encoded_once(tiny_model, small_ddqa):
    from eiad.training.data import LazyExamples

    processor = QWEN.load_processor(tiny_model)
    records = read_jsonl(small_ddqa / "train.jsonl")
    kept = LazyExamples(QWEN, processor, records, max_length=256, keep=True)
    assert kept[3] is kept[3]
    fresh = LazyExamples(QWEN, processor, records, max_length=256, keep=False)
    assert fresh[3] is not fresh[3] and torch.equal(fresh[3].tokens["input_ids"], kept[3].tokens["input_ids"])


def test_length_grouped_batches_pad_less_and_leave_the_loss_of_every_record_unchanged(tiny_model, small_ddqa):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from eiad.training.data import encode_dataset
    from eiad.training.loss import answer_loss
    from eiad.training.trainer import AnswerTrainer, training_arguments

    processor = QWEN.load_processor(tiny_model)
    examples = encode_dataset(QWEN, processor, read_jsonl(small_ddqa / "train.jsonl"), max_length=256)
    model = QWEN.load_model(tiny_model).eval()
    arguments = training_arguments(replace(CONFIG, group_by_length=True), tiny_model / "unused")
    trainer = AnswerTrainer(model=model, args=arguments, train_dataset=examples, output_layer=None)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    grouped = list(sampler)
    shuffled = torch.randperm(len(examples)).tolist()
    assert sorted(grouped) == list(range(len(examples)))

    def padding_and_loss(order):
        """Padded slots, and the token-mean loss over all records, in batches of CONFIG's size."""
        padded, total, tokens = 0, 0.0, 0
        for start in range(0, len(order), CONFIG.per_device_batch):
            chunk = [examples[i] for i in order[start:start + CONFIG.per_device_batch]]
            batch = QWEN.collate(chunk, processor.tokenizer.pad_token_id)
            labels = batch.pop("labels")
            padded += int((batch["attention_mask"] == 0).sum())
            count = int((labels[:, 1:] != -100).sum())
            with torch.no_grad():
                total += float(answer_loss("token", 1)(model(**batch), labels)) * count
            tokens += count
        return padded, total / tokens

    grouped_padding, grouped_loss = padding_and_loss(grouped)
    shuffled_padding, shuffled_loss = padding_and_loss(shuffled)
    assert grouped_padding < shuffled_padding
    assert grouped_loss == pytest.approx(shuffled_loss, rel=1e-5)


def test_a_compiled_model_trains_as_the_plain_one(tiny_model, small_ddqa, tmp_path, monkeypatch):
    # the Trainer announces the backend to accelerate through the environment; undone after the test
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    short = replace(CONFIG, max_steps=2)  # dynamo traces each new shape anew: tens of seconds for more steps
    plain = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "a1", tmp_path / "c1",
                       tmp_path / "m1", short)
    compiled = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "a2", tmp_path / "c2",
                          tmp_path / "m2", replace(short, torch_compile="eager"))  # graph capture, no code generation
    assert compiled["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-5)


def test_kernels_that_are_not_installed_stop_before_training():
    if importlib.util.find_spec("liger_kernel") is None:
        with pytest.raises(ConfigError, match="liger-kernel"):
            train_config(liger_kernel=True)
    with pytest.raises(ConfigError, match="group_by_length needs encoding: eager"):
        train_config(encoding="lazy", group_by_length=True)


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None,
                    reason="Liger's kernels are Triton kernels: a GPU and pip install liger-kernel")
def test_liger_kernels_train_as_the_plain_model(tiny_model, small_ddqa, tmp_path):
    short = replace(CONFIG, max_steps=10)
    plain = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "a1", tmp_path / "c1",
                       tmp_path / "m1", short)
    fused = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "a2", tmp_path / "c2",
                       tmp_path / "m2", replace(short, liger_kernel=True))
    assert fused["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-3)


def test_lazy_encoding_replaces_a_record_that_is_too_long(tiny_model, small_ddqa):
    from eiad.training.data import LazyExamples

    processor = QWEN.load_processor(tiny_model)
    records = read_jsonl(small_ddqa / "train.jsonl")
    length = [QWEN.encode(processor, *record_prompt(r)).length for r in records]
    longest = max(range(len(records)), key=length.__getitem__)
    examples = LazyExamples(QWEN, processor, records, max_length=length[longest] - 1, keep=False)
    after = [i % len(records) for i in range(longest + 1, longest + len(records))]
    substitute = next(i for i in after if length[i] < length[longest])  # the next record that fits
    assert examples[longest].length == length[substitute]
    with pytest.raises(ConfigError, match="no record fits max_length=3"):
        LazyExamples(QWEN, processor, records, max_length=3, keep=False)[0]


def test_other_settings_start_afresh(trained, tiny_model, small_ddqa, tmp_path):
    root, _ = trained
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(root / "checkpoints", checkpoints)
    train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "adapter", checkpoints,
               tmp_path / "metrics", replace(CONFIG, max_steps=10, learning_rate=1e-3))
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-10"]


def test_merged_model_equals_the_adapter_model(trained, tiny_model, small_ddqa, tmp_path):
    root, _ = trained
    merge_lora(MODEL, tiny_model, root / "adapter", tmp_path / "merged")
    processor = QWEN.load_processor(tmp_path / "merged")  # the merged folder loads on its own
    merged = QWEN.load_model(tmp_path / "merged").eval()
    with_adapter = load_with_adapter(MODEL, tiny_model, root / "adapter").eval()
    base = QWEN.load_model(tiny_model).eval()
    records = read_jsonl(small_ddqa / "test.jsonl")[:4]
    batch = QWEN.collate([QWEN.encode(processor, record_prompt(r)[0]) for r in records], processor.tokenizer.pad_token_id)
    with torch.no_grad():
        expected = with_adapter(**batch).logits
        got = merged(**batch).logits
        untouched = base(**batch).logits
    assert torch.allclose(expected, got, atol=1e-4)
    assert not torch.allclose(untouched, got, atol=1e-2)  # the adapter really changed the model
    assert (tmp_path / "merged" / "generation_config.json").is_file()
    assert not (tmp_path / "merged" / "adapter_config.json").exists()


def test_per_sample_loss_weighs_every_record_the_same():
    from types import SimpleNamespace

    from eiad.training.loss import answer_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, -100, -100, 3],  # one answer token
                           [-100, 1, 2, 4, 5]])  # four answer tokens
    per_token = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:],
                                                  ignore_index=-100, reduction="none")
    first = per_token[0, 3]
    second = per_token[1].mean()
    got = answer_loss("sample", grad_accum=1)(SimpleNamespace(logits=logits), labels)
    assert torch.allclose(got, (first + second) / 2)
    token_mean = per_token[labels[:, 1:] != -100].mean()
    assert torch.allclose(answer_loss("token", grad_accum=1)(SimpleNamespace(logits=logits), labels), token_mean)
    assert not torch.allclose(got, token_mean)
    assert torch.allclose(answer_loss("sample", grad_accum=4)(SimpleNamespace(logits=logits), labels), got / 4)


@pytest.mark.parametrize("reduction", ["token", "sample"])
def test_logits_only_where_answers_are_predicted_give_the_same_loss_and_gradients(tiny_model, small_ddqa, reduction):
    from eiad.training.loss import answer_loss, logits_only_at, predicting_positions
    from eiad.training.trainer import attach_lora

    processor = QWEN.load_processor(tiny_model)
    model = attach_lora(QWEN.load_model(tiny_model), QWEN, CONFIG.lora)
    records = read_jsonl(small_ddqa / "train.jsonl")[:6]
    batch = QWEN.collate([QWEN.encode(processor, *record_prompt(r)) for r in records], processor.tokenizer.pad_token_id)
    labels = batch.pop("labels")
    loss = answer_loss(reduction, grad_accum=1)
    results = []
    for narrowed in (False, True):
        model.zero_grad()
        mask = predicting_positions(labels)
        with logits_only_at(model.get_output_embeddings(), mask) if narrowed else contextlib.nullcontext():
            outputs = model(**batch)
        value = loss(outputs, labels)
        value.backward()
        assert outputs.logits.shape[:-1] == ((int(mask.sum()),) if narrowed else labels.shape)
        results.append((value.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (full, full_grads), (narrow, narrow_grads) = results
    assert torch.allclose(full, narrow, atol=1e-6)
    assert all(torch.allclose(full_grads[n], narrow_grads[n], atol=1e-6) for n in full_grads)


@pytest.mark.parametrize("change", [{"padding_free": False}, {"padding_free": False, "supervised_logits_only": False}],
                         ids=["padded", "padded-full-logits"])
def test_padding_free_and_supervised_logits_train_as_padded_full_logits_do(trained, tiny_model, small_ddqa, tmp_path,
                                                                           change):
    root, result = trained  # CONFIG keeps the params.yaml defaults: padding-free, supervised logits only
    assert CONFIG.padding_free and CONFIG.supervised_logits_only
    other = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "adapter", tmp_path / "checkpoints",
                       tmp_path / "metrics", replace(CONFIG, **change))
    assert other["train_loss"] == pytest.approx(result["train_loss"], rel=1e-4)
    assert _loss_curve(tmp_path / "metrics") == pytest.approx(_loss_curve(root / "metrics"), rel=1e-4)


def test_padding_free_needs_logits_only_where_answers_are_predicted():
    with pytest.raises(ConfigError, match="padding_free needs supervised_logits_only"):
        train_config(padding_free=True, supervised_logits_only=False)


def test_gradient_checkpointing_trains(tiny_model, small_ddqa, tmp_path):
    result = train_lora(MODEL, tiny_model, small_ddqa / "train.jsonl", tmp_path / "adapter", tmp_path / "checkpoints",
                        tmp_path / "metrics", replace(CONFIG, max_steps=2, gradient_checkpointing=True))
    assert result["train_loss"] > 0 and (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
