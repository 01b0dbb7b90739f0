# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Load chat data (local files, in-memory rows or any ``datasets`` dataset) as one ``messages`` column."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

Message = dict[str, str]

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}
_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".txt": "text"}


@dataclass(frozen=True)
class ChatColumns:
    """Column names of the supported layouts; ``format='auto'`` picks the first layout whose columns exist."""

    messages: str = "messages"  # OpenAI style: [{"role", "content"}, ...]
    conversations: str = "conversations"  # ShareGPT style: [{"from", "value"}, ...]
    prompt: str = "prompt"  # prompt/response pairs
    response: str = "response"
    system: str | None = None  # optional system-prompt column for prompt/response pairs
    text: str = "text"  # plain text (pretraining-style corpora: every token counts)


def detect_format(column_names: Iterable[str], columns: ChatColumns = ChatColumns()) -> str:
    """Return ``messages``, ``sharegpt``, ``pairs`` or ``text`` from a dataset's column names."""
    names = set(column_names)
    if columns.messages in names:
        return "messages"
    if columns.conversations in names:
        return "sharegpt"
    if columns.prompt in names and columns.response in names:
        return "pairs"
    if columns.text in names:
        return "text"
    raise ValueError(
        f"cannot tell the chat layout from columns {sorted(names)}: expected `{columns.messages}` (role/content), "
        f"`{columns.conversations}` (from/value), `{columns.prompt}` + `{columns.response}`, or `{columns.text}`. "
        "Name the columns with --messages-column / --prompt-column / --response-column / --text-column."
    )


def _to_messages(example: Mapping[str, Any], fmt: str, columns: ChatColumns) -> list[Message]:
    if fmt == "messages":
        return [
            {"role": str(m["role"]), "content": "" if m.get("content") is None else str(m["content"])}
            for m in example[columns.messages]
        ]
    if fmt == "sharegpt":
        out = []
        for turn in example[columns.conversations]:
            role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
            if role is None:
                raise ValueError(f"unknown ShareGPT speaker {turn['from']!r}; known: {sorted(_SHAREGPT_ROLES)}")
            out.append({"role": role, "content": str(turn["value"])})
        return out
    messages = []
    if columns.system and example.get(columns.system):
        messages.append({"role": "system", "content": str(example[columns.system])})
    messages.append({"role": "user", "content": str(example[columns.prompt])})
    messages.append({"role": "assistant", "content": str(example[columns.response])})
    return messages


def load_chats(
    source: str | Path | datasets.Dataset | datasets.IterableDataset | list[Mapping[str, Any]],
    *,
    split: str = "train",
    streaming: bool = False,
    fmt: str = "auto",
    columns: ChatColumns = ChatColumns(),
    max_examples: int | None = None,
    data_config: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load chat data and normalise it to one ``messages`` column (or ``text`` for plain corpora).

    ``source`` is a local ``.json``/``.jsonl``/``.parquet``/``.csv``/``.txt`` file, a folder or Hub dataset id
    (``datasets.load_dataset``), a ``datasets`` dataset, or a list of rows.
    """
    if isinstance(source, list):
        dataset: Any = datasets.Dataset.from_list(list(source))
    elif isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        dataset = source
    else:
        path = Path(source)
        suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
        builder = _FILE_BUILDERS.get(suffix.removesuffix(".gz"))
        if path.is_file() and builder is not None:
            dataset = datasets.load_dataset(builder, data_files=str(path), split="train", streaming=streaming)
        elif path.is_file():
            raise ValueError(f"unsupported data file {path}: use one of {sorted(_FILE_BUILDERS)} (optionally .gz).")
        else:  # a local dataset folder or a Hub dataset id
            dataset = datasets.load_dataset(str(source), data_config, split=split, streaming=streaming)
    if max_examples is not None:
        dataset = (
            dataset.take(max_examples)
            if isinstance(dataset, datasets.IterableDataset)
            else (dataset.select(range(min(max_examples, len(dataset)))))
        )
    column_names = dataset.column_names
    if column_names is None:  # some streaming datasets only know their columns after the first row
        column_names = list(next(iter(dataset)).keys())
    fmt = detect_format(column_names, columns) if fmt == "auto" else fmt
    if fmt not in {"messages", "sharegpt", "pairs", "text"}:
        raise ValueError(f"fmt must be auto, messages, sharegpt, pairs or text, got {fmt!r}.")
    if fmt == "text":
        return (
            dataset.select_columns([columns.text]).rename_column(columns.text, "text")
            if columns.text != "text"
            else dataset.select_columns(["text"])
        )
    return dataset.map(lambda ex: {"messages": _to_messages(ex, fmt, columns)}, remove_columns=list(column_names))
