# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""What assisted generation costs on one machine, and the tokens/s it predicts for a draft trimmed to k.

``generate(assistant_model=...)`` runs in rounds: the draft's own ``generate()`` proposes gamma tokens (gamma forward
passes, its per-call set-up, the scatter to V), then the target verifies gamma + 1 tokens in one forward pass and
both caches are cropped. :class:`CostModel` holds those per-round costs as measured inside real ``generate()`` calls
by ``vocabtrim profile --assisted`` (:func:`hf_vocabtrim.measure.assisted_costs.profile_assisted`), so nothing that
``generate()`` pays per round is left out:

    time(target alone) = prefill_target(L) + N * target_token(c)
    time(assisted, k)  = prefill_target(L) + prefill_draft(L) + rounds * (draft_round(k, c) + verify_round(c))

with rounds = N / tau(k) from the acceptance model, L the prompt length and c = L + N / 2 the mean context length
(attention makes every step a little dearer as the context grows; each cost is measured at two context lengths).
``draft_round(k)`` is linear in the LM-head rows scored per step (k, plus the context ids when context tokens are
on); the untrimmed draft's round is measured on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class CostModel:
    """Measured costs (milliseconds) of assisted generation with one target/draft pair on one machine, at context
    length ``ref_context``; ``context_slopes`` gives each cost's change per token of context."""

    gamma: int
    vocab_size: int
    target_token_ms: float  # target alone: one new token inside generate()
    verify_round_ms: float  # per round: the target's verification of gamma + 1 tokens and generate()'s bookkeeping
    draft_round_full_ms: float  # per round: the untrimmed draft's gamma proposals (its generate() call included)
    draft_round_ref_ms: float  # per round: a trimmed draft at k = ref_k
    ref_k: int
    draft_row_ms: float  # per round, per LM-head row (gamma steps): the slope of draft_round in k
    target_prefill: tuple[float, float] = (0.0, 0.0)  # a + b * prompt tokens (ms)
    draft_prefill: tuple[float, float] = (0.0, 0.0)
    ref_context: float = 0.0
    context_slopes: dict[str, float] = field(default_factory=dict)  # ms per context token: target, verify, draft
    info: dict[str, Any] = field(default_factory=dict)

    def _at(self, name: str, value: float, context: float | None) -> float:
        if context is None:
            return value
        return value + self.context_slopes.get(name, 0.0) * (context - self.ref_context)

    def draft_round_ms(
        self, k: np.ndarray | int, context_rows: np.ndarray | float = 0.0, context: float | None = None
    ) -> np.ndarray:
        """Per-round draft time of a draft trimmed to k ids (plus ``context_rows`` context ids per step)."""
        rows = np.asarray(k, dtype=np.float64) + np.asarray(context_rows, dtype=np.float64)
        return self._at("draft", self.draft_round_ref_ms, context) + self.draft_row_ms * (rows - self.ref_k)

    def decode_speedup(
        self,
        tau: np.ndarray,
        k: np.ndarray | int | None = None,
        context_rows: np.ndarray | float = 0.0,
        memory_bound: bool = False,
        context: float | None = None,
    ) -> np.ndarray:
        """Speedup over the target alone per generated token (prefill left out): tau tokens per round.

        ``k=None`` is the untrimmed draft. ``memory_bound`` predicts the GPU regime, where verifying gamma + 1 tokens
        costs about one target step. ``context``: the context length (default: the one profiled)."""
        draft: Any = (
            self._at("draft", self.draft_round_full_ms, context)
            if k is None
            else self.draft_round_ms(k, context_rows, context)
        )
        target = self._at("target", self.target_token_ms, context)
        verify = target if memory_bound else self._at("verify", self.verify_round_ms, context)
        return np.asarray(tau, dtype=np.float64) * target / (draft + verify)

    def seconds(
        self,
        prompt_tokens: int,
        new_tokens: int,
        rounds: float | None = None,
        k: int | None = None,
        context_rows: float = 0.0,
    ) -> float:
        """Predicted wall time of one ``generate()`` call: the target alone (``rounds=None``) or assisted by the
        untrimmed draft (``k=None``) or one trimmed to k, taking ``rounds`` verification rounds."""
        context = prompt_tokens + new_tokens / 2
        target_prefill = self.target_prefill[0] + self.target_prefill[1] * prompt_tokens
        if rounds is None:
            return (target_prefill + new_tokens * self._at("target", self.target_token_ms, context)) / 1000
        draft_prefill = self.draft_prefill[0] + self.draft_prefill[1] * prompt_tokens
        if k is None:
            draft = self._at("draft", self.draft_round_full_ms, context)
        else:
            draft = float(self.draft_round_ms(k, context_rows, context))
        verify = self._at("verify", self.verify_round_ms, context)
        return (target_prefill + draft_prefill + rounds * (draft + verify)) / 1000

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CostModel:
        try:
            known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
            known["target_prefill"] = tuple(known.get("target_prefill", (0.0, 0.0)))
            known["draft_prefill"] = tuple(known.get("draft_prefill", (0.0, 0.0)))
            return cls(**known)
        except TypeError as err:
            raise ValueError(
                f"not a cost model written by `vocabtrim profile --assisted` ({err}); run it on this machine."
            ) from None
