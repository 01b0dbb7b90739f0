# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Pick k: maximise an objective over [k_min, k_max] subject to C(k) >= c_min (and, optionally, a guard: another
per-k curve above its floor), with Optuna's TPE sampler.

Every objective and constraint is an array over k precomputed from the curves, so a trial costs O(1). The exact
optimum (a scan over every k) is reported beside TPE's pick, with the gap between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np


@dataclass
class Curves:
    """Per-k curves, each indexed by k = 0..V (index k holds the value for a kept set of size k).

    ``coverage`` is the one the objective and the floor use (``coverage_basis``: the calibration data's, or the
    held-out data's); ``calibration_coverage`` and ``heldout_coverage`` are both kept under their own names."""

    coverage: np.ndarray
    latency_reduction: np.ndarray
    coverage_basis: str = "calibration"
    calibration_coverage: np.ndarray | None = None
    heldout_coverage: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.calibration_coverage is None and self.coverage_basis == "calibration":
            self.calibration_coverage = self.coverage

    @property
    def vocab_size(self) -> int:
        return len(self.coverage) - 1

    def utility(self, alpha: float) -> np.ndarray:
        """U(k) = alpha * C(k) + (1 - alpha) * R(k)."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        return alpha * self.coverage + (1.0 - alpha) * self.latency_reduction


@dataclass(frozen=True)
class Constraint:
    """A floor on a per-k curve (k = 0..V): a k is feasible when ``values[k] >= floor``."""

    name: str
    values: np.ndarray
    floor: float
    label: str = "value"  # what the values are, for messages
    fix: str = ""  # what to change when no k meets it


@dataclass
class Choice:
    """The outcome of one optimisation: TPE's pick, the exact optimum and the trials."""

    objective_name: str
    k: int
    value: float
    exact_k: int
    exact_value: float
    trials: list[dict[str, Any]]
    k_min: int
    k_max: int
    min_coverage: float
    guard: Constraint | None = None
    k_without_guard: int | None = None  # the exact optimum under the coverage floor alone

    @property
    def gap(self) -> float:
        """Relative shortfall of TPE's pick against the exact optimum (0 = found it)."""
        return float((self.exact_value - self.value) / abs(self.exact_value)) if self.exact_value else 0.0

    @property
    def decided_by_guard(self) -> bool:
        """True when the guard, not the objective, set k (without it the optimum is another k)."""
        return self.guard is not None and self.k_without_guard != self.exact_k


def _constraints(curves: Curves, min_coverage: float, guard: Constraint | None) -> list[Constraint]:
    floor = Constraint(
        "min_coverage", curves.coverage, min_coverage, "coverage", "Lower --min-coverage or raise --k-max."
    )
    return [floor] if guard is None else [floor, guard]


def check_bounds(curves: Curves, k_min: int, k_max: int, min_coverage: float, guard: Constraint | None = None) -> None:
    """Raise ``ValueError`` for an empty or out-of-range k interval or an unreachable floor (coverage or guard)."""
    vocab = curves.vocab_size
    if not 1 <= k_min <= k_max <= vocab:
        raise ValueError(f"k range [{k_min}, {k_max}] is invalid: need 1 <= k_min <= k_max <= V={vocab}.")
    for constraint in _constraints(curves, min_coverage, guard):
        best = float(np.max(constraint.values[k_min : k_max + 1]))
        if best < constraint.floor:
            raise ValueError(
                f"{constraint.name}={constraint.floor:.4g} is infeasible: the highest {constraint.label} reachable "
                f"with k <= {k_max} is {best:.4f}. {constraint.fix}"
            )


def exact_optimum(
    objective: np.ndarray,
    curves: Curves,
    k_min: int,
    k_max: int,
    min_coverage: float,
    guard: Constraint | None = None,
) -> tuple[int, float]:
    """The best feasible k by scanning every k in [k_min, k_max] (ties: smallest k)."""
    check_bounds(curves, k_min, k_max, min_coverage, guard)
    ks = np.arange(k_min, k_max + 1)
    feasible = np.ones(len(ks), dtype=bool)
    for constraint in _constraints(curves, min_coverage, guard):
        feasible &= constraint.values[ks] >= constraint.floor
    values = np.where(feasible, objective[ks], -np.inf)
    best = int(np.argmax(values))
    return int(ks[best]), float(values[best])


def tpe_optimum(
    objective: np.ndarray,
    curves: Curves,
    k_min: int,
    k_max: int,
    min_coverage: float,
    n_trials: int = 50,
    seed: int = 0,
    progress: bool = False,
    guard: Constraint | None = None,
) -> tuple[int, float, list[dict[str, Any]]]:
    """Optuna TPE over integer k (log scale); the coverage floor (and the guard) are Optuna constraints
    (``floor - value(k) <= 0``)."""
    import optuna

    check_bounds(curves, k_min, k_max, min_coverage, guard)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    constraints = _constraints(curves, min_coverage, guard)
    native = hasattr(optuna.trial.Trial, "set_constraint")  # Optuna >= 5; older ones take constraints_func

    def run(trial: optuna.Trial) -> float:
        k = trial.suggest_int("k", k_min, k_max, log=True)
        violations = [float(c.floor - c.values[k]) for c in constraints]  # feasible when all <= 0
        trial.set_user_attr("constraints", violations)
        if native:
            for constraint, violation in zip(constraints, violations):
                trial.set_constraint(constraint.name, violation)
        return float(objective[k])

    def constraints_func(trial: optuna.trial.FrozenTrial) -> tuple[float, ...]:
        return tuple(trial.user_attrs["constraints"])

    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if native
        else optuna.samplers.TPESampler(seed=seed, constraints_func=constraints_func)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(run, n_trials=n_trials, show_progress_bar=progress)
    trials: list[dict[str, Any]] = []
    for t in study.trials:
        k = int(t.params["k"])
        row = {
            "number": t.number,
            "k": k,
            "value": float(cast(float, t.value)),
            "coverage": float(curves.coverage[k]),
            "latency_reduction": float(curves.latency_reduction[k]),
            "feasible": bool(max(t.user_attrs["constraints"]) <= 0),
        }
        if guard is not None:
            row[guard.name] = float(guard.values[k])
        trials.append(row)
    feasible = [t for t in trials if t["feasible"]]
    if not feasible:
        raise ValueError(
            f"TPE found no feasible k (the coverage floor and the guard) in {n_trials} trials; add --trials."
        )
    best = max(feasible, key=lambda t: (t["value"], -t["k"]))
    return best["k"], best["value"], trials


def choose_k(
    objective: np.ndarray,
    curves: Curves,
    *,
    objective_name: str = "utility",
    k_min: int = 1,
    k_max: int | None = None,
    min_coverage: float = 0.0,
    n_trials: int = 50,
    seed: int = 0,
    progress: bool = False,
    guard: Constraint | None = None,
) -> Choice:
    """TPE's pick and the exact optimum of ``objective`` (an array over k = 0..V) under ``C(k) >= min_coverage``
    and, with ``guard``, ``guard.values[k] >= guard.floor``."""
    k_max = curves.vocab_size if k_max is None else k_max
    exact_k, exact_value = exact_optimum(objective, curves, k_min, k_max, min_coverage, guard)
    k, value, trials = tpe_optimum(objective, curves, k_min, k_max, min_coverage, n_trials, seed, progress, guard)
    unguarded = exact_optimum(objective, curves, k_min, k_max, min_coverage)[0] if guard is not None else exact_k
    return Choice(objective_name, k, value, exact_k, exact_value, trials, k_min, k_max, min_coverage, guard, unguarded)


def pareto_front(curves: Curves, k_min: int, k_max: int, max_points: int = 400) -> list[dict[str, float]]:
    """Non-dominated (coverage, latency reduction) points over k in [k_min, k_max].

    Coverage rises and R falls with k, so every k is on the front except those where coverage stops rising
    (ids with count zero): the smallest k of each coverage plateau is kept. Log-spaced down to ``max_points``.
    """
    ks = np.arange(k_min, k_max + 1)
    cov = curves.coverage[ks]
    rises = np.concatenate([[True], np.diff(cov) > 0])
    front = ks[rises]
    if len(front) > max_points:
        picks = np.unique(np.geomspace(1, len(front), max_points).astype(int) - 1)
        front = front[picks]
    return [
        {"k": int(k), "coverage": float(curves.coverage[k]), "latency_reduction": float(curves.latency_reduction[k])}
        for k in front
    ]
