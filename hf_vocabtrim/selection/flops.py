# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Architecture-aware decode FLOPs per token of a draft, with the LM head as a function of k.

A matrix-vector product with a (m x n) weight costs 2*m*n FLOPs, so the linear parts cost 2 x (their parameters);
attention over a context of L cached tokens adds 4 * heads * head_dim * L (scores and weighted sum). Norms,
activations and rotary embeddings are counted roughly (a few FLOPs per element) in ``other``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

GATED = {
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gemma3",
    "phi3",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmo",
    "olmo2",
    "granite",
    "smollm3",
    "cohere",
}
NON_GATED = {"gpt2", "gpt_neox", "gpt_bigcode", "starcoder2", "phi"}
SUPPORTED = sorted(GATED | NON_GATED)


@dataclass(frozen=True)
class DecodeFlops:
    """FLOPs of one decode step (one new token, batch 1), by component."""

    attention_proj: float
    attention_context: float
    mlp: float
    lm_head: float
    other: float

    @property
    def total(self) -> float:
        return self.attention_proj + self.attention_context + self.mlp + self.lm_head + self.other

    @property
    def body(self) -> float:
        """Everything but the LM head."""
        return self.total - self.lm_head

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    if default is not None:
        return default
    raise ValueError(f"config {type(config).__name__} has none of {names}; cannot compute its FLOPs.")


def _text_config(config: Any) -> Any:
    if isinstance(config, dict):
        from transformers import AutoConfig

        config = dict(config)
        config = AutoConfig.for_model(config.pop("model_type"), **config)
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def _mlp_flops(config: Any, layer: int, hidden: int, gated: bool) -> float:
    model_type = config.model_type
    n_experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None)
    is_moe_layer = bool(n_experts) and model_type in {"mixtral", "qwen2_moe", "qwen3_moe"}
    if is_moe_layer and model_type in {"qwen2_moe", "qwen3_moe"}:
        step = getattr(config, "decoder_sparse_step", 1) or 1
        only_mlp = set(getattr(config, "mlp_only_layers", None) or [])
        is_moe_layer = layer not in only_mlp and (layer + 1) % step == 0
    if not is_moe_layer:
        inter = _get(config, "intermediate_size", "n_inner", default=4 * hidden)
        return (3 if gated else 2) * 2 * hidden * inter
    active = _get(config, "num_experts_per_tok")
    inter = _get(config, "moe_intermediate_size", "intermediate_size")
    flops = active * 3 * 2 * hidden * inter + 2 * hidden * int(n_experts or 0)  # active experts + router
    shared = getattr(config, "shared_expert_intermediate_size", None)
    if shared:  # qwen2_moe: a shared gated expert and its scalar gate
        flops += 3 * 2 * hidden * shared + 2 * hidden
    return flops


def decode_flops(config: Any, k: int | None = None, context_length: int = 1024) -> DecodeFlops:
    """FLOPs per decoded token of a causal LM with an LM head of k rows (default: the full vocabulary)."""
    config = _text_config(config)
    model_type = getattr(config, "model_type", "")
    if model_type not in GATED and model_type not in NON_GATED:
        raise ValueError(f"unknown architecture {model_type!r} for the FLOPs model; supported: {', '.join(SUPPORTED)}.")
    gated = model_type in GATED
    hidden = _get(config, "hidden_size", "n_embd")
    layers = _get(config, "num_hidden_layers", "n_layer")
    heads = _get(config, "num_attention_heads", "n_head")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if model_type == "gpt_bigcode" and getattr(config, "multi_query", False):
        kv_heads = 1
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    vocab = _get(config, "vocab_size")
    k = vocab if k is None else k
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)

    proj = ctx = mlp = 0.0
    for layer in range(layers):
        proj += 2 * hidden * head_dim * (heads + 2 * kv_heads) + 2 * heads * head_dim * hidden
        sliding = window is not None and (layer_types is None or layer_types[layer] == "sliding_attention")
        if layer_types is None and model_type in {"gemma2"}:
            sliding = layer % 2 == 0
        length = min(context_length, window) if (sliding and window) else context_length
        ctx += 4 * heads * head_dim * length
        mlp += _mlp_flops(config, layer, hidden, gated)
    norms_per_layer = 4 if model_type in {"gemma2", "gemma3_text"} else 2
    other = 5 * hidden * (norms_per_layer * layers + 1) + layers * (4 * hidden + 6 * heads * head_dim)
    return DecodeFlops(attention_proj=proj, attention_context=ctx, mlp=mlp, lm_head=2.0 * hidden * k, other=other)


def eagle3_decode_flops(target_config: Any, k: int | None = None, context_length: int = 1024) -> DecodeFlops:
    """FLOPs per draft token of a one-layer EAGLE-3 head on ``target_config`` (Li et al., 2025).

    The head fuses three target hidden states (fc: 3h -> h), runs one decoder layer whose attention reads the
    concatenation [token embedding; fused state] (2h wide for q, k, v), a gated MLP of the target's width, and an
    LM head of k rows (default: the full vocabulary).
    """
    config = _text_config(target_config)
    hidden = _get(config, "hidden_size")
    heads = _get(config, "num_attention_heads")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    inter = _get(config, "intermediate_size")
    k = _get(config, "vocab_size") if k is None else k
    fc = 2 * 3 * hidden * hidden
    proj = 2 * (2 * hidden) * head_dim * (heads + 2 * kv_heads) + 2 * heads * head_dim * hidden
    ctx = 4 * heads * head_dim * context_length
    mlp = 3 * 2 * hidden * inter
    other = 5 * hidden * 4 + 4 * hidden
    return DecodeFlops(attention_proj=fc + proj, attention_context=ctx, mlp=mlp, lm_head=2.0 * hidden * k, other=other)


def latency_reduction(flops_full: DecodeFlops, ks: np.ndarray | int, vocab_size: int) -> np.ndarray:
    """R(k) = 1 - FLOPs(k) / FLOPs(V): only the LM head depends on k."""
    ks = np.asarray(ks, dtype=np.float64)
    head_per_row = flops_full.lm_head / vocab_size
    return (vocab_size - ks) * head_per_row / flops_full.total


def linear_latency_reduction(a: float, b: float, ks: np.ndarray | int, vocab_size: int) -> np.ndarray:
    """R(k) from a measured fit time(k) = a + b * k (see ``vocabtrim profile``)."""
    ks = np.asarray(ks, dtype=np.float64)
    return 1.0 - (a + b * ks) / (a + b * vocab_size)
