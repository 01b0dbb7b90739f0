# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""A guard: data the kept set must also hold on (say, the general part of a user's traffic), as a constraint on k
beside the coverage floor. A kept set chosen for one domain (code) must not lose a third of its speed on the rest."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.counts import TokenCounts
from .acceptance import AcceptanceCurve
from .coverage import coverage_curve
from .keep_plan import KeepPlan
from .optimize import Constraint


@dataclass(frozen=True)
class Guard:
    """Data the kept set must also hold on (say, the general part of a user's traffic), as a constraint on k.

    With ``acceptance`` (an :class:`AcceptanceCurve` measured on the guard chats with this plan's keep order), tau(k)
    there, static or with context ids (``context_tokens``, as optimised), must stay within ``max_loss`` of the
    untrimmed draft's tau there. With ``counts`` alone (no acceptance pass), the guard chats' coverage must be at least
    ``1 - max_loss`` (static tau falls about as fast as coverage). ``source`` names the data in reports."""

    source: str
    max_loss: float = 0.03
    acceptance: AcceptanceCurve | None = None
    counts: TokenCounts | None = None
    context_tokens: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_loss < 1.0:
            raise ValueError(f"Guard: max_loss must be in [0, 1), got {self.max_loss}.")
        if (self.acceptance is None) == (self.counts is None):
            raise ValueError("Guard: pass exactly one of `acceptance` (tau guard) or `counts` (coverage guard).")

    @property
    def kind(self) -> str:
        return "tau" if self.acceptance is not None else "coverage"

    def constraint(self, plan: KeepPlan) -> Constraint:
        """The per-k curve (k = 0..V) and its floor for :func:`~hf_vocabtrim.selection.optimize.choose_k`."""
        vocab = plan.vocab_size
        if self.acceptance is not None:
            if self.acceptance.plan_fingerprint and self.acceptance.plan_fingerprint != plan.fingerprint:
                raise ValueError(
                    "the guard's acceptance curve was measured with another keep order than this plan's; run "
                    "`vocabtrim acceptance --data GUARD` with the same counts and draft."
                )
            tau = self.acceptance.interpolate(vocab, context=self.context_tokens)
            ratio = tau / float(self.acceptance.tau[-1])  # against the untrimmed draft (k = V) on the guard chats
            label = "guard tau / untrimmed tau" + (" (with context ids)" if self.context_tokens else "")
            return Constraint("guard_tau", ratio, 1.0 - self.max_loss, label, "Raise --max-guard-loss or --k-max.")
        assert self.counts is not None
        if self.counts.vocab_hash != plan.vocab_hash:
            raise ValueError("the guard data was counted with another tokenizer than the calibration counts.")
        values = coverage_curve(self.counts.counts, plan.order)
        return Constraint(
            "guard_coverage", values, 1.0 - self.max_loss, "guard coverage", "Raise --max-guard-loss or --k-max."
        )
