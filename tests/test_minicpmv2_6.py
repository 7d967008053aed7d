"""MiniCPM-V 2.6: input building, batches and presets without the model's code; loading, training,
merging and generation with it.

The checkpoint's own code runs only where ``openbmb/MiniCPM-V-2_6`` is in the local Hugging Face
cache. Its code, config and tokenizer files are enough (no weights): the tests build a tiny random
model from them.
"""

import builtins
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import params, train_config
from PIL import Image

from eiad.ddqa.records import record_prompt
from eiad.errors import ConfigError, EiadError
from eiad.io import read_jsonl
from eiad.models.adapter import IGNORE_INDEX, matching_modules
from eiad.models.config import ModelConfig, ModelHandle
from eiad.models.families.minicpmv2_6 import CODE_FILES
from eiad.models.families.minicpmv2_6.batching import answer_labels, image_bounds, normalise, reshape_by_patch, to_bytes
from eiad.models.families.minicpmv2_6.compat import _calling_post_init, legacy_imports, model_class
from eiad.models.families.minicpmv2_6.processor import IMAGE_TAG, MiniCPMVProcessor, expand_image_tags, through_first
from eiad.models.families.minicpmv2_6.slicing import ImageConfig, image_placeholder, slice_grid, slice_image

REPO_ID = "openbmb/MiniCPM-V-2_6"
# the opt-in, as params.yaml must give it: a Hub model whose remote code the user reviewed
REMOTE = ModelHandle.from_config(ModelConfig.parse(
    {**params("model"), "family": "minicpmv2_6", "source": "hub",
     "hub": {**params("model.hub"), "repo_id": REPO_ID, "revision": "0" * 40, "trust_remote_code": True}}, "model"))
ADAPTER = REMOTE.adapter
SPECIAL = ("<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "</image>", "<slice>", "</slice>",
           "<image_id>", "</image_id>")
# Qwen2's ChatML with its default system turn
CHAT_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
                 "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SMALL_IMAGES = {"image_feature_size": 4, "scale_resolution": 56, "patch_size": 14, "use_image_id": True}


def _bands(width: int, height: int, colours: list[tuple[int, int, int]]) -> Image.Image:
    """An image of equal vertical bands, left to right."""
    image = Image.new("RGB", (width, height))
    band = width // len(colours)
    for index, colour in enumerate(colours):
        image.paste(colour, (index * band, 0, (index + 1) * band, height))
    return image


@pytest.fixture(scope="module")
def processor() -> MiniCPMVProcessor:
    """A small byte-level tokenizer with MiniCPM-V's special tokens: encoding without the remote code."""
    from transformers import PreTrainedTokenizerFast

    from eiad.models.tokenizer import train_byte_level_bpe

    corpus = ["Is there any visible defect in this image?", "A. No.\nB. Yes.", "You are a helpful assistant.",
              "system user assistant template query"] * 4
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_byte_level_bpe(corpus, 300, SPECIAL),
                                        unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return MiniCPMVProcessor(tokenizer, dict(SMALL_IMAGES))


# --- without the remote code ----------------------------------------------------------------------


def test_loading_needs_the_explicit_opt_in_before_any_work(tmp_path):
    missing = tmp_path / "not-downloaded"  # no files at all: the opt-in is checked first
    for load in (ADAPTER.load_processor, ADAPTER.load_model):
        with pytest.raises(ConfigError, match="trust_remote_code: true"):
            load(missing)


@pytest.mark.parametrize(("size", "grid"), [
    ((40, 40), None), ((448, 448), None), ((449, 448), (2, 1)), ((1000, 500), (2, 1)), ((500, 1000), (1, 2)),
    ((1344, 1344), (3, 3)), ((4000, 300), (7, 1)), ((10000, 10000), (3, 3)),
])
def test_slice_grid_follows_the_image_processor(size, grid):
    assert slice_grid(size, 448, 9) == grid


def test_slices_are_patch_aligned_and_row_major():
    config = ImageConfig(**{k: v for k, v in SMALL_IMAGES.items() if k != "use_image_id"})
    image = _bands(150, 60, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    images, grid = slice_image(image, config)
    assert grid == (3, 1)
    assert [im.size for im in images] == [(84, 28), (56, 56), (56, 56), (56, 56)]  # whole image, then slices
    dominant = [max(range(3), key=lambda c: im.getpixel((28, 28))[c]) for im in images[1:]]
    assert dominant == [0, 1, 2]
    small, none = slice_image(Image.new("RGB", (40, 30)), config)
    assert none is None and small[0].size == (70, 42)  # a small image is scaled up to about one tile


def test_placeholders_ids_slots_and_slice_rows():
    config = ImageConfig(image_feature_size=2, use_image_id=True)
    whole = "<image><unk><unk></image>"
    cell = "<slice><unk><unk></slice>"
    assert image_placeholder(config, 0, None) == f"<image_id>0</image_id>{whole}"
    assert image_placeholder(config, 3, (2, 1)) == f"<image_id>3</image_id>{whole}{cell}{cell}"
    assert image_placeholder(config, 0, (1, 2)) == f"<image_id>0</image_id>{whole}{cell}\n{cell}"
    plain = ImageConfig(image_feature_size=2)
    assert image_placeholder(plain, 0, None) == whole
    assert expand_image_tags(f"a{IMAGE_TAG}b{IMAGE_TAG}", ["1", "2"]) == "a1b2"
    with pytest.raises(EiadError, match="2 images but 1"):
        expand_image_tags(f"a{IMAGE_TAG}", ["1", "2"])


def test_image_bounds_span_the_query_slots():
    opener, closer, slice_opener, slice_closer, slot = 1, 2, 3, 4, 0
    ids = torch.tensor([9, opener, slot, slot, closer, 9, slice_opener, slot, slot, slice_closer, 7])
    bounds = image_bounds(ids, [opener, slice_opener], [closer, slice_closer])
    assert bounds.tolist() == [[2, 4], [7, 9]]
    assert all((ids[start:end] == slot).all() for start, end in bounds.tolist())
    with pytest.raises(EiadError, match="unbalanced"):
        image_bounds(ids[:5].flip(0), [opener], [closer])


def test_pixels_are_normalised_and_laid_out_patch_by_patch():
    grey = to_bytes(Image.new("RGB", (28, 14), (255, 0, 51)))
    assert grey.shape == (3, 14, 28) and grey.dtype == torch.uint8
    values = normalise(grey, torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]))
    assert torch.allclose(values[:, 0, 0], torch.tensor([1.0, -1.0, -0.6]))
    pixels = torch.randn(3, 28, 42)
    strip = reshape_by_patch(pixels, 14)
    assert strip.shape == (3, 14, 28 * 42 // 14)
    for index in range(6):  # 2 rows x 3 columns of patches, row-major
        row, column = divmod(index, 3)
        expected = pixels[:, row * 14:(row + 1) * 14, column * 14:(column + 1) * 14]
        assert torch.equal(strip[:, :, index * 14:(index + 1) * 14], expected)


def test_labels_and_stops():
    ids = torch.tensor([[5, 6, 7, 8]])
    assert answer_labels(ids, 2).tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 7, 8]]
    assert through_first([5, 6, 7, 6], {6}) == [5, 6]
    assert through_first([5, 7], {6}) == [5, 7]


def test_encoding_expands_images_and_labels_the_answer(processor):
    tokenizer = processor.tokenizer
    example = ADAPTER.encode(processor, [Image.new("RGB", (40, 40)), "Is there any visible defect in this image?"], "B")
    ids = example.tokens["input_ids"][0]
    text = tokenizer.decode(ids)
    assert "<|im_start|>user\n<image_id>0</image_id><image>" + "<unk>" * 4 + "</image>\nIs there" in text
    assert text.endswith("<|im_start|>assistant\nB<|im_end|>")
    labels = example.tokens["labels"][0]
    assert tokenizer.decode(labels[labels != IGNORE_INDEX]) == "B<|im_end|>"
    assert (labels[:-2] == IGNORE_INDEX).all()
    assert example.media["tgt_sizes"].tolist() == [[4, 4]]
    pixels = example.media["pixel_values"]
    assert pixels.shape == (3, 14, 16 * 14) and pixels.dtype == torch.uint8
    (start, end), = example.media["image_bound"].tolist()
    assert (ids[start:end] == tokenizer.convert_tokens_to_ids("<unk>")).all() and end - start == 4


def test_several_and_sliced_images_get_ids_and_one_span_per_slice(processor):
    wide = _bands(150, 60, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    example = ADAPTER.encode(processor, ["Template:", Image.new("RGB", (40, 40)), "Query:", wide, "Defect?"])
    text = processor.tokenizer.decode(example.tokens["input_ids"][0])
    assert "Template:\n<image_id>0</image_id>" in text and "Query:\n<image_id>1</image_id>" in text
    cell = "<slice>" + "<unk>" * 4 + "</slice>"
    assert f"</image>{cell * 3}\nDefect?" in text  # one row of three slices
    assert example.media["tgt_sizes"].tolist() == [[4, 4], [2, 6], [4, 4], [4, 4], [4, 4]]
    assert len(example.media["image_bound"]) == 5 and "labels" not in example.tokens


def test_collation_pads_and_nests_the_batch(processor):
    wide = _bands(150, 60, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    short = ADAPTER.encode(processor, [Image.new("RGB", (40, 40)), "Defect?"], "A")
    long = ADAPTER.encode(processor, [wide, "Is there any visible defect in this image?"], "B")
    batch = ADAPTER.collate([short, long], pad_token_id=7)
    data = batch["data"]
    assert data["input_ids"].shape == batch["labels"].shape == (2, long.length)
    assert (data["input_ids"][0, short.length:] == 7).all()
    assert (batch["labels"][0, short.length:] == IGNORE_INDEX).all()
    assert batch["attention_mask"][0].sum() == short.length
    assert data["position_ids"][1].tolist() == list(range(long.length))
    assert [[tuple(p.shape) for p in row] for row in data["pixel_values"]] == [
        [(3, 14, 224)], [(3, 14, 168), (3, 14, 224), (3, 14, 224), (3, 14, 224)]]
    assert [t.tolist() for t in data["tgt_sizes"]] == [[[4, 4]], [[2, 6], [4, 4], [4, 4], [4, 4]]]
    left = ADAPTER.collate([short, long], pad_token_id=7, padding_side="left")
    shift = long.length - short.length
    assert torch.equal(left["data"]["image_bound"][0], short.media["image_bound"] + shift)
    assert left["data"]["position_ids"][0, shift:].tolist() == list(range(short.length))
    assert left["attention_mask"][0, :shift].sum() == 0
    assert "labels" not in ADAPTER.collate([ADAPTER.encode(processor, ["Defect?"])], pad_token_id=7)


def _module_tree(names: list[str]) -> torch.nn.Module:
    """A module tree with these exact dotted names; a name's last part says what it is."""
    root = torch.nn.Module()
    for name in names:
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, torch.nn.Module())
            parent = getattr(parent, part)
        norm = "norm" in leaf or leaf.startswith("ln_")
        parent.add_module(leaf, torch.nn.LayerNorm(4) if norm else torch.nn.Linear(4, 4))
    return root


LLM_LAYER = [f"llm.model.layers.0.self_attn.{p}_proj" for p in "qkvo"] + \
            [f"llm.model.layers.0.mlp.{p}_proj" for p in ("gate", "up", "down")]
VISION_LAYER = [f"vpm.encoder.layers.0.self_attn.{p}_proj" for p in ("q", "k", "v", "out")] + \
               ["vpm.encoder.layers.0.mlp.fc1", "vpm.encoder.layers.0.mlp.fc2"]
RESAMPLER = ["resampler.kv_proj", "resampler.attn.out_proj"]
MODULES = LLM_LAYER + VISION_LAYER + RESAMPLER + [
    "llm.model.layers.0.input_layernorm", "llm.model.norm", "llm.lm_head", "vpm.encoder.layers.0.layer_norm1",
    "vpm.post_layernorm", "resampler.ln_q", "resampler.ln_kv", "resampler.ln_post"]


def test_lora_presets_select_the_real_module_names():
    from peft import LoraConfig, get_peft_model

    tree = _module_tree(MODULES)
    selected = {name: set(matching_modules(tree, ADAPTER.lora_targets(name))) for name in ADAPTER.lora_presets}
    assert selected["llm"] == selected["swift4"] == set(LLM_LAYER)
    assert selected["swift2"] == selected["llm+projector"] == set(LLM_LAYER + RESAMPLER)
    assert selected["all"] == set(LLM_LAYER + RESAMPLER + VISION_LAYER + ["llm.lm_head"])
    model = get_peft_model(tree, LoraConfig(r=2, target_modules=ADAPTER.lora_targets("swift2")))
    assert {name.removeprefix("base_model.model.").removesuffix(".lora_A.default") for name, _ in
            model.named_modules() if name.endswith("lora_A.default")} == set(LLM_LAYER + RESAMPLER)


def test_a_merged_folder_carries_code_tokenizer_and_configs():
    assert set(CODE_FILES) <= set(ADAPTER.extra_files) and len(CODE_FILES) == 7
    assert {"tokenizer_config.json", "tokenizer.json", "preprocessor_config.json",
            "generation_config.json"} <= set(ADAPTER.extra_files)


# MiniCPM-V-2.6's config.json as its Hub repository ships it (transformers 4.x's format), at toy sizes
BASE_CONFIG = {
    "_name_or_path": "openbmb/MiniCPM-V-2_6", "architectures": ["MiniCPMV"],
    "auto_map": {"AutoConfig": "configuration_minicpm.MiniCPMVConfig", "AutoModel": "modeling_minicpmv.MiniCPMV",
                 "AutoModelForCausalLM": "modeling_minicpmv.MiniCPMV"},
    "attention_dropout": 0.0, "batch_vision_input": True, "bos_token_id": 151643, "drop_vision_last_layer": False,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 64, "image_size": 448, "initializer_range": 0.02,
    "intermediate_size": 128, "max_position_embeddings": 32768, "max_window_layers": 1, "model_type": "minicpmv",
    "num_attention_heads": 2, "num_hidden_layers": 1, "num_key_value_heads": 1, "patch_size": 14, "query_num": 64,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": 131072,
    "slice_config": {"max_slice_nums": 9, "patch_size": 14, "model_type": "minicpmv"}, "slice_mode": True,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.40.0", "use_cache": True,
    "use_image_id": True, "use_sliding_window": False, "version": 2.6, "vision_batch_size": 16,
    "vision_config": {"hidden_size": 32, "image_size": 980, "intermediate_size": 64, "model_type": "siglip",
                      "num_attention_heads": 2, "num_hidden_layers": 2, "patch_size": 14},
    "vocab_size": 151700,
}
# what the checkpoint's configuration_minicpm.MiniCPMVConfig reads under transformers 4.45: its own
# arguments and those of Qwen2Config(4.45), each taken from the top level of config.json
READ_BY_ITS_CODE = (
    "use_cache", "query_num", "image_size", "drop_vision_last_layer", "batch_vision_input", "slice_config",
    "vision_config", "use_image_id", "vision_batch_size",
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
    "tie_word_embeddings", "rope_theta", "rope_scaling", "use_sliding_window", "sliding_window", "max_window_layers",
    "attention_dropout", "bos_token_id", "eos_token_id", "architectures", "auto_map", "model_type",
)


def _as_read(config: dict) -> dict:
    return {key: config.get(key) for key in READ_BY_ITS_CODE}


def test_a_merged_config_keeps_the_format_its_code_reads(tmp_path):
    """transformers 5 writes rope_theta into rope_parameters; the merged folder keeps the base's file."""
    from transformers import Qwen2Config

    from eiad.training.merge import keep_base_config

    base, merged = tmp_path / "base", tmp_path / "merged"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(BASE_CONFIG))
    # what save_pretrained writes for the merged (fp32) model under transformers 5 (MiniCPMVConfig is a Qwen2Config)
    Qwen2Config(**{**BASE_CONFIG, "torch_dtype": "float32"}).save_pretrained(merged)
    rewritten = json.loads((merged / "config.json").read_text())
    assert _as_read(rewritten) != _as_read(BASE_CONFIG) and "rope_theta" not in rewritten  # 4.45 would read 10000
    keep_base_config(base, merged)
    kept = json.loads((merged / "config.json").read_text())
    assert _as_read(kept) == _as_read(BASE_CONFIG)
    assert kept == {**BASE_CONFIG, "torch_dtype": "float32"}  # only the stored dtype changed
    assert Qwen2Config.from_pretrained(merged).rope_parameters == Qwen2Config.from_pretrained(base).rope_parameters


def test_legacy_imports_are_shimmed_then_undone(monkeypatch):
    monkeypatch.setattr("eiad.models.families.minicpmv2_6.compat._importable", lambda module: False)
    before = sys.modules.get("torchvision")
    with legacy_imports():
        from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask

        assert sys.modules["torchvision"] is not before
        assert eval("List[int]") is not None
    assert sys.modules.get("torchvision") is before and not hasattr(builtins, "List")
    assert "transformers.modeling_attn_mask_utils" not in sys.modules
    mask = _prepare_4d_attention_mask(torch.tensor([[1, 1, 0]]), torch.float32)
    assert mask.shape == (1, 1, 3, 3)
    assert (mask[..., :2] == 0).all() and (mask[..., 2] == torch.finfo(torch.float32).min).all()


def test_post_init_is_added_once():
    calls = []

    class Model:
        def __init__(self, config):
            self.config = config

        def post_init(self):
            calls.append(self.config)

    _calling_post_init(_calling_post_init(Model))
    Model("c")
    assert calls == ["c"]


# --- with the remote code ----------------------------------------------------------------------------


def _cached_snapshot() -> Path | None:
    """The newest cached revision of the repository that has its code, config and tokenizer files."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        repos = [repo for repo in scan_cache_dir().repos if repo.repo_id == REPO_ID]
    except CacheNotFound:
        return None
    needed = (*CODE_FILES, "config.json", "preprocessor_config.json", "tokenizer_config.json")
    usable = [revision for repo in repos for revision in repo.revisions
              if all((revision.snapshot_path / name).is_file() for name in needed)]
    return max(usable, key=lambda revision: revision.last_modified).snapshot_path if usable else None


@pytest.fixture(scope="module")
def tiny_remote(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MiniCPM-V 2.6 built by the checkpoint's own code, with its tokenizer."""
    snapshot = _cached_snapshot()
    if snapshot is None:
        pytest.skip(f"{REPO_ID} is not in the local Hugging Face cache; its code, config and tokenizer files are "
                    f"enough: hf download {REPO_ID} --include '*.py' '*.json' '*.txt'")
    dest = tmp_path_factory.mktemp("minicpmv") / "base"
    dest.mkdir()
    for name in ADAPTER.extra_files:
        if (snapshot / name).is_file():
            shutil.copy(snapshot / name, dest / name)
    config = json.loads((snapshot / "config.json").read_text())
    config.update(hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, max_window_layers=1, query_num=4)  # the resampler needs 128 per head
    config["vision_config"].update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config["slice_config"]["scale_resolution"] = 56
    (dest / "config.json").write_text(json.dumps(config))
    settings = json.loads((snapshot / "preprocessor_config.json").read_text())
    (dest / "preprocessor_config.json").write_text(json.dumps({**settings, **SMALL_IMAGES}))
    network_class = model_class(dest)
    torch.manual_seed(0)
    network_class(network_class.config_class.from_pretrained(dest)).save_pretrained(dest)
    return dest


def _batch(processor, prompts) -> dict:
    return ADAPTER.collate([ADAPTER.encode(processor, *p) for p in prompts], processor.tokenizer.pad_token_id)


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _prompts(ddqa: Path, count: int) -> list:
    """DDQA records (small images, no slicing) and one wide image cut into three slices."""
    wide = _bands(150, 60, [(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    return [record_prompt(r) for r in read_jsonl(ddqa / "train.jsonl")[:count]] + [([wide, "Defect?"], "A")]


def test_remote_model_loads_as_built(tiny_remote, small_ddqa):
    from eiad.training.trainer import per_sample_loss

    network_class = model_class(tiny_remote)
    torch.manual_seed(0)
    built = network_class(network_class.config_class.from_pretrained(tiny_remote)).eval()
    processor = REMOTE.processor(tiny_remote)
    loaded = REMOTE.model(tiny_remote).eval()
    resampler = loaded.resampler
    sincos = sys.modules[type(resampler).__module__].get_2d_sincos_pos_embed(resampler.embed_dim, resampler.max_size)
    assert torch.allclose(resampler.pos_embed, torch.from_numpy(sincos))  # rebuilt after loading
    batch = _batch(processor, _prompts(small_ddqa, 2))
    assert torch.allclose(_logits(built, batch), _logits(loaded, batch), atol=1e-5)  # nothing left uninitialised
    one = _batch(processor, _prompts(small_ddqa, 1)[:1])  # one DDQA record
    with torch.no_grad():
        outputs = loaded(**one)
    # the LLM's own loss and eiad's per-record loss read the labels with the same one-token shift
    assert torch.allclose(per_sample_loss(grad_accum=1)(outputs, one["labels"]), outputs.loss, atol=1e-5)


REMOTE_TRAIN = {"seed": 0, "learning_rate": 1e-2, "per_device_batch": 4, "grad_accum": 1, "warmup_ratio": 0.0,
                "scheduler": "constant", "weight_decay": 0.0, "max_grad_norm": 1.0, "save_steps": 100,
                "save_total_limit": 1, "logging_steps": 2, "max_length": 512, "encoding": "lazy"}


def test_remote_model_trains_merges_and_generates(tiny_remote, small_ddqa, tmp_path):
    from safetensors.torch import load_file

    from eiad.training.merge import load_with_adapter, merge_lora
    from eiad.training.trainer import train_lora

    config = train_config(lora={"r": 4, "alpha": 8, "dropout": 0.0, "targets": "swift2"}, max_steps=6,
                          loss_reduction="token", **REMOTE_TRAIN)
    result = train_lora(REMOTE, tiny_remote, small_ddqa / "train.jsonl", tmp_path / "adapter",
                        tmp_path / "checkpoints", tmp_path / "metrics", config)
    rows = (tmp_path / "metrics" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()[1:]
    curve = [float(row.split("\t")[-1]) for row in rows]
    assert result["train_loss"] > 0 and len(curve) == 3 and curve[-1] < curve[0]
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    trained = {key for key, value in weights.items() if "lora_B" in key and value.abs().sum() > 0}
    for module in ("resampler.kv_proj", "resampler.attn.out_proj", "llm.model.layers.0.mlp.down_proj"):
        assert any(module in key for key in trained), module

    merge_lora(REMOTE, tiny_remote, tmp_path / "adapter", tmp_path / "merged")
    merged_dir = tmp_path / "merged"
    assert all((merged_dir / name).is_file() for name in CODE_FILES if (tiny_remote / name).is_file())
    assert (merged_dir / "tokenizer_config.json").read_bytes() == (tiny_remote / "tokenizer_config.json").read_bytes()
    base_config = json.loads((tiny_remote / "config.json").read_text())
    merged_config = json.loads((merged_dir / "config.json").read_text())
    assert _as_read(merged_config) == _as_read(base_config)  # read alike under transformers 4.45 and 5
    assert {k: v for k, v in merged_config.items() if k not in ("torch_dtype", "dtype")} == {
        k: v for k, v in base_config.items() if k not in ("torch_dtype", "dtype")}
    processor = REMOTE.processor(merged_dir)  # the merged folder loads on its own
    merged = REMOTE.model(merged_dir).eval()
    with_adapter = load_with_adapter(REMOTE, tiny_remote, tmp_path / "adapter").eval()
    base = REMOTE.model(tiny_remote).eval()
    batch = _batch(processor, _prompts(small_ddqa, 3))
    assert torch.allclose(_logits(with_adapter, batch), _logits(merged, batch), atol=1e-4)
    assert not torch.allclose(_logits(base, batch), _logits(merged, batch), atol=1e-2)

    prompts = [prompt for prompt, _ in _prompts(small_ddqa, 2)]
    together = ADAPTER.generate(merged, processor, prompts, max_new_tokens=4)
    alone = [ADAPTER.generate(merged, processor, [prompt], max_new_tokens=4)[0] for prompt in prompts]
    assert together == alone and all(isinstance(answer, str) for answer in together)  # left padding is exact


def test_remote_model_trains_with_per_record_loss_and_checkpointing(tiny_remote, small_ddqa, tmp_path):
    from eiad.training.trainer import train_lora

    config = train_config(lora={"r": 4, "alpha": 8, "dropout": 0.0, "targets": "swift4"}, max_steps=2,
                          loss_reduction="sample", gradient_checkpointing=True, **REMOTE_TRAIN)
    result = train_lora(REMOTE, tiny_remote, small_ddqa / "train.jsonl", tmp_path / "adapter",
                        tmp_path / "checkpoints", tmp_path / "metrics", config)
    assert torch.isfinite(torch.tensor(result["train_loss"])) and result["train_loss"] > 0
