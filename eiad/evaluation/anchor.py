"""The anchor that evaluation speed is measured against: a question asked as MMAD's scripts ask it.

MMAD's scripts (``evaluation/examples/Transformers/*_query.py``) ask one question per call: the
processor's own chat template and call on the question's images, read and processed again, then
transformers' greedy ``generate``. ``benchmarks/evaluate_speed.py`` and the GPU check time this
loop beside eiad's engine; its answers equal the pipeline's from-scratch answers (tested).
"""

from __future__ import annotations

from typing import Any

import torch

from eiad.models.adapter import VLMAdapter
from eiad.questions import Prompt


@torch.inference_mode()
def ask_as_mmad(adapter: VLMAdapter, network: Any, processor: Any, prompt: Prompt, max_new_tokens: int) -> str:
    """``prompt``'s greedy answer through the processor's own chat template and call (no cached
    render, no family shortcut), batch 1."""
    text = processor.apply_chat_template(adapter.messages(prompt), add_generation_prompt=True, tokenize=False)
    images = [part for part in prompt if not isinstance(part, str)]
    inputs = VLMAdapter.process(adapter, processor, text, images).to(network.device)
    output = network.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              temperature=None, top_p=None, top_k=None, pad_token_id=processor.tokenizer.pad_token_id)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()
