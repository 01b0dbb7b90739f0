# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim check``: lint a draft folder before an engine loads it: a ``TrimmedDraftModel`` folder (config,
``kept_ids``, head and embedding rows, context rows, the target's V) or a reduced-vocabulary EAGLE-3 / DFlash head."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..loaders import load_tokenizer
from ._args import command


def add_parser(sub: Any) -> None:
    p = command(sub, "check", help="lint a draft folder before vLLM / SGLang load it: a trimmed draft (vocabtrim trim) "
                "or an EAGLE-3 / DFlash head")  # fmt: skip
    p.add_argument("model", help="checkpoint folder")
    p.add_argument(
        "--tokenizer", default=None, help="the target's tokenizer: names its end-of-reply ids (eos, end of turn)"
    )
    p.add_argument("--target", default=None, help="the target (folder or Hub id): its V must equal the draft's")
    p.set_defaults(func=run)


def end_ids_of(tokenizer_source: str | None) -> list[int] | None:
    """End-of-reply ids of the target's tokenizer (None without one: the head's config eos)."""
    if not tokenizer_source:
        return None
    from ..data.specials import end_of_reply_ids

    return end_of_reply_ids(load_tokenizer(tokenizer_source))


def target_vocab_size(source: str | None) -> int | None:
    """The target's V from its config (a folder's config.json, else transformers' AutoConfig)."""
    if not source:
        return None
    file = Path(source) / "config.json"
    if file.is_file():
        data = json.loads(file.read_text())
        return int((data.get("text_config") or data)["vocab_size"])
    from ..loaders import load_draft_config

    return int(load_draft_config(source).vocab_size)


def is_trimmed_folder(folder: str) -> bool:
    file = Path(folder) / "config.json"
    try:
        return file.is_file() and json.loads(file.read_text()).get("model_type") == "trimmed_draft"
    except json.JSONDecodeError:
        return True  # the trimmed-folder check reports the broken config.json


def run(args: argparse.Namespace) -> int:
    """Exit 1 for problems (an engine would map rows to the wrong ids or refuse), 0 for a clean folder or warnings."""
    if is_trimmed_folder(args.model):
        from ..model.folder_check import trimmed_folder_problems

        problems = trimmed_folder_problems(args.model, target_vocab_size(args.target))
        for line in problems:
            print(f"{args.model}: {line}")
        if not problems:
            config = json.loads((Path(args.model) / "config.json").read_text())
            context = "context tokens on" if config.get("context_tokens") else "static kept set"
            print(f"{args.model}: ok (TrimmedDraftModel, k={config['draft_vocab_size']:,} of "
                  f"V={config['text_config']['vocab_size']:,}, {context})")  # fmt: skip
        return 1 if problems else 0
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
