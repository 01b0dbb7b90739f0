# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim count``: count the assistant tokens of chat data (or of the target's own replies to its prompts)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..loaders import load_causal_lm, load_tokenizer
from ._args import POSITIVE, batch_args, command, count_data, data_args, device_arg, dtype_arg, load_rows


def add_parser(sub: Any) -> None:
    p = command(sub, "count", help="count assistant tokens of chat data with a tokenizer's chat template")
    data_args(p)
    p.add_argument("--tokenizer", required=True, help="tokenizer folder or Hub id")
    p.add_argument("--gguf-file", default=None, help="read the tokenizer from this GGUF file in --tokenizer")
    p.add_argument("--out", required=True, help="counts file (.json or .safetensors)")
    batch_args(p)
    p.add_argument(
        "--generate-with",
        default=None,
        help="target model: count its own greedy replies to the data's prompts (the messages before the first "
        "assistant turn) instead of the data's responses",
    )
    p.add_argument("--max-new-tokens", type=POSITIVE, default=256, help="longest target reply (--generate-with)")
    p.add_argument("--generation-batch-size", type=POSITIVE, default=8, help="prompts per batch (--generate-with)")
    p.add_argument(
        "--generations", default=None, help="JSONL of the replies, resumable (default: OUT with .generations.jsonl)"
    )
    p.add_argument(
        "--keep-dataset-responses", action="store_true", help="count the data's responses too (--generate-with)"
    )
    dtype_arg(p, "--generate-with")
    device_arg(p, "--generate-with")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer, args.gguf_file)
    counts = _target_counts(args, tokenizer) if args.generate_with else count_data(args, args.data, tokenizer)
    counts.save(args.out)
    keys = ("conversations_without_assistant_text", "skipped_conversations")
    print(
        json.dumps(
            {
                "out": str(args.out),
                "conversations": counts.num_conversations,
                "tokens": counts.num_tokens,
                "distinct_ids": int((counts.counts > 0).sum()),
                "vocab_size": counts.vocab_size,
                **{key: counts.extra[key] for key in keys if key in counts.extra},
            }
        )
    )
    return 0


def _target_counts(args: argparse.Namespace, tokenizer: Any) -> Any:
    """Counts of the target's own greedy replies to the data's prompts (and of the data's responses, if asked)."""
    from ..data.chats import public_name
    from ..data.target_outputs import count_replies, generate_replies, merge_counts

    placement = {"device_map": args.device} if args.device else {}
    target = load_causal_lm(args.generate_with, None, args.dtype, **placement)
    replies = generate_replies(
        target,
        tokenizer,
        list(load_rows(args, args.data)),
        max_new_tokens=args.max_new_tokens,
        batch_size=args.generation_batch_size,
        generations=args.generations or Path(args.out).with_suffix(".generations.jsonl"),
    )
    counts = count_replies(
        replies,
        tokenizer,
        Path(args.data).name,
        target=public_name(args.generate_with),
        max_new_tokens=args.max_new_tokens,
    )
    if args.keep_dataset_responses:
        counts = merge_counts(count_data(args, args.data, tokenizer), counts)
    return counts
