# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Greedy acceptance of a trimmed draft for every k at once, from one teacher-forced forward of each model.

At a position whose next target token is y, the draft (greedy) proposes y iff y is in its scored set S and no id of
S beats y, where x beats y if its logit is higher, or equal with a lower id (``argmax`` over the V-wide scattered row
returns the lowest id among tied maxima). With S = the first k ids of a keep ``order``, that holds iff
rank(y) < k <= m, m being the smallest rank among ids that beat y: one interval of k per position. With context
tokens, S also holds every id already in the sequence (C): the position never matches if an id of C beats y;
otherwise it matches for k <= m, and for every such k if y is in C. A walk along the per-position matches with draft
length gamma gives the exact tokens per target step tau(k) along that sequence (exact when the sequence is the
target's own greedy output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

_CHUNK_ELEMENTS = 1 << 24  # logits rows are processed in chunks of at most this many elements (64 MB in fp32)


class Intervals(NamedTuple):
    """Per position: the draft proposes the next token iff lo <= k <= hi (static set; and with context ids)."""

    lo: np.ndarray
    hi: np.ndarray
    context_lo: np.ndarray | None = None
    context_hi: np.ndarray | None = None


def match_intervals(
    draft_logits: torch.Tensor,
    next_ids: torch.Tensor,
    rank: torch.Tensor,
    first_seen: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> Intervals:
    """For logits (T, V) and next ids (T,), the k intervals in which the trimmed draft's argmax is next_id.

    ``rank[i]`` is the position of id i in the keep order. With ``first_seen`` (V,: the index of an id's first
    occurrence in the sequence, or a large number) and ``positions`` (T,: the index of the last token fed at each
    row), the context-token intervals too. Positions never matched have lo > hi. Rows are processed in chunks.
    """
    length, vocab = draft_logits.shape
    device = draft_logits.device
    rank = rank.to(device)
    ids = torch.arange(vocab, device=device)
    with_context = first_seen is not None and positions is not None
    hi_parts, blocked_parts = [], []
    chunk = max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    for start in range(0, length, chunk):
        logits = draft_logits[start : start + chunk].float()
        y = next_ids[start : start + chunk].to(device)
        own = logits.gather(-1, y[:, None])
        beats = (logits > own) | ((logits == own) & (ids[None, :] < y[:, None]))
        hi_parts.append(torch.where(beats, rank[None, :], torch.full_like(rank[None, :], vocab)).min(-1).values)
        if with_context:
            seen = first_seen.to(device)[None, :] <= positions[start : start + chunk].to(device)[:, None]  # type: ignore[index, union-attr]
            blocked_parts.append((beats & seen).any(-1))
    hi = torch.cat(hi_parts) if hi_parts else torch.zeros(0, dtype=torch.long, device=device)
    lo = rank[next_ids.to(device)] + 1
    if not with_context:
        return Intervals(lo.cpu().numpy(), hi.cpu().numpy())
    blocked = torch.cat(blocked_parts) if blocked_parts else torch.zeros(0, dtype=torch.bool, device=device)
    y_seen = first_seen.to(device)[next_ids.to(device)] <= positions.to(device)  # type: ignore[union-attr]
    context_lo = torch.where(y_seen, torch.zeros_like(lo), lo)
    context_hi = torch.where(blocked, torch.full_like(hi, -1), hi)
    return Intervals(lo.cpu().numpy(), hi.cpu().numpy(), context_lo.cpu().numpy(), context_hi.cpu().numpy())


def keep_ranks(order: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(V,) position of each id in the keep ``order`` (the inverse permutation)."""
    order = torch.as_tensor(order, dtype=torch.long)
    rank = torch.empty(order.numel(), dtype=torch.long)
    rank[order] = torch.arange(order.numel())
    return rank


def first_occurrence(sequence: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(V,) index of each id's first occurrence in ``sequence`` (``len(sequence)`` where it never occurs)."""
    length = sequence.numel()
    first = torch.full((vocab_size,), length, dtype=torch.long)
    index = torch.arange(length, dtype=torch.long)
    return first.scatter_reduce(0, sequence.cpu().long(), index, reduce="amin", include_self=True)


def matches_for_ks(lo: np.ndarray, hi: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Boolean (len(ks), T): whether the draft trimmed to k proposes the next token at each position."""
    ks_arr = np.asarray(ks)[:, None]
    return (lo[None, :] <= ks_arr) & (ks_arr <= hi[None, :])


def tokens_per_step(matches: np.ndarray, gamma: int) -> np.ndarray:
    """Exact greedy walk: each target step accepts the run of matches (at most gamma) and adds one token.

    ``matches`` is (n_k, T); returns tau per row = tokens produced / target steps over the T positions.
    """
    return matches.shape[1] / target_steps(matches, gamma)


def target_steps(matches: np.ndarray, gamma: int) -> np.ndarray:
    """Number of target verification steps (rounds) of the greedy walk, per row of ``matches``."""
    n_k, length = matches.shape
    steps = np.empty(n_k)
    for row in range(n_k):
        m = matches[row]
        pos = count = 0
        while pos < length:
            run = 0
            while run < gamma and pos + run < length and m[pos + run]:
                run += 1
            pos += run + 1
            count += 1
        steps[row] = count
    return steps


def context_rows(positions: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Mean number of context LM-head rows per position, for each k: one slot per position of the sequence so far
    (:class:`~hf_vocabtrim.model.modeling_trimmed_draft.ContextSlots`; kept and repeated ids are scored and masked), so
    the same for every k."""
    mean = float(np.mean(np.asarray(positions) + 1)) if len(positions) else 0.0
    return np.full(len(ks), mean)


@dataclass
class AcceptanceCurve:
    """tau(k) on a grid of k (plus the full vocabulary), for draft length gamma; with context ids where measured."""

    ks: list[int]
    tau: list[float]
    match_rate: list[float]
    gamma: int
    positions: int
    sequences: int
    plan_fingerprint: str = ""
    tau_context: list[float] | None = None
    match_rate_context: list[float] | None = None
    context_rows: list[float] | None = None

    def interpolate(self, vocab_size: int, context: bool = False) -> np.ndarray:
        """tau (static, or with context ids) for every k = 0..V (piecewise linear in log k between grid points)."""
        values = self.tau_context if context else self.tau
        if values is None:
            raise ValueError("this acceptance curve has no context-token tau: measure it with --context-tokens.")
        return _log_interp(self.ks, values, vocab_size)

    def interpolate_context_rows(self, vocab_size: int) -> np.ndarray:
        return _log_interp(self.ks, self.context_rows or [0.0] * len(self.ks), vocab_size)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AcceptanceCurve:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def _log_interp(ks: Sequence[int], values: Sequence[float], vocab_size: int) -> np.ndarray:
    all_k = np.arange(vocab_size + 1, dtype=np.float64)
    return np.interp(np.log(np.maximum(all_k, 1)), np.log(np.asarray(ks, dtype=np.float64)), np.asarray(values))


def acceptance_curve(
    target: Any,
    draft: Any,
    sequences: Sequence[torch.Tensor],
    starts: Sequence[int],
    order: np.ndarray,
    ks: Sequence[int],
    gamma: int = 5,
    use_target_argmax: bool = True,
    context: bool = True,
    plan_fingerprint: str = "",
) -> AcceptanceCurve:
    """tau(k) over ``sequences`` (1-D id tensors): positions from ``starts[i]`` on (e.g. the assistant reply).

    With ``use_target_argmax`` the next token at each position is the target's greedy choice (teacher forcing along
    the reference text; exact along the target's own greedy output); otherwise the reference token itself. With
    ``context``, also tau when the draft scores the ids already in the sequence.
    """
    vocab = len(order)
    rank = keep_ranks(order)
    ks = sorted(set(int(k) for k in ks) | {vocab})
    static, with_ctx, rows, lengths = [], [], [], []
    for seq, start in zip(sequences, starts):
        ids = seq[None, :]
        with torch.no_grad():
            draft_logits = draft(ids).logits[0, start - 1 : -1]
            next_ids = target(ids).logits[0, start - 1 : -1].argmax(-1) if use_target_argmax else seq[start:]
        positions = torch.arange(start - 1, seq.numel() - 1)
        first = first_occurrence(seq, vocab) if context else None
        iv = match_intervals(draft_logits, next_ids, rank, first, positions if context else None)
        static.append(matches_for_ks(iv.lo, iv.hi, ks))
        lengths.append(len(iv.lo))
        if context and iv.context_lo is not None and iv.context_hi is not None and first is not None:
            with_ctx.append(matches_for_ks(iv.context_lo, iv.context_hi, ks))
            rows.append(context_rows(positions.numpy(), ks) * len(iv.lo))

    def pooled(all_matches: list[np.ndarray]) -> tuple[list[float], list[float]]:
        steps = np.sum([target_steps(m, gamma) for m in all_matches], axis=0)  # tau over all: tokens / steps
        rate = np.concatenate(all_matches, axis=1).mean(axis=1)
        return (sum(lengths) / steps).tolist(), rate.tolist()

    tau, rate = pooled(static)
    curve = AcceptanceCurve(ks, tau, rate, gamma, sum(lengths), len(static), plan_fingerprint)
    if with_ctx:
        curve.tau_context, curve.match_rate_context = pooled(with_ctx)
        curve.context_rows = (np.sum(rows, axis=0) / sum(lengths)).tolist()
    return curve


def reply_sequences(tokenizer: Any, rows: Any, max_length: int = 1024) -> tuple[list[torch.Tensor], list[int]]:
    """Token ids of each chat up to the end of its first assistant turn, and where that turn starts."""
    from ..data.masking import assistant_token_mask

    sequences, starts = [], []
    for row in rows:
        ids, mask = assistant_token_mask(tokenizer, row["messages"])
        if True not in mask or mask.index(True) == 0:
            continue
        start = end = mask.index(True)
        while end < len(mask) and mask[end]:
            end += 1
        end = min(end, max_length)
        if end > start:
            sequences.append(torch.tensor(ids[:end]))
            starts.append(start)
    if not sequences:
        raise ValueError("no assistant turn to measure acceptance on: the data has no assistant text.")
    return sequences, starts


def measure_acceptance(
    target: Any,
    draft: Any,
    tokenizer: Any,
    rows: Any,
    plan: Any,
    ks: Sequence[int] | None = None,
    gamma: int = 5,
    max_length: int = 1024,
    context: bool = True,
) -> dict[str, Any]:
    """tau(k) on calibration chats (first assistant turn of each, teacher-forced along the target's greedy choices)
    for the kept sets of a :class:`~hf_vocabtrim.selection.keep_plan.KeepPlan`, static and with context ids."""
    vocab = plan.vocab_size
    sequences, starts = reply_sequences(tokenizer, rows, max_length)
    if ks is None:
        ks = sorted({int(k) for k in np.geomspace(min(256, vocab), vocab, 24)} | {vocab})
    curve = acceptance_curve(
        target, draft, sequences, starts, plan.order, ks, gamma, context=context, plan_fingerprint=plan.fingerprint
    )
    return {**curve.as_dict(), "vocab_hash": plan.vocab_hash}
