# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim trim``: write a ``TrimmedDraftModel`` folder from a draft and a keep plan (or counts and k)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..loaders import (
    MODEL_FILES,
    load_causal_lm,
    load_draft_config,
    load_generation_config,
    load_tokenizer,
    local_or_hub,
)
from ._args import POSITIVE, command, context_flag, dtype_arg, model_args, plan_args, plan_for, tokenizer_arg


def add_parser(sub: Any) -> None:
    p = command(sub, "trim", help="write a TrimmedDraftModel folder from a draft and a keep plan (or counts + k)")
    model_args(p)
    tokenizer_arg(p)
    p.add_argument("--target", default=None, help="target (only its config is read: a padded vocabulary V)")
    plan_args(p)
    p.add_argument("--k", type=POSITIVE, default=None, help="kept vocabulary size (default: the plan's)")
    context_flag(p, None, "score the ids already in the sequence too (default: on for tied-embedding drafts)")
    dtype_arg(p, "the trimmed draft")
    p.add_argument("--num-assistant-tokens", type=POSITIVE, default=5, help="draft tokens per round")
    p.add_argument(
        "--fast-path",
        default="auto",
        choices=("auto", "eager", "static"),  # TrimmedDraftConfig's FAST_PATHS (a test keeps them equal)
        help="assistant proposals: auto (CUDA-graph captured over a static cache on a GPU, eager elsewhere), eager "
        "(transformers' own loop) or static (the static-cache path without capture, any device)",
    )
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.chats import public_name
    from ..data.counts import TokenCounts
    from ..model.trimming import trim_draft
    from ..selection.keep_plan import check_k

    local_or_hub(args.draft, "model", MODEL_FILES, args.gguf_file)  # a mistyped --draft is named first
    tokenizer = load_tokenizer(args.tokenizer or args.draft, args.gguf_file)
    counts = TokenCounts.load(args.counts) if args.counts else None
    if counts is not None and not (args.plan or args.summary):  # the plan is made from these counts: check them
        counts.check_tokenizer(tokenizer)
    target = load_draft_config(args.target) if args.target else None
    draft_source = args.draft if not args.gguf_file else None  # a GGUF file holds its config with its weights
    if draft_source is not None:  # the plan and --k are checked before any weights load
        keep = plan_for(args, load_draft_config(draft_source), load_generation_config(draft_source))
        check_k(keep.k if args.k is None else args.k, keep.num_forced, keep.vocab_size)
    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    if draft_source is None:
        keep = plan_for(args, draft.config.get_text_config(decoder=True), draft.generation_config)
    model = trim_draft(
        draft,
        keep,
        args.k,
        tokenizer=tokenizer,
        target=target,
        counts=counts,
        context_tokens=args.context_tokens,
        assistant_settings={"num_assistant_tokens": args.num_assistant_tokens},
        trimming={"base_model": public_name(args.draft), "gguf_file": args.gguf_file},
        fast_path=args.fast_path,
    )
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    info = model.config.trimming
    shown = {"out": str(args.out), "k": info["k"], "vocab_size": model.full_vocab_size}
    if info.get("coverage") is not None:  # known where counts were given (the plan's coverage is in optimize's report)
        shown["coverage"] = info["coverage"]
    shown.update(context_tokens=model.config.context_tokens, fast_path=model.config.fast_path)
    print(json.dumps(shown))
    return 0
