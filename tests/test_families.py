"""Every transformers-native family end to end on a tiny model: presets, encoding, a few LoRA
steps, merging, and MMAD questions with one and two images (seconds per family on a CPU)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import model_handle, train_config

from eiad.benchmark.mmad import by_image, load_benchmark
from eiad.benchmark.protocols import PROTOCOLS, Asking, plan
from eiad.data.images import load_rgb
from eiad.ddqa.records import record_prompt
from eiad.evaluation.engine import Ask, Engine
from eiad.io import read_jsonl
from eiad.models.adapter import IGNORE_INDEX, matching_modules
from eiad.models.attention import use_masked_gqa_sdpa
from eiad.models.fetch import fetch_base_model
from eiad.models.last_layer import last_decoder_layer, last_position_only
from eiad.questions import ImageRef, load_prompt
from eiad.training.merge import load_with_adapter, merge_lora
from eiad.training.trainer import train_lora

SIZES = {"seed": 0, "vocab_size": 320, "hidden_size": 32, "layers": 1, "heads": 2, "kv_heads": 1,
         "intermediate_size": 64, "vision_depth": 1, "vision_width": 32, "vision_heads": 2, "image_size": 28,
         "initializer_range": 0.1}
TRAIN = train_config(
    seed=0, lora={"r": 4, "alpha": 8, "dropout": 0.0, "targets": "all"}, learning_rate=1e-2, max_steps=2,
    per_device_batch=4, grad_accum=1, warmup_ratio=0.0, scheduler="constant", weight_decay=0.0, save_steps=10,
    logging_steps=1, max_length=512, max_grad_norm=0.5, encoding="lazy", loss_reduction="token",
)


@dataclass(frozen=True)
class Family:
    family: str
    language_model: str  # prefix of the language model's modules
    projector: str  # prefix of the vision-to-language projector's modules
    tiny: dict[str, Any] = field(default_factory=dict)  # sizes beyond SIZES

    @property
    def model(self) -> Any:
        return model_handle(self.family, {**SIZES, **self.tiny})

    @property
    def name(self) -> str:
        return f"{self.family}-{self.tiny['version']}" if "version" in self.tiny else self.family


FAMILIES = [
    Family("smolvlm", "model.text_model.", "model.connector.", {"patch_size": 7, "scale_factor": 2}),
    Family("llava_onevision", "model.language_model.", "model.multi_modal_projector.", {"patch_size": 14,
                                                                                         "max_grid": 2}),
    # a linear-attention and a full-attention layer; a 2 x 2 slice grid for the 40-px demo images
    Family("minicpm_v4", "model.language_model.", "model.merger.", {"patch_size": 7, "layers": 2, "version": "4.6",
                                                                    "max_slices": 9}),
    Family("minicpm_v4", "model.language_model.", "model.merger.", {"patch_size": 7, "layers": 2, "version": "4.7",
                                                                    "max_slices": 9}),
    Family("qwen2_5_vl", "model.language_model.", "model.visual.merger.", {"patch_size": 14, "merge_size": 1}),
]


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f.name)
def case(request: pytest.FixtureRequest) -> Family:
    return request.param


def _build(case: Family, ddqa: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    fetch_base_model(case.model, dest, ddqa)
    return dest


@pytest.fixture(scope="module")
def base(case: Family, small_ddqa: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(case, small_ddqa, tmp_path_factory.mktemp("family") / "base")


@pytest.fixture(scope="module")
def trained(case: Family, base: Path, small_ddqa: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LoRA adapter after a few steps on two records of each task; the merged model beside it."""
    root = tmp_path_factory.mktemp("trained")
    by_task: dict[str, list[dict[str, Any]]] = {}
    for record in read_jsonl(small_ddqa / "train.jsonl"):
        by_task.setdefault(record["task"], []).append(record)
    subset = [record for records in by_task.values() for record in records[:2]]
    (root / "train.jsonl").write_text("".join(json.dumps(record) + "\n" for record in subset))
    train_lora(case.model, base, root / "train.jsonl", root / "adapter", root / "checkpoints", root / "metrics", TRAIN)
    merge_lora(case.model, base, root / "adapter", root / "merged")
    return root


@pytest.fixture(scope="module")
def one_question(demo_benchmark: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo benchmark cut down to its first question, so that both protocols take a moment."""
    root = tmp_path_factory.mktemp("one_question") / "benchmark"
    shutil.copytree(demo_benchmark, root)
    data = json.loads((root / "mmad.json").read_text())
    key = next(iter(data))
    (root / "mmad.json").write_text(json.dumps({key: {**data[key], "conversation": data[key]["conversation"][:1]}}))
    return root


def test_tiny_model_is_an_ordinary_folder_and_rebuilds_identically(case, base, small_ddqa, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(base)
    model = AutoModelForImageTextToText.from_pretrained(base)
    assert processor.chat_template and processor.tokenizer.eos_token_id == model.generation_config.eos_token_id
    _build(case, small_ddqa, tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (base / name).read_bytes(), name


def test_presets_hit_the_intended_modules(case, base):
    adapter = case.model.adapter
    model = adapter.load_model(base)
    linear = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    llm, with_projector, everything = (set(matching_modules(model, adapter.lora_targets(name)))
                                       for name in ("llm", "llm+projector", "all"))
    assert llm == {name for name in linear if name.startswith(case.language_model)}
    assert with_projector - llm == {name for name in linear if name.startswith(case.projector)} != set()
    assert everything == linear  # vision blocks and lm_head too: every linear layer of the model
    assert llm < with_projector < everything


def test_labels_cover_only_the_answer_and_end_of_turn(case, base, small_ddqa):
    adapter = case.model.adapter
    processor = adapter.load_processor(base)
    record = next(r for r in read_jsonl(small_ddqa / "train.jsonl") if r["task"] == "DC")
    prompt, answer = record_prompt(record)
    example = adapter.encode(processor, prompt, answer)
    ids, labels = example.tokens["input_ids"][0], example.tokens["labels"][0]
    kept = labels[labels != IGNORE_INDEX]
    prompt_length = len(labels) - len(kept)
    assert (labels[prompt_length:] == ids[prompt_length:]).all() and (labels[:prompt_length] == IGNORE_INDEX).all()
    completion = processor.tokenizer.decode(kept)
    assert completion.strip() == f"{answer}{processor.tokenizer.eos_token}"
    assert (ids[:prompt_length] == processor.image_token_id).sum() > 0  # image tokens are in the masked prompt


def test_lora_steps_then_merge_equal_the_adapter(case, base, trained, small_ddqa):
    adapter = case.model.adapter
    processor = adapter.load_processor(trained / "merged")  # the merged folder loads on its own
    merged = adapter.load_model(trained / "merged").eval()
    with_adapter = load_with_adapter(case.model, base, trained / "adapter").eval()
    untouched = adapter.load_model(base).eval()
    records = read_jsonl(small_ddqa / "test.jsonl")[:2]
    batch = adapter.collate([adapter.encode(processor, record_prompt(r)[0]) for r in records],
                            processor.tokenizer.pad_token_id)
    with torch.no_grad():
        expected, got, before = (m(**batch).logits for m in (with_adapter, merged, untouched))
    assert torch.allclose(expected, got, atol=1e-4)
    assert not torch.allclose(before, got, atol=1e-4)  # two steps really changed the model


def _asking(protocol: str) -> Asking:
    return Asking(PROTOCOLS[protocol], "random", 1, "minicpm", False, None)


def _prompt(root: Path, question: Any, protocol: str) -> Any:
    return load_prompt(plan(question, _asking(protocol)), lambda path: load_rgb(root / path))


@pytest.mark.parametrize("protocol", ["eiad-0shot", "mmad-1shot"])
def test_questions_of_an_image_answered_from_its_shared_prefix_equal_asking_from_scratch(
        case, trained, demo_benchmark, protocol):
    """Per-image reuse gives the same greedy answers, and choice the same letters, question by question."""
    adapter, handle = case.model.adapter, case.model
    processor, network = adapter.load_processor(trained / "merged"), adapter.load_model(trained / "merged").eval()
    groups = list(by_image(load_benchmark(demo_benchmark)))[:2]
    load = lambda path: load_rgb(demo_benchmark / path)
    generated, chosen = (Engine(handle, network, processor, mode, 32) for mode in ("generate", "choice"))
    asks = [[Ask(plan(q, _asking(protocol)), 6, q.options) for q in group] for group in groups]
    together, picked = _answer_images(generated, asks, load), _answer_images(chosen, asks, load)
    one_by_one = Engine(handle, network, processor, "generate", 1)  # batches of one question
    for image, group in enumerate(groups):
        assert sum(isinstance(part, ImageRef) for part in asks[image][0].plan) == (2 if protocol == "mmad-1shot" else 1)
        alone = one_by_one.answer_all([asks[image]], load)[0]
        for question, ask, answer, letter, single in zip(group, asks[image], together[image], picked[image], alone):
            prompt = load_prompt(ask.plan, load)
            assert answer == adapter.generate(network, processor, [prompt], 6)[0] == single
            logits = adapter.next_token_logits(network, processor, [prompt])[0]
            letters = list(question.options)
            assert letter == letters[int(torch.argmax(logits[chosen.letter_ids(letters)]))]


def test_images_whose_prefixes_differ_in_length_answered_together_equal_asking_from_scratch(case, trained,
                                                                                           demo_benchmark):
    """Prefixes left-padded to one width (one image's prompt holds a template, the other's not) change no answer."""
    adapter, handle = case.model.adapter, case.model
    processor, network = adapter.load_processor(trained / "merged"), adapter.load_model(trained / "merged").eval()
    groups = list(by_image(load_benchmark(demo_benchmark)))[:2]
    load = lambda path: load_rgb(demo_benchmark / path)
    asks = [[Ask(plan(q, _asking(protocol)), 6, q.options) for q in group]
            for group, protocol in zip(groups, ("eiad-0shot", "mmad-1shot"))]
    answers = _answer_images(Engine(handle, network, processor, "generate", 32), asks, load)
    for image, image_answers in zip(asks, answers):
        assert image_answers == [adapter.generate(network, processor, [load_prompt(a.plan, load)], 6)[0] for a in image]


def _answer_images(engine: Engine, asks: list[list[Ask]], load: Any) -> list[list[str]]:
    """Both images' questions in shared batches ([prefix][padding][question]) where the family allows it."""
    if engine.adapter.groups_images:
        return engine.answer_all(asks, load)
    return [engine.answer_all([image], load)[0] for image in asks]


def test_a_batch_mixing_one_and_two_image_prompts(case, base, one_question):
    """Padding the media of prompts with different image counts changes no prompt's answer."""
    adapter = case.model.adapter
    processor = adapter.load_processor(base)
    model = adapter.load_model(base).eval()
    question = load_benchmark(one_question)[0]
    examples = [adapter.encode(processor, _prompt(one_question, question, p)) for p in ("eiad-0shot", "mmad-1shot")]
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        together = model(**adapter.collate(examples, pad, padding_side="left")).logits[:, -1]
        alone = [model(**adapter.collate([e], pad, padding_side="left")).logits[0, -1] for e in examples]
    assert all(torch.allclose(together[i], alone[i], atol=1e-4) for i in range(2))


def test_the_last_layer_asked_for_last_positions_leaves_the_cache_and_those_logits_as_they_were(case, base,
                                                                                                 one_question):
    """Within last_position_only the last decoder layer's MLP runs on each row's last position alone,
    while every layer's keys and values and the last position's logits stay as without it (left-padded
    rows of one and two images); leaving it restores the full pass."""
    adapter = case.model.adapter
    processor, network = adapter.load_processor(base), adapter.load_model(base).eval()
    use_masked_gqa_sdpa(network.config.get_text_config())  # as the engine runs it: its attention takes one query
    question = load_benchmark(one_question)[0]
    examples = [adapter.encode(processor, _prompt(one_question, question, p)) for p in ("eiad-0shot", "mmad-1shot")]
    batch = adapter.collate(examples, processor.tokenizer.pad_token_id, padding_side="left")
    assert (batch["attention_mask"] == 0).any()
    layer = last_decoder_layer(network)
    assert layer is not None  # every family's last layer here is a plain one (MiniCPM-V 4.6's: full attention)
    mlp_rows: list[int] = []
    first_linear = next(module for module in layer.mlp.modules() if isinstance(module, torch.nn.Linear))
    first_linear.register_forward_pre_hook(lambda module, args: mlp_rows.append(args[0].shape[1]))
    with torch.inference_mode():
        full = network(**batch, use_cache=True)
        with last_position_only(network):
            last = network(**batch, use_cache=True)
        again = network(**batch, use_cache=True)
    assert mlp_rows == [batch["input_ids"].shape[1], 1, batch["input_ids"].shape[1]]
    assert torch.allclose(full.logits[:, -1], last.logits[:, -1], atol=1e-5)
    assert torch.equal(again.logits, full.logits)
    compared = 0
    for before, within in zip(full.cache.layers, last.cache.layers):
        for name in ("keys", "values"):
            if getattr(before, name, None) is not None:
                assert torch.allclose(getattr(before, name), getattr(within, name), atol=1e-6)
                compared += 1
    assert compared >= 2


def test_concat_padded_zero_pads_all_but_the_concatenated_dimension():
    from eiad.models.adapter import concat_padded

    small, large = torch.ones(1, 2, 3), torch.full((2, 1, 4), 2.0)
    stacked = concat_padded([small, large])
    assert stacked.shape == (3, 2, 4)
    assert (stacked[:1, :, :3] == 1).all() and (stacked[:1, :, 3] == 0).all() and (stacked[1:, 1] == 0).all()
    packed = concat_padded([torch.ones(1, 3, 2), torch.ones(1, 3, 5)], dim=-1)  # MiniCPM-V's packed patches
    assert packed.shape == (1, 3, 7) and (packed == 1).all()


def test_llava_onevision_gives_each_image_of_a_multi_image_prompt_one_view(small_ddqa, one_question, tmp_path):
    llava = next(f for f in FAMILIES if f.family == "llava_onevision")
    adapter = llava.model.adapter
    processor = adapter.load_processor(_build(llava, small_ddqa, tmp_path / "llava"))
    question = load_benchmark(one_question)[0]
    one, two = (adapter.encode(processor, _prompt(one_question, question, p)) for p in ("eiad-0shot", "mmad-1shot"))
    assert one.media["batch_num_images"].tolist() == [1] and one.media["pixel_values"].shape[1] > 1  # tiled
    assert two.media["batch_num_images"].tolist() == [2] and two.media["pixel_values"].shape[:2] == (2, 1)
    view = processor.num_image_tokens + 1  # a base view and its newline
    assert (two.tokens["input_ids"] == processor.image_token_id).sum() == 2 * view
