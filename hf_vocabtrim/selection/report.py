# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Write a :class:`~hf_vocabtrim.selection.planning.Plan` for people and for the next step: ``summary.json``,
``trials.json``, ``pareto.json``, ``trim_report.png`` and the keep plan (``keep_plan.safetensors``) that ``trim``
reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .flops import decode_flops
from .keep_plan import PLAN_FILE
from .optimize import Choice, pareto_front
from .planning import Plan, Speedup
from .plotting import plot_choice


def _point(plan: Plan, k: int) -> dict[str, Any]:
    curves = plan.curves
    row: dict[str, Any] = {
        "k": k,
        "coverage": float(curves.coverage[k]),
        "coverage_basis": curves.coverage_basis,
        "latency_reduction": float(curves.latency_reduction[k]),
        "objective_value": float(plan.objective_values[k]),
    }
    if curves.calibration_coverage is not None:
        row["calibration_coverage"] = float(curves.calibration_coverage[k])
    if curves.heldout_coverage is not None:
        row["heldout_coverage"] = float(curves.heldout_coverage[k])
    return row


def _choice_row(plan: Plan, choice: Choice) -> dict[str, Any]:
    return {
        "k": choice.k,
        "exact_k": choice.exact_k,
        "value": choice.value,
        "tpe_gap": choice.gap,
        "coverage": float(plan.curves.coverage[choice.k]),
        "latency_reduction": float(plan.curves.latency_reduction[choice.k]),
    }


def summarize(plan: Plan, draft_config: Any, alpha: float) -> dict[str, Any]:
    """The summary of a plan (what ``summary.json`` holds)."""
    choice, vocab = plan.choice, plan.curves.vocab_size
    if plan.flops_model is not None:
        full, at_k = plan.flops_model(None), plan.flops_model(choice.k)
    else:
        full = decode_flops(draft_config, context_length=plan.context_length)
        at_k = decode_flops(draft_config, k=choice.k, context_length=plan.context_length)
    utility = plan.curves.utility(alpha)
    summary: dict[str, Any] = {
        **_point(plan, choice.k),
        "objective": choice.objective_name,
        "utility": float(utility[choice.k]),
        "exact_k": choice.exact_k,
        "exact_objective_value": choice.exact_value,
        "exact": _point(plan, choice.exact_k),
        "tpe_gap": choice.gap,
        "alpha": alpha,
        "min_coverage": choice.min_coverage,
        "k_min": choice.k_min,
        "k_max": choice.k_max,
        "trials": len(choice.trials),
        "vocab_size": vocab,
        "vocab_reduction": 1.0 - choice.k / vocab,
        "num_forced_ids": plan.keep_plan.num_forced,
        "context_length": plan.context_length,
        "latency_model": plan.latency_model,
        "draft_model_type": draft_config.model_type,
        "flops_full": full.as_dict(),
        "flops_at_k": at_k.as_dict(),
        "lm_head_share_full": full.lm_head / full.total,
        "counts": (plan.keep_plan.info or {}).get("counts"),
        "plan_file": PLAN_FILE,
        "plan_fingerprint": plan.keep_plan.fingerprint,
        "objectives": {
            name: _choice_row(plan, c) for name, c in {choice.objective_name: choice, **plan.others}.items()
        },
    }
    guard = _guard_summary(plan)
    if guard is not None:
        summary["guard"] = guard
    summary["decided_by"] = "guard" if choice.decided_by_guard else "objective"
    if isinstance(plan.objective, Speedup):
        _add_speedup(summary, plan)
    return summary


def _guard_summary(plan: Plan) -> dict[str, Any] | None:
    """What the guard held and whether it, not the objective, set k (None without a guard)."""
    choice, guard = plan.choice, plan.guard
    if guard is None or choice.guard is None or choice.k_without_guard is None:
        return None
    curve = choice.guard.values
    return {
        "kind": guard.kind,
        "source": guard.source,
        "max_loss": guard.max_loss,
        "floor": choice.guard.floor,
        "what": choice.guard.label,
        "value": float(curve[choice.k]),
        "k_without_guard": choice.k_without_guard,
        "value_without_guard": float(curve[choice.k_without_guard]),
        "decided_by_guard": choice.decided_by_guard,
    }


def _add_speedup(summary: dict[str, Any], plan: Plan) -> None:
    """The speedup objective's predictions (at k, untrimmed, per objective) and the advice line."""
    choice, vocab = plan.choice, plan.curves.vocab_size
    assert isinstance(plan.objective, Speedup)
    values = plan.objective_values
    untrimmed = plan.objective.untrimmed()
    best = float(values[choice.exact_k])
    summary.update(
        {
            "context_tokens": plan.objective.context_tokens,
            "predicted_speedup": float(values[choice.k]),
            "predicted_speedup_untrimmed": untrimmed,
            "predicted_gain_vs_untrimmed": best / untrimmed - 1.0,
            "trimming_pays": bool(best > untrimmed and choice.exact_k < vocab),
        }
    )
    for name, row in summary["objectives"].items():
        speedup_variant = name.startswith("speedup") and name != choice.objective_name
        own = plan.other_values[name] if speedup_variant else values  # static or context tau, as named
        row["predicted_speedup"] = float(own[row["k"]])
        if name.startswith("speedup"):
            row["predicted_gain_vs_untrimmed"] = float(own[row["exact_k"]]) / untrimmed - 1.0
    summary["advice"] = (
        f"trim to k={choice.k:,}: predicted {best / untrimmed - 1.0:+.1%} tokens/s over the untrimmed draft"
        if summary["trimming_pays"]
        else "trimming does not pay here: the best k is the full vocabulary (predicted "
        f"{best / untrimmed - 1.0:+.1%} over the untrimmed draft); keep the untrimmed draft"
    )
    if choice.decided_by_guard:
        summary["advice"] += (
            f"; the guard ({summary['guard']['source']}) set k: without it k would be "
            f"{choice.k_without_guard:,}, where its {choice.guard.label if choice.guard else 'value'} is "
            f"{summary['guard']['value_without_guard']:.3f} < {summary['guard']['floor']:.3f}"
        )
    if max(best, untrimmed) < 1.0:
        summary["advice"] += (
            f"; note: assisted generation itself is predicted slower than the target alone here "
            f"({max(best, untrimmed):.2f}x), the hardware's verification cost is too high for this pair"
        )


def write_report(plan: Plan, out_dir: str | Path, draft_config: Any, alpha: float = 0.5) -> dict[str, Any]:
    """Write summary.json, trials.json, pareto.json, trim_report.png and keep_plan.safetensors; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(plan, draft_config, alpha)
    plan.keep_plan.save(out / PLAN_FILE)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "trials.json").write_text(json.dumps(plan.choice.trials, indent=1))
    front = pareto_front(plan.curves, plan.choice.k_min, plan.choice.k_max)
    (out / "pareto.json").write_text(json.dumps(front, indent=1))
    curves, choice = plan.curves, plan.choice
    plot_choice(
        curves,
        choice,
        plan.objective_values,
        front,
        out / "trim_report.png",
        title=f"{draft_config.model_type} draft, V={curves.vocab_size:,}: k={choice.k:,} "
        f"(C={curves.coverage[choice.k]:.3f}, R={curves.latency_reduction[choice.k]:.3f})",
        other_choices={name: c.k for name, c in plan.others.items()},
    )
    return summary
