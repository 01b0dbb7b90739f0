# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Assistant-token masks from the tokenizer's own chat template, as a training loss mask would have them.

Two ways, picked per template, no table of template families:
- the template marks assistant text with ``{% generation %}``: its generation spans are used;
- otherwise each assistant field (``content`` and, where the template renders it, ``reasoning_content``) is wrapped
  in invisible markers before rendering, the markers are located in the rendered text and removed. Markers sit inside
  the field's outer whitespace, so templates that ``trim`` contents render the same text; a field whose start (or
  end) marker was cut off by the template (e.g. Qwen3 splitting ``<think>`` blocks off an earlier turn) is recovered
  as the longest part of the field that the rendered text ends (or starts) with. A chat whose fields cannot be
  located is skipped and reported, never guessed.
Tokens (from the offsets of one tokenisation of the whole rendered chat) that overlap a span are assistant tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

Span = tuple[int, int]
Message = dict[str, Any]
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_START, _END = "\ufdd0", "\ufdd1"  # Unicode noncharacters: never in real text
_TAG0, _MAX_FIELDS = 0xE000, 6400  # one private-use tag character (U+E000..U+F8FF) per marked field
MARKED_FIELDS = ("reasoning_content", "content")


def has_generation_tags(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template marks assistant text with ``{% generation %}``."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and bool(_GENERATION_TAG.search(template))


def _require_template(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        raise ValueError(
            f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template (single-template "
            "tokenizers only); set `tokenizer.chat_template`, or count plain text with fmt='text'."
        )
    return template


def template_message(message: Message) -> Message:
    """A message as chat templates expect it: role, content, reasoning_content where given, and the fields kept as
    JSON in ``extra`` by :func:`hf_vocabtrim.data.chats.load_chats` (``tool_calls``, ``name``...)."""
    out: Message = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("reasoning_content") is not None:
        out["reasoning_content"] = message["reasoning_content"]
    if message.get("extra"):
        out.update(json.loads(message["extra"]))
    return out


def _mark(text: str, tag: str) -> tuple[str, tuple[str, str, str]]:
    core = text.strip()
    lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
    return f"{lead}{_START}{tag}{core}{tag}{_END}{trail}", (lead, core, trail)


def _common_suffix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class Unlocatable(ValueError):
    """An assistant field that the rendered chat does not show in a form this module can locate."""


def _spans_from_markers(
    text: str, fields: dict[str, tuple[str, str, str]], contents: set[str]
) -> tuple[str, list[Span]]:
    """Remove the markers from ``text``; return the clean text and the character spans of the marked fields
    (``contents``: the tags of ``content`` fields, which a template is expected to render)."""
    found = []  # (position in text, tag, is_start); fields are searched in order, from the last mark found
    cursor = 0
    for tag in fields:
        for mark, is_start in ((_START + tag, True), (tag + _END, False)):
            position = text.find(mark, cursor)
            if position < 0 and cursor:
                position = text.find(mark)  # rendered out of order
            if position >= 0:
                found.append((position, tag, is_start))
                cursor = position + 2
    if len(found) != text.count(_START) + text.count(_END):
        raise Unlocatable("the template renders an assistant field twice (or the data holds the markers)")
    found.sort()
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    pieces, cursor = [], 0
    for index, (position, tag, is_start) in enumerate(found):  # each mark is 2 characters: shift by 2 per mark
        (starts if is_start else ends)[tag] = position - 2 * index
        pieces.append(text[cursor:position])
        cursor = position + 2
    pieces.append(text[cursor:])
    clean = "".join(pieces)
    spans = []
    for tag, (lead, core, trail) in fields.items():
        start, end = starts.get(tag), ends.get(tag)
        if start is None and end is None:
            if tag in contents and core in clean:  # rendered, but the template destroyed the markers (e.g. escaped)
                raise Unlocatable("the template rewrites the markers of an assistant field")
            continue  # the template does not render this field (e.g. reasoning of earlier turns)
        if start is None:
            assert end is not None
            start = end - _common_suffix(clean[:end], core)
            while start < end and clean[start].isspace():
                start += 1
        elif end is None:
            end = start + _common_prefix(clean[start:], core)
            while end > start and clean[end - 1].isspace():
                end -= 1
        else:  # both markers: widen over the field's own outer whitespace where the template kept it
            if lead and clean[max(0, start - len(lead)) : start] == lead:
                start -= len(lead)
            if trail and clean[end : end + len(trail)] == trail:
                end += len(trail)
        if end < start:
            raise Unlocatable("an assistant field's markers are out of order")
        if end > start:
            spans.append((start, end))
    spans.sort()
    merged: list[Span] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return clean, merged


def render_batch_with_spans(tokenizer: Any, chats: Sequence[Sequence[Message]]) -> list[tuple[str, list[Span]] | None]:
    """Render chats with the tokenizer's template (one call); return each text with its assistant character spans,
    or ``None`` for a chat whose assistant text cannot be located (skip it and report it)."""
    template = _require_template(tokenizer)
    if not chats:
        return []
    if _GENERATION_TAG.search(template):
        from transformers.utils.chat_template_utils import render_jinja_template

        plain = [[template_message(m) for m in chat] for chat in chats]
        result: Any = render_jinja_template(
            conversations=cast(Any, plain),
            chat_template=template,
            return_assistant_tokens_mask=True,
            **tokenizer.special_tokens_map,
        )
        rendered, indices = result
        return [(text, [(int(s), int(e)) for s, e in spans if e > s]) for text, spans in zip(rendered, indices)]
    marked_chats: list[list[Message]] = []
    chat_fields: list[tuple[dict[str, tuple[str, str, str]], set[str]] | None] = []
    for chat in chats:
        fields: dict[str, tuple[str, str, str]] = {}
        contents: set[str] = set()
        marked, overflow = [], False
        for message in chat:
            message = template_message(message)
            if message["role"] == "assistant":
                for key in MARKED_FIELDS:
                    value = message.get(key)
                    if isinstance(value, str) and value.strip():
                        if len(fields) == _MAX_FIELDS:  # more fields than tag characters: reported, not guessed
                            overflow = True
                            continue
                        tag = chr(_TAG0 + len(fields))
                        message[key], fields[tag] = _mark(value, tag)
                        if key == "content":
                            contents.add(tag)
            marked.append(message)
        marked_chats.append(marked)
        chat_fields.append(None if overflow else (fields, contents))
    texts: list[str] = tokenizer.apply_chat_template(marked_chats, tokenize=False)
    out: list[tuple[str, list[Span]] | None] = []
    for text, chat_field in zip(texts, chat_fields):
        try:
            out.append(None if chat_field is None else _spans_from_markers(text, *chat_field))
        except Unlocatable:
            out.append(None)
    return out


def render_with_spans(tokenizer: Any, messages: Sequence[Message]) -> tuple[str, list[Span]]:
    """Render one chat with the tokenizer's template; return the text and the character spans of assistant text.

    Raises ``ValueError`` if the assistant text cannot be located in the rendered chat."""
    result = render_batch_with_spans(tokenizer, [messages])[0]
    if result is None:
        raise ValueError(
            "the assistant text of this chat cannot be located in the chat rendered by the tokenizer's template "
            "(the template rewrites it); add `{% generation %}` markers to the template to count it."
        )
    return result


def overlap_mask(token_offsets: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Boolean mask of tokens whose [start, end) character range overlaps any of the sorted, disjoint ``spans``."""
    if len(spans) == 0 or len(token_offsets) == 0:
        return np.zeros(len(token_offsets), dtype=bool)
    starts, ends = token_offsets[:, 0], token_offsets[:, 1]
    idx = np.searchsorted(spans[:, 1], starts, side="right")  # first span ending after the token starts
    valid = idx < len(spans)
    mask = np.zeros(len(token_offsets), dtype=bool)
    mask[valid] = spans[idx[valid], 0] < ends[valid]
    return mask & (ends > starts)


def assistant_token_mask(tokenizer: Any, messages: Sequence[Message]) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered chat and, per token, whether it belongs to an assistant turn (one chat)."""
    text, spans = render_with_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    mask = overlap_mask(offsets, np.asarray(spans, dtype=np.int64).reshape(-1, 2))
    return list(enc["input_ids"]), mask.tolist()
