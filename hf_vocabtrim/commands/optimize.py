# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim optimize``: choose k, max U(k) (or the predicted speedup) subject to C(k) >= c_min, with TPE."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..loaders import load_draft_config, load_generation_config, load_tokenizer
from . import _guard
from ._args import FRACTION, NON_NEGATIVE, POSITIVE, batch_args, command, context_flag, count_data, data_args

SUMMARY_KEYS = (
    "k",
    "decided_by",
    "guard",
    "coverage",
    "coverage_basis",
    "heldout_coverage",
    "latency_reduction",
    "utility",
    "exact_k",
    "tpe_gap",
    "predicted_speedup",
    "predicted_speedup_untrimmed",
    "advice",
    "objectives",
)


def add_parser(sub: Any) -> None:
    p = command(sub, "optimize", help="choose k: max U(k) (or predicted speedup) s.t. C(k) >= c_min with TPE")
    p.add_argument("--counts", required=True, help="counts file from `vocabtrim count`")
    p.add_argument("--draft-config", required=True, help="draft folder, Hub id or config.json")
    p.add_argument("--min-coverage", type=FRACTION, default=0.9, help="coverage floor c_min, in [0, 1]")
    p.add_argument("--alpha", type=FRACTION, default=0.5, help="weight of coverage in U(k), in [0, 1]")
    p.add_argument("--trials", type=POSITIVE, default=50, help="TPE trials")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="TPE sampler seed")
    p.add_argument("--k-min", type=POSITIVE, default=None, help="smallest k tried (default: the special ids, >= 256)")
    p.add_argument("--k-max", type=POSITIVE, default=None, help="largest k tried (default: V)")
    p.add_argument("--context-length", type=POSITIVE, default=1024, help="context length for attention FLOPs")
    p.add_argument("--latency-fit", default=None, help="latency fit JSON from `vocabtrim profile` instead of FLOPs")
    p.add_argument(
        "--objective",
        default="utility",
        choices=["utility", "speedup"],
        help="utility: the paper's U(k); speedup: predicted tokens/s (needs --acceptance and --costs)",
    )
    p.add_argument(
        "--objective-coverage",
        default="calibration",
        choices=["calibration", "heldout"],
        help="coverage used in U(k) and the floor (heldout needs --eval-counts/--eval-data)",
    )
    p.add_argument("--acceptance", default=None, help="acceptance JSON from `vocabtrim acceptance`")
    p.add_argument("--costs", default=None, help="cost model JSON from `vocabtrim profile --assisted`")
    context_flag(p, False, "speedup objective: the draft also scores the ids already in the sequence; a plan made "
                 "with it is a context plan: serve it with context tokens on (generate(), and vLLM with "
                 "hf-vocabtrim's plugin at tensor parallel 1); without it, a static plan")  # fmt: skip
    p.add_argument("--eval-counts", default=None, help="held-out counts file for out-of-domain coverage")
    data_args(p, "--eval-data", required=False)
    p.add_argument("--tokenizer", default=None, help="tokenizer for --eval-data and --guard-data")
    _guard.add_args(p)
    batch_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.counts import TokenCounts
    from ..selection.planning import plan
    from ..selection.report import write_report

    counts = TokenCounts.load(args.counts)
    heldout = TokenCounts.load(args.eval_counts) if args.eval_counts else None
    if args.eval_data:
        if not args.tokenizer:
            raise ValueError("--eval-data needs --tokenizer (the tokenizer the counts were made with).")
        tokenizer = load_tokenizer(args.tokenizer)
        counts.check_tokenizer(tokenizer)
        heldout = count_data(args, args.eval_data, tokenizer)
    draft_config = load_draft_config(args.draft_config)
    generation_config = load_generation_config(args.draft_config)
    result = plan(
        counts,
        draft_config,
        objective=_objective(args, counts),
        generation_config=generation_config,
        guard=_guard.build(args, counts, draft_config, generation_config),
        coverage_basis=args.objective_coverage,
        heldout=heldout,
        min_coverage=args.min_coverage,
        k_min=args.k_min,
        k_max=args.k_max,
        n_trials=args.trials,
        seed=args.seed,
        context_length=args.context_length,
        latency_fit=json.loads(Path(args.latency_fit).read_text()) if args.latency_fit else None,
        alpha=args.alpha,
    )
    summary = write_report(result, args.out, draft_config, alpha=args.alpha)
    print(json.dumps({key: summary[key] for key in SUMMARY_KEYS if key in summary}, indent=1))
    if summary["decided_by"] == "guard":
        g = summary["guard"]
        print(
            f"the guard ({g['source']}), not the objective, set k={summary['k']:,}: without it k would be "
            f"{g['k_without_guard']:,}, where its {g['what']} is {g['value_without_guard']:.3f} < {g['floor']:.3f}"
        )
    if args.objective == "speedup":  # its k was chosen for one serving mode: say which (generate() and vLLM)
        flag = "--context-tokens" if args.context_tokens else "--no-context-tokens"
        print(f"a {'context' if args.context_tokens else 'static'} plan: trim it with `{flag}` (generate() and vLLM)")
    print(f"wrote {args.out}/summary.json, trials.json, pareto.json, trim_report.png, keep_plan.safetensors")
    return 0


def _objective(args: argparse.Namespace, counts: Any) -> Any:
    """The paper's utility, or the predicted speedup from an acceptance curve and a cost model."""
    from ..selection.acceptance import AcceptanceCurve
    from ..selection.planning import Speedup, Utility
    from ..selection.speedup import CostModel

    if args.objective != "speedup":
        return Utility(args.alpha)
    if not args.acceptance or not args.costs:
        raise ValueError(
            "--objective speedup needs --acceptance (from `vocabtrim acceptance`) and --costs (from "
            "`vocabtrim profile --assisted`)."
        )
    acceptance = _json_file(args.acceptance, "--acceptance", "`vocabtrim acceptance`")
    if acceptance.get("vocab_hash") not in (None, counts.vocab_hash):
        raise ValueError("the acceptance curve was made with another tokenizer than these counts.")
    costs = CostModel.from_dict(_json_file(args.costs, "--costs", "`vocabtrim profile --assisted`"))
    return Speedup(AcceptanceCurve.from_dict(acceptance), costs, context_tokens=args.context_tokens)


def _json_file(path: str, flag: str, made_by: str) -> dict[str, Any]:
    """A JSON object file; one line naming ``flag`` where the file is something else (a JSONL data file, say)."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise ValueError(f"{flag} {path} is not a JSON file written by {made_by}.")
    return data
