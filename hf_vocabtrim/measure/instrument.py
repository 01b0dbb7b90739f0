# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Observe transformers' assisted generation: drafted ids, accepted tokens per round and time spent drafting."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.generation.candidate_generator import AssistedCandidateGenerator


@dataclass
class AssistedStats:
    """Per-round records of every ``generate(assistant_model=...)`` call made inside :func:`record_assisted`."""

    drafted: list[torch.Tensor] = field(default_factory=list)  # new candidate ids per round
    matches: list[int] = field(default_factory=list)  # accepted draft tokens per round
    proposed: list[int] = field(default_factory=list)  # draft tokens proposed per round
    round_starts: list[float] = field(default_factory=list)  # perf_counter() when each round's drafting began
    round_draft_seconds: list[float] = field(default_factory=list)  # drafting time of each round

    @property
    def draft_seconds(self) -> float:
        return sum(self.round_draft_seconds)

    @property
    def rounds(self) -> int:
        return len(self.matches)

    def tokens_per_round(self) -> float:
        """Mean tokens produced per target verification (accepted drafts + the target's own token)."""
        return (sum(self.matches) + self.rounds) / self.rounds if self.rounds else 0.0

    def acceptance_rate(self) -> float:
        return sum(self.matches) / sum(self.proposed) if sum(self.proposed) else 0.0


@contextmanager
def record_assisted() -> Iterator[AssistedStats]:
    """Patch ``AssistedCandidateGenerator`` for the duration of the block and collect :class:`AssistedStats`."""
    stats = AssistedStats()
    get_candidates = AssistedCandidateGenerator.get_candidates
    update = AssistedCandidateGenerator.update_candidate_strategy

    def timed_get_candidates(self: Any, input_ids: torch.LongTensor, **kwargs: Any) -> Any:
        start = time.perf_counter()
        ids, logits = get_candidates(self, input_ids, **kwargs)
        stats.round_starts.append(start)
        stats.round_draft_seconds.append(time.perf_counter() - start)
        stats.drafted.append(ids[0, input_ids.shape[-1] :].detach().cpu().clone())
        return ids, logits

    def recorded_update(self: Any, input_ids: torch.LongTensor, scores: torch.Tensor, num_matches: int) -> Any:
        stats.matches.append(int(num_matches))
        stats.proposed.append(int(scores.shape[1]) - 1)
        return update(self, input_ids, scores, num_matches)

    AssistedCandidateGenerator.get_candidates = timed_get_candidates  # type: ignore[method-assign]
    AssistedCandidateGenerator.update_candidate_strategy = recorded_update  # type: ignore[method-assign]
    try:
        yield stats
    finally:
        AssistedCandidateGenerator.get_candidates = get_candidates  # type: ignore[method-assign]
        AssistedCandidateGenerator.update_candidate_strategy = update  # type: ignore[method-assign]
