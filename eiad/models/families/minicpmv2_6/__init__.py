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

import json
from collections.abc import Sequence
from pathlib import Path
from types import MethodType
from typing import Any, ClassVar

import torch

from eiad.errors import DataError
from eiad.models.adapter import Example, VLMAdapter
from eiad.models.families.minicpmv2_6.batching import answer_labels, collate_examples, to_device
from eiad.models.families.minicpmv2_6.compat import input_grads_as_copies, legacy_imports, model_class, require_opt_in
from eiad.models.families.minicpmv2_6.processor import (
    TERMINATORS,
    MiniCPMVProcessor,
    chat_ids,
    check_processor,
    image_media,
    through_first,
)
from eiad.models.families.minicpmv2_6.slicing import FAMILY, image_placeholder, slice_image
from eiad.questions import Prompt

CODE_FILES = ("configuration_minicpm.py", "image_processing_minicpmv.py", "modeling_minicpmv.py",
              "modeling_navit_siglip.py", "processing_minicpmv.py", "resampler.py", "tokenization_minicpmv_fast.py")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt")

_LLM = r"llm\.model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
# the resampler's only linear layers; `resampler\..*` would also hit its LayerNorms, which peft refuses
_RESAMPLER = r"resampler\.(kv_proj|attn\.out_proj)"
_VISION = r"vpm\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))"


class MiniCPMV26Adapter(VLMAdapter):
    family = FAMILY
    model_types = ("minicpmv",)
    remote_code = True
    lora_presets: ClassVar[dict[str, str]] = {
        "llm": _LLM,
        "llm+projector": f"({_LLM}|{_RESAMPLER})",
        "all": f"({_LLM}|{_RESAMPLER}|{_VISION}|llm\\.lm_head)",
        "swift2": f"({_LLM}|{_RESAMPLER})",  # ms-swift 2.x (EIAD): LLM and resampler linears
        "swift4": _LLM,  # ms-swift 4.x: LLM linears only
    }
    prefix_cache = False  # its own generate() takes embeddings, not a cache to continue from
    # save_pretrained writes only some of the code files and none of the tokenizer's
    extra_files = (*CODE_FILES, *TOKENIZER_FILES, "preprocessor_config.json", "generation_config.json")

    def load_processor(self, model_dir: Path, trust_remote_code: bool = False) -> MiniCPMVProcessor:
        require_opt_in(trust_remote_code)
        from transformers import AutoTokenizer

        settings_file = model_dir / "preprocessor_config.json"
        if not settings_file.is_file():
            raise DataError(model_dir, "model folder has no preprocessor_config.json")
        with legacy_imports():
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
        if tokenizer.pad_token is None:  # any id will do: padding is masked out and carries no label
            tokenizer.pad_token = TERMINATORS[1]
        processor = MiniCPMVProcessor(tokenizer, json.loads(settings_file.read_text()))
        check_processor(model_dir, processor)
        return processor

    def load_model(self, model_dir: Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> Any:
        require_opt_in(trust_remote_code)
        from transformers import AutoModel

        if not (model_dir / "config.json").is_file():
            raise DataError(model_dir, "is not a model folder (no config.json)")
        model_class(model_dir)  # patched before AutoModel builds it
        with legacy_imports():
            model = AutoModel.from_pretrained(model_dir, dtype=dtype, trust_remote_code=True)
        # (5) the resampler's non-persistent position table comes back uninitialised (meta-device init)
        resampler = model.resampler
        resampler._set_2d_pos_cache(resampler.max_size, device=resampler.query.device)
        model.enable_input_require_grads = MethodType(input_grads_as_copies, model)
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
    def next_token_logits(self, model: Any, processor: MiniCPMVProcessor, prompts: Sequence[Prompt]) -> torch.Tensor:
        batch = self.collate([self.encode(processor, prompt) for prompt in prompts], processor.tokenizer.pad_token_id,
                             "left")
        batch = to_device(batch, model.device)
        return model(data=batch["data"], attention_mask=batch["attention_mask"]).logits[:, -1]

    @torch.inference_mode()
    def generate(self, model: Any, processor: MiniCPMVProcessor, prompts: Sequence[Prompt],
                 max_new_tokens: int) -> list[str]:
        """Greedy answers through the model's own ``generate`` (``chat(sampling=False)`` is beam search)."""
        tokenizer = processor.tokenizer
        batch = self.collate([self.encode(processor, prompt) for prompt in prompts], tokenizer.pad_token_id, "left")
        batch = to_device(batch, model.device)
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
