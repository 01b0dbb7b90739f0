# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""counts + draft config -> per-k curves -> the choice of k (the paper's method, or the predicted speedup).

The objective is passed explicitly: :class:`Utility` (U(k) = alpha * C(k) + (1 - alpha) * R(k), the paper's) or
:class:`Speedup` (predicted tokens/s from an acceptance curve and a measured cost model). Coverage in U(k) and in the
floor C(k) >= c_min is the calibration data's or, with held-out counts and ``coverage_basis="heldout"``, the held-out
data's. Writing the report is :mod:`hf_vocabtrim.selection.report`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.counts import TokenCounts
from .acceptance import AcceptanceCurve
from .coverage import coverage_curve
from .flops import DecodeFlops, decode_flops, latency_reduction, linear_latency_reduction
from .guard import Guard
from .keep_plan import KeepPlan
from .optimize import Choice, Curves, choose_k
from .speedup import CostModel

COVERAGE_BASES = ("calibration", "heldout")


@dataclass(frozen=True)
class Utility:
    """The paper's objective U(k) = alpha * C(k) + (1 - alpha) * R(k)."""

    alpha: float = 0.5
    name: str = "utility"

    def values(self, curves: Curves, plan: KeepPlan) -> np.ndarray:
        return curves.utility(self.alpha)


@dataclass(frozen=True)
class Speedup:
    """Predicted speedup over the target alone: tau(k) * target step / (draft round(k) + verification round).

    ``context_tokens`` uses tau with the ids already in the sequence scored too (and their extra LM-head rows)."""

    acceptance: AcceptanceCurve
    costs: CostModel
    context_tokens: bool = False
    name: str = "speedup"

    def values(self, curves: Curves, plan: KeepPlan) -> np.ndarray:
        vocab = curves.vocab_size
        if self.acceptance.plan_fingerprint and self.acceptance.plan_fingerprint != plan.fingerprint:
            raise ValueError(
                "the acceptance curve was measured with another keep order than this plan's (other counts, draft "
                "config or generation config); run `vocabtrim acceptance` again with the same counts and draft."
            )
        if self.costs.vocab_size != vocab:
            raise ValueError(f"the cost model is for V={self.costs.vocab_size}, this draft has V={vocab}.")
        tau = self.acceptance.interpolate(vocab, context=self.context_tokens)
        rows = self.acceptance.interpolate_context_rows(vocab) if self.context_tokens else 0.0
        return self.costs.decode_speedup(tau, np.arange(vocab + 1), rows)

    def untrimmed(self) -> float:
        """Predicted speedup of the untrimmed draft (no scatter, full head)."""
        return float(self.costs.decode_speedup(np.asarray(self.acceptance.tau[-1]))[()])


@dataclass
class Plan:
    """The outcome of :func:`plan`: the keep plan with its k, the curves, the choice and every objective's pick."""

    keep_plan: KeepPlan
    curves: Curves
    choice: Choice
    objective_values: np.ndarray
    objective: Utility | Speedup
    others: dict[str, Choice] = field(default_factory=dict)  # the other objectives' picks, by name
    other_values: dict[str, np.ndarray] = field(default_factory=dict)
    latency_model: str = "flops"
    context_length: int = 1024
    guard: Guard | None = None
    flops_model: Callable[[int | None], DecodeFlops] | None = None  # FLOPs at k for the report (None: decode_flops)


def build_curves(
    counts: TokenCounts,
    draft_config: Any,
    plan: KeepPlan,
    *,
    coverage_basis: str = "calibration",
    heldout: TokenCounts | None = None,
    context_length: int = 1024,
    latency_fit: dict[str, float] | None = None,
) -> Curves:
    """Coverage (calibration and held-out) and latency reduction for every k of the plan's keep order."""
    if coverage_basis not in COVERAGE_BASES:
        raise ValueError(f"coverage_basis must be one of {COVERAGE_BASES}, got {coverage_basis!r}.")
    plan.check_counts(counts)
    vocab = plan.vocab_size
    calibration = coverage_curve(counts.counts, plan.order)
    held = None
    if heldout is not None:
        if heldout.vocab_hash != counts.vocab_hash:
            raise ValueError("the held-out counts were made with another tokenizer than the calibration counts.")
        held = coverage_curve(heldout.counts, plan.order)
    if coverage_basis == "heldout" and held is None:
        raise ValueError("coverage_basis='heldout' needs held-out counts (--eval-data or --eval-counts).")
    ks = np.arange(vocab + 1)
    if latency_fit is not None:
        reduction = linear_latency_reduction(latency_fit["a_ms"], latency_fit["b_ms_per_row"], ks, vocab)
    else:
        reduction = latency_reduction(decode_flops(draft_config, context_length=context_length), ks, vocab)
    return Curves(
        coverage=held if coverage_basis == "heldout" and held is not None else calibration,
        latency_reduction=reduction,
        coverage_basis=coverage_basis,
        calibration_coverage=calibration,
        heldout_coverage=held,
    )


def plan(
    counts: TokenCounts,
    draft_config: Any,
    *,
    objective: Utility | Speedup = Utility(),
    generation_config: Any = None,
    coverage_basis: str = "calibration",
    heldout: TokenCounts | None = None,
    min_coverage: float = 0.9,
    k_min: int | None = None,
    k_max: int | None = None,
    n_trials: int = 50,
    seed: int = 0,
    context_length: int = 1024,
    latency_fit: dict[str, float] | None = None,
    alpha: float = 0.5,
    progress: bool = True,
    guard: Guard | None = None,
) -> Plan:
    """Choose k: maximise ``objective`` subject to C(k) >= ``min_coverage`` with Optuna's TPE (and the exact scan),
    and, with ``guard``, to the guard data's tau (or coverage) staying within ``guard.max_loss``.

    The utility objective (``alpha``) is always evaluated too, so a speedup choice is reported beside the paper's.
    """
    keep = KeepPlan.from_counts(counts, draft_config, generation_config)
    curves = build_curves(
        counts,
        draft_config,
        keep,
        coverage_basis=coverage_basis,
        heldout=heldout,
        context_length=context_length,
        latency_fit=latency_fit,
    )
    return choose(
        keep,
        curves,
        objective=objective,
        min_coverage=min_coverage,
        k_min=k_min,
        k_max=k_max,
        n_trials=n_trials,
        seed=seed,
        alpha=alpha,
        progress=progress,
        guard=guard,
        latency_model="measured fit" if latency_fit else "flops",
        context_length=context_length,
    )


def choose(
    keep: KeepPlan,
    curves: Curves,
    *,
    objective: Utility | Speedup = Utility(),
    min_coverage: float = 0.9,
    k_min: int | None = None,
    k_max: int | None = None,
    n_trials: int = 50,
    seed: int = 0,
    alpha: float = 0.5,
    progress: bool = True,
    guard: Guard | None = None,
    latency_model: str = "flops",
    context_length: int = 1024,
    flops_model: Callable[[int | None], DecodeFlops] | None = None,
) -> Plan:
    """The choice of k for a keep order and its curves (what :func:`plan` does after building them; an EAGLE-3 head
    brings its own order and latency curve). ``flops_model(k)`` gives the FLOPs reported at k (None: full)."""
    vocab = keep.vocab_size
    k_min = max(keep.num_forced, 1, min(256, vocab)) if k_min is None else k_min
    if k_min < keep.num_forced:
        raise ValueError(f"k_min={k_min} is below the {keep.num_forced} special tokens that are always kept.")
    bounds: dict[str, Any] = {
        "k_min": k_min,
        "k_max": k_max or vocab,
        "min_coverage": min_coverage,
        "n_trials": n_trials,
        "seed": seed,
        "progress": progress,
        "guard": None if guard is None else guard.constraint(keep),
    }
    objectives: dict[str, Utility | Speedup] = {objective.name: objective}
    if isinstance(objective, Speedup):  # both tau curves are reported: static kept set and with context ids
        objectives["utility"] = Utility(alpha)
        if objective.acceptance.tau_context is not None:
            other = not objective.context_tokens
            name = "speedup_context" if other else "speedup_static"
            objectives[name] = Speedup(objective.acceptance, objective.costs, context_tokens=other, name=name)
    values = {name: obj.values(curves, keep) for name, obj in objectives.items()}
    choices = {name: choose_k(values[name], curves, objective_name=name, **bounds) for name in objectives}
    choice = choices.pop(objective.name)
    return Plan(
        keep_plan=keep.with_k(choice.k),
        curves=curves,
        choice=choice,
        objective_values=values[objective.name],
        objective=objective,
        others=choices,
        other_values={name: values[name] for name in choices},
        latency_model=latency_model,
        context_length=context_length,
        guard=guard,
        flops_model=flops_model,
    )
