# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""The guard flags of ``vocabtrim optimize`` and the :class:`~hf_vocabtrim.selection.guard.Guard` they describe: tau
on the guard chats (an acceptance file, or measured with ``--target``/``--draft``) or their coverage from counts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..loaders import load_causal_lm, load_tokenizer
from ._args import LOSS, count_data, dtype_arg, load_rows


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--guard-data",
        default=None,
        help="chats the kept set must also hold on (e.g. the general part of your traffic): with --guard-acceptance "
        "or --target/--draft, tau there stays within --max-guard-loss of the untrimmed draft's; otherwise their "
        "coverage stays >= 1 - --max-guard-loss",
    )
    p.add_argument("--guard-acceptance", default=None, help="acceptance JSON measured on the guard chats")
    p.add_argument("--max-guard-loss", type=LOSS, default=0.03, help="largest relative tau (or coverage) loss, [0, 1)")
    p.add_argument("--target", default=None, help="target model: measure tau on --guard-data here")
    p.add_argument("--draft", default=None, help="draft model: measure tau on --guard-data here")
    dtype_arg(p, "--target/--draft")


def build(args: argparse.Namespace, counts: Any, draft_config: Any, generation_config: Any) -> Any:
    """The guard of these flags, or None without --guard-data / --guard-acceptance."""
    from ..data.chats import public_name
    from ..selection.acceptance import AcceptanceCurve, measure_acceptance
    from ..selection.guard import Guard
    from ..selection.keep_plan import KeepPlan

    if not (args.guard_data or args.guard_acceptance):
        if args.target or args.draft:
            raise ValueError("--target/--draft measure tau on --guard-data: pass --guard-data too.")
        return None
    source = public_name(args.guard_data or args.guard_acceptance)
    common = {"source": source, "max_loss": args.max_guard_loss, "context_tokens": bool(args.context_tokens)}
    if args.guard_acceptance:
        data = json.loads(Path(args.guard_acceptance).read_text())
        if data.get("vocab_hash") not in (None, counts.vocab_hash):
            raise ValueError("the guard's acceptance curve was made with another tokenizer than these counts.")
        return Guard(acceptance=AcceptanceCurve.from_dict(data), **common)
    if not args.tokenizer and not args.draft:
        raise ValueError("--guard-data needs --tokenizer (or --draft) to read the chats with the counts' tokenizer.")
    tokenizer = load_tokenizer(args.tokenizer or args.draft)
    counts.check_tokenizer(tokenizer)
    if bool(args.target) != bool(args.draft):
        raise ValueError("measuring tau on --guard-data needs both --target and --draft.")
    if not args.target:  # no acceptance pass: the coverage guard, from counts alone
        return Guard(counts=count_data(args, args.guard_data, tokenizer), **common)
    keep = KeepPlan.from_counts(counts, draft_config, generation_config)
    target = load_causal_lm(args.target, None, args.dtype)
    draft = load_causal_lm(args.draft, None, args.dtype)
    rows = load_rows(args, args.guard_data)
    measured = measure_acceptance(target, draft, tokenizer, rows, keep, context=bool(args.context_tokens))
    return Guard(acceptance=AcceptanceCurve.from_dict(measured), **common)
