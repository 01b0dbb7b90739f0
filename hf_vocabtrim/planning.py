# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""counts + draft config -> curves -> choice of k -> summary.json, trials.json, pareto.json and a PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .counting import TokenCounts
from .coverage import coverage_curve, rank_ids
from .flops import decode_flops, latency_reduction, linear_latency_reduction
from .optimize import Choice, Curves, choose_k, pareto_front
from .plotting import plot_choice


def load_draft_config(source: str | Path, **hub_kwargs: Any) -> Any:
    """A draft's text config from a folder, a Hub id or a ``config.json`` path (a trimmed draft gives its base)."""
    from transformers import AutoConfig

    path = Path(source)
    if path.is_file():
        data = json.loads(path.read_text())
        if "model_type" not in data:
            raise ValueError(f"{path} has no `model_type`: pass a transformers config.json.")
        if data["model_type"] == "trimmed_draft":
            data = data["text_config"]
        data = dict(data)
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    else:
        config = AutoConfig.from_pretrained(str(source), **hub_kwargs)
    if getattr(config, "model_type", "") == "trimmed_draft":
        config = config.text_config
    return config.get_text_config(decoder=True)


def forced_ids(
    counts: TokenCounts, draft_config: Any, generation_config: Any = None, tokenizer: Any = None
) -> list[int]:
    """Ids always kept: the tokenizer's specials recorded with the counts plus the config's eos/bos/pad (and the
    specials of ``tokenizer`` when given)."""
    from .modeling_trimmed_draft import special_token_ids

    ids = set(int(i) for i in counts.extra.get("special_ids", []))
    ids |= special_token_ids(draft_config, generation_config, tokenizer)
    vocab = int(draft_config.vocab_size)
    return sorted(i for i in ids if 0 <= i < vocab)


def build_curves(
    counts: TokenCounts,
    draft_config: Any,
    forced: list[int],
    *,
    context_length: int = 1024,
    heldout: TokenCounts | None = None,
    latency_fit: dict[str, float] | None = None,
) -> tuple[Curves, np.ndarray]:
    """Coverage, held-out coverage and latency reduction for every k, and the keep order of the ids."""
    vocab = int(draft_config.vocab_size)
    order = rank_ids(counts.counts, forced, vocab_size=vocab)
    coverage = coverage_curve(counts.counts, order)
    held = None
    if heldout is not None:
        if heldout.vocab_hash != counts.vocab_hash:
            raise ValueError("the held-out counts were made with another tokenizer than the calibration counts.")
        held = coverage_curve(heldout.counts, order)
    ks = np.arange(vocab + 1)
    if latency_fit is not None:
        reduction = linear_latency_reduction(latency_fit["a_ms"], latency_fit["b_ms_per_row"], ks, vocab)
    else:
        reduction = latency_reduction(decode_flops(draft_config, context_length=context_length), ks, vocab)
    return Curves(coverage=coverage, latency_reduction=reduction, heldout_coverage=held), order


def write_report(
    out_dir: str | Path,
    curves: Curves,
    choice: Choice,
    objective: np.ndarray,
    *,
    alpha: float,
    counts: TokenCounts,
    draft_config: Any,
    forced: list[int],
    context_length: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write summary.json, trials.json, pareto.json and trim_report.png; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = curves.vocab_size
    full = decode_flops(draft_config, context_length=context_length)
    at_k = decode_flops(draft_config, k=choice.k, context_length=context_length)
    utility = curves.utility(alpha)

    def point(k: int) -> dict[str, Any]:
        row = {
            "k": k,
            "coverage": float(curves.coverage[k]),
            "latency_reduction": float(curves.latency_reduction[k]),
            "utility": float(utility[k]),
        }
        if curves.heldout_coverage is not None and (extra or {}).get("objective_coverage") == "heldout":
            # the objective ran on held-out coverage (in `coverage`); the other curve is the in-sample one
            row["heldout_coverage"] = row["coverage"]
            row["calibration_coverage"] = float(curves.heldout_coverage[k])
        elif curves.heldout_coverage is not None:
            row["heldout_coverage"] = float(curves.heldout_coverage[k])
        return row

    summary = {
        **point(choice.k),
        "objective": choice.objective_name,
        "objective_value": choice.value,
        "exact_k": choice.exact_k,
        "exact_utility": float(utility[choice.exact_k]),
        "exact_objective_value": choice.exact_value,
        "exact": point(choice.exact_k),
        "tpe_gap": choice.gap,
        "alpha": alpha,
        "min_coverage": choice.min_coverage,
        "k_min": choice.k_min,
        "k_max": choice.k_max,
        "trials": len(choice.trials),
        "vocab_size": vocab,
        "vocab_reduction": 1.0 - choice.k / vocab,
        "num_forced_ids": len(forced),
        "context_length": context_length,
        "draft_model_type": draft_config.model_type,
        "flops_full": full.as_dict(),
        "flops_at_k": at_k.as_dict(),
        "lm_head_share_full": full.lm_head / full.total,
        "counts": counts.metadata,
        **(extra or {}),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "trials.json").write_text(json.dumps(choice.trials, indent=1))
    front = pareto_front(curves, choice.k_min, choice.k_max)
    (out / "pareto.json").write_text(json.dumps(front, indent=1))
    plot_choice(
        curves,
        choice,
        objective,
        front,
        out / "trim_report.png",
        title=f"{draft_config.model_type} draft, V={vocab:,}: k={choice.k:,} "
        f"(C={curves.coverage[choice.k]:.3f}, R={curves.latency_reduction[choice.k]:.3f})",
        labels=("held-out coverage C(k) (objective)", "calibration coverage (in-sample)")
        if (extra or {}).get("objective_coverage") == "heldout"
        else ("coverage C(k)", "held-out coverage"),
        other_choices={
            name: int(row["k"])
            for name, row in (extra or {}).get("objectives", {}).items()
            if name != choice.objective_name
        },
    )
    return summary


def plan(
    counts: TokenCounts,
    draft_config: Any,
    out_dir: str | Path,
    *,
    alpha: float = 0.5,
    min_coverage: float = 0.9,
    k_min: int | None = None,
    k_max: int | None = None,
    n_trials: int = 50,
    seed: int = 0,
    context_length: int = 1024,
    heldout: TokenCounts | None = None,
    latency_fit: dict[str, float] | None = None,
    generation_config: Any = None,
    objective_coverage: str = "calibration",
    objective: str = "utility",
    acceptance: dict[str, Any] | None = None,
    timing: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The paper's method end to end: maximise U(k) subject to C(k) >= c_min with TPE; write the report.

    ``objective_coverage="heldout"`` uses the held-out coverage (``heldout`` counts, ranked by the calibration
    counts) in U(k) and in the floor: with a small calibration set, in-sample coverage reaches 1.0 at the number of
    distinct ids seen and says nothing about unseen text.

    ``objective="speedup"`` maximises the predicted speedup tau(k) * target_ms / (gamma * draft_ms(k) + verify_ms)
    instead (``acceptance`` from ``vocabtrim acceptance``; ``timing`` with ``target_ms``, ``verify_ms`` and, without a
    ``latency_fit``, ``draft_ms`` at full V scaled by FLOPs); both objectives' choices are reported.
    """
    vocab = int(draft_config.vocab_size)
    if counts.vocab_size > vocab:
        raise ValueError(
            f"tokenizer/vocabulary mismatch: the counts cover {counts.vocab_size} ids but the draft has V={vocab}."
        )
    forced = forced_ids(counts, draft_config, generation_config)
    curves, _ = build_curves(
        counts, draft_config, forced, context_length=context_length, heldout=heldout, latency_fit=latency_fit
    )
    if objective_coverage not in {"calibration", "heldout"}:
        raise ValueError(f"objective_coverage must be 'calibration' or 'heldout', got {objective_coverage!r}.")
    if objective_coverage == "heldout":
        if curves.heldout_coverage is None:
            raise ValueError("objective_coverage='heldout' needs held-out counts (--eval-data or --eval-counts).")
        curves = Curves(
            coverage=curves.heldout_coverage,
            latency_reduction=curves.latency_reduction,
            heldout_coverage=curves.coverage,
        )
    k_min = max(len(forced), 1, min(256, vocab)) if k_min is None else k_min
    if k_min < len(forced):
        raise ValueError(f"k_min={k_min} is below the {len(forced)} special tokens that are always kept.")
    bounds: dict[str, Any] = {
        "k_min": k_min,
        "k_max": k_max or vocab,
        "min_coverage": min_coverage,
        "n_trials": n_trials,
        "seed": seed,
        "progress": progress,
    }
    values = {"utility": curves.utility(alpha)}
    if objective == "speedup":
        if acceptance is None or timing is None:
            raise ValueError("objective='speedup' needs an acceptance curve (--acceptance) and timings.")
        if acceptance.get("vocab_hash") not in (None, counts.vocab_hash):
            raise ValueError("the acceptance curve was made with another tokenizer than these counts.")
        values["speedup"] = speedup_curve(curves, acceptance, timing, latency_fit)
    elif objective != "utility":
        raise ValueError(f"objective must be 'utility' or 'speedup', got {objective!r}.")
    choices = {name: choose_k(value, curves, objective_name=name, **bounds) for name, value in values.items()}
    choice = choices[objective]
    extra: dict[str, Any] = {
        "latency_model": "measured fit" if latency_fit else "flops",
        "latency_fit": latency_fit,
        "objective_coverage": objective_coverage,
    }
    if objective == "speedup":
        speedup = values["speedup"]
        extra["objectives"] = {
            name: {
                "k": c.k,
                "exact_k": c.exact_k,
                "tpe_gap": c.gap,
                "coverage": float(curves.coverage[c.k]),
                "utility": float(values["utility"][c.k]),
                "predicted_speedup": float(speedup[c.k]),
            }
            for name, c in choices.items()
        }
        extra["predicted_speedup"] = float(speedup[choice.k])
        extra["predicted_speedup_full_vocab"] = float(speedup[vocab])
    objective_values = values[objective]
    return write_report(
        out_dir,
        curves,
        choice,
        objective_values,
        alpha=alpha,
        counts=counts,
        draft_config=draft_config,
        forced=forced,
        context_length=context_length,
        extra=extra,
    )


def trim_from_counts(
    draft: Any,
    counts: TokenCounts,
    k: int,
    *,
    tokenizer: Any = None,
    target: Any = None,
    trimming: dict[str, Any] | None = None,
    assistant_settings: dict[str, Any] | None = None,
) -> Any:
    """A :class:`TrimmedDraftModel` keeping exactly k ids: the special tokens, then the most counted ids."""
    from .modeling_trimmed_draft import TrimmedDraftModel

    if tokenizer is not None:
        counts.check_tokenizer(tokenizer)
    config = draft.config.get_text_config(decoder=True)
    vocab = int(config.vocab_size)
    forced = forced_ids(counts, config, draft.generation_config, tokenizer)
    order = rank_ids(counts.counts, forced, vocab_size=vocab)
    if not len(forced) <= k <= vocab:
        raise ValueError(
            f"k={k} is out of range: it must be in [{max(len(forced), 1)}, {vocab}] "
            f"({len(forced)} special tokens are always kept, V={vocab})."
        )
    kept = np.sort(order[:k])
    coverage = float(coverage_curve(counts.counts, order)[k])
    info = {"k": k, "vocab_size": vocab, "coverage": coverage, "counts": counts.metadata, **(trimming or {})}
    return TrimmedDraftModel.from_draft(
        draft,
        kept,
        tokenizer=tokenizer,
        target=target,
        keep_special_tokens=False,
        trimming=info,
        assistant_settings=assistant_settings,
    )


def speedup_curve(
    curves: Curves, acceptance: dict[str, Any], timing: dict[str, float], latency_fit: dict[str, float] | None
) -> np.ndarray:
    """Predicted speedup over the target alone for every k (see :func:`plan`)."""
    from .acceptance import AcceptanceCurve, predicted_speedup

    vocab = curves.vocab_size
    curve = AcceptanceCurve(**{key: acceptance[key] for key in AcceptanceCurve.__dataclass_fields__})
    tau = curve.interpolate(vocab)
    ks = np.arange(vocab + 1)
    if latency_fit is not None:
        draft_ms = latency_fit["a_ms"] + latency_fit["b_ms_per_row"] * ks
    elif "draft_ms" in timing:
        draft_ms = timing["draft_ms"] * (1.0 - curves.latency_reduction)
    else:
        raise ValueError("the speedup objective needs draft times: --latency-fit or --draft-ms.")
    target_ms = timing["target_ms"]
    verify_ms = timing.get("verify_ms", target_ms)
    return predicted_speedup(tau, draft_ms, verify_ms, target_ms, curve.gamma)
