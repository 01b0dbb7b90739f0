# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""The trimmed LM head and its id map: the k kept rows (``TrimmedLMHead``), the ids already in a sequence scored
beside them (``ContextSlots``), and the scatter of draft scores back to the target's vocabulary V.

This file travels with every saved checkpoint beside ``modeling_trimmed_draft.py`` (``trust_remote_code``), so it
imports only torch and transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.generation import LogitsProcessor


class ScatterToFullVocabLogitsProcessor(LogitsProcessor):
    """Scatters draft scores over the draft's ids into the full vocabulary V; other ids get ``-inf``.

    ``id_map`` is the target id of each score column (a tensor, or a callable returning the current one: with context
    tokens the columns follow the sequence). Its first ``num_unique`` ids are distinct (``kept_ids``); later columns
    may repeat an id (see :class:`ContextSlots`). A :class:`TrimmedDraftModel` puts this processor first in its own
    logits processors, so every other processor, the assisted-generation verifier (``q`` for speculative sampling)
    and ``output_scores`` see full-V scores in target-id space. It never touches the target's processors.
    """

    def __init__(
        self, id_map: torch.Tensor | Callable[[], torch.Tensor], vocab_size: int, num_unique: int | None = None
    ) -> None:
        self.id_map = id_map
        self.vocab_size = vocab_size
        self.num_unique = num_unique

    def __call__(self, input_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        ids = self.id_map() if callable(self.id_map) else self.id_map
        return scatter_to_full_vocab(scores, ids, self.vocab_size, self.num_unique)


def scatter_to_full_vocab(
    scores: torch.Tensor, id_map: torch.Tensor, vocab_size: int, num_unique: int | None = None
) -> torch.Tensor:
    """(..., n) scores over the ids ``id_map`` -> (..., V) scores in target-id space, ``-inf`` elsewhere.

    The first ``num_unique`` ids (default: all) are distinct and copied; later columns may repeat an id (context
    slots): a column's value is the largest score of its ids, so a masked (``-inf``) repeat never hides a score.
    Static shapes, no host synchronisation."""
    width = id_map.numel()
    if scores.shape[-1] == vocab_size and width != vocab_size:
        return scores  # already in target-id space (called twice)
    if scores.shape[-1] != width:
        raise ValueError(
            f"scores have width {scores.shape[-1]}, expected the draft's {width} ids (or V={vocab_size}); the "
            "scatter to V belongs to the trimmed draft's own generate()."
        )
    id_map = id_map.to(scores.device)
    unique = width if num_unique is None else num_unique
    full = scores.new_full((*scores.shape[:-1], vocab_size), float("-inf"))
    full.index_copy_(-1, id_map[:unique], scores[..., :unique])
    if unique < width:
        repeated = scores[..., unique:]
        full.scatter_reduce_(-1, id_map[unique:].expand(repeated.shape), repeated, reduce="amax")
    return full


def check_token_ids(ids: torch.Tensor, vocab_size: int, field: str) -> None:
    """Raise ``ValueError`` unless ``ids`` is a non-empty 1-D integer tensor of ids in [0, vocab_size)."""
    if ids.ndim != 1 or ids.numel() == 0:
        raise ValueError(f"`{field}` must be a non-empty 1-D list of token ids, got shape {tuple(ids.shape)}.")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"`{field}` must hold integer token ids, got dtype {ids.dtype}.")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"`{field}` has ids out of range [{lo}, {hi}]; the vocabulary has V={vocab_size} ids (0..{vocab_size - 1})."
        )


def validate_kept_ids(kept_ids: torch.Tensor, vocab_size: int, field: str = "kept_ids") -> None:
    """Raise ``ValueError`` unless ``kept_ids`` is a non-empty, strictly increasing 1-D tensor of ids in [0, V)."""
    check_token_ids(kept_ids, vocab_size, field)
    if kept_ids.numel() > 1 and not bool((kept_ids[1:] > kept_ids[:-1]).all()):
        raise ValueError(f"`{field}` must be sorted ascending without duplicates.")


class ContextSlots:
    """The ids already in a sequence, by position: slot p holds the id at position p, its LM-head row (and bias) and
    whether it is scored (not an id of ``kept_ids``, not a padding id, not a position fed as embeddings).

    Filling a forward's positions gathers the rows of the ids it feeds (work in the new positions only). An id seen
    at several positions is scored at each: the same logit, scattered to the same column, so repeats are harmless
    and no shape depends on the data: no device-to-host synchronisation. Eager caches (a Python-int length) use the
    first ``end`` slots, growing by doubling; a static cache (a tensor length) gets ``fixed`` slots, one per cache
    position, all scored every step and masked beyond the current length: one shape for every decode step, which a
    CUDA graph or ``torch.compile(fullgraph=True)`` can capture, and a crop of the cache needs nothing here.
    """

    def __init__(self, batch: int, capacity: int, like: torch.Tensor, has_bias: bool, fixed: bool = False) -> None:
        self.fixed = fixed
        self._alloc(batch, capacity, like.shape[-1], like.dtype, like.device, has_bias)
        self.width = 0  # slots scored by the last forward (its logit columns after kept_ids)
        self.scored_now: torch.Tensor | None = None  # (batch * width,) bool: columns that are not masked

    def _alloc(self, batch: int, capacity: int, hidden: int, dtype: Any, device: Any, has_bias: bool) -> None:
        self.ids = torch.zeros(batch, capacity, dtype=torch.long, device=device)
        self.rows = torch.zeros(batch, capacity, hidden, dtype=dtype, device=device)
        self.bias = torch.zeros(batch, capacity, dtype=dtype, device=device) if has_bias else None
        self.scored = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.positions = torch.arange(capacity, device=device)

    @property
    def capacity(self) -> int:
        return self.ids.shape[1]

    def _grow(self, needed: int) -> None:
        old = (self.ids, self.rows, self.bias, self.scored)
        batch, capacity, hidden = self.rows.shape
        self._alloc(batch, max(2 * capacity, needed), hidden, self.rows.dtype, self.rows.device, self.bias is not None)
        for new, previous in zip((self.ids, self.rows, self.bias, self.scored), old):
            if new is not None and previous is not None:
                new[:, :capacity] = previous

    def fill(
        self,
        ids: torch.Tensor | None,
        length: int,
        start: int | torch.Tensor,
        source: torch.Tensor,
        source_bias: torch.Tensor | None,
        scorable: torch.Tensor,
    ) -> None:
        """Record the ``length`` positions from ``start`` (``ids`` (batch, length), or None for embeddings) and set
        the columns of this forward. ``scorable`` (V,) is False for kept and padding ids."""
        index: torch.Tensor | slice
        if self.fixed:  # static shapes: positions as a tensor, every slot a column
            index = (torch.arange(length, device=self.ids.device) + start) % self.capacity
            end = start + length
            self.width = self.capacity
        else:
            index = slice(int(start), int(start) + length)
            end = int(start) + length
            if end > self.capacity:
                self._grow(end)
            self.width = end
        if ids is None:
            self._write(index, torch.zeros_like(self.ids[:, :length]), None, None, scored=False)
        else:
            ids = ids.to(self.ids.device)
            rows = F.embedding(ids, source).to(self.rows.device, self.rows.dtype)
            bias = None if source_bias is None else F.embedding(ids, source_bias[:, None]).squeeze(-1)
            self._write(index, ids, rows, bias, scored=scorable[ids])
        scored = self.scored[:, : self.width]
        if self.fixed:
            scored = scored & (self.positions < end)
        self.scored_now = scored.reshape(-1)

    def _write(self, index: Any, ids: torch.Tensor, rows: Any, bias: Any, scored: Any) -> None:
        if isinstance(index, slice):
            self.ids[:, index] = ids
            self.scored[:, index] = scored
            if rows is not None:
                self.rows[:, index] = rows
            if bias is not None and self.bias is not None:
                self.bias[:, index] = bias.to(self.bias.dtype)
            return
        self.ids.index_copy_(1, index, ids)
        self.scored.index_copy_(1, index, scored if isinstance(scored, torch.Tensor) else torch.zeros_like(ids).bool())
        if rows is not None:
            self.rows.index_copy_(1, index, rows)
        if bias is not None and self.bias is not None:
            self.bias.index_copy_(1, index, bias.to(self.bias.dtype))

    def id_map(self) -> torch.Tensor:
        """Target id of each context column of the last forward (batch rows concatenated: their union is scored)."""
        return self.ids[:, : self.width].reshape(-1)


class TrimmedLMHead(nn.Linear):
    """The sliced LM head: ``weight`` holds the k kept rows; with context tokens, the rows of the current
    :class:`ContextSlots` follow them, so the output has k + (number of context slots) columns."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kwargs: Any) -> None:
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self.slots: ContextSlots | None = None  # set by TrimmedDraftModel.forward for each forward

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = F.linear(hidden, self.weight, self.bias)
        slots = self.slots
        if slots is None or slots.width == 0:
            return out
        rows = slots.rows[:, : slots.width].reshape(-1, slots.rows.shape[-1])
        bias = None if slots.bias is None else slots.bias[:, : slots.width].reshape(-1)
        return torch.cat([out, F.linear(hidden, rows, bias)], dim=-1)
