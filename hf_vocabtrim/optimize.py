# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Pick k: maximise an objective over [k_min, k_max] subject to C(k) >= c_min, with Optuna's TPE sampler.

Every objective is an array over k precomputed from the curves, so a trial costs O(1). The exact optimum (a scan over
every k) is reported beside TPE's pick, with the gap between them.
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

    @property
    def gap(self) -> float:
        """Relative shortfall of TPE's pick against the exact optimum (0 = found it)."""
        return float((self.exact_value - self.value) / abs(self.exact_value)) if self.exact_value else 0.0


def check_bounds(curves: Curves, k_min: int, k_max: int, min_coverage: float) -> None:
    """Raise ``ValueError`` for an empty or out-of-range k interval or an unreachable coverage floor."""
    vocab = curves.vocab_size
    if not 1 <= k_min <= k_max <= vocab:
        raise ValueError(f"k range [{k_min}, {k_max}] is invalid: need 1 <= k_min <= k_max <= V={vocab}.")
    best = float(curves.coverage[k_max])
    if best < min_coverage:
        raise ValueError(
            f"min_coverage={min_coverage} is infeasible: the highest coverage reachable with k <= {k_max} is "
            f"{best:.4f}. Lower --min-coverage or raise --k-max."
        )


def exact_optimum(
    objective: np.ndarray, curves: Curves, k_min: int, k_max: int, min_coverage: float
) -> tuple[int, float]:
    """The best feasible k by scanning every k in [k_min, k_max] (ties: smallest k)."""
    check_bounds(curves, k_min, k_max, min_coverage)
    ks = np.arange(k_min, k_max + 1)
    values = np.where(curves.coverage[ks] >= min_coverage, objective[ks], -np.inf)
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
) -> tuple[int, float, list[dict[str, Any]]]:
    """Optuna TPE over integer k (log scale) with the coverage floor as an Optuna constraint (``c_min - C(k) <= 0``)."""
    import optuna

    check_bounds(curves, k_min, k_max, min_coverage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    native = hasattr(optuna.trial.Trial, "set_constraint")  # Optuna >= 5; older ones take constraints_func

    def run(trial: optuna.Trial) -> float:
        k = trial.suggest_int("k", k_min, k_max, log=True)
        violation = float(min_coverage - curves.coverage[k])  # feasible when <= 0
        trial.set_user_attr("constraint", violation)
        if native:
            trial.set_constraint("min_coverage", violation)
        return float(objective[k])

    def constraints(trial: optuna.trial.FrozenTrial) -> tuple[float]:
        return (float(trial.user_attrs["constraint"]),)

    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if native
        else optuna.samplers.TPESampler(seed=seed, constraints_func=constraints)
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(run, n_trials=n_trials, show_progress_bar=progress)
    trials: list[dict[str, Any]] = []
    for t in study.trials:
        k = int(t.params["k"])
        trials.append(
            {
                "number": t.number,
                "k": k,
                "value": float(cast(float, t.value)),
                "coverage": float(curves.coverage[k]),
                "latency_reduction": float(curves.latency_reduction[k]),
                "feasible": bool(t.user_attrs["constraint"] <= 0),
            }
        )
    feasible = [t for t in trials if t["feasible"]]
    if not feasible:
        raise ValueError(f"TPE found no k with coverage >= {min_coverage} in {n_trials} trials; add --trials.")
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
) -> Choice:
    """TPE's pick and the exact optimum of ``objective`` (an array over k = 0..V) under ``C(k) >= min_coverage``."""
    k_max = curves.vocab_size if k_max is None else k_max
    exact_k, exact_value = exact_optimum(objective, curves, k_min, k_max, min_coverage)
    k, value, trials = tpe_optimum(objective, curves, k_min, k_max, min_coverage, n_trials, seed, progress)
    return Choice(objective_name, k, value, exact_k, exact_value, trials, k_min, k_max, min_coverage)


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
