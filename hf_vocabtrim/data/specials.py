# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Token ids a draft must always be able to emit, whatever the data: eos/pad/bos and the chat template's end-of-turn.

It travels with saved checkpoints beside the model code (``TrimmedDraftModel.from_draft`` imports it), so it imports
nothing but the standard library.
"""

from __future__ import annotations

from typing import Any

_MARKER = "Xq7Zassistantmarker"


def id_list(value: Any) -> list[int]:
    """A token-id setting (``eos_token_id`` and the like: None, an int, or a list/tuple of ints) as a list of ints."""
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def special_token_ids(config: Any, generation_config: Any, tokenizer: Any | None) -> set[int]:
    """Ids a draft must be able to emit: eos/pad/bos of config and generation config, the tokenizer's special
    tokens, and the added tokens that the chat template writes right after an assistant turn (end of turn)."""
    ids: set[int] = set()
    for source in (config, generation_config, tokenizer):
        for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
            ids.update(id_list(getattr(source, name, None) if source is not None else None))
    if tokenizer is not None:
        ids.update(int(i) for i in tokenizer.all_special_ids)
        ids.update(end_of_turn_ids(tokenizer))
    return ids


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Added tokens the chat template writes right after an assistant message (e.g. ``<|im_end|>``, ``<|eot_id|>``)."""
    if not getattr(tokenizer, "chat_template", None):
        return set()
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = tokenizer.apply_chat_template(chat, tokenize=False)
    except Exception:  # a template that rejects this chat: the special tokens alone
        return set()
    if not isinstance(text, str) or _MARKER not in text:
        return set()
    suffix = text.split(_MARKER, 1)[1]
    added = set(getattr(tokenizer, "added_tokens_decoder", {}))
    return {int(i) for i in tokenizer(suffix, add_special_tokens=False)["input_ids"] if i in added}


def end_of_reply_ids(tokenizer: Any, generation_config: Any | None = None) -> list[int]:
    """The ids that end a reply: eos (of the tokenizer and of ``generation_config``) and the chat template's end of
    turn. The only special ids a draft must be able to propose (bos and pad never follow a reply's tokens)."""
    ids = set(id_list(getattr(tokenizer, "eos_token_id", None)))
    ids.update(id_list(getattr(generation_config, "eos_token_id", None)))
    ids.update(end_of_turn_ids(tokenizer))
    return sorted(ids)
