# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Calibrate on the target's own outputs (``vocabtrim count --generate-with TARGET``).

A draft is judged on what the target writes, not on what a dataset's authors wrote (VocabTrim, arXiv 2506.22694,
found counting the models' own outputs better). For each chat the prompt is its messages before the first assistant
turn (all of them when it has none, e.g. benchmark questions); the target's greedy reply is generated in batches
with left padding, and the reply's ids, up to and including the first end-of-sequence id, are counted. Replies are
appended to a JSONL file as each batch ends, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .chats import public_name
from .counts import TokenCounts, vocab_hash
from .specials import id_list, special_token_ids


def prompt_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages before the first assistant turn (all of them when there is none)."""
    out = []
    for message in messages:
        if message.get("role") == "assistant":
            break
        out.append({"role": message["role"], "content": message.get("content") or ""})
    if not out:
        raise ValueError("a conversation starts with an assistant turn: there is no prompt to reply to.")
    return out


def prompt_ids(tokenizer: Any, messages: Sequence[dict[str, Any]]) -> list[int]:
    ids = tokenizer.apply_chat_template(prompt_messages(messages), add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def _key(settings: dict[str, Any], ids: Sequence[int]) -> str:
    return hashlib.sha256(json.dumps([settings, list(ids)]).encode()).hexdigest()[:16]


def _stop_ids(target: Any, tokenizer: Any) -> set[int]:
    return set(id_list(getattr(target.generation_config, "eos_token_id", None))) | set(id_list(tokenizer.eos_token_id))


def generate_replies(
    target: Any,
    tokenizer: Any,
    rows: Iterable[dict[str, Any]],
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    generations: str | Path | None = None,
    progress: bool = True,
) -> list[list[int]]:
    """The target's greedy reply ids to each row's prompt (see the module docstring), in the rows' order.

    ``generations``: a JSONL file; replies already there (same prompt, target and ``max_new_tokens``) are reused and
    new ones appended after each batch, so a run can be resumed."""
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens} and {batch_size}.")
    prompts = [prompt_ids(tokenizer, row["messages"]) for row in rows]
    if not prompts:
        raise ValueError("no conversations to reply to.")
    settings = {"target": public_name(str(getattr(target.config, "_name_or_path", ""))), "max": max_new_tokens}
    keys = [_key(settings, ids) for ids in prompts]
    done: dict[str, list[int]] = {}
    path = Path(generations) if generations is not None else None
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["key"]] = record["reply_ids"]
    todo = [i for i, key in enumerate(keys) if key not in done]
    todo.sort(key=lambda i: len(prompts[i]))  # similar lengths batch with little padding
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = _stop_ids(target, tokenizer)
    device = next(target.parameters()).device
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc="target replies", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        with torch.no_grad():
            out = target.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        records = []
        for row, i in enumerate(batch):
            reply: list[int] = []
            for token in out[row, width:].tolist():
                reply.append(int(token))
                if token in stops:
                    break
            done[keys[i]] = reply
            records.append(json.dumps({"key": keys[i], "reply_ids": reply}))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                handle.write("".join(record + "\n" for record in records))
        bar.update(len(batch))
    bar.close()
    return [done[key] for key in keys]


def count_replies(replies: Sequence[Sequence[int]], tokenizer: Any, source: str = "", **extra: Any) -> TokenCounts:
    """:class:`TokenCounts` of reply ids (every id of a reply is an assistant token)."""
    vocab = len(tokenizer)
    flat = np.fromiter((i for reply in replies for i in reply), dtype=np.int64)
    if flat.size == 0:
        raise ValueError(f"no tokens counted{f' in {source}' if source else ''}: the target's replies are empty.")
    if flat.max() >= vocab:
        raise ValueError(
            f"a reply id ({int(flat.max())}) is outside the tokenizer's {vocab} ids: mismatched tokenizer."
        )
    return TokenCounts(
        counts=np.bincount(flat, minlength=vocab),
        tokenizer_name=public_name(str(getattr(tokenizer, "name_or_path", ""))),
        vocab_size=vocab,
        vocab_hash=vocab_hash(tokenizer),
        num_conversations=len(replies),
        num_tokens=int(flat.size),
        source=source,
        extra={"special_ids": sorted(special_token_ids(None, None, tokenizer)), "responses": "target", **extra},
    )


def merge_counts(first: TokenCounts, second: TokenCounts) -> TokenCounts:
    """The sum of two counts of one tokenizer (e.g. dataset responses alongside the target's replies)."""
    if first.vocab_hash != second.vocab_hash:
        raise ValueError("cannot add counts of two different tokenizers.")
    return TokenCounts(
        counts=first.counts + second.counts,
        tokenizer_name=first.tokenizer_name,
        vocab_size=first.vocab_size,
        vocab_hash=first.vocab_hash,
        num_conversations=first.num_conversations,
        num_tokens=first.num_tokens + second.num_tokens,
        source=first.source,
        extra={**second.extra, **first.extra, "responses": "dataset and target"},
    )
