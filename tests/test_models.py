import shutil

import pytest
import torch
from conftest import config, model_handle, params

from eiad.ddqa.records import record_prompt
from eiad.errors import ConfigError, DataError, EiadError
from eiad.io import read_jsonl
from eiad.models import get_adapter, known_families
from eiad.models.adapter import IGNORE_INDEX
from eiad.models.config import HubModel, ModelConfig
from eiad.models.fetch import download
from eiad.training.config import LoraSettings
from eiad.training.trainer import attach_lora

QWEN = get_adapter("qwen2_vl")


def test_tiny_model_is_an_ordinary_hugging_face_folder(tiny_model):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert processor.chat_template and processor.tokenizer.eos_token == "<|im_end|>"
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")


def test_tiny_build_is_deterministic(tiny_model, small_ddqa, tmp_path):
    from eiad.models.fetch import fetch_base_model

    fetch_base_model(model_handle(), tmp_path, small_ddqa)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (tmp_path / name).read_bytes() == (tiny_model / name).read_bytes(), name
    # nothing that depends on the installed transformers release, so dvc.lock's hash holds across machines
    for name in ("config.json", "generation_config.json"):
        assert "transformers_version" not in (tmp_path / name).read_text(), name


def test_encoding_masks_everything_but_the_answer(tiny_model, small_ddqa):
    processor = QWEN.load_processor(tiny_model)
    record = next(r for r in read_jsonl(small_ddqa / "train.jsonl") if r["task"] == "DC")
    prompt, answer = record_prompt(record)
    example = QWEN.encode(processor, prompt, answer)
    labels = example.tokens["labels"][0]
    kept = labels[labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(kept) == f"{answer}<|im_end|>\n"
    assert (labels[: len(labels) - len(kept)] == IGNORE_INDEX).all()  # prompt and image tokens
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert (example.tokens["input_ids"][0] == image_id).sum() == 4  # 28 px / 14 = 2 x 2 patches
    assert set(example.tokens) >= {"input_ids", "attention_mask", "labels", "mm_token_type_ids"}


def test_qwen2_vl_encodes_as_its_processor_does(tiny_model, small_ddqa):
    """The family calls the image processor and tokenizer directly: the same tensors as the processor's call."""
    from eiad.models.adapter import VLMAdapter

    processor = QWEN.load_processor(tiny_model)
    generic = VLMAdapter()
    records = read_jsonl(small_ddqa / "train.jsonl")
    prompts = [record_prompt(next(r for r in records if r["task"] == task)) for task in ("AD", "DC", "RDL", "DFM")]
    image = prompts[0][0][0]
    prompts += [([image, "Compare with", image.resize((56, 28)), "this."], "B"),  # 1-shot form, two image sizes
                (["No image at all?"], "A")]
    for prompt, answer in prompts:
        fast, slow = QWEN.encode(processor, prompt, answer), generic.encode(processor, prompt, answer)
        for ours, theirs in ((fast.tokens, slow.tokens), (fast.media, slow.media)):
            assert ours.keys() == theirs.keys()
            assert all(ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]) for key in ours)


def test_texts_are_tokenised_once_and_each_caller_gets_its_own_tensors(tiny_model):
    from eiad.models.adapter import text_tokens

    class Counting:
        def __init__(self, tokenizer):
            self.tokenizer, self.calls = tokenizer, 0

        def __call__(self, *args, **kwargs):
            self.calls += 1
            return self.tokenizer(*args, **kwargs)

    tokenizer = Counting(QWEN.load_processor(tiny_model).tokenizer)
    text = "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Is there a defect?<|im_end|>"
    for special in (True, False):
        expected = tokenizer.tokenizer([text], add_special_tokens=special, return_tensors="pt")
        first = text_tokens(tokenizer, text, special)
        first["input_ids"][0, 0] = -1  # a caller changing its tensors changes nobody else's
        second = text_tokens(tokenizer, text, special)
        assert second.keys() == expected.keys()
        assert all(torch.equal(second[key], expected[key]) for key in expected)
    assert tokenizer.calls == 2  # once per text and special-token setting


def test_chats_render_once_per_layout_as_the_processor_renders_them(tiny_model, small_ddqa):
    processor = QWEN.load_processor(tiny_model)
    prompt, answer = record_prompt(next(r for r in read_jsonl(small_ddqa / "train.jsonl") if r["task"] == "DC"))
    other_image = [prompt[0].resize((56, 28)), *prompt[1:]]  # another image, the same layout
    for with_answer in (None, answer):
        expected = processor.apply_chat_template(QWEN.messages(prompt, with_answer), tokenize=False,
                                                 add_generation_prompt=with_answer is None)
        assert QWEN.render(processor, prompt, with_answer) == expected
        assert QWEN.render(processor, other_image, with_answer) == expected
    assert QWEN.render(processor, [*prompt, "More text."]) != QWEN.render(processor, prompt)
    processor.chat_template = processor.chat_template.replace("<|im_start|>assistant", "<|im_start|>inspector")
    assert "inspector" in QWEN.render(processor, prompt)  # a replaced template is not served from before


def test_qwen2_vl_positions_computed_ahead_are_the_forward_passes_own(tiny_model, small_ddqa):
    processor = QWEN.load_processor(tiny_model)
    model = QWEN.load_model(tiny_model).eval()
    records = read_jsonl(small_ddqa / "train.jsonl")
    chosen = [next(r for r in records if r["task"] == task) for task in ("AD", "DFM", "DC")]  # unequal lengths
    batch = QWEN.collate([QWEN.encode(processor, *record_prompt(r)) for r in chosen], processor.tokenizer.pad_token_id)
    positions = QWEN.position_ids(model, batch)
    assert positions.shape == (3, *batch["input_ids"].shape)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, model(**batch, position_ids=positions).logits)


def test_collation_pads_and_concatenates(tiny_model, small_ddqa):
    processor = QWEN.load_processor(tiny_model)
    records = read_jsonl(small_ddqa / "train.jsonl")
    short = next(r for r in records if r["task"] == "AD")
    long = next(r for r in records if r["task"] == "DFM")
    examples = [QWEN.encode(processor, *record_prompt(r)) for r in (short, long)]
    batch = QWEN.collate(examples, pad_token_id=0)
    assert batch["input_ids"].shape == (2, examples[1].length)
    assert batch["attention_mask"][0].sum() == examples[0].length
    assert (batch["labels"][0, examples[0].length:] == IGNORE_INDEX).all()
    assert batch["image_grid_thw"].shape == (2, 3)
    left = QWEN.collate(examples, pad_token_id=0, padding_side="left")
    assert left["attention_mask"][0, -1] == 1 and left["attention_mask"][0, 0] == 0


def test_generation_returns_text(tiny_model, small_ddqa):
    processor = QWEN.load_processor(tiny_model)
    model = QWEN.load_model(tiny_model)
    prompts = [record_prompt(r)[0] for r in read_jsonl(small_ddqa / "test.jsonl")[:3]]
    answers = QWEN.generate(model, processor, prompts, max_new_tokens=4)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def test_lora_presets_and_bad_regex(tiny_model):
    from eiad.models.adapter import matching_modules

    model = QWEN.load_model(tiny_model)
    llm = matching_modules(model, QWEN.lora_targets("llm"))
    everything = matching_modules(model, QWEN.lora_targets("all"))
    assert llm and all("language_model" in name for name in llm)
    assert "lm_head" in everything and any("visual.blocks" in n for n in everything)
    assert any("merger" in n for n in matching_modules(model, QWEN.lora_targets("llm+projector")))
    with pytest.raises(ConfigError, match="matches no linear layer"):
        attach_lora(model, QWEN, config(LoraSettings, "train.lora", targets=r"nothing\.here"))


def test_missing_processor_and_bad_model_config(tiny_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    for name in ("processor_config.json", "preprocessor_config.json"):
        (copy / name).unlink(missing_ok=True)
    with pytest.raises(DataError, match="model folder has no processor"):
        QWEN.load_processor(copy)
    with pytest.raises(DataError, match="no config.json"):
        QWEN.load_model(tmp_path)
    with pytest.raises(ConfigError, match="unknown model family 'llama9'"):
        config(ModelConfig, "model", family="llama9")
    # a remote-code family without the opt-in stops at the config, before any download
    with pytest.raises(ConfigError, match="'minicpmv2_6' runs code from its Hub repository"):
        config(ModelConfig, "model", family="minicpmv2_6", source="hub",
               hub={**params("model.hub"), "repo_id": "openbmb/MiniCPM-V-2_6"})
    assert known_families() == ["llava_onevision", "minicpm_v4", "minicpmv2_6", "qwen2_5_vl", "qwen2_vl", "smolvlm"]


def _hub(**changes) -> HubModel:
    return config(HubModel, "model.hub", **changes)


def test_hub_download_needs_a_pinned_revision_and_says_when_offline(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="pinned revision"):
        download(_hub(repo_id="Qwen/Qwen2-VL-2B-Instruct", revision="main"), QWEN, tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EiadError, match="unreachable"):
        download(_hub(repo_id="Qwen/Qwen2-VL-2B-Instruct", revision="a" * 40), QWEN, tmp_path / "m")


def test_a_model_of_another_family_stops_before_its_weights_download(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from fake_hub import HubState, serve

    commit = "b" * 40
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    state = HubState(commits={commit: commit})
    state.add_repo("model", "lab/smol", {"config.json": b'{"model_type": "idefics3"}', "model.safetensors": b"0" * 64})
    state.add_repo("model", "lab/odd", {"config.json": b'{"model_type": "llama"}'})
    with serve(state) as url:
        with pytest.raises(ConfigError, match="lab/smol is a 'idefics3' model, not one of family 'qwen2_vl'.*set "
                                              "model.family: smolvlm"):
            download(_hub(repo_id="lab/smol", revision=commit, endpoint=url), QWEN, tmp_path / "a")
        with pytest.raises(ConfigError, match="'llama' model.*no adapter knows it"):
            download(_hub(repo_id="lab/odd", revision=commit, endpoint=url), QWEN, tmp_path / "b")
    assert not any(path.endswith("model.safetensors") for _, path, _ in state.requests)


def test_a_hub_snapshot_is_linked_not_downloaded_again(tmp_path):
    from eiad.models.fetch import link_tree

    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / ("c" * 40)
    (snapshot / "sub").mkdir(parents=True)
    blobs.mkdir()
    for name, data in (("config.json", b"{}"), ("sub/model.safetensors", b"weights")):
        (blobs / name.replace("/", "_")).write_bytes(data)
        (snapshot / name).symlink_to(blobs / name.replace("/", "_"))  # the Hugging Face cache's layout
    link_tree(snapshot, tmp_path / "model")
    copied = tmp_path / "model" / "sub" / "model.safetensors"
    assert copied.read_bytes() == b"weights" and not copied.is_symlink()
    assert copied.stat().st_ino == (blobs / "sub_model.safetensors").stat().st_ino  # a hard link: no second copy
