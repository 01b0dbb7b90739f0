# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""The keep plan: which ids a draft keeps, in which order, made once from the counts and read by every later step.

``optimize`` writes it beside ``summary.json``; ``trim``, ``acceptance``, ``export`` and the push script read it, so
the kept set that is trimmed is exactly the one whose coverage and utility were reported.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.counts import TokenCounts
from ..data.specials import special_token_ids
from .coverage import coverage_curve, rank_ids

PLAN_FILE = "keep_plan.safetensors"
PLAN_FORMAT_VERSION = 1


def check_k(k: int, num_forced: int, vocab_size: int) -> None:
    """``ValueError`` unless ``num_forced <= k <= vocab_size`` (the special tokens are always kept)."""
    if not max(num_forced, 1) <= k <= vocab_size:
        raise ValueError(
            f"k={k} is out of range: it must be in [{max(num_forced, 1)}, {vocab_size}] "
            f"({num_forced} special tokens are always kept, V={vocab_size})."
        )


def forced_ids(counts: TokenCounts, draft_config: Any, generation_config: Any = None) -> list[int]:
    """Ids always kept: the tokenizer's specials and end-of-turn tokens recorded with the counts, plus the draft
    config's and generation config's eos/bos/pad."""
    ids = {int(i) for i in counts.extra.get("special_ids", [])}
    ids |= special_token_ids(draft_config, generation_config, None)
    vocab = int(draft_config.vocab_size)
    return sorted(i for i in ids if 0 <= i < vocab)


@dataclass
class KeepPlan:
    """All V ids in keep order (``num_forced`` special ids first, then by count), the chosen k and provenance."""

    order: np.ndarray
    num_forced: int
    vocab_hash: str
    k: int | None = None
    info: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.order = np.asarray(self.order, dtype=np.int64)
        vocab = len(self.order)
        if self.order.ndim != 1 or vocab == 0 or not np.array_equal(np.sort(self.order), np.arange(vocab)):
            raise ValueError("corrupt keep plan: `order` must hold every id 0..V-1 exactly once.")
        if not 0 <= self.num_forced <= vocab:
            raise ValueError(f"corrupt keep plan: num_forced={self.num_forced} for V={vocab}.")
        if self.k is not None:
            check_k(self.k, self.num_forced, vocab)

    @classmethod
    def from_counts(cls, counts: TokenCounts, draft_config: Any, generation_config: Any = None) -> KeepPlan:
        """Rank the ids of ``counts`` for a draft: special ids first, then count descending, ties by lower id."""
        vocab = int(draft_config.vocab_size)
        if counts.vocab_size > vocab:
            raise ValueError(
                f"tokenizer/vocabulary mismatch: the counts cover {counts.vocab_size} ids but the draft has V={vocab}; "
                "count with the draft's own tokenizer."
            )
        forced = forced_ids(counts, draft_config, generation_config)
        order = rank_ids(counts.counts, forced, vocab_size=vocab)
        return cls(order=order, num_forced=len(forced), vocab_hash=counts.vocab_hash, info={"counts": counts.metadata})

    @property
    def vocab_size(self) -> int:
        return len(self.order)

    @property
    def fingerprint(self) -> str:
        """A short hash of the keep order: curves computed from another order are refused."""
        return hashlib.sha256(self.order.astype("<i8").tobytes()).hexdigest()[:16]

    def with_k(self, k: int) -> KeepPlan:
        return KeepPlan(self.order, self.num_forced, self.vocab_hash, k, self.info)

    def kept_ids(self, k: int | None = None) -> np.ndarray:
        """The sorted ids kept at size k (default: the plan's k)."""
        k = self.k if k is None else k
        if k is None:
            raise ValueError("this keep plan has no k: pass k, or choose one with `vocabtrim optimize`.")
        check_k(k, self.num_forced, self.vocab_size)
        return np.sort(self.order[:k])

    def coverage(self, counts: TokenCounts, k: int | None = None) -> float:
        """Share of the counted tokens covered by the kept set (checks the tokenizer)."""
        self.check_counts(counts)
        k = self.k if k is None else k
        return float(coverage_curve(counts.counts, self.order)[k])

    def check_counts(self, counts: TokenCounts) -> None:
        if counts.vocab_hash != self.vocab_hash:
            raise ValueError(
                f"the keep plan was made with tokenizer hash {self.vocab_hash}, these counts with {counts.vocab_hash}; "
                "use counts of the same tokenizer."
            )

    def save(self, path: str | Path) -> Path:
        """Write the plan as safetensors (``order`` as int32) with its metadata."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": PLAN_FORMAT_VERSION,
            "num_forced": self.num_forced,
            "vocab_hash": self.vocab_hash,
            "k": self.k,
            "info": self.info or {},
        }
        save_file({"order": self.order.astype(np.int32)}, str(path), metadata={"hf_vocabtrim_plan": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> KeepPlan:
        """Read a plan written by :meth:`save` (a folder means its ``keep_plan.safetensors``)."""
        from safetensors import safe_open

        path = Path(path)
        if path.is_dir():
            path = path / PLAN_FILE
        if not path.is_file():
            raise ValueError(f"no keep plan at {path}: run `vocabtrim optimize` (it writes {PLAN_FILE}).")
        with safe_open(str(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get("hf_vocabtrim_plan")
            if raw is None or "order" not in set(handle.keys()):
                raise ValueError(f"{path} is not a keep plan written by `vocabtrim optimize`.")
            meta = json.loads(raw)
            order = handle.get_tensor("order")
        return cls(
            order=order,
            num_forced=meta["num_forced"],
            vocab_hash=meta["vocab_hash"],
            k=meta["k"],
            info=meta.get("info"),
        )
