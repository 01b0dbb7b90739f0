# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""The ``vocabtrim`` command line: one module per command, each owning its sub-parser (``add_parser``) and its run
function (``run``); this module only assembles them and turns errors into one line and a non-zero exit."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from ._args import Formatter, Parser

# in the order --help lists them: the pipeline, then measurement, engines and the demo
COMMANDS = ("count", "optimize", "trim", "profile", "acceptance", "eagle3", "check", "export", "import_", "demo")

DESCRIPTION = """Trim a draft model's vocabulary for faster speculative decoding with Hugging Face generate().

The usual flow: `count` the assistant tokens of chat data like your traffic, `optimize` the kept vocabulary size k
(coverage floor, optional guard data, Optuna TPE), `trim` the draft; then use it as
`target.generate(..., assistant_model=draft)` or serve it with vLLM (`pip install hf-vocabtrim[vllm]`). `profile` and
`acceptance` measure what the speedup objective needs, `eagle3` trims EAGLE-3 heads for vLLM / SGLang, `check` lints
such checkpoints, `export` / `import` convert kept sets, and `demo` runs everything offline on tiny models."""


def build_parser() -> Parser:
    """The ``vocabtrim`` parser: every command's sub-parser, added by its module."""
    from .. import __version__

    parser = Parser(prog="vocabtrim", description=DESCRIPTION, formatter_class=Formatter)
    parser.add_argument("--version", action="version", version=f"hf-vocabtrim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input gives one line on stderr and exit status 2 (a command's own failure: 1)."""
    args = build_parser().parse_args(argv)
    try:
        import datasets

        datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # data errors are reported once, below
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"vocabtrim {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
