# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Measured decode latency of a draft vs k on the user's hardware, and the fit time(k) = a + b * k.

Timing: batch 1, KV cache after a prompt, warm-up round first, configurations interleaved round by round (machines
are noisy), median over rounds. Each step is what ``generate()`` does per token: the forward, the k -> V scatter for
trimmed drafts, and the argmax.
"""

from __future__ import annotations

import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..hardware import device_name
from ..model.modeling_trimmed_draft import TrimmedDraftModel

Step = Callable[[torch.Tensor, Any], torch.Tensor]


def _cache_kwarg(model: Any) -> str:
    """transformers 5 names the KV cache argument ``cache``, 4.x ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def decode_step(model: Any, body_only: bool = False) -> Step:
    """One greedy decode step ``(ids, cache) -> next ids`` of a causal LM, a trimmed draft, or its body alone."""
    base = model.draft if isinstance(model, TrimmedDraftModel) else model
    if body_only:
        body = base.get_decoder() if hasattr(base, "get_decoder") else base.model
        kw = _cache_kwarg(body)
        return lambda ids, cache: body(input_ids=ids, use_cache=True, **{kw: cache}).last_hidden_state[:, -1].argmax(-1)
    kw = _cache_kwarg(base)
    scatter = model.to_full_vocab if isinstance(model, TrimmedDraftModel) else None

    def step(ids: torch.Tensor, cache: Any) -> torch.Tensor:
        logits = model(input_ids=ids, use_cache=True, **{kw: cache}).logits[:, -1].float()
        return (scatter(logits) if scatter is not None else logits).argmax(-1)

    return step


def time_decode(
    steps_by_key: dict[Any, Step],
    config: Any,
    prompt: int = 64,
    steps: int = 8,
    rounds: int = 5,
    seed: int = 0,
    tokens_per_step: dict[Any, int] | None = None,
) -> dict[Any, dict[str, Any]]:
    """Median ms per step of each step function, measured interleaved; also the per-round samples.

    ``tokens_per_step`` gives how many tokens a step appends to the cache (default 1), for cropping between rounds.
    """
    from transformers import DynamicCache

    vocab = int(config.get_text_config().vocab_size)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (1, prompt), generator=generator)
    caches = {}
    samples: dict[Any, list[float]] = {key: [] for key in steps_by_key}
    with torch.no_grad():
        for key, step in steps_by_key.items():
            caches[key] = DynamicCache(config=config.get_text_config())
            step(ids, caches[key])  # prefill
            if hasattr(caches[key], "activate_past_recording"):  # sliding-window layers past their window can crop
                caches[key].activate_past_recording()  # (as generate() does after its prefill)
        for round_index in range(rounds + 1):  # round 0 is a warm-up
            for key, step in steps_by_key.items():
                token = torch.randint(0, vocab, (1, 1), generator=generator)
                start = time.perf_counter()
                for _ in range(steps):
                    token = step(token, caches[key])[:, None]
                elapsed = (time.perf_counter() - start) * 1000 / steps
                appended = steps * (tokens_per_step or {}).get(key, 1)
                caches[key].crop(-appended)  # back to the prompt (a negative count drops tokens)
                if round_index:
                    samples[key].append(elapsed)
    return {key: {"ms": statistics.median(v), "samples_ms": v} for key, v in samples.items()}


def fit_linear(ks: Sequence[int], ms: Sequence[float]) -> dict[str, float]:
    """Least-squares time(k) = a + b * k, with its relative errors on the points."""
    k = np.asarray(ks, dtype=np.float64)
    t = np.asarray(ms, dtype=np.float64)
    b, a = np.polyfit(k, t, 1)
    rel = np.abs(a + b * k - t) / t
    return {
        "a_ms": float(a),
        "b_ms_per_row": float(b),
        "max_rel_error": float(rel.max()),
        "mean_rel_error": float(rel.mean()),
    }


def profile_draft(
    draft: Any, ks: Sequence[int], prompt: int = 64, steps: int = 8, rounds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Time the draft's decode step at each k (random kept sets sharing the draft's body) and fit a + b * k."""
    vocab = int(draft.config.get_text_config().vocab_size)
    ks = sorted({int(k) for k in ks if 0 < k < vocab} | {vocab})
    generator = torch.Generator().manual_seed(seed)
    steps_by_key: dict[Any, Step] = {vocab: decode_step(draft)}
    for k in ks[:-1]:
        keep = torch.randperm(vocab, generator=generator)[:k]
        trimmed = TrimmedDraftModel.from_draft(draft, keep, keep_special_tokens=False, context_tokens=False).eval()
        steps_by_key[k] = decode_step(trimmed)
    timings = time_decode(steps_by_key, draft.config, prompt, steps, rounds, seed)
    points = [{"k": k, "ms": timings[k]["ms"]} for k in ks]
    device = next(draft.parameters()).device
    fit = fit_linear([p["k"] for p in points], [p["ms"] for p in points])
    return {
        **fit,
        "vocab_size": vocab,
        "points": points,
        "prompt_tokens": prompt,
        "steps": steps,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "hardware": device_name(device),
        "lm_head_share": lm_head_share(fit, vocab),
    }


def lm_head_share(fit: dict[str, float], vocab: int) -> float:
    """The full LM head's share of the draft's decode step by the fit: b*V / (a + b*V)."""
    head = fit["b_ms_per_row"] * vocab
    return head / (fit["a_ms"] + head)
