# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim import``: a trimmed draft built from an engine's token map (``import`` is a keyword: ``import_.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..loaders import load_causal_lm, load_tokenizer
from ._args import command, context_flag, dtype_arg, model_args

FORMATS = ("sglang", "eagle3", "frspec")  # engines.export.FORMATS, not imported: --help stays fast


def add_parser(sub: Any) -> None:
    p = command(sub, "import", help="build a trimmed draft from an engine's token map")
    model_args(p, what="base draft")
    p.add_argument("--token-map", required=True, help="the engine's token map file")
    p.add_argument("--format", required=True, choices=FORMATS, help="token map format")
    p.add_argument("--exact", action="store_true", help="keep exactly the map's ids (no added special tokens)")
    context_flag(p, None, "score the ids already in the sequence too (default: on for tied-embedding drafts)")
    dtype_arg(p)
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engines.export import import_token_map
    from ..model.modeling_trimmed_draft import TrimmedDraftModel

    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    vocab = int(draft.config.get_text_config().vocab_size)
    kept = import_token_map(args.token_map, args.format, vocab_size=vocab)
    model = TrimmedDraftModel.from_draft(
        draft,
        kept,
        keep_special_tokens=not args.exact,
        context_tokens=args.context_tokens,
        trimming={"imported_from": Path(args.token_map).name, "format": args.format},
    )
    model.save_pretrained(args.out)
    try:
        load_tokenizer(args.draft, args.gguf_file).save_pretrained(args.out)
    except Exception as err:  # no (loadable) tokenizer there: the model folder is complete without it; say so
        print(f"vocabtrim import: note: no tokenizer saved with the model ({err})", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "k": model.config.draft_vocab_size, "vocab_size": vocab}))
    return 0
