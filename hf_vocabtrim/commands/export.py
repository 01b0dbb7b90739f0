# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim export``: a trimmed draft's kept set as an engine's token map (SGLang, EAGLE-3 buffers, FR-Spec)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._args import command

FORMATS = ("sglang", "eagle3", "frspec")  # engines.export.FORMATS, not imported: --help stays fast


def add_parser(sub: Any) -> None:
    p = command(sub, "export", help="write a trimmed draft's kept set for SGLang, EAGLE-3 (vLLM) or FR-Spec")
    p.add_argument("--model", required=True, help="trimmed draft folder")
    p.add_argument("--format", required=True, choices=FORMATS, help="engine file format")
    p.add_argument("--plan", default=None, help="keep plan: orders FR-Spec's list most frequent first")
    p.add_argument("--out", required=True, help="output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from safetensors import safe_open

    from ..engines.export import export_token_map

    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise ValueError(f"--model {args.model}: no config.json there; pass a folder written by `vocabtrim trim`.")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "trimmed_draft":
        raise ValueError(f"{args.model} is not a trimmed draft; create one with `vocabtrim trim`.")
    with safe_open(str(folder / "model.safetensors"), framework="np") as handle:
        kept = np.asarray(handle.get_tensor("kept_ids"))
    if args.format == "frspec" and args.plan:  # FR-Spec wants the ids most frequent first: the plan's order
        from ..selection.keep_plan import KeepPlan

        order = KeepPlan.load(args.plan).order
        kept = order[np.isin(order, kept)]
    vocab = int(config["text_config"]["vocab_size"])
    path = export_token_map(kept, args.out, args.format, vocab_size=vocab)
    print(json.dumps({"out": str(path), "format": args.format, "k": int(len(kept)), "vocab_size": vocab}))
    return 0
