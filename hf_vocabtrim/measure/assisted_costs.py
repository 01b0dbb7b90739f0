# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Measure a :class:`~hf_vocabtrim.selection.speedup.CostModel` inside real ``generate(assistant_model=...)`` calls
(``vocabtrim profile --assisted``): prefill, the target's per-token step, and per assisted round the draft's
proposals and everything else, at two context lengths."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..model.modeling_trimmed_draft import TrimmedDraftModel
from ..selection.speedup import CostModel


def _median_ms(samples: Sequence[float]) -> float:
    return 1000 * statistics.median(samples) if samples else float("nan")


def time_prefill(model: Any, lengths: Sequence[int], rounds: int = 3, seed: int = 0) -> tuple[float, float]:
    """Fit of the prompt forward time (ms) = a + b * prompt tokens, timed interleaved over ``lengths``."""
    vocab = int(model.config.get_text_config().vocab_size)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    prompts = {n: torch.randint(0, vocab, (1, n), generator=generator).to(device) for n in lengths}
    samples: dict[int, list[float]] = {n: [] for n in lengths}
    with torch.no_grad():
        for round_index in range(rounds + 1):  # round 0 is a warm-up
            for n, ids in prompts.items():
                start = time.perf_counter()
                model(input_ids=ids, use_cache=True, logits_to_keep=1)
                if round_index:
                    samples[n].append(time.perf_counter() - start)
    ms = [_median_ms(samples[n]) for n in lengths]
    b, a = np.polyfit(np.asarray(lengths, dtype=np.float64), np.asarray(ms), 1)
    return float(a), float(b)


def _rounds(stats: Any, gamma: int) -> tuple[list[float], list[float]]:
    """Per full round (gamma proposals, not the first: it holds both prefills) its drafting and other seconds."""
    draft, other = [], []
    for r in range(1, len(stats.round_starts) - 1):
        if r < len(stats.proposed) and stats.proposed[r] == gamma:
            duration = stats.round_starts[r + 1] - stats.round_starts[r]
            draft.append(stats.round_draft_seconds[r])
            other.append(duration - stats.round_draft_seconds[r])
    return draft, other


def profile_assisted(
    target: Any,
    draft: Any,
    gamma: int = 5,
    ks: Sequence[int] | None = None,
    prompt_tokens: Sequence[int] = (64, 512),
    new_tokens: int = 32,
    seed: int = 0,
    repeats: int = 2,
) -> CostModel:
    """Measure the :class:`~hf_vocabtrim.selection.speedup.CostModel` of a target/draft pair inside real
    ``generate()`` calls.

    Times the prompt forward of both models at three lengths, and at each of the two ``prompt_tokens`` lengths: the
    target alone at two output lengths (their difference is the per-token cost) and assisted generation with the
    untrimmed draft and a draft trimmed to ``ks[0]`` (random kept sets: acceptance does not matter, the cost of a
    round does): per full round, the drafting time and the rest (verification of gamma + 1 tokens, cache crops,
    bookkeeping). The other ``ks`` are timed at the first length and give the cost per LM-head row. Every timed call
    is made ``repeats`` times, the configurations in a rotated order (machine drift hits them all), and the medians
    over all rounds are kept.
    """
    vocab = int(draft.config.get_text_config().vocab_size)
    usable = min(vocab, int(target.config.get_text_config().vocab_size))
    if ks is None:  # a 95% and a 57% cut of a 152k vocabulary; an eighth and a half of a small one
        ks = [k for k in (8192, 65536) if k < vocab] or [vocab // 8, vocab // 2]
    ks = sorted({int(k) for k in ks if 0 < k < vocab})
    lengths = sorted({int(n) for n in prompt_tokens})
    if not ks or len(lengths) != 2:
        raise ValueError(f"profile_assisted needs a k in (0, V={vocab}) and two prompt lengths, got {ks}, {lengths}.")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    generator = torch.Generator().manual_seed(seed)
    device = next(target.parameters()).device
    target_prefill = time_prefill(target, [lengths[0], sum(lengths) // 2, lengths[1]], seed=seed)
    draft_prefill = time_prefill(draft, [lengths[0], sum(lengths) // 2, lengths[1]], seed=seed)
    settings = {
        "num_assistant_tokens": gamma,
        "num_assistant_tokens_schedule": "constant",
        "assistant_confidence_threshold": 0.0,
    }
    saved = {key: getattr(draft.generation_config, key, None) for key in settings}
    draft.generation_config.update(**settings)
    drafts: dict[Any, Any] = {"full": draft}
    for k in ks:  # random kept sets: acceptance does not matter here, the cost of a round does
        keep = torch.randperm(usable, generator=generator)[:k]
        drafts[k] = TrimmedDraftModel.from_draft(
            draft, keep, target=target, keep_special_tokens=False, context_tokens=False, assistant_settings=settings
        ).eval()
    measured: dict[int, dict[str, Any]] = {}
    try:
        for index, length in enumerate(lengths):
            prompt = torch.randint(0, usable, (1, length), generator=generator).to(device)
            keys = [key for key in drafts if not index or key in ("full", ks[0])]
            measured[length] = _measure_length(
                target, {key: drafts[key] for key in keys}, prompt, gamma, new_tokens, repeats
            )
    finally:
        draft.generation_config.update(**saved)
    info = {"prompt_tokens": lengths, "new_tokens": new_tokens, "repeats": repeats, "threads": torch.get_num_threads()}
    info.update(device=str(device), dtype=str(next(draft.parameters()).dtype))
    return _cost_model(measured, ks, lengths, vocab, gamma, new_tokens, target_prefill, draft_prefill, info)


def _generate_seconds(target: Any, prompt: torch.Tensor, new: int, assistant: Any = None) -> float:
    """Wall time of one greedy ``target.generate()`` of exactly ``new`` tokens (assisted by ``assistant``)."""
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "do_sample": False}
    kwargs.update(max_new_tokens=new, min_new_tokens=new)
    if assistant is not None:
        kwargs["assistant_model"] = assistant
    start = time.perf_counter()
    with torch.no_grad():
        target.generate(**kwargs)
    return time.perf_counter() - start


def _measure_length(
    target: Any, drafts: dict[Any, Any], prompt: torch.Tensor, gamma: int, new_tokens: int, repeats: int
) -> dict[str, Any]:
    """At one prompt length: the target's per-token time, and per draft the median drafting time of a full round
    and (all drafts together) the rest of a round; each repeat in a rotated order of the drafts."""
    from .instrument import record_assisted

    _generate_seconds(target, prompt, 2)  # warm-up
    for assistant in drafts.values():
        _generate_seconds(target, prompt, 4, assistant)  # warm-up
    keys = list(drafts)
    per_token: list[float] = []
    drafting: dict[Any, list[float]] = {key: [] for key in keys}
    other: list[float] = []
    for repeat in range(repeats):
        short, long = _generate_seconds(target, prompt, 4), _generate_seconds(target, prompt, 4 + new_tokens)
        per_token.append((long - short) / new_tokens)
        for key in keys[repeat % len(keys) :] + keys[: repeat % len(keys)]:
            with record_assisted() as stats:
                _generate_seconds(target, prompt, new_tokens, drafts[key])
            draft_s, rest = _rounds(stats, gamma)
            if not draft_s:
                raise ValueError(f"no full round of {gamma} proposals was timed: raise new_tokens.")
            drafting[key].extend(draft_s)
            other.extend(rest)
    return {
        "target": _median_ms(per_token),
        "draft": {key: _median_ms(samples) for key, samples in drafting.items()},
        "verify": _median_ms(other),
    }


def _cost_model(
    measured: dict[int, dict[str, Any]],
    ks: list[int],
    lengths: list[int],
    vocab: int,
    gamma: int,
    new_tokens: int,
    target_prefill: Any,
    draft_prefill: Any,
    info: dict[str, Any],
) -> CostModel:
    """The :class:`CostModel` of the timings at the two prompt lengths: costs at the shorter one, slopes in k (LM-head
    rows) and in context length between them."""
    short_row, long_row = measured[lengths[0]], measured[lengths[1]]
    span = lengths[1] - lengths[0]  # both runs generate new_tokens: the mean contexts differ by the prompts'
    ref_k = ks[0]
    first = short_row["draft"]
    slope = (
        (first[ks[-1]] - first[ref_k]) / (ks[-1] - ref_k)
        if len(ks) > 1
        else (first["full"] - first[ref_k]) / (vocab - ref_k)
    )
    draft_slope = sum(long_row["draft"][key] - first[key] for key in ("full", ref_k)) / (2 * span)
    measured_ms = {str(n): {**r, "draft": {str(k): v for k, v in r["draft"].items()}} for n, r in measured.items()}
    return CostModel(
        gamma=gamma,
        vocab_size=vocab,
        target_token_ms=short_row["target"],
        verify_round_ms=short_row["verify"],
        draft_round_full_ms=first["full"],
        draft_round_ref_ms=first[ref_k],
        ref_k=ref_k,
        draft_row_ms=slope,
        target_prefill=target_prefill,
        draft_prefill=draft_prefill,
        ref_context=lengths[0] + new_tokens / 2,
        context_slopes={
            "target": (long_row["target"] - short_row["target"]) / span,
            "verify": (long_row["verify"] - short_row["verify"]) / span,
            "draft": draft_slope,
        },
        info={"measured_ms": measured_ms, **info},
    )
