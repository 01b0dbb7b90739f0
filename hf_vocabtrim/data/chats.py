# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Load chat data (local files, in-memory rows or any ``datasets`` dataset) as one ``messages`` column.

Every message is normalised to ``role``, ``content`` (text; a list of parts is joined, ``None`` is empty),
``reasoning_content`` (where the data has it: the reasoning a thinking model emits) and ``extra`` (the other fields,
e.g. ``tool_calls``, as JSON), so the chat template renders the conversation as the model saw it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

Message = dict[str, Any]

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
_OWN_KEYS = {"role", "content", "reasoning_content", "from", "value"}


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


def content_text(content: Any) -> str:
    """Text of a message content: a string, ``None`` (empty) or a list of parts (their text, joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(
            str(part.get("text") or "") if isinstance(part, Mapping) else content_text(part) for part in content
        )
    if isinstance(content, Mapping):
        return str(content.get("text") or "")
    return str(content)


def message(role: str, content: Any, source: Mapping[str, Any] | None = None) -> Message:
    """A normalised message; fields of ``source`` other than role/content/reasoning go to ``extra`` as JSON."""
    source = source or {}
    reasoning = source.get("reasoning_content")
    others = {k: v for k, v in source.items() if k not in _OWN_KEYS and v is not None}
    return {
        "role": role,
        "content": content_text(content),
        "reasoning_content": None if reasoning is None else content_text(reasoning),
        "extra": json.dumps(others, ensure_ascii=False, default=str) if others else None,
    }


def _to_messages(example: Mapping[str, Any], fmt: str, columns: ChatColumns) -> list[Message]:
    if fmt == "messages":
        return [message(str(m["role"]), m.get("content"), m) for m in example[columns.messages]]
    if fmt == "sharegpt":
        out = []
        for turn in example[columns.conversations]:
            role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
            if role is None:
                raise ValueError(f"unknown ShareGPT speaker {turn['from']!r}; known: {sorted(_SHAREGPT_ROLES)}")
            out.append(message(role, turn.get("value"), turn))
        return out
    messages = []
    if columns.system and example.get(columns.system):
        messages.append(message("system", example[columns.system]))
    messages.append(message("user", example[columns.prompt]))
    messages.append(message("assistant", example[columns.response]))
    return messages


def is_hub_id(name: str | None) -> bool:
    """Whether ``name`` names a Hub repository (``owner/name``), not a local path."""
    from huggingface_hub.utils import HFValidationError
    from huggingface_hub.utils import validate_repo_id as _validate

    if not name or os.path.isabs(name) or os.path.exists(name) or name.startswith((".", "~")) or name.count("/") > 1:
        return False
    try:
        _validate(name)
    except HFValidationError:
        return False
    return True


def public_name(source: str | None) -> str:
    """A name safe to publish for a data source or model: a Hub id as it is, a local path by its file name only."""
    if not source:
        return ""
    return source if is_hub_id(source) else os.path.basename(os.path.normpath(source))


def _load_file_or_hub(source: str | Path, split: str, streaming: bool, data_config: str | None) -> Any:
    path = Path(source).expanduser()
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    builder = _FILE_BUILDERS.get(suffix.removesuffix(".gz"))
    looks_local = builder is not None or str(source).startswith(("/", "./", "../", "~"))
    if looks_local and not path.exists():
        raise ValueError(f"data file {source} does not exist (a local path; Hub datasets are named `owner/name`).")
    if path.is_file() and path.stat().st_size < 65536 and not path.read_bytes().strip():  # blank: nothing to read
        raise ValueError(f"data file {source} is empty: no rows to read.")
    try:
        if path.is_file() and builder is not None:
            return datasets.load_dataset(builder, data_files=str(path), split="train", streaming=streaming)
        if path.is_file():
            raise ValueError(f"unsupported data file {path}: use one of {sorted(_FILE_BUILDERS)} (optionally .gz).")
        return datasets.load_dataset(str(source), data_config, split=split, streaming=streaming)
    except datasets.exceptions.DatasetGenerationError as err:  # e.g. a malformed JSON line
        cause = err.__cause__ or err
        raise ValueError(f"cannot read {source}: {type(cause).__name__}: {cause}") from None
    except StopIteration:  # the readers' way of saying "no rows"
        raise ValueError(f"data file {source} has no rows to read.") from None


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
    if isinstance(source, list):  # normalised in Python first: raw rows may mix content types Arrow cannot hold
        if not source:
            raise ValueError("the dataset is empty: no rows given.")
        rows = source[:max_examples] if max_examples is not None else source
        fmt = detect_format(rows[0].keys(), columns) if fmt == "auto" else fmt
        if fmt == "text":
            return datasets.Dataset.from_list([{"text": row[columns.text]} for row in rows])
        return datasets.Dataset.from_list([{"messages": _to_messages(row, fmt, columns)} for row in rows])
    if isinstance(source, (datasets.Dataset, datasets.IterableDataset)):
        dataset = source
    else:
        dataset = _load_file_or_hub(source, split, streaming, data_config)
    if max_examples is not None:
        dataset = (
            dataset.take(max_examples)
            if isinstance(dataset, datasets.IterableDataset)
            else (dataset.select(range(min(max_examples, len(dataset)))))
        )
    column_names = dataset.column_names
    if column_names is None:  # some streaming datasets only know their columns after the first row
        first = next(iter(dataset), None)
        if first is None:
            raise ValueError("the dataset is empty: no rows to read.")
        column_names = list(first.keys())
    fmt = detect_format(column_names, columns) if fmt == "auto" else fmt
    if fmt not in {"messages", "sharegpt", "pairs", "text"}:
        raise ValueError(f"fmt must be auto, messages, sharegpt, pairs or text, got {fmt!r}.")
    if fmt == "text":
        if columns.text != "text":
            dataset = dataset.rename_column(columns.text, "text")
        return dataset.select_columns(["text"])
    return dataset.map(lambda ex: {"messages": _to_messages(ex, fmt, columns)}, remove_columns=list(column_names))
