# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim acceptance``: exact greedy tau(k), static and with context ids, from one teacher-forced pass."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..loaders import load_causal_lm, load_tokenizer
from ._args import POSITIVE, command, context_flag, data_args, dtype_arg, load_rows, plan_args, plan_for, tokenizer_arg


def add_parser(sub: Any) -> None:
    p = command(
        sub, "acceptance", help="exact greedy tau(k), static and with context ids, from one teacher-forced pass"
    )
    p.add_argument("--target", required=True, help="target folder or Hub id")
    p.add_argument("--draft", required=True, help="draft folder or Hub id")
    tokenizer_arg(p)
    data_args(p)
    plan_args(p)
    p.add_argument("--ks", nargs="+", type=POSITIVE, default=None, help="k grid (default: 24 log-spaced values)")
    p.add_argument("--gamma", type=POSITIVE, default=5, help="draft tokens per round")
    p.add_argument("--max-length", type=POSITIVE, default=1024, help="tokens per chat (longer ones are cut)")
    context_flag(p, True, "also measure tau with the ids already in the sequence scored")
    dtype_arg(p)
    p.add_argument("--out", required=True, help="acceptance JSON")
    p.set_defaults(func=run, max_examples=64)


def run(args: argparse.Namespace) -> int:
    from ..data.counts import vocab_hash
    from ..selection.acceptance import measure_acceptance

    tokenizer = load_tokenizer(args.tokenizer or args.draft)
    target = load_causal_lm(args.target, None, args.dtype)
    draft = load_causal_lm(args.draft, None, args.dtype)
    keep = plan_for(args, draft.config.get_text_config(decoder=True), draft.generation_config)
    if vocab_hash(tokenizer) != keep.vocab_hash:
        raise ValueError("the counts/plan were made with another tokenizer than the draft's; count again.")
    result = measure_acceptance(
        target,
        draft,
        tokenizer,
        load_rows(args, args.data),
        keep,
        ks=args.ks,
        gamma=args.gamma,
        max_length=args.max_length,
        context=args.context_tokens,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for i, (k, tau) in enumerate(zip(result["ks"], result["tau"])):
        context = result.get("tau_context")
        print(f"k={k:>8}: tau {tau:.3f}" + (f", with context ids {context[i]:.3f}" if context else ""))
    print(f"wrote {args.out}")
    return 0
