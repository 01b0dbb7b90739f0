# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim demo``: the whole pipeline offline, on tiny embedded models and data."""

from __future__ import annotations

import argparse
from typing import Any

from ._args import command


def add_parser(sub: Any) -> None:
    p = command(sub, "demo", help="offline end-to-end demo on tiny embedded models and data")
    p.add_argument("--out", default="vocabtrim_demo", help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out)
    return 0
