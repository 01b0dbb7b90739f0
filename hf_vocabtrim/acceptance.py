# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Greedy acceptance of a trimmed draft for every k at once, from one teacher-forced forward of each model.

At a position whose next target token is y, a draft trimmed to the first k ids of a keep ``order`` proposes y
(greedy) iff y is kept (rank(y) < k) and no kept id has a higher draft logit, i.e. iff rank(y) < k <= m, where m is
the smallest rank among ids whose draft logit beats y's. So each position matches for one interval of k, and a walk
along the per-position matches with draft length gamma gives the exact tokens per target step tau(k) along that
sequence (exact when the sequence is the target's own greedy output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def match_intervals(draft_logits: torch.Tensor, next_ids: torch.Tensor, rank: torch.Tensor) -> tuple[np.ndarray, ...]:
    """For logits (T, V) and next ids (T,), the k interval [lo, hi] in which the trimmed draft's argmax is next_id.

    ``rank[i]`` is the position of id i in the keep order. Positions never matched have lo > hi.
    """
    logits = draft_logits.float()
    vocab = logits.shape[-1]
    own = logits.gather(-1, next_ids[:, None])
    blocking = torch.where(logits > own, rank[None, :], torch.full_like(rank[None, :], vocab)).min(-1).values
    lo = rank[next_ids] + 1
    return lo.cpu().numpy(), blocking.cpu().numpy()


def matches_for_ks(lo: np.ndarray, hi: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Boolean (len(ks), T): whether the draft trimmed to k proposes the next token at each position."""
    ks_arr = np.asarray(ks)[:, None]
    return (lo[None, :] <= ks_arr) & (ks_arr <= hi[None, :])


def tokens_per_step(matches: np.ndarray, gamma: int) -> np.ndarray:
    """Exact greedy walk: each target step accepts the run of matches (at most gamma) and adds one token.

    ``matches`` is (n_k, T); returns tau per row = tokens produced / target steps over the T positions.
    """
    n_k, length = matches.shape
    taus = np.empty(n_k)
    for row in range(n_k):
        m = matches[row]
        pos = steps = 0
        while pos < length:
            run = 0
            while run < gamma and pos + run < length and m[pos + run]:
                run += 1
            pos += run + 1
            steps += 1
        taus[row] = length / steps
    return taus


@dataclass
class AcceptanceCurve:
    """tau(k) on a grid of k (plus the full vocabulary), for draft length gamma."""

    ks: list[int]
    tau: list[float]
    match_rate: list[float]
    gamma: int
    positions: int
    sequences: int

    def interpolate(self, vocab_size: int) -> np.ndarray:
        """tau for every k = 0..V (piecewise linear in log k between grid points)."""
        ks = np.asarray(self.ks, dtype=np.float64)
        all_k = np.arange(vocab_size + 1, dtype=np.float64)
        return np.interp(np.log(np.maximum(all_k, 1)), np.log(ks), np.asarray(self.tau))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def acceptance_curve(
    target: Any,
    draft: Any,
    sequences: Sequence[torch.Tensor],
    starts: Sequence[int],
    order: np.ndarray,
    ks: Sequence[int],
    gamma: int = 5,
    use_target_argmax: bool = True,
) -> AcceptanceCurve:
    """tau(k) over ``sequences`` (1-D id tensors): positions from ``starts[i]`` on (e.g. the assistant reply).

    With ``use_target_argmax`` the next token at each position is the target's greedy choice (teacher forcing along
    the reference text; exact along the target's own greedy output); otherwise the reference token itself.
    """
    vocab = len(order)
    rank = torch.empty(vocab, dtype=torch.long)
    rank[torch.as_tensor(order)] = torch.arange(vocab)
    ks = sorted(set(int(k) for k in ks) | {vocab})
    all_matches, positions = [], 0
    for seq, start in zip(sequences, starts):
        ids = seq[None, :]
        with torch.no_grad():
            draft_logits = draft(ids).logits[0, start - 1 : -1]
            next_ids = target(ids).logits[0, start - 1 : -1].argmax(-1) if use_target_argmax else seq[start:]
        lo, hi = match_intervals(draft_logits, next_ids, rank.to(draft_logits.device))
        all_matches.append(matches_for_ks(lo, hi, ks))
        positions += len(lo)
    taus = np.zeros(len(ks))
    steps_weight = 0
    for matches in all_matches:  # tau over all sequences: total tokens / total steps
        length = matches.shape[1]
        tau = tokens_per_step(matches, gamma)
        taus += length / tau
        steps_weight += length
    rate = np.concatenate(all_matches, axis=1).mean(axis=1)
    return AcceptanceCurve(
        ks=ks,
        tau=list(steps_weight / taus),
        match_rate=rate.tolist(),
        gamma=gamma,
        positions=positions,
        sequences=len(all_matches),
    )


def predicted_speedup(
    tau: np.ndarray, draft_ms: np.ndarray, verify_ms: float, target_ms: float, gamma: int
) -> np.ndarray:
    """Speedup over the target alone: tau tokens per round of gamma draft steps plus one verification."""
    return tau * target_ms / (gamma * draft_ms + verify_ms)


def measure_acceptance(
    target: Any,
    draft: Any,
    tokenizer: Any,
    rows: Any,
    counts: Any,
    ks: Sequence[int] | None = None,
    gamma: int = 5,
    max_length: int = 1024,
    time_steps: bool = True,
) -> dict[str, Any]:
    """tau(k) on calibration chats (first assistant turn of each, teacher-forced along the target's greedy choices)
    for a kept set ranked by ``counts``, plus step timings of target and draft on this machine."""
    from .coverage import rank_ids
    from .masking import assistant_token_mask
    from .planning import forced_ids

    vocab = int(draft.config.get_text_config().vocab_size)
    order = rank_ids(counts.counts, forced_ids(counts, draft.config, draft.generation_config), vocab_size=vocab)
    sequences, starts = [], []
    for row in rows:
        ids, mask = assistant_token_mask(tokenizer, row["messages"])
        if True not in mask or mask.index(True) == 0:
            continue
        start = mask.index(True)
        end = start
        while end < len(mask) and mask[end]:
            end += 1
        end = min(end, max_length)
        if end > start:
            sequences.append(torch.tensor(ids[:end]))
            starts.append(start)
    if not sequences:
        raise ValueError("no assistant turn to measure acceptance on: the data has no assistant text.")
    if ks is None:
        ks = sorted({int(k) for k in np.geomspace(min(256, vocab), vocab, 24)} | {vocab})
    curve = acceptance_curve(target, draft, sequences, starts, order, ks, gamma)
    result = {**curve.as_dict(), "vocab_hash": counts.vocab_hash}
    if time_steps:
        from .profiling import time_assisted_steps

        result["timing"] = time_assisted_steps(target, draft, gamma)
    return result
