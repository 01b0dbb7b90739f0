# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Keep order of the ids (forced special tokens first, then by count) and the coverage C(k) of its top k."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _padded(counts: np.ndarray, vocab_size: int | None) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.int64)
    if vocab_size is None or vocab_size == len(counts):
        return counts
    if vocab_size < len(counts):
        raise ValueError(
            f"tokenizer/vocabulary mismatch: the counts cover {len(counts)} token ids but the model vocabulary has "
            f"V={vocab_size}; count with the draft's own tokenizer."
        )
    return np.concatenate([counts, np.zeros(vocab_size - len(counts), dtype=np.int64)])


def rank_ids(
    counts: np.ndarray, forced: Iterable[int] = (), vocab_size: int | None = None, allowed: np.ndarray | None = None
) -> np.ndarray:
    """All V ids in keep order: forced ids (ascending), then by count descending, ties by lower id first.

    Low ids first on ties: in BPE vocabularies low ids are the earliest (most frequent) merges, which matters when a
    small calibration set leaves most ids at count zero. With ``allowed`` (a V-bool mask, e.g. the ids an EAGLE-3 head
    has rows for), the allowed ids come first and every other id after them (forced ids must be allowed).
    """
    counts = _padded(counts, vocab_size)
    forced_arr = np.unique(np.asarray(list(forced), dtype=np.int64))
    if len(forced_arr) and (forced_arr.min() < 0 or forced_arr.max() >= len(counts)):
        raise ValueError(f"forced ids must be in [0, {len(counts)}), got {forced_arr.min()}..{forced_arr.max()}.")
    order = np.argsort(-counts, kind="stable")
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if len(forced_arr) and not allowed[forced_arr].all():
            raise ValueError("forced ids must be among the allowed ids.")
        order = order[np.argsort(~allowed[order], kind="stable")]
    if len(forced_arr):
        order = np.concatenate([forced_arr, order[~np.isin(order, forced_arr)]])
    return order


def coverage_curve(counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """C[k] for k = 0..V: the share of counted tokens covered by the first k ids of ``order``."""
    counts = _padded(counts, len(order))
    total = counts.sum()
    if total <= 0:
        raise ValueError("the counts are all zero: count some assistant tokens first.")
    return np.concatenate([[0.0], np.cumsum(counts[order]) / total])


def coverage_of(kept_ids: Iterable[int], counts: np.ndarray) -> float:
    """Share of the counted tokens (e.g. held-out data) whose id is in ``kept_ids``."""
    counts = np.asarray(counts, dtype=np.int64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("the counts are all zero: nothing to measure coverage on.")
    ids = np.asarray(list(kept_ids), dtype=np.int64)
    ids = ids[ids < len(counts)]
    return float(counts[ids].sum() / total)
