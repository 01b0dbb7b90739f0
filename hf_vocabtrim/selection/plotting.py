# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""One PNG a person reads at a glance: the curves vs k, and the coverage-latency Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .optimize import Choice, Curves


def plot_choice(
    curves: Curves,
    choice: Choice,
    objective: np.ndarray,
    front: list[dict[str, float]],
    path: str | Path,
    title: str = "",
    other_choices: dict[str, int] | None = None,
) -> Path:
    """Left: C(k) (the objective's and the other data's), R(k), the guard's curve and the objective vs k (log), with
    c_min, the guard's floor and the picks (TPE: red star; exact optimum: black cross). Right: the coverage-latency
    Pareto front with the TPE trials. Legends sit below the panels, off the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6.5), constrained_layout=True)
    _curves_panel(left, curves, choice, objective, other_choices)
    _pareto_panel(right, curves, choice, front)
    decided = " (k set by the guard)" if choice.decided_by_guard else ""
    fig.suptitle((title or f"vocabulary trimming: objective = {choice.objective_name}") + decided)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curves_panel(
    left: Any, curves: Curves, choice: Choice, objective: np.ndarray, other_choices: dict[str, int] | None
) -> None:
    """C(k), the other coverage, R(k), the guard's curve and the objective vs k, with the floors and the picks."""
    ks = np.unique(np.geomspace(max(choice.k_min, 1), choice.k_max, 600).astype(int))
    heldout_basis = curves.coverage_basis == "heldout"
    other = curves.calibration_coverage if heldout_basis else curves.heldout_coverage
    labels = (
        ("held-out coverage C(k) (the coverage in U(k))", "calibration coverage (in-sample)")
        if heldout_basis
        else ("coverage C(k)", "held-out coverage")
    )
    left.plot(ks, curves.coverage[ks], label=labels[0], color="tab:blue")
    if other is not None:
        left.plot(ks, other[ks], label=labels[1], color="tab:cyan", ls="--")
    left.plot(ks, curves.latency_reduction[ks], label="latency reduction R(k)", color="tab:orange")
    objective_axis = left
    if choice.objective_name == "utility":
        left.plot(ks, objective[ks], label="utility U(k) (objective)", color="tab:green")
    else:
        objective_axis = left.twinx()
        objective_axis.plot(
            ks, objective[ks], label=f"{choice.objective_name} (objective, right axis)", color="tab:green"
        )
        objective_axis.set_ylabel(f"{choice.objective_name} (predicted, x the target alone)", color="tab:green")
    guard = choice.guard
    if guard is not None:
        left.plot(ks, np.clip(guard.values[ks], 0, 1.02), label=guard.label, color="tab:brown")
        left.axhline(guard.floor, color="tab:brown", ls=":", label=f"guard floor = {guard.floor:.3g}")
    left.axhline(choice.min_coverage, color="gray", ls=":", label=f"c_min = {choice.min_coverage:g}")
    left.axvline(choice.exact_k, color="black", ls="--", lw=1, label=f"k = {choice.exact_k:,} (exact optimum)")
    left.axvline(choice.k, color="tab:red", ls="-", lw=1, label=f"k = {choice.k:,} (TPE pick, the k trimmed)")
    same = choice.k == choice.exact_k
    objective_axis.plot(
        [choice.k], [objective[choice.k]], marker="*", ms=16, color="tab:red", ls="none",
        label=f"TPE pick k = {choice.k:,}" + (" (= exact optimum)" if same else ""),
    )  # fmt: skip
    objective_axis.plot(
        [choice.exact_k], [objective[choice.exact_k]], marker="x", ms=11, mew=2, color="black", ls="none",
        label=f"exact optimum k = {choice.exact_k:,}",
    )  # fmt: skip
    if choice.decided_by_guard and choice.k_without_guard is not None:
        left.axvline(
            choice.k_without_guard,
            color="tab:brown",
            ls="-.",
            lw=1,
            label=f"without the guard k = {choice.k_without_guard:,}",
        )
    for name, k in (other_choices or {}).items():  # e.g. the utility objective's pick beside the speedup one
        left.axvline(k, color="tab:purple", ls="-.", lw=1, label=f"{name} pick k = {k:,}")
    left.set_xscale("log")
    left.set_xlabel("kept vocabulary k")
    left.set_ylabel("coverage, latency reduction" + (", utility" if objective_axis is left else "") + " (fraction)")
    left.set_ylim(0, 1.02)
    left.set_title("coverage, latency reduction and objective vs k")
    handles, names = left.get_legend_handles_labels()
    if objective_axis is not left:
        more = objective_axis.get_legend_handles_labels()
        handles, names = handles + more[0], names + more[1]
    left.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)


def _pareto_panel(right: Any, curves: Curves, choice: Choice, front: list[dict[str, float]]) -> None:
    """The coverage-latency Pareto front with the TPE trials (feasible or not) and the two picks."""
    fc = [p["coverage"] for p in front]
    fr = [p["latency_reduction"] for p in front]
    right.plot(fr, fc, color="tab:purple", label="Pareto front (all k)")
    trials = list(choice.trials)
    feasible = [t for t in trials if t["feasible"]]
    infeasible = [t for t in trials if not t["feasible"]]
    right.scatter(
        [t["latency_reduction"] for t in feasible], [t["coverage"] for t in feasible], color="tab:green", s=14,
        label="TPE trials (feasible)",
    )  # fmt: skip
    right.scatter(
        [t["latency_reduction"] for t in infeasible], [t["coverage"] for t in infeasible], color="lightgray", s=14,
        label="TPE trials (infeasible)",
    )  # fmt: skip
    right.scatter(
        [curves.latency_reduction[choice.k]], [curves.coverage[choice.k]], marker="*", s=220, color="tab:red",
        zorder=5, label=f"TPE pick k = {choice.k:,}",
    )  # fmt: skip
    right.scatter(
        [curves.latency_reduction[choice.exact_k]], [curves.coverage[choice.exact_k]], marker="x", s=90,
        color="black", zorder=6, label=f"exact optimum k = {choice.exact_k:,}",
    )  # fmt: skip
    right.axhline(choice.min_coverage, color="gray", ls=":", label=f"c_min = {choice.min_coverage:g}")
    right.set_xlabel("latency reduction R(k) (1 - FLOPs(k)/FLOPs(V))")
    right.set_ylabel("coverage C(k)")
    right.set_title("coverage-latency Pareto front")
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8, frameon=False)


def plot_latency(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Per-token latency vs k for each draft shape, with the floor (body + k/V of the head)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for shape in results:
        rows = [r for r in shape["rows"] if r["k"] != shape["vocab_size"]]
        ks = [r["k"] for r in rows]
        line = ax.plot(ks, [r["ms"] for r in rows], marker="o", label=f"{shape['name']} measured")[0]
        ax.plot(ks, [r["floor_ms"] for r in rows], ls="--", color=line.get_color(), label=f"{shape['name']} floor")
        ax.axhline(shape["full_ms"], ls=":", color=line.get_color(), label=f"{shape['name']} full V")
    ax.set_xscale("log")
    ax.set_xlabel("kept vocabulary k")
    ax.set_ylabel("ms per decoded token (batch 1, KV cache)")
    ax.set_title("draft decode latency vs k")
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
