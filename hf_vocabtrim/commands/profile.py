# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim profile``: time the draft's decode step against k (fit a + b*k), or real assisted rounds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..loaders import load_causal_lm
from ._args import POSITIVE, command, device_arg, dtype_arg, model_args, threads_arg

DEFAULT_KS = [1024, 4096, 16384, 65536]


def add_parser(sub: Any) -> None:
    p = command(sub, "profile", help="time the draft step vs k (fit a + b*k), or assisted rounds (--assisted)")
    model_args(p)
    p.add_argument("--target", default=None, help="target model (with --assisted)")
    p.add_argument("--assisted", action="store_true", help="measure the cost model inside real generate() calls")
    p.add_argument("--gamma", type=POSITIVE, default=5, help="draft tokens per round (--assisted)")
    p.add_argument("--new-tokens", type=POSITIVE, default=32, help="tokens generated per timed call (--assisted)")
    p.add_argument("--repeats", type=POSITIVE, default=2, help="timed calls per configuration, rotated (--assisted)")
    p.add_argument(
        "--contexts", nargs=2, type=POSITIVE, default=[64, 512], help="the two prompt lengths timed (--assisted)"
    )
    dtype_arg(p)
    device_arg(p)
    p.add_argument(
        "--ks",
        nargs="+",
        type=POSITIVE,
        default=None,
        help="k values (default: 1024 4096 16384 65536; --assisted: 8192 65536, or V/8 and V/2 for a smaller V)",
    )
    p.add_argument("--prompt", type=POSITIVE, default=64, help="prompt tokens")
    p.add_argument("--steps", type=POSITIVE, default=8, help="decode steps per timed round")
    p.add_argument("--rounds", type=POSITIVE, default=5, help="interleaved timing rounds (median)")
    threads_arg(p)
    p.add_argument("--out", required=True, help="latency fit / cost model JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..measure.assisted_costs import profile_assisted
    from ..measure.profiling import profile_draft

    if args.threads:
        torch.set_num_threads(args.threads)
    placement = {"device_map": args.device} if args.device else {}
    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype, **placement)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.assisted:
        if not args.target:
            raise ValueError("--assisted needs --target.")
        target = load_causal_lm(args.target, None, args.dtype, **placement)
        costs = profile_assisted(
            target,
            draft,
            gamma=args.gamma,
            ks=args.ks,
            prompt_tokens=args.contexts,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
        )
        Path(args.out).write_text(json.dumps(costs.as_dict(), indent=2))
        print(json.dumps(costs.as_dict(), indent=1))
        return 0
    result = profile_draft(draft, args.ks or DEFAULT_KS, prompt=args.prompt, steps=args.steps, rounds=args.rounds)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for point in result["points"]:
        print(f"k={point['k']:>8}: {point['ms']:8.2f} ms/token")
    print(
        f"fit: time(k) = {result['a_ms']:.3f} ms + {result['b_ms_per_row'] * 1000:.4f} ms per 1000 rows "
        f"(max error {result['max_rel_error']:.1%}); wrote {args.out}"
    )
    print(f"the full LM head is {result['lm_head_share']:.1%} of the draft's step on {result['hardware']}")
    return 0
