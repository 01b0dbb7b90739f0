"""The FLOPs model against parameter counts of real configs (2 x active linear parameters per token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from transformers import AutoConfig, AutoModelForCausalLM

from hf_vocabtrim.selection.flops import decode_flops, eagle3_decode_flops, latency_reduction

CONFIGS = sorted((Path(__file__).parent / "fixtures" / "configs").glob("*.json"))


def _config(path: Path):
    data = json.loads(path.read_text())
    return AutoConfig.for_model(data.pop("model_type"), **data)


def _active_linear_params(config) -> float:
    """Matrix parameters a decode step multiplies by (experts scaled by active/total), LM head at full V."""
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config)
    embeddings = {id(model.get_input_embeddings().weight)}
    for module in model.modules():  # learned position embeddings (GPT-2) are lookups too
        if isinstance(module, torch.nn.Embedding):
            embeddings.add(id(module.weight))
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    total = 0.0
    for name, param in model.named_parameters(remove_duplicate=False):
        if param.ndim < 2 or id(param) in embeddings and "lm_head" not in name:
            continue
        scale = config.num_experts_per_tok / experts if ".experts." in f"{name}." and "shared" not in name else 1.0
        total += param.numel() * scale
    head = model.get_output_embeddings().weight
    if id(head) in embeddings and not any(n.startswith("lm_head") for n, _ in model.named_parameters()):
        total += head.numel()  # tied head: the product with the embedding matrix still happens
    return total


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_linear_flops_equal_twice_active_parameters(path):
    config = _config(path)
    flops = decode_flops(config, context_length=1)
    linear = flops.attention_proj + flops.mlp + flops.lm_head
    assert linear == pytest.approx(2 * _active_linear_params(config), rel=1e-3)
    assert flops.lm_head == 2 * config.get_text_config().vocab_size * (
        getattr(config, "hidden_size", None) or config.n_embd
    )


def test_lm_head_shares_quoted_in_the_brief():
    here = Path(__file__).parent / "fixtures" / "configs"
    qwen = decode_flops(_config(here / "qwen2.5-0.5b-instruct.json"), context_length=1)
    gemma = decode_flops(_config(here / "gemma-3-270m.json"), context_length=1)
    eagle = eagle3_decode_flops(_config(here / "llama-3.1-8b.json"), context_length=1)
    assert qwen.lm_head / qwen.total == pytest.approx(0.27, abs=0.02)
    assert gemma.lm_head / gemma.total == pytest.approx(0.62, abs=0.03)
    assert eagle.lm_head / eagle.total == pytest.approx(0.64, abs=0.01)  # EAGLE-3 on Llama-3-8B, full vocabulary


def test_latency_reduction_and_context():
    config = _config(Path(__file__).parent / "fixtures" / "configs" / "llama-3.2-1b.json")
    full = decode_flops(config, context_length=512)
    vocab = config.vocab_size
    assert latency_reduction(full, vocab, vocab) == 0.0
    assert latency_reduction(full, 0, vocab) == pytest.approx(full.lm_head / full.total)
    assert decode_flops(config, k=8192, context_length=512).total == pytest.approx(
        full.total * (1 - float(latency_reduction(full, 8192, vocab)))
    )
    assert decode_flops(config, context_length=4096).attention_context == 8 * full.attention_context
    sliding = _config(Path(__file__).parent / "fixtures" / "configs" / "gemma-3-270m.json")
    assert decode_flops(sliding, context_length=8192).attention_context < 18 * 4 * 4 * 256 * 8192


def test_unknown_architecture_fails_clearly():
    config = AutoConfig.for_model("bert")
    with pytest.raises(ValueError, match="unknown architecture 'bert'"):
        decode_flops(config)
