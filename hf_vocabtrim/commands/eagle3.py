# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim eagle3``: trim an EAGLE-3 / DFlash head (vLLM, SGLang, SpecForge) to k of its rows, and optionally
serve it in vLLM beside the original before deploying it (``--verify-with``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._args import FRACTION, NON_NEGATIVE, POSITIVE, command, data_args, load_rows
from .check import end_ids_of

INCONCLUSIVE = 3  # exit status: --verify-with found the original head not lossless either


def add_parser(sub: Any) -> None:
    p = command(sub, "eagle3", help="trim an EAGLE-3 / DFlash draft head (vLLM, SGLang, SpecForge) to k of its rows")
    p.add_argument("--draft", required=True, help="EAGLE-3 / DFlash checkpoint folder")
    p.add_argument("--counts", required=True, help="counts of the target tokenizer (`vocabtrim count`)")
    p.add_argument("--out", required=True, help="output checkpoint folder")
    p.add_argument("--k", type=POSITIVE, default=None, help="rows to keep (default: chosen by --min-coverage/--alpha)")
    p.add_argument("--plan", default=None, help="keep plan of an earlier `vocabtrim eagle3` (its report folder)")
    p.add_argument("--min-coverage", type=FRACTION, default=0.9, help="coverage floor c_min, in [0, 1]")
    p.add_argument("--alpha", type=FRACTION, default=0.5, help="weight of coverage in U(k), in [0, 1]")
    p.add_argument("--trials", type=POSITIVE, default=50, help="TPE trials")
    p.add_argument("--k-min", type=POSITIVE, default=None, help="smallest k tried (default: min(256, head rows))")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="TPE sampler seed")
    p.add_argument(
        "--tokenizer", default=None, help="the target's tokenizer: checks the counts, names the end-of-reply ids"
    )
    p.add_argument("--report", default=None, help="optimize report folder (default: OUT.report)")
    p.add_argument(
        "--verify-with",
        default=None,
        help="target model folder: serve chats of --data with the original and the trimmed head in vLLM (needs "
        "`pip install hf-vocabtrim[vllm]`) and report lossless yes/no and the acceptance ratio; exit status 1 if "
        f"the trimmed head is not lossless, {INCONCLUSIVE} if the original is not either",
    )
    data_args(p, "--data", required=False)
    p.add_argument("--verify-prompts", type=POSITIVE, default=8, help="chats served by --verify-with")
    p.add_argument("--verify-tokens", type=POSITIVE, default=64, help="new tokens per chat (--verify-with)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.counts import TokenCounts
    from ..engines.eagle3 import check_head, head_card, head_warnings, load_head, lost_end_ids, save_head, trim_head

    if args.verify_with:  # before any work: the check needs vLLM and chats to serve
        from ..engines.vllm_serve import require_vllm

        require_vllm("--verify-with")
        if not args.data:
            raise ValueError("--verify-with serves chats of your own: pass --data (the chats to serve).")
    head = load_head(args.draft)
    if args.verify_with and head.layout == "dflash":
        raise ValueError("--verify-with serves EAGLE-3 heads; a DFlash head is not served by this check (drop it).")
    end_ids = end_ids_of(args.tokenizer)
    problems = check_head(head)
    if problems:
        raise ValueError(f"{args.draft} does not lint clean (`vocabtrim check`): " + " | ".join(problems))
    for warning in head_warnings(head, end_ids):
        print(f"{args.draft}: {warning}", file=sys.stderr)
    counts = TokenCounts.load(args.counts)
    if args.tokenizer:
        from ..loaders import load_tokenizer

        counts.check_tokenizer(load_tokenizer(args.tokenizer))
    kept, summary, missing = _choose(args, head, counts, end_ids)
    trimmed = trim_head(head, kept)
    save_head(trimmed, args.out, source=args.draft, card=head_card(trimmed, head.draft_vocab_size, summary, missing))
    saved = load_head(args.out)
    problems = check_head(saved)
    lost = lost_end_ids(head, saved, end_ids)
    if lost:
        problems.append(f"the trimmed head lost the rows of end-of-reply ids {lost} that the original had.")
    for problem in problems:
        print(f"{args.out}: {problem}", file=sys.stderr)
    keys = ("k", "coverage", "head_coverage", "latency_reduction", "lm_head_share_full", "exact_k", "tpe_gap")
    shown = {
        "out": str(args.out),
        "rows_before": head.draft_vocab_size,
        **{k: summary[k] for k in keys if k in summary},
    }
    if args.verify_with and not problems:
        try:
            shown["verify"] = _verify(args)
        except RuntimeError as err:  # vLLM failed or ran out of time: the head is written, the check did not run
            print(f"vocabtrim eagle3: --verify-with: {err}", file=sys.stderr)
            return 1
    print(json.dumps(shown))
    if problems:
        return 1
    if not args.verify_with or shown["verify"]["lossless"]:
        return 0
    return 1 if shown["verify"]["original_lossless"] else INCONCLUSIVE


def _choose(args: argparse.Namespace, head: Any, counts: Any, end_ids: list[int] | None) -> tuple[Any, dict, list]:
    """The kept ids (by an earlier plan, --k, or the optimiser), the report summary and the end ids the head lacks."""
    import types

    import numpy as np

    from ..engines.eagle3 import missing_end_ids, plan_head
    from ..selection.coverage import coverage_of
    from ..selection.keep_plan import KeepPlan
    from ..selection.report import write_report

    if args.plan:  # a plan from an earlier `vocabtrim eagle3` (its report folder)
        keep = KeepPlan.load(args.plan)
        keep.check_counts(counts)
        kept = keep.kept_ids(args.k)
        summary: dict[str, Any] = {"k": len(kept), "coverage": keep.coverage(counts, len(kept)), "objective": "plan"}
        summary["counts"] = counts.metadata
        missing = missing_end_ids(head, end_ids)
    else:
        planned, missing = plan_head(
            head,
            counts,
            k=args.k,
            min_coverage=args.min_coverage,
            alpha=args.alpha,
            n_trials=args.trials,
            k_min=args.k_min,
            seed=args.seed,
            end_ids=end_ids,
        )
        report = Path(args.report) if args.report else Path(f"{args.out}.report")
        config = types.SimpleNamespace(model_type=f"eagle3 head ({head.layout})")
        summary = write_report(planned, report, config, alpha=args.alpha)
        kept = planned.keep_plan.kept_ids()
    summary["head_coverage"] = coverage_of(head.head_ids, counts.counts)
    return np.asarray(kept), summary, missing


def _verify(args: argparse.Namespace) -> dict[str, Any]:
    """Serve the user's chats with the original and the trimmed head in vLLM: lossless, acceptance ratio."""
    from ..engines.vllm_serve import verdict, verify_heads

    rows = list(load_rows(args, args.data))[: args.verify_prompts]
    result = verify_heads(args.verify_with, args.draft, args.out, rows, max_new_tokens=args.verify_tokens)
    print(verdict(result), file=sys.stderr)
    return result
