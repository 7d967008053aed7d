"""Variable-length SDPA and padding-free batches: the same outputs, losses and gradients as padded
batches and per-image attention, on both Qwen families (tiny models, seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import model_handle, train_config

from eiad.ddqa.records import record_prompt
from eiad.io import read_jsonl
from eiad.models.attention import (
    MASKED_GQA_SDPA,
    VARLEN_SDPA,
    masked_gqa_sdpa,
    use_masked_gqa_sdpa,
    use_varlen_sdpa,
    varlen_sdpa,
)
from eiad.models.fetch import fetch_base_model
from eiad.models.qwen import PatchProjection
from eiad.training.loss import answer_loss, logits_only_at, predicting_positions
from eiad.training.packing import PREDICTING, pack
from eiad.training.trainer import attach_lora, training_collator

SIZES = {"seed": 0, "vocab_size": 320, "hidden_size": 32, "layers": 2, "heads": 4, "kv_heads": 2,
         "intermediate_size": 64, "vision_depth": 2, "vision_width": 32, "vision_heads": 2, "image_size": 28,
         "initializer_range": 0.1, "patch_size": 14, "merge_size": 1}
FAMILIES = ["qwen2_vl", "qwen2_5_vl"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest, small_ddqa: Path, tmp_path_factory: pytest.TempPathFactory):
    handle = model_handle(request.param, SIZES)
    folder = tmp_path_factory.mktemp(request.param) / "base"
    folder.mkdir()
    fetch_base_model(handle, folder, small_ddqa)
    return handle, folder


def _one_by_one(query, key, value, lengths, causal):
    """Each sequence attended to alone, with torch's own SDPA (key/value heads repeated for GQA)."""
    repeat = query.shape[1] // key.shape[1]
    outputs, start = [], 0
    for length in lengths:
        q, k, v = (t[:, :, start:start + length] for t in (query, key, value))
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        outputs.append(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal))
        start += length
    return torch.cat(outputs, dim=2).transpose(1, 2)


@pytest.mark.parametrize("lengths", [[5, 5, 5], [3, 7, 1, 6]], ids=["equal", "unequal"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_varlen_sdpa_attends_within_each_sequence(lengths, causal):
    generator = torch.Generator().manual_seed(0)
    total = sum(lengths)
    query = torch.randn(1, 4, total, 8, generator=generator, requires_grad=True)
    key, value = (torch.randn(1, 2, total, 8, generator=generator, requires_grad=True) for _ in range(2))
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    module = type("Attention", (), {"is_causal": causal})()
    got, _ = varlen_sdpa(module, query, key, value, cu_seq_lens_q=bounds)
    expected = _one_by_one(query, key, value, lengths, causal)
    assert got.shape == (1, total, 4, 8)
    assert torch.allclose(got, expected, atol=1e-6)
    weights = torch.randn(got.shape, generator=generator)
    grads = torch.autograd.grad((got * weights).sum(), (query, key, value))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (query, key, value))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, expected_grads))
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        varlen_sdpa(module, query, key, value)


@pytest.mark.parametrize("masked", [True, False], ids=["padded rows", "no mask"])
def test_masked_gqa_sdpa_equals_transformers_sdpa(masked):
    """The engine's padded continuations: grouped key/value heads read in place, the same outputs as
    transformers' SDPA, which copies them out per query head."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    generator = torch.Generator().manual_seed(0)
    query = torch.randn(3, 4, 5, 8, generator=generator)
    key, value = (torch.randn(3, 2, 9, 8, generator=generator) for _ in range(2))
    # left padding, as the engine lays rows out: each row's first keys are masked
    mask = (torch.arange(9) >= torch.tensor([0, 2, 4])[:, None])[:, None, None, :].expand(3, 1, 5, 9) if masked else None
    module = type("Attention", (), {"is_causal": True, "num_key_value_groups": 2})()
    got, _ = masked_gqa_sdpa(module, query, key, value, mask, scaling=0.3)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.3)
    assert got.shape == expected.shape == (3, 5, 4, 8)
    assert torch.equal(got, expected)


def test_the_engine_runs_its_language_model_with_masked_gqa_sdpa(family):
    from eiad.evaluation.engine import Engine

    handle, folder = family
    network = handle.model(folder).eval()
    Engine(handle, network, handle.processor(folder), "choice", 4)
    assert network.config.get_text_config()._attn_implementation == MASKED_GQA_SDPA
    assert network.config.vision_config._attn_implementation == VARLEN_SDPA  # the vision tower's stays
    other = handle.model(folder).config.get_text_config()
    other._attn_implementation = "eager"
    use_masked_gqa_sdpa(other)
    assert other._attn_implementation == "eager"  # only SDPA is replaced


def _records_batch(handle, folder, model, small_ddqa):
    """A right-padded training batch of records of every task (lengths differ), with M-RoPE positions."""
    processor = handle.processor(folder)
    records = read_jsonl(small_ddqa / "train.jsonl")
    chosen = [next(r for r in records if r["task"] == task) for task in ("AD", "DC", "RDL", "DFM")] + records[:4]
    examples = [handle.adapter.encode(processor, *record_prompt(record)) for record in chosen]
    return training_collator(handle.adapter, model, processor.tokenizer.pad_token_id, packed=False)(examples)


def test_the_collator_keeps_each_records_positions_equal_to_the_batchs_own(family, small_ddqa):
    """Positions computed per record, once, and padded: the family's positions for the whole batch."""
    handle, folder = family
    model, processor = handle.model(folder), handle.processor(folder)
    records = read_jsonl(small_ddqa / "train.jsonl")
    chosen = [next(r for r in records if r["task"] == task) for task in ("DFM", "AD", "DC", "RDL")]  # unequal
    examples = [handle.adapter.encode(processor, *record_prompt(record)) for record in chosen]
    collate = training_collator(handle.adapter, model, processor.tokenizer.pad_token_id, packed=False)

    def batch_positions(chosen):
        return handle.adapter.position_ids(model, handle.adapter.collate(chosen, processor.tokenizer.pad_token_id))

    assert torch.equal(collate(examples[:2])["position_ids"], batch_positions(examples[:2]))
    kept = [example.derived["position_ids"] for example in examples[:2]]
    mixed = examples[::-1]  # two drawn again (their kept positions), two for the first time
    assert torch.equal(collate(mixed)["position_ids"], batch_positions(mixed))
    assert all(example.derived["position_ids"] is row for example, row in zip(examples, kept))


def test_the_vision_tower_gives_the_same_outputs_with_one_attention_call_and_one_patch_product(family, small_ddqa):
    handle, folder = family
    model = handle.model(folder)
    # every load of the family: attention over all images at once, the patch embedding as a product
    assert model.config.vision_config._attn_implementation == VARLEN_SDPA
    projection = model.model.visual.patch_embed.proj
    assert type(projection) is PatchProjection
    batch = _records_batch(handle, folder, model, small_ddqa)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        fast = model(**inputs).logits
        model.config.vision_config._attn_implementation = "sdpa"  # transformers' loop, one call per image
        projection.__class__ = torch.nn.Conv3d
        plain = model(**inputs).logits
    assert torch.allclose(fast, plain, atol=1e-5)
    assert list(model.state_dict()) == list(handle.model(folder).state_dict())  # the same parameters, same names


@pytest.mark.parametrize("reduction", ["token", "sample"])
def test_a_packed_batch_gives_the_padded_batch_loss_and_gradients(family, small_ddqa, reduction):
    handle, folder = family
    assert handle.adapter.padding_free
    model = attach_lora(handle.model(folder), handle.adapter, _lora())
    padded = _records_batch(handle, folder, model.get_base_model(), small_ddqa)
    assert (padded["attention_mask"] == 0).any()  # records of several lengths: there is padding to drop
    packed = pack(padded)
    assert packed["input_ids"].shape == (1, int(padded["attention_mask"].sum()))
    loss = answer_loss(reduction, grad_accum=1)
    results = []
    for inputs, implementation in ((padded, "sdpa"), (packed, VARLEN_SDPA)):
        model.zero_grad()
        model.config.get_text_config()._attn_implementation = "sdpa"
        if implementation == VARLEN_SDPA:
            use_varlen_sdpa(model.config.get_text_config())
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        predicting = inputs.pop(PREDICTING, None)
        with logits_only_at(model.get_output_embeddings(), predicting_positions(labels) if predicting is None
                            else predicting):
            value = loss(model(**inputs), labels)
        value.backward()
        results.append((value.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    assert torch.allclose(padded_loss, packed_loss, atol=1e-6)
    assert all(torch.allclose(padded_grads[n], packed_grads[n], rtol=1e-4, atol=1e-5) for n in padded_grads)


def _lora():
    return train_config(lora={"r": 4, "alpha": 8, "dropout": 0.0, "targets": "all"}).lora
