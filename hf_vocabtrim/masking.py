# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Assistant-token masks from the tokenizer's own chat template, as a training loss mask would have them.

Two ways, picked per template, no table of template families:
- the template marks assistant text with ``{% generation %}``: its generation spans are used;
- otherwise each assistant message's content is located, in order, in the rendered chat.
Tokens (from the offsets of one tokenisation of the whole rendered chat) that overlap a span are assistant tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

Span = tuple[int, int]
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


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


def _locate_spans(text: str, messages: Sequence[dict[str, str]]) -> list[Span]:
    """Character spans of the assistant contents, found in order in the rendered chat."""
    spans: list[Span] = []
    cursor = 0
    for index, message in enumerate(messages):
        content = message["content"]
        if message["role"] != "assistant" or not content.strip():
            # Non-assistant content still moves the cursor so that an assistant reply equal to an earlier user
            # message is not matched inside the user turn.
            found = text.find(content, cursor) if content and message["role"] != "assistant" else -1
            if found >= 0:
                cursor = found + len(content)
            continue
        for needle in (content, content.strip()):
            start = text.find(needle, cursor)
            if start >= 0:
                spans.append((start, start + len(needle)))
                cursor = start + len(needle)
                break
        else:
            raise ValueError(
                f"assistant message {index} is not found verbatim in the chat rendered by the tokenizer's template "
                "(the template rewrites it); add `{% generation %}` markers to the template to count it."
            )
    return spans


def render_batch_with_spans(tokenizer: Any, chats: Sequence[Sequence[dict[str, str]]]) -> list[tuple[str, list[Span]]]:
    """Render chats with the tokenizer's template (one call); return each text with its assistant character spans."""
    template = _require_template(tokenizer)
    chats = [list(chat) for chat in chats]
    if not chats:
        return []
    if _GENERATION_TAG.search(template):
        from transformers.utils.chat_template_utils import render_jinja_template

        result: Any = render_jinja_template(
            conversations=cast(Any, chats),
            chat_template=template,
            return_assistant_tokens_mask=True,
            **tokenizer.special_tokens_map,
        )
        rendered, indices = result
        return [(text, [(int(s), int(e)) for s, e in spans if e > s]) for text, spans in zip(rendered, indices)]
    texts: list[str] = tokenizer.apply_chat_template(chats, tokenize=False)
    return [(text, _locate_spans(text, chat)) for text, chat in zip(texts, chats)]


def render_with_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list[Span]]:
    """Render one chat with the tokenizer's template; return the text and the character spans of assistant text."""
    return render_batch_with_spans(tokenizer, [messages])[0]


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


def assistant_token_mask(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered chat and, per token, whether it belongs to an assistant turn (one chat)."""
    text, spans = render_with_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    mask = overlap_mask(offsets, np.asarray(spans, dtype=np.int64).reshape(-1, 2))
    return list(enc["input_ids"]), mask.tolist()
