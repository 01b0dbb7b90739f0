# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""What the ``vocabtrim`` commands share: the parser and help format, checked number types, the flag groups used by
several commands (data, batches, keep plan, context tokens, model loading) and the steps they run from those flags."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from ..loaders import DTYPES


class Formatter(argparse.RawDescriptionHelpFormatter):
    """--help keeps the description's line breaks and shows a flag's default once: "(default: not set)" for a flag
    whose default is None; nothing for required flags, on/off switches, or where the help line already says what the
    default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        switch = action.default is False and not isinstance(action, argparse.BooleanOptionalAction)
        quiet = switch or action.default == argparse.SUPPRESS or action.required or not action.option_strings
        if quiet or "default" in text:
            return text
        if action.default is None:
            return f"{text} (default: not set)"
        if isinstance(action, argparse.BooleanOptionalAction):
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem (the usage is in --help), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def ranged(kind: type, low: float | None = None, high: float | None = None, open_high: bool = False) -> Any:
    """An argparse type: ``kind`` within [low, high] (``high`` excluded with ``open_high``), else a parser error
    that gives the allowed range."""
    upper = "" if high is None else f", {high}{')' if open_high else ']'}"
    allowed = f"[{low}{upper}" if upper else f">= {low}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        too_high = high is not None and (value >= high if open_high else value > high)
        if (low is not None and value < low) or too_high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: allowed {allowed}")
        return value

    parse.__name__ = kind.__name__
    return parse


FRACTION = ranged(float, 0.0, 1.0)
LOSS = ranged(float, 0.0, 1.0, open_high=True)
POSITIVE = ranged(int, 1)
NON_NEGATIVE = ranged(int, 0)


def command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its purpose and its flags' defaults."""
    return sub.add_parser(name, help=help, description=help, formatter_class=Formatter)


# ------------------------------------------------------------------------------------------------ flag groups
def model_args(parser: argparse.ArgumentParser, flag: str = "--draft", what: str = "draft", gguf: bool = True) -> None:
    """``--draft`` (or ``flag``): a model folder or Hub id, with ``--gguf-file`` for GGUF checkpoints."""
    parser.add_argument(flag, required=True, help=f"{what} folder or Hub id")
    if gguf:
        parser.add_argument("--gguf-file", default=None, help=f"GGUF file inside {flag}")


def tokenizer_arg(parser: argparse.ArgumentParser, help: str = "tokenizer (default: the draft's)") -> None:
    parser.add_argument("--tokenizer", default=None, help=help)


def dtype_arg(parser: argparse.ArgumentParser, of: str = "the models") -> None:
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help=f"dtype of {of} (auto: the checkpoint's)")


def device_arg(parser: argparse.ArgumentParser, of: str = "the models") -> None:
    parser.add_argument("--device", default=None, help=f"device_map of {of}, e.g. cuda or auto")


def threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=POSITIVE, default=None, help="torch threads (default: torch's own)")


def data_args(parser: argparse.ArgumentParser, flag: str = "--data", required: bool = True) -> None:
    parser.add_argument(flag, required=required, help="chat data: .json/.jsonl/.parquet/.csv/.txt, folder or Hub id")
    parser.add_argument("--split", default="train", help="dataset split (Hub / folder datasets)")
    parser.add_argument("--data-config", default=None, help="dataset configuration name (Hub datasets)")
    parser.add_argument("--streaming", action="store_true", help="stream the dataset instead of downloading it")
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "messages", "sharegpt", "pairs", "text"],
        help="layout of the rows (auto: from the column names)",
    )
    for name, default, what in (
        ("messages", "messages", "OpenAI-style messages (role/content)"),
        ("conversations", "conversations", "ShareGPT conversations (from/value)"),
        ("prompt", "prompt", "the prompt of prompt/response rows"),
        ("response", "response", "the response of prompt/response rows"),
        ("system", None, "an optional system prompt of prompt/response rows"),
        ("text", "text", "plain text (--format text)"),
    ):
        parser.add_argument(f"--{name}-column", default=default, help=f"column with {what}")
    parser.add_argument("--max-examples", type=POSITIVE, default=None, help="use only the first N rows")


def batch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=POSITIVE, default=256, help="chats rendered and tokenised per batch")
    parser.add_argument("--num-proc", type=POSITIVE, default=1, help="worker processes for counting")


def plan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", default=None, help="keep plan (folder or keep_plan.safetensors) from optimize; one "
                        "of --plan, --summary, --counts is needed")  # fmt: skip
    parser.add_argument("--summary", default=None, help="summary.json from optimize (its keep plan beside it)")
    parser.add_argument("--counts", default=None, help="counts file (ranks the ids when no plan is given)")


def context_flag(parser: argparse.ArgumentParser, default: bool | None, help: str) -> None:
    parser.add_argument("--context-tokens", action=argparse.BooleanOptionalAction, default=default, help=help)


# ------------------------------------------------------------------------------------------------ shared steps
def load_rows(args: argparse.Namespace, data: str) -> Any:
    """The chats of ``data`` read with the data flags of :func:`data_args`."""
    from ..data.chats import ChatColumns, load_chats

    columns = ChatColumns(
        messages=args.messages_column,
        conversations=args.conversations_column,
        prompt=args.prompt_column,
        response=args.response_column,
        system=args.system_column,
        text=args.text_column,
    )
    return load_chats(
        data,
        split=args.split,
        streaming=args.streaming,
        fmt=args.format,
        columns=columns,
        max_examples=args.max_examples,
        data_config=args.data_config,
    )


def count_data(args: argparse.Namespace, data: str, tokenizer: Any) -> Any:
    """``TokenCounts`` of the assistant tokens of ``data``."""
    from ..data.counting import count_tokens

    rows = load_rows(args, data)
    return count_tokens(tokenizer, rows, batch_size=args.batch_size, num_proc=args.num_proc, source=Path(data).name)


def plan_for(args: argparse.Namespace, draft_config: Any, generation_config: Any) -> Any:
    """The keep plan of ``--plan`` / ``--summary`` (written by optimize), or one made from ``--counts``."""
    from ..data.counts import TokenCounts
    from ..selection.keep_plan import KeepPlan

    source = getattr(args, "plan", None) or (Path(args.summary).parent if getattr(args, "summary", None) else None)
    if source is not None:
        return KeepPlan.load(source)
    if not args.counts:
        raise ValueError("pass --plan/--summary (from `vocabtrim optimize`) or --counts.")
    return KeepPlan.from_counts(TokenCounts.load(args.counts), draft_config, generation_config)
