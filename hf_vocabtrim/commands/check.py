# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim check``: lint a reduced-vocabulary draft checkpoint (EAGLE-3 / DFlash) before an engine loads it."""

from __future__ import annotations

import argparse
from typing import Any

from ..loaders import load_tokenizer
from ._args import command


def add_parser(sub: Any) -> None:
    p = command(sub, "check", help="lint a reduced-vocabulary draft checkpoint (EAGLE-3 / DFlash): d2t, t2d, head rows")
    p.add_argument("model", help="checkpoint folder")
    p.add_argument(
        "--tokenizer", default=None, help="the target's tokenizer: names its end-of-reply ids (eos, end of turn)"
    )
    p.set_defaults(func=run)


def end_ids_of(tokenizer_source: str | None) -> list[int] | None:
    """End-of-reply ids of the target's tokenizer (None without one: the head's config eos)."""
    if not tokenizer_source:
        return None
    from ..data.specials import end_of_reply_ids

    return end_of_reply_ids(load_tokenizer(tokenizer_source))


def run(args: argparse.Namespace) -> int:
    """Exit 1 for problems (an engine would map rows to the wrong ids or refuse), 0 for a clean head or warnings."""
    from ..engines.eagle3 import check_head, head_warnings, load_head

    head = load_head(args.model)
    end_ids = end_ids_of(args.tokenizer)
    problems, warnings = check_head(head), head_warnings(head, end_ids)
    for line in problems + warnings:
        print(f"{args.model}: {line}")
    if not problems:
        rows = f"{head.draft_vocab_size:,} head rows of V={head.vocab_size:,}"
        print(f"{args.model}: ok ({head.layout} layout, {rows}" + (", with warnings)" if warnings else ")"))
    return 1 if problems else 0
