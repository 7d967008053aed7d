"""MiniCPM-V 2.6 (``openbmb/MiniCPM-V-2_6``), the model EIAD fine-tuned, run on the code it ships with.

Its modelling code comes with the checkpoint (``trust_remote_code``, an explicit opt-in) and was
written for transformers 4.4x; :func:`model_class` and :meth:`MiniCPMV26Adapter.load_model` make it
run on 5.x at load time, editing no downloaded file. Inputs are built here, not by the checkpoint's
processor code: images are sliced and expanded into query slots as its image processor and the
official fine-tuning code (OpenBMB/MiniCPM-V ``finetune/dataset.py``) do, the text goes through
the tokenizer's own chat template as ``chat()`` does, and the labels are ms-swift's (the answer and
its ``<|im_end|>``), so training and evaluation share one path.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MethodType, ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image

from eiad.errors import ConfigError, DataError, EiadError
from eiad.models.base import IGNORE_INDEX, Example, Prompt, VLMAdapter

FAMILY = "minicpmv2_6"
IMAGE_TAG = "(<image>./</image>)"  # chat()'s stand-in for an image, expanded after templating
TERMINATORS = ("<|im_end|>", "<|endoftext|>")  # chat() stops on either
CODE_FILES = ("configuration_minicpm.py", "image_processing_minicpmv.py", "modeling_minicpmv.py",
              "modeling_navit_siglip.py", "processing_minicpmv.py", "resampler.py", "tokenization_minicpmv_fast.py")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt")

_LLM = r"llm\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
# the resampler's only linear layers; `resampler\..*` would also hit its LayerNorms, which peft refuses
_RESAMPLER = r"resampler\.(kv_proj|attn\.out_proj)"
_VISION = r"vpm\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))"


# --- image slicing (the image processor's rules) ------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The image processor's settings, as named in ``preprocessor_config.json``; defaults are its own.

    2.6 always slices images (``slice_mode: true``), the only mode implemented here.
    """

    image_feature_size: int = 64  # query slots per image or slice (the resampler's query_num)
    patch_size: int = 14
    scale_resolution: int = 448
    max_slice_nums: int = 9
    use_image_id: bool = False
    norm_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    norm_std: tuple[float, ...] = (0.5, 0.5, 0.5)
    im_start: str = "<image>"
    im_end: str = "</image>"
    slice_start: str = "<slice>"
    slice_end: str = "</slice>"
    unk: str = "<unk>"
    im_id_start: str = "<image_id>"
    im_id_end: str = "</image_id>"

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> ImageConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in known})

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.im_start, self.im_end, self.slice_start, self.slice_end, self.unk, self.im_id_start,
                self.im_id_end)


Grid = tuple[int, int]  # (columns, rows) of slices


def _ensure_divide(length: float, patch: int) -> int:
    return max(round(length / patch) * patch, patch)


def best_resize(size: tuple[float, float], scale: int, patch: int, upscale: bool = False) -> tuple[int, int]:
    """(width, height) of about ``scale``² pixels with the aspect ratio kept, both multiples of ``patch``.

    Smaller images keep their size unless ``upscale``.
    """
    width, height = size
    if width * height > scale * scale or upscale:
        ratio = width / height
        height = int(scale / math.sqrt(ratio))
        width = int(height * ratio)
    return _ensure_divide(width, patch), _ensure_divide(height, patch)


def slice_grid(size: tuple[int, int], scale: int, max_slices: int) -> Grid | None:
    """The grid an image is cut into, or None when one ``scale``² tile holds it.

    As many slices as the image has tiles' worth of pixels (at most ``max_slices``), give or take
    one; of those counts' factorisations, the grid whose aspect ratio is closest to the image's.
    """
    width, height = size
    multiple = min(math.ceil(width * height / (scale * scale)), max_slices)
    if multiple <= 1:
        return None
    counts = [n for n in (multiple - 1, multiple, multiple + 1) if 1 < n <= max_slices]
    grids = [(m, n // m) for n in counts for m in range(1, n + 1) if n % m == 0]
    log_ratio = math.log(width / height)
    return min(grids, key=lambda grid: abs(log_ratio - math.log(grid[0] / grid[1])))  # first of equals, as theirs


def refine_size(size: tuple[int, int], grid: Grid, scale: int, patch: int) -> tuple[int, int]:
    """The size the image is resized to before cutting: every slice about ``scale``², patch-aligned."""
    columns, rows = grid
    cell = (_ensure_divide(size[0], columns) / columns, _ensure_divide(size[1], rows) / rows)
    width, height = best_resize(cell, scale, patch, upscale=True)
    return width * columns, height * rows


def slice_image(image: Image.Image, config: ImageConfig) -> tuple[list[Image.Image], Grid | None]:
    """What the vision encoder sees: the whole image resized, then the grid's slices row by row."""
    scale, patch = config.scale_resolution, config.patch_size
    grid = slice_grid(image.size, scale, config.max_slice_nums)
    source = image.resize(best_resize(image.size, scale, patch, upscale=grid is None), Image.Resampling.BICUBIC)
    if grid is None:
        return [source], None
    refined = image.resize(refine_size(image.size, grid, scale, patch), Image.Resampling.BICUBIC)
    width, height = refined.width // grid[0], refined.height // grid[1]
    slices = [refined.crop((c * width, r * height, (c + 1) * width, (r + 1) * height))
              for r in range(grid[1]) for c in range(grid[0])]
    return [source, *slices], grid


def image_placeholder(config: ImageConfig, index: int, grid: Grid | None) -> str:
    """The text an image becomes: its id, the whole image's query slots, then a line of slices per row.

    As the processor and ms-swift write it; the official fine-tuning script gives the id only to
    images it slices, so an image would read differently there in training than in ``chat()``.
    """
    slots = config.unk * config.image_feature_size
    text = f"{config.im_start}{slots}{config.im_end}"
    if config.use_image_id:
        text = f"{config.im_id_start}{index}{config.im_id_end}{text}"
    if grid is not None:
        row = f"{config.slice_start}{slots}{config.slice_end}" * grid[0]
        text += "\n".join([row] * grid[1])
    return text


def expand_image_tags(text: str, placeholders: Sequence[str]) -> str:
    """Replace each :data:`IMAGE_TAG` in ``text``, in order, by the next placeholder."""
    chunks = text.split(IMAGE_TAG)
    if len(chunks) != len(placeholders) + 1:
        raise EiadError(f"{FAMILY}: {len(placeholders)} images but {len(chunks) - 1} {IMAGE_TAG} tags in the prompt "
                        f"(does the question text contain the tag?)")
    return "".join(chunk + placeholder for chunk, placeholder in zip(chunks, placeholders)) + chunks[-1]


def to_bytes(image: Image.Image) -> torch.Tensor:
    """[3, H, W] uint8: pixels are kept as bytes (a quarter of float32) until a batch is built."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def normalise(pixels: torch.Tensor, mean_std: torch.Tensor) -> torch.Tensor:
    """Bytes to the image processor's float32 values: scaled to [0, 1], then (x - mean) / std per channel."""
    mean, std = (row[:, None, None] for row in mean_std)
    return (pixels.float() / 255 - mean) / std


def reshape_by_patch(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """[3, H, W] -> [3, patch, H·W/patch]: the patches side by side in row-major order, as the model reads them."""
    channels, height, width = pixels.shape
    blocks = pixels.reshape(channels, height // patch, patch, width // patch, patch)
    return blocks.permute(0, 2, 1, 3, 4).reshape(channels, patch, -1)


def image_bounds(input_ids: torch.Tensor, openers: Sequence[int], closers: Sequence[int]) -> torch.Tensor:
    """[first query slot, closing token) index pairs of every image and slice span, in text order."""
    starts = torch.nonzero(torch.isin(input_ids, torch.tensor(openers))).flatten() + 1
    ends = torch.nonzero(torch.isin(input_ids, torch.tensor(closers))).flatten()
    if len(starts) != len(ends) or bool((ends <= starts).any()):
        raise EiadError(f"{FAMILY}: unbalanced image tokens in the encoded prompt")
    return torch.stack([starts, ends], dim=1)


def answer_labels(input_ids: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Labels aligned with the inputs (the LLM shifts them): -100 over the prompt, the tokens after it."""
    labels = input_ids.clone()
    labels[..., :prompt_length] = IGNORE_INDEX
    return labels


def through_first(ids: Sequence[int], stops: set[int]) -> list[int]:
    """``ids`` up to and including the first of ``stops`` (all of them when none occurs)."""
    ids = list(ids)
    end = next((i for i, token in enumerate(ids) if token in stops), len(ids) - 1)
    return ids[:end + 1]


# --- batches --------------------------------------------------------------------------------------


def _pad(row: torch.Tensor, length: int, fill: int, left: bool) -> torch.Tensor:
    pad = torch.full((length - len(row),), fill, dtype=row.dtype)
    return torch.cat([pad, row] if left else [row, pad])


def split_pixels(pixels: torch.Tensor, tgt_sizes: torch.Tensor) -> list[torch.Tensor]:
    """One example's side-by-side slices [3, patch, ΣL] back into a [3, patch, L] tensor per slice."""
    widths = (tgt_sizes[:, 0] * tgt_sizes[:, 1] * pixels.shape[1]).tolist()
    return list(torch.split(pixels, widths, dim=2))


def collate_examples(examples: Sequence[Example], pad_token_id: int, padding_side: str = "right") -> dict[str, Any]:
    """The nested batch ``MiniCPMV.forward(data=..., **llm_kwargs)`` takes.

    ``data`` holds what the model's own code reads (ids, positions, per-example lists of slices,
    their patch grids and their spans in the text); the attention mask and the labels go to the LLM.
    """
    longest = max(example.length for example in examples)
    left = padding_side == "left"
    ids = [example.tokens["input_ids"][0] for example in examples]
    input_ids = torch.stack([_pad(row, longest, pad_token_id, left) for row in ids])
    attention_mask = torch.stack([_pad(torch.ones_like(row), longest, 0, left) for row in ids])
    shifts = [longest - len(row) if left else 0 for row in ids]
    data = {
        "input_ids": input_ids,
        "position_ids": (attention_mask.cumsum(dim=1) - 1).clamp(min=0),
        "pixel_values": [split_pixels(normalise(e.media["pixel_values"], e.media["mean_std"]), e.media["tgt_sizes"])
                         for e in examples],
        "tgt_sizes": [example.media["tgt_sizes"] for example in examples],
        "image_bound": [example.media["image_bound"] + shift for example, shift in zip(examples, shifts)],
    }
    batch: dict[str, Any] = {"data": data, "attention_mask": attention_mask}
    if "labels" in examples[0].tokens:
        batch["labels"] = torch.stack([_pad(e.tokens["labels"][0], longest, IGNORE_INDEX, left) for e in examples])
    return batch


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_device(item, device) for item in value]
    return value


# --- the processor ----------------------------------------------------------------------------------


@dataclass
class MiniCPMVProcessor:
    """The checkpoint's tokenizer and image settings: all the adapter needs to build inputs."""

    tokenizer: Any
    settings: dict[str, Any]  # preprocessor_config.json as read, saved back unchanged
    images: ImageConfig = field(init=False)

    def __post_init__(self) -> None:
        self.images = ImageConfig.from_dict(self.settings)

    def ids(self, *tokens: str) -> list[int]:
        return [self.tokenizer.convert_tokens_to_ids(token) for token in tokens]

    def save_pretrained(self, dest: str | Path) -> None:
        self.tokenizer.save_pretrained(dest)
        (Path(dest) / "preprocessor_config.json").write_text(json.dumps(self.settings, indent=2) + "\n")


def chat_ids(processor: MiniCPMVProcessor, prompt: Prompt, placeholders: Sequence[str],
             answer: str | None) -> tuple[list[int], int]:
    """The chat's token ids and the prompt's length in them, as ``chat()`` renders it.

    Images become :data:`IMAGE_TAG` lines in the user turn, the tokenizer's chat template adds the
    turns, and each tag is then expanded. An answer is cut after its ``<|im_end|>``, as ms-swift's
    response ends.
    """
    tokenizer = processor.tokenizer
    user = "\n".join(IMAGE_TAG if not isinstance(part, str) else part for part in prompt)
    chat = [{"role": "user", "content": user}]
    prompt_text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(expand_image_tags(prompt_text, placeholders), add_special_tokens=False)["input_ids"]
    if answer is None:
        return ids, len(ids)
    full_text = tokenizer.apply_chat_template([*chat, {"role": "assistant", "content": answer}], tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ConfigError(f"{FAMILY}: the chat template renders the prompt differently with an answer")
    completion = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    end_of_turn = processor.ids(TERMINATORS[0])[0]
    if end_of_turn not in completion:
        raise ConfigError(f"{FAMILY}: the chat template does not close the answer with {TERMINATORS[0]}")
    return ids + completion[:completion.index(end_of_turn) + 1], len(ids)


def image_media(processor: MiniCPMVProcessor, slices: Sequence[Image.Image],
                input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Slices side by side as bytes, their normalisation, their patch grids and their spans in ``input_ids``."""
    config, patch = processor.images, processor.images.patch_size
    pixels = [reshape_by_patch(to_bytes(image), patch) for image in slices]
    return {
        "pixel_values": torch.cat(pixels, dim=2) if pixels else torch.zeros(3, patch, 0, dtype=torch.uint8),
        "mean_std": torch.tensor([config.norm_mean, config.norm_std], dtype=torch.float32),
        "tgt_sizes": torch.tensor([(image.height // patch, image.width // patch) for image in slices],
                                  dtype=torch.int32).reshape(-1, 2),
        "image_bound": image_bounds(input_ids, processor.ids(config.im_start, config.slice_start),
                                    processor.ids(config.im_end, config.slice_end)),
    }


def _check(model_dir: Path, processor: MiniCPMVProcessor) -> None:
    if not processor.settings.get("slice_mode", True):
        raise DataError(model_dir, "preprocessor_config.json turns slicing off, which MiniCPM-V 2.6 never does")
    vocabulary = processor.tokenizer.get_vocab()
    missing = [token for token in (*processor.images.tokens, *TERMINATORS) if token not in vocabulary]
    if missing:
        raise DataError(model_dir, f"the tokenizer lacks MiniCPM-V's special tokens {missing}")


# --- the remote code under transformers 5.x ------------------------------------------------------


def prepare_4d_attention_mask(mask: torch.Tensor, dtype: torch.dtype, tgt_len: int | None = None) -> torch.Tensor:
    """transformers 4.x's ``_prepare_4d_attention_mask``: [batch, src] 1/0 -> additive [batch, 1, tgt, src]."""
    batch, source = mask.shape
    target = source if tgt_len is None else tgt_len
    expanded = mask[:, None, None, :].expand(batch, 1, target, source).to(dtype)
    return (1.0 - expanded).masked_fill((1.0 - expanded).bool(), torch.finfo(dtype).min)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except (ImportError, OSError, RuntimeError):  # absent, or (torchvision) built for another torch
        return False
    return True


@contextmanager
def legacy_imports() -> Iterator[None]:
    """While the checkpoint's code is imported: what it needs and transformers 5.x or torch lack.

    (1) ``transformers.modeling_attn_mask_utils`` is gone (only ``_prepare_4d_attention_mask`` is
    used); (2) ``modeling_minicpmv.py`` imports torchvision without using it, and transformers
    refuses to load a file whose imports are missing; (3) ``resampler.py`` annotates with ``List``,
    which it used to get from torch's star imports. All three are undone on exit.
    """
    shims: dict[str, ModuleType] = {}
    if not _importable("transformers.modeling_attn_mask_utils"):
        shims["transformers.modeling_attn_mask_utils"] = ModuleType("transformers.modeling_attn_mask_utils")
        shims["transformers.modeling_attn_mask_utils"]._prepare_4d_attention_mask = prepare_4d_attention_mask
    if not _importable("torchvision"):
        shims["torchvision"] = ModuleType("torchvision")
    add_list = not hasattr(builtins, "List")
    saved = {name: sys.modules.get(name) for name in shims}
    sys.modules.update(shims)
    if add_list:
        builtins.List = list  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if add_list:
            del builtins.List  # type: ignore[attr-defined]


def _calling_post_init(model_class: type) -> type:
    """(4) ``MiniCPMV.__init__`` never calls ``post_init()``, which 5.x's ``from_pretrained`` relies on."""
    if not model_class.__dict__.get("_eiad_post_init", False):
        init = model_class.__init__

        @functools.wraps(init)
        def __init__(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
            init(self, config, *args, **kwargs)
            self.post_init()

        model_class.__init__ = __init__
        model_class._eiad_post_init = True
    return model_class


def model_class(model_dir: Path) -> type:
    """The checkpoint's own ``MiniCPMV`` class, imported and patched to build under transformers 5.x."""
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    with legacy_imports():
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
        return _calling_post_init(get_class_from_dynamic_module(config.auto_map["AutoModel"], model_dir))


def _input_grads_as_copies(self: Any) -> None:
    """``enable_input_require_grads`` whose hook hands on a non-leaf copy of the embeddings.

    ``get_vllm_embedding`` scatters the image features into the token embeddings in place, which
    autograd refuses on the leaf tensor the stock hook produces (needed for gradient checkpointing).
    """
    def hook(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output.requires_grad_(True)
        return output.clone()

    layers = {id(layer): layer for layer in (self.get_input_embeddings(), self.vpm.get_input_embeddings())}
    self._require_grads_hooks = [layer.register_forward_hook(hook) for layer in layers.values()]


def _require_opt_in(trust_remote_code: bool) -> None:
    if not trust_remote_code:
        raise ConfigError(
            f"model family {FAMILY!r} runs Python code that ships with the checkpoint; review that code at the "
            f"pinned revision, then set model.source: hub and model.hub.trust_remote_code: true"
        )


# --- the adapter ------------------------------------------------------------------------------------


class MiniCPMV26Adapter(VLMAdapter):
    family = FAMILY
    model_types = ("minicpmv",)
    remote_code = True
    lora_presets = {
        "llm": _LLM,
        "llm+projector": f"({_LLM}|{_RESAMPLER})",
        "all": f"({_LLM}|{_RESAMPLER}|{_VISION}|llm\\.lm_head)",
        "swift2": f"({_LLM}|{_RESAMPLER})",  # ms-swift 2.x (EIAD): LLM and resampler linears
        "swift4": _LLM,  # ms-swift 4.x: LLM linears only
    }
    # save_pretrained writes only some of the code files and none of the tokenizer's
    extra_files = (*CODE_FILES, *TOKENIZER_FILES, "preprocessor_config.json", "generation_config.json")

    def load_processor(self, model_dir: Path, trust_remote_code: bool = False) -> MiniCPMVProcessor:
        _require_opt_in(trust_remote_code)
        from transformers import AutoTokenizer

        settings_file = model_dir / "preprocessor_config.json"
        if not settings_file.is_file():
            raise DataError(model_dir, "model folder has no preprocessor_config.json")
        with legacy_imports():
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
        if tokenizer.pad_token is None:  # any id will do: padding is masked out and carries no label
            tokenizer.pad_token = TERMINATORS[1]
        processor = MiniCPMVProcessor(tokenizer, json.loads(settings_file.read_text()))
        _check(model_dir, processor)
        return processor

    def load_model(self, model_dir: Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> Any:
        _require_opt_in(trust_remote_code)
        from transformers import AutoModel

        if not (model_dir / "config.json").is_file():
            raise DataError(model_dir, "is not a model folder (no config.json)")
        model_class(model_dir)  # patched before AutoModel builds it
        with legacy_imports():
            model = AutoModel.from_pretrained(model_dir, dtype=dtype, trust_remote_code=True)
        # (5) the resampler's non-persistent position table comes back uninitialised (meta-device init)
        resampler = model.resampler
        resampler._set_2d_pos_cache(resampler.max_size, device=resampler.query.device)
        model.enable_input_require_grads = MethodType(_input_grads_as_copies, model)
        return model

    def encode(self, processor: MiniCPMVProcessor, prompt: Prompt, answer: str | None = None) -> Example:
        """Token ids with every image expanded into its query slots; labels cover the answer and <|im_end|>."""
        sliced = [slice_image(part, processor.images) for part in prompt if not isinstance(part, str)]
        placeholders = [image_placeholder(processor.images, index, grid) for index, (_, grid) in enumerate(sliced)]
        ids, prompt_length = chat_ids(processor, prompt, placeholders, answer)
        input_ids = torch.tensor([ids])
        tokens = {"input_ids": input_ids}
        if answer is not None:
            tokens["labels"] = answer_labels(input_ids, prompt_length)
        slices = [image for images, _ in sliced for image in images]
        return Example(tokens, image_media(processor, slices, input_ids[0]))

    def collate(self, examples: Sequence[Example], pad_token_id: int, padding_side: str = "right") -> dict[str, Any]:
        return collate_examples(examples, pad_token_id, padding_side)

    @torch.inference_mode()
    def generate(self, model: Any, processor: MiniCPMVProcessor, prompts: Sequence[Prompt],
                 max_new_tokens: int) -> list[str]:
        """Greedy answers through the model's own ``generate`` (``chat(sampling=False)`` is beam search)."""
        tokenizer = processor.tokenizer
        batch = self.collate([self.encode(processor, prompt) for prompt in prompts], tokenizer.pad_token_id, "left")
        batch = _to_device(batch, model.device)
        data = batch["data"]
        output = model.generate(
            input_ids=data["input_ids"], pixel_values=data["pixel_values"], tgt_sizes=data["tgt_sizes"],
            image_bound=data["image_bound"], attention_mask=batch["attention_mask"], tokenizer=tokenizer,
            max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, repetition_penalty=1.0,
            temperature=None, top_p=None, top_k=None,
        )
        stops = set(processor.ids(*TERMINATORS))
        # only new tokens come back (the LLM is fed embeddings); finished rows are padded after a terminator
        return [tokenizer.decode(through_first(row.tolist(), stops), skip_special_tokens=True).strip()
                for row in output]


ADAPTER = MiniCPMV26Adapter()
