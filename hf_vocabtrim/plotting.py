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
    """Left: C(k) (the objective's and the other data's), R(k) and the objective vs k (log), with c_min and the picks.
    Right: the coverage-latency Pareto front with the TPE trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.unique(np.geomspace(max(choice.k_min, 1), choice.k_max, 600).astype(int))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    heldout_basis = curves.coverage_basis == "heldout"
    other = curves.calibration_coverage if heldout_basis else curves.heldout_coverage
    labels = (
        ("held-out coverage C(k) (objective)", "calibration coverage (in-sample)")
        if heldout_basis
        else ("coverage C(k)", "held-out coverage")
    )
    left.plot(ks, curves.coverage[ks], label=labels[0], color="tab:blue")
    if other is not None:
        left.plot(ks, other[ks], label=labels[1], color="tab:blue", ls="--")
    left.plot(ks, curves.latency_reduction[ks], label="latency reduction R(k)", color="tab:orange")
    if choice.objective_name == "utility":
        left.plot(ks, objective[ks], label="utility U(k)", color="tab:green")
    else:
        ax2 = left.twinx()
        ax2.plot(ks, objective[ks], label=choice.objective_name, color="tab:green")
        ax2.set_ylabel(choice.objective_name, color="tab:green")
    left.axhline(choice.min_coverage, color="gray", ls=":", label=f"c_min = {choice.min_coverage:g}")
    left.axvline(choice.k, color="tab:red", ls="-", lw=1, label=f"TPE k = {choice.k:,}")
    left.axvline(choice.exact_k, color="black", ls="--", lw=1, label=f"exact k = {choice.exact_k:,}")
    for name, k in (other_choices or {}).items():  # e.g. the utility objective's pick beside the speedup one
        left.axvline(k, color="tab:purple", ls="-.", lw=1, label=f"{name} pick k = {k:,}")
    left.set_xscale("log")
    left.set_xlabel("kept vocabulary k")
    left.set_ylim(0, 1.02)
    left.set_title("coverage, latency reduction and objective vs k")
    left.legend(loc="lower left", fontsize=8)

    fc = [p["coverage"] for p in front]
    fr = [p["latency_reduction"] for p in front]
    right.plot(fr, fc, color="tab:purple", label="Pareto front (all k)")
    trials = [t for t in choice.trials]
    right.scatter(
        [t["latency_reduction"] for t in trials],
        [t["coverage"] for t in trials],
        c=["tab:green" if t["feasible"] else "lightgray" for t in trials],
        s=14,
        label="TPE trials (gray: infeasible)",
    )
    right.scatter(
        [curves.latency_reduction[choice.k]],
        [curves.coverage[choice.k]],
        marker="*",
        s=220,
        color="tab:red",
        zorder=5,
        label=f"chosen k = {choice.k:,}",
    )
    right.axhline(choice.min_coverage, color="gray", ls=":")
    right.set_xlabel("latency reduction R(k) (1 - FLOPs(k)/FLOPs(V))")
    right.set_ylabel("coverage C(k)")
    right.set_title("coverage-latency Pareto front")
    right.legend(loc="lower left", fontsize=8)
    fig.suptitle(title or f"vocabulary trimming: objective = {choice.objective_name}")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
